//! Fair admission of unary calls across tenants (docs/api.md, "Limits"): one tenant's flood
//! must not shed another tenant's calls, nor make them queue behind its own for a pooled
//! database connection.
//!
//! Admission ([`admit`], a pure rule): with L the process limit, T the calls in flight,
//! n the caller's tenant's calls in flight and k the tenants with calls in flight (the
//! caller's counted), the tenant's fair share is `s = max(1, min(C, L / k))` where C is the
//! per-tenant cap. A call is admitted when
//! - `n < s` (within its share), even when `T >= L`, as long as `T < 2·L` (the hard bound
//!   that keeps memory bounded), or
//! - `T < L` and `n < C` (spare capacity, borrowed up to the per-tenant cap).
//!
//! Otherwise it is shed: `TENANT_OVER_SHARE` when the tenant holds more than its share
//! while others are served (or reached the per-tenant cap), `OVERLOADED` when the process
//! itself is full (the hard bound, or a lone tenant at the process limit).
//!
//! Execution: an admitted call then waits for one of its tenant's running slots (at most
//! [`TenantLedger::running_per_tenant`] calls of one tenant run at once, the rest wait in
//! the tenant's own queue). Derived from the database pool, it leaves connections free for
//! other tenants instead of letting one tenant's calls fill the pool's shared queue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Semaphore, SemaphorePermit};

/// The limits the admission rule applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareLimits {
    /// L: beyond this many calls in flight only tenants within their share are admitted.
    process_limit: usize,
    /// C: most calls one tenant may have in flight.
    tenant_cap: usize,
}

impl ShareLimits {
    /// L of at least 1; C between 1 and L, L when not given.
    pub fn new(process_limit: usize, tenant_cap: Option<usize>) -> Self {
        let process_limit = process_limit.max(1);
        Self {
            process_limit,
            tenant_cap: tenant_cap.unwrap_or(process_limit).clamp(1, process_limit),
        }
    }

    pub fn process_limit(&self) -> usize {
        self.process_limit
    }

    pub fn tenant_cap(&self) -> usize {
        self.tenant_cap
    }

    /// Calls in flight at which every call is shed, whoever the caller: 2·L.
    pub fn hard_limit(&self) -> usize {
        self.process_limit.saturating_mul(2)
    }

    /// A tenant's fair share when `tenants` tenants (itself included) have calls in flight.
    pub fn fair_share(&self, tenants: usize) -> usize {
        (self.process_limit / tenants.max(1))
            .min(self.tenant_cap)
            .max(1)
    }
}

/// What is in flight when a call arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// T: calls in flight, all tenants.
    pub total: usize,
    /// n: calls in flight of the caller's tenant.
    pub tenant: usize,
    /// Tenants other than the caller's with calls in flight.
    pub other_tenants: usize,
}

/// Why a call was shed; the ErrorInfo reason of its RESOURCE_EXHAUSTED answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShedReason {
    /// The process is full.
    Overloaded,
    /// The caller's tenant holds more than its fair share (or its cap) of the limit.
    TenantOverShare,
}

impl ShedReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ShedReason::Overloaded => "OVERLOADED",
            ShedReason::TenantOverShare => "TENANT_OVER_SHARE",
        }
    }

    /// The answer's message: says what to do, names no internals.
    pub fn message(self) -> &'static str {
        match self {
            ShedReason::Overloaded => "too many calls in flight, retry later",
            ShedReason::TenantOverShare => "too many calls in flight for this tenant, retry later",
        }
    }
}

/// The admission rule (module docs): `Ok(())` admits the call.
pub fn admit(limits: ShareLimits, load: Load) -> Result<(), ShedReason> {
    if load.total >= limits.hard_limit() {
        return Err(ShedReason::Overloaded);
    }
    if load.tenant < limits.fair_share(load.other_tenants + 1) {
        return Ok(());
    }
    if load.total < limits.process_limit && load.tenant < limits.tenant_cap {
        return Ok(());
    }
    if load.other_tenants == 0 && load.total >= limits.process_limit {
        Err(ShedReason::Overloaded)
    } else {
        Err(ShedReason::TenantOverShare)
    }
}

/// The calls in flight per tenant of one process, and each tenant's running slots. A tenant
/// is known only while it has calls in flight, so many tenants do not grow it.
#[derive(Debug)]
pub struct TenantLedger {
    limits: ShareLimits,
    running_per_tenant: usize,
    state: Mutex<LedgerState>,
}

#[derive(Debug, Default)]
struct LedgerState {
    total: usize,
    tenants: HashMap<String, TenantCalls>,
}

#[derive(Debug)]
struct TenantCalls {
    in_flight: usize,
    running: Arc<Semaphore>,
}

