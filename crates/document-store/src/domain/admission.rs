//! Fair admission of long calls (uploads, downloads): a replica-wide cap and a per-tenant cap
//! on calls in flight, so one tenant cannot take every slot of a replica. Pure counting; the
//! app layer shares a [`TenantSlots`] behind a lock and gives slots back when a call ends.

use std::collections::HashMap;

/// Caps on calls in flight: per replica, and per tenant within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotLimits {
    pub per_process: usize,
    pub per_tenant: usize,
}

impl SlotLimits {
    /// `per_tenant` if given, else a quarter of `per_process` (at least 1): four tenants
    /// flooding at once still leave nothing for a fifth only at the process cap, and a
    /// single flooding tenant leaves three quarters for everyone else.
    pub fn with_default_tenant_share(per_process: usize, per_tenant: Option<usize>) -> Self {
        Self {
            per_process,
            per_tenant: per_tenant.unwrap_or_else(|| default_tenant_share(per_process)),
        }
    }
}

/// The per-tenant cap used when none is configured: a quarter of the process cap, at least 1.
pub fn default_tenant_share(per_process: usize) -> usize {
    (per_process / 4).max(1)
}

/// Why a call was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The tenant already has `per_tenant` calls in flight (checked first: it is the
    /// tenant's own doing, whatever the rest of the replica does).
    Tenant,
    /// The replica already runs `per_process` calls.
    Process,
}

/// The admission rule: may one more call start?
pub fn admit(limits: SlotLimits, in_flight: usize, tenant_in_flight: usize) -> Result<(), Refusal> {
    if tenant_in_flight >= limits.per_tenant {
        Err(Refusal::Tenant)
    } else if in_flight >= limits.per_process {
        Err(Refusal::Process)
    } else {
        Ok(())
    }
}

/// Calls in flight, in total and per tenant. A tenant with nothing in flight has no entry,
/// so the map holds at most `per_process` entries whatever the number of tenants.
#[derive(Debug)]
pub struct TenantSlots {
    limits: SlotLimits,
    in_flight: usize,
    by_tenant: HashMap<String, usize>,
}

impl TenantSlots {
    pub fn new(limits: SlotLimits) -> Self {
        Self {
            limits,
            in_flight: 0,
            by_tenant: HashMap::new(),
        }
    }

    pub fn limits(&self) -> SlotLimits {
        self.limits
    }

    /// Takes a slot for `tenant`, or says why not.
    pub fn try_take(&mut self, tenant: &str) -> Result<(), Refusal> {
        let tenant_in_flight = self.by_tenant.get(tenant).copied().unwrap_or(0);
        admit(self.limits, self.in_flight, tenant_in_flight)?;
        *self.by_tenant.entry(tenant.to_owned()).or_insert(0) += 1;
        self.in_flight += 1;
        Ok(())
    }

    /// Gives back a slot `tenant` took; its entry goes once it has nothing in flight. A
    /// tenant without a slot is ignored (nothing to give back).
    pub fn give_back(&mut self, tenant: &str) {
        let Some(count) = self.by_tenant.get_mut(tenant) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            self.by_tenant.remove(tenant);
        }
        self.in_flight -= 1;
    }

    /// Calls in flight on the replica.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Calls in flight of `tenant`.
    pub fn tenant_in_flight(&self, tenant: &str) -> usize {
        self.by_tenant.get(tenant).copied().unwrap_or(0)
    }

    /// Tenants with something in flight (entries in the map).
    pub fn tenants(&self) -> usize {
        self.by_tenant.len()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const LIMITS: SlotLimits = SlotLimits {
        per_process: 4,
        per_tenant: 2,
    };

    #[test]
    fn the_tenant_cap_is_checked_before_the_process_cap() {
        assert_eq!(admit(LIMITS, 0, 0), Ok(()));
        assert_eq!(admit(LIMITS, 3, 1), Ok(()));
        assert_eq!(admit(LIMITS, 3, 2), Err(Refusal::Tenant));
        assert_eq!(admit(LIMITS, 4, 2), Err(Refusal::Tenant));
        assert_eq!(admit(LIMITS, 4, 0), Err(Refusal::Process));
    }

    #[test]
    fn the_default_share_is_a_quarter_and_at_least_one() {
        assert_eq!(default_tenant_share(8), 2);
        assert_eq!(default_tenant_share(64), 16);
        assert_eq!(default_tenant_share(3), 1);
        assert_eq!(default_tenant_share(1), 1);
        assert_eq!(
            SlotLimits::with_default_tenant_share(8, Some(5)).per_tenant,
            5
        );
    }

    #[test]
    fn a_flooding_tenant_leaves_room_for_others() {
        let mut slots = TenantSlots::new(LIMITS);
        assert_eq!(slots.try_take("a"), Ok(()));
        assert_eq!(slots.try_take("a"), Ok(()));
        assert_eq!(slots.try_take("a"), Err(Refusal::Tenant));
        assert_eq!(slots.try_take("b"), Ok(()));
        assert_eq!(slots.try_take("c"), Ok(()));
        assert_eq!(slots.try_take("d"), Err(Refusal::Process));
        assert_eq!(slots.in_flight(), 4);
        assert_eq!(slots.tenant_in_flight("a"), 2);
    }

    #[test]
    fn a_tenant_entry_goes_when_it_has_nothing_in_flight() {
        let mut slots = TenantSlots::new(LIMITS);
        slots.try_take("a").unwrap();
        slots.try_take("a").unwrap();
        slots.give_back("a");
        assert_eq!(slots.tenants(), 1);
        slots.give_back("a");
        assert_eq!(slots.tenants(), 0);
        assert_eq!(slots.in_flight(), 0);
        // Giving back what was never taken changes nothing.
        slots.give_back("a");
        assert_eq!(slots.in_flight(), 0);
    }

    proptest! {
        /// Any sequence of takes and give-backs keeps the counts consistent and within
        /// both caps, and leaves no entry for a tenant with nothing in flight.
        #[test]
        fn counts_stay_consistent(ops in prop::collection::vec((0u8..6, any::<bool>()), 0..200)) {
            let mut slots = TenantSlots::new(LIMITS);
            let mut held: Vec<String> = Vec::new();
            for (tenant, take) in ops {
                let tenant = format!("t{tenant}");
                if take {
                    let before = slots.tenant_in_flight(&tenant);
                    match slots.try_take(&tenant) {
                        Ok(()) => held.push(tenant.clone()),
                        Err(Refusal::Tenant) => prop_assert_eq!(before, LIMITS.per_tenant),
                        Err(Refusal::Process) => prop_assert_eq!(slots.in_flight(), LIMITS.per_process),
                    }
                } else if let Some(at) = held.iter().position(|t| *t == tenant) {
                    held.remove(at);
                    slots.give_back(&tenant);
                }
                prop_assert_eq!(slots.in_flight(), held.len());
                prop_assert!(slots.in_flight() <= LIMITS.per_process);
                let mut distinct = held.clone();
                distinct.sort();
                distinct.dedup();
                prop_assert_eq!(slots.tenants(), distinct.len());
                for t in &distinct {
                    let count = held.iter().filter(|h| *h == t).count();
                    prop_assert_eq!(slots.tenant_in_flight(t), count);
                    prop_assert!(count <= LIMITS.per_tenant);
                }
            }
        }
    }
}
