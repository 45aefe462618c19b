//! Admission of StreamEvents streams: at most so many open in the process and so many per
//! tenant. A stream holds its [`StreamPermit`] for its whole life; dropping the permit (the
//! stream ended, however it ended) frees its place.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Which cap refused a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamCap {
    /// `--max-event-streams`: streams open in this process.
    Process { limit: usize },
    /// `--max-event-streams-per-tenant`: one tenant's streams open in this process.
    Tenant { limit: usize },
}

/// Counts the open streams of the process, in all and per tenant.
#[derive(Clone)]
pub struct StreamAdmission {
    inner: Arc<Inner>,
}

struct Inner {
    process_limit: usize,
    tenant_limit: usize,
    open: Mutex<OpenStreams>,
}

#[derive(Default)]
struct OpenStreams {
    total: usize,
    per_tenant: HashMap<String, usize>,
}

impl StreamAdmission {
    /// At most `process_limit` streams in the process and `tenant_limit` per tenant (each at
    /// least 1).
    pub fn new(process_limit: usize, tenant_limit: usize) -> StreamAdmission {
        StreamAdmission {
            inner: Arc::new(Inner {
                process_limit: process_limit.max(1),
                tenant_limit: tenant_limit.max(1),
                open: Mutex::new(OpenStreams::default()),
            }),
        }
    }

    /// A place for one more stream of `tenant_id`, or the cap that is full. The tenant's
    /// cap is checked first: a tenant at its own cap is told so even when the process is
    /// full too.
    pub fn admit(&self, tenant_id: &str) -> Result<StreamPermit, StreamCap> {
        let mut open = self.inner.open();
        let of_tenant = open.per_tenant.get(tenant_id).copied().unwrap_or(0);
        if of_tenant >= self.inner.tenant_limit {
            return Err(StreamCap::Tenant {
                limit: self.inner.tenant_limit,
            });
        }
        if open.total >= self.inner.process_limit {
            return Err(StreamCap::Process {
                limit: self.inner.process_limit,
            });
        }
        open.total += 1;
        *open.per_tenant.entry(tenant_id.to_owned()).or_default() += 1;
        Ok(StreamPermit {
            inner: self.inner.clone(),
            tenant_id: tenant_id.to_owned(),
        })
    }

    /// Streams open in the process.
    pub fn open_streams(&self) -> usize {
        self.inner.open().total
    }
}

impl Inner {
    fn open(&self) -> MutexGuard<'_, OpenStreams> {
        // The counts are changed in single statements: a poisoned lock still holds them.
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One admitted stream's place; freed on drop.
pub struct StreamPermit {
    inner: Arc<Inner>,
    tenant_id: String,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self.inner.open();
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.per_tenant.get_mut(&self.tenant_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.per_tenant.remove(&self.tenant_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_at_its_cap_is_refused_and_others_are_not() {
        let admission = StreamAdmission::new(10, 2);
        let first = admission.admit("a").unwrap();
        let _second = admission.admit("a").unwrap();
        assert_eq!(
            admission.admit("a").err(),
            Some(StreamCap::Tenant { limit: 2 })
        );
        let _other = admission.admit("b").unwrap();
        drop(first);
        let _third = admission.admit("a").unwrap();
        assert_eq!(admission.open_streams(), 3);
    }

    #[test]
    fn the_process_cap_counts_every_tenant() {
        let admission = StreamAdmission::new(3, 2);
        let permits: Vec<StreamPermit> = ["a", "b", "c"]
            .iter()
            .map(|tenant| admission.admit(tenant).unwrap())
            .collect();
        assert_eq!(
            admission.admit("d").err(),
            Some(StreamCap::Process { limit: 3 })
        );
        drop(permits);
        assert_eq!(admission.open_streams(), 0);
        assert!(admission.admit("d").is_ok());
    }

    proptest::proptest! {
        /// Whatever the order of opening and closing, the counts never pass a cap and all
        /// return to zero.
        #[test]
        fn caps_hold_under_any_sequence(steps in proptest::collection::vec((0usize..4, proptest::bool::ANY), 1..200)) {
            let admission = StreamAdmission::new(5, 2);
            let mut held: Vec<(usize, StreamPermit)> = Vec::new();
            for (tenant, open) in steps {
                if open {
                    if let Ok(permit) = admission.admit(&tenant.to_string()) {
                        held.push((tenant, permit));
                    }
                } else if let Some(index) = held.iter().position(|(t, _)| *t == tenant) {
                    held.swap_remove(index);
                }
                proptest::prop_assert!(admission.open_streams() <= 5);
                for t in 0..4 {
                    proptest::prop_assert!(held.iter().filter(|(h, _)| *h == t).count() <= 2);
                }
                proptest::prop_assert_eq!(admission.open_streams(), held.len());
            }
            held.clear();
            proptest::prop_assert_eq!(admission.open_streams(), 0);
        }
    }
}