impl TenantLedger {
    /// `running_per_tenant` (at least 1; `usize::MAX` for no bound): calls of one tenant
    /// that run at once.
    pub fn new(limits: ShareLimits, running_per_tenant: usize) -> Self {
        Self {
            limits,
            running_per_tenant: running_per_tenant.clamp(1, Semaphore::MAX_PERMITS),
            state: Mutex::new(LedgerState::default()),
        }
    }

    pub fn limits(&self) -> ShareLimits {
        self.limits
    }

    /// Calls of one tenant that run at once; the tenant's other admitted calls wait.
    pub fn running_per_tenant(&self) -> usize {
        self.running_per_tenant
    }

    /// Admits a call of `tenant` ([`admit`]); it counts as in flight until the returned
    /// [`AdmittedCall`] is dropped.
    pub fn try_admit(self: &Arc<Self>, tenant: &str) -> Result<AdmittedCall, ShedReason> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let tenant_in_flight = state.tenants.get(tenant).map_or(0, |t| t.in_flight);
        let other_tenants = state.tenants.len() - usize::from(tenant_in_flight > 0);
        admit(
            self.limits,
            Load {
                total: state.total,
                tenant: tenant_in_flight,
                other_tenants,
            },
        )?;
        state.total += 1;
        let running_per_tenant = self.running_per_tenant;
        let entry = state
            .tenants
            .entry(tenant.to_owned())
            .or_insert_with(|| TenantCalls {
                in_flight: 0,
                running: Arc::new(Semaphore::new(running_per_tenant)),
            });
        entry.in_flight += 1;
        let running = entry.running.clone();
        Ok(AdmittedCall {
            ledger: self.clone(),
            tenant: tenant.to_owned(),
            running,
        })
    }

    /// (calls in flight, tenants with calls in flight).
    pub fn in_flight(&self) -> (usize, usize) {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        (state.total, state.tenants.len())
    }

    fn release(&self, tenant: &str) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.total = state.total.saturating_sub(1);
        if let Some(calls) = state.tenants.get_mut(tenant) {
            calls.in_flight = calls.in_flight.saturating_sub(1);
            if calls.in_flight == 0 {
                state.tenants.remove(tenant);
            }
        }
    }
}

/// One admitted call: in flight until dropped.
#[derive(Debug)]
pub struct AdmittedCall {
    ledger: Arc<TenantLedger>,
    tenant: String,
    running: Arc<Semaphore>,
}

impl AdmittedCall {
    /// Waits for one of the tenant's running slots; the call runs while it holds it.
    pub async fn running_slot(&self) -> Option<SemaphorePermit<'_>> {
        // The semaphore is never closed; without a slot the call would simply run.
        self.running.acquire().await.ok()
    }
}

