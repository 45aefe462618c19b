//! Slots of long calls (uploads, downloads) shared by a replica's tasks: the pure
//! [`TenantSlots`] behind a lock, and a guard that gives its slot back when dropped, however
//! the call ends.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::domain::{Refusal, SlotLimits, TenantSlots};

/// A replica's slots of one kind of call.
#[derive(Clone, Debug)]
pub struct SlotPool {
    slots: Arc<Mutex<TenantSlots>>,
}

impl SlotPool {
    pub fn new(limits: SlotLimits) -> Self {
        Self {
            slots: Arc::new(Mutex::new(TenantSlots::new(limits))),
        }
    }

    /// The counts stay consistent even if a holder panicked: every change is one step.
    fn lock(&self) -> MutexGuard<'_, TenantSlots> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for `tenant`, held until the returned guard is dropped.
    pub fn try_acquire(&self, tenant: &str) -> Result<Slot, Refusal> {
        self.lock().try_take(tenant)?;
        Ok(Slot {
            pool: self.clone(),
            tenant: tenant.to_owned(),
        })
    }

    /// Calls in flight on the replica, and tenants with any in flight.
    pub fn usage(&self) -> (usize, usize) {
        let slots = self.lock();
        (slots.in_flight(), slots.tenants())
    }
}

/// One slot of a [`SlotPool`], given back on drop.
#[derive(Debug)]
pub struct Slot {
    pool: SlotPool,
    tenant: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.pool.lock().give_back(&self.tenant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_slot_is_given_back_and_its_tenant_forgotten() {
        let pool = SlotPool::new(SlotLimits {
            per_process: 2,
            per_tenant: 1,
        });
        let first = pool.try_acquire("a").unwrap();
        assert_eq!(pool.try_acquire("a").unwrap_err(), Refusal::Tenant);
        let other = pool.try_acquire("b").unwrap();
        assert_eq!(pool.try_acquire("c").unwrap_err(), Refusal::Process);
        drop(first);
        assert_eq!(pool.usage(), (1, 1));
        drop(other);
        assert_eq!(pool.usage(), (0, 0));
        assert!(pool.try_acquire("a").is_ok());
    }
}