impl Drop for AdmittedCall {
    fn drop(&mut self) {
        self.ledger.release(&self.tenant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn load(total: usize, tenant: usize, other_tenants: usize) -> Load {
        Load {
            total,
            tenant,
            other_tenants,
        }
    }

    #[test]
    fn a_lone_tenant_keeps_todays_limit() {
        let limits = ShareLimits::new(64, None);
        assert_eq!(admit(limits, load(63, 63, 0)), Ok(()));
        assert_eq!(admit(limits, load(64, 64, 0)), Err(ShedReason::Overloaded));
    }

    #[test]
    fn a_tenant_within_its_share_is_admitted_while_another_floods() {
        let limits = ShareLimits::new(64, None);
        // A holds the whole limit; B arrives: share 32, B has none.
        assert_eq!(admit(limits, load(64, 0, 1)), Ok(()));
        // A, over its share of 32, is shed first.
        assert_eq!(
            admit(limits, load(65, 64, 1)),
            Err(ShedReason::TenantOverShare)
        );
        // B keeps getting calls in up to its share.
        assert_eq!(admit(limits, load(95, 31, 1)), Ok(()));
        assert_eq!(
            admit(limits, load(96, 32, 1)),
            Err(ShedReason::TenantOverShare)
        );
    }

    #[test]
    fn the_per_tenant_cap_holds_even_with_spare_capacity() {
        let limits = ShareLimits::new(16, Some(12));
        assert_eq!(limits.fair_share(1), 12);
        assert_eq!(admit(limits, load(11, 11, 0)), Ok(()));
        assert_eq!(
            admit(limits, load(12, 12, 0)),
            Err(ShedReason::TenantOverShare)
        );
        assert_eq!(admit(limits, load(12, 0, 1)), Ok(()));
    }

    #[test]
    fn the_hard_bound_sheds_everyone() {
        let limits = ShareLimits::new(4, None);
        assert_eq!(admit(limits, load(8, 0, 7)), Err(ShedReason::Overloaded));
    }

    #[test]
    fn limits_are_clamped() {
        let limits = ShareLimits::new(0, Some(0));
        assert_eq!((limits.process_limit(), limits.tenant_cap()), (1, 1));
        let limits = ShareLimits::new(8, Some(100));
        assert_eq!(limits.tenant_cap(), 8);
        assert_eq!(limits.fair_share(100), 1);
    }

    #[test]
    fn the_ledger_forgets_tenants_with_nothing_in_flight() {
        let ledger = Arc::new(TenantLedger::new(ShareLimits::new(4, None), 2));
        let calls: Vec<_> = (0..6)
            .map(|n| ledger.try_admit(&format!("tenant-{n}")))
            .collect();
        assert!(calls.iter().all(Result::is_ok));
        assert_eq!(ledger.in_flight(), (6, 6));
        drop(calls);
        assert_eq!(ledger.in_flight(), (0, 0));
    }

    #[test]
    fn the_ledger_sheds_a_flooding_tenant_but_not_a_newcomer() {
        let ledger = Arc::new(TenantLedger::new(ShareLimits::new(4, None), 2));
        let flood: Vec<_> = (0..4).filter_map(|_| ledger.try_admit("a").ok()).collect();
        assert_eq!(flood.len(), 4);
        assert_eq!(ledger.try_admit("a").err(), Some(ShedReason::Overloaded));
        let newcomer = ledger.try_admit("b").expect("b is within its share");
        assert_eq!(
            ledger.try_admit("a").err(),
            Some(ShedReason::TenantOverShare)
        );
        drop(newcomer);
        drop(flood);
        assert_eq!(ledger.in_flight(), (0, 0));
    }

    #[tokio::test]
    async fn a_tenant_runs_at_most_its_running_slots_at_once() {
        let ledger = Arc::new(TenantLedger::new(ShareLimits::new(8, None), 2));
        let calls: Vec<_> = (0..3).filter_map(|_| ledger.try_admit("a").ok()).collect();
        let first = calls[0].running_slot().await;
        let second = calls[1].running_slot().await;
        assert!(first.is_some() && second.is_some());
        assert!(
            calls[2].running.try_acquire().is_err(),
            "a third call of the tenant waits"
        );
        let other = ledger.try_admit("b").expect("admitted");
        assert!(other.running.try_acquire().is_ok(), "another tenant runs");
        drop(first);
        assert!(calls[2].running.try_acquire().is_ok());
    }

    proptest! {
        #[test]
        fn admission_invariants(
            limit in 1usize..200,
            cap in proptest::option::of(1usize..300),
            total in 0usize..500,
            tenant in 0usize..500,
            other_tenants in 0usize..200,
        ) {
            let limits = ShareLimits::new(limit, cap);
            // Only consistent loads: the tenant's calls are part of the total, and every
            // other tenant has at least one call in flight.
            prop_assume!(tenant + other_tenants <= total);
            let decision = admit(limits, load(total, tenant, other_tenants));
            if decision.is_ok() {
                prop_assert!(total < limits.hard_limit(), "memory stays bounded");
                prop_assert!(tenant < limits.tenant_cap(), "a tenant never passes its cap");
            }
            if total < limits.hard_limit() && tenant == 0 {
                prop_assert_eq!(decision, Ok(()), "a tenant with nothing in flight gets in");
            }
            if total < limits.hard_limit()
                && tenant < limits.fair_share(other_tenants + 1)
            {
                prop_assert_eq!(decision, Ok(()), "within its share, always admitted");
            }
            if decision == Err(ShedReason::Overloaded) {
                prop_assert!(total >= limits.hard_limit() || other_tenants == 0);
            }
        }

        /// Sequences of arrivals and departures: the ledger's counts match the calls held,
        /// nothing passes the hard bound, and it empties when every call ends.
        #[test]
        fn the_ledger_stays_consistent(
            steps in proptest::collection::vec((0usize..5, any::<bool>()), 1..200),
        ) {
            let ledger = Arc::new(TenantLedger::new(ShareLimits::new(6, Some(4)), 2));
            let mut held: Vec<AdmittedCall> = Vec::new();
            for (tenant, arrive) in steps {
                if arrive {
                    if let Ok(call) = ledger.try_admit(&format!("t{tenant}")) {
                        held.push(call);
                    }
                } else if let Some(index) = held.iter().position(|c| c.tenant == format!("t{tenant}")) {
                    held.swap_remove(index);
                }
                let (total, tenants) = ledger.in_flight();
                prop_assert_eq!(total, held.len());
                prop_assert!(total <= 12);
                let mut distinct: Vec<&str> = held.iter().map(|c| c.tenant.as_str()).collect();
                distinct.sort_unstable();
                distinct.dedup();
                prop_assert_eq!(tenants, distinct.len());
                for name in &distinct {
                    prop_assert!(held.iter().filter(|c| c.tenant == *name).count() <= 4);
                }
            }
            held.clear();
            prop_assert_eq!(ledger.in_flight(), (0, 0));
        }
    }
}
