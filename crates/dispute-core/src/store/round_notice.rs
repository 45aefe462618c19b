//! What a sequencer round announces on [`super::events::EVENTS_CHANNEL`]: one notification
//! per round (never one per write), naming the tenants whose events it numbered and saying
//! whether any of them has webhook deliveries. StreamEvents readers of those tenants read
//! again; webhook workers claim only when deliveries were made.
//!
//! Payload: `+` (deliveries made) or `-` (none), then the tenants joined by `,` (tenant ids
//! are `[A-Za-z0-9_-]`), or `*` for every tenant when the names would not fit in a
//! notification (PostgreSQL refuses payloads of 8000 bytes or more).

/// Longest payload PostgreSQL accepts (it must be shorter than 8000 bytes).
pub const PAYLOAD_LIMIT: usize = 7999;

/// One round's announcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundNotice {
    /// Tenants whose events were numbered; `None`: possibly any tenant.
    pub tenants: Option<Vec<String>>,
    /// Whether webhook deliveries of the numbered events were made.
    pub deliveries: bool,
}

impl RoundNotice {
    /// The payload: the tenants named when they fit, else `*`.
    pub fn encode(&self) -> String {
        let flag = if self.deliveries { '+' } else { '-' };
        let mut payload = String::from(flag);
        match &self.tenants {
            Some(tenants) if named_length(tenants) <= PAYLOAD_LIMIT => {
                payload.push_str(&tenants.join(","));
            }
            _ => payload.push('*'),
        }
        payload
    }

    /// The announcement of `payload`. Anything not in this form (a bare tenant id, as
    /// replicas before it sent, or an empty payload) wakes the readers of that tenant (every
    /// tenant when empty) and the webhook workers: waking too much costs a read, missing a
    /// wake-up costs latency.
    pub fn decode(payload: &str) -> RoundNotice {
        let (deliveries, rest) = match payload.as_bytes().first() {
            Some(b'+') => (true, &payload[1..]),
            Some(b'-') => (false, &payload[1..]),
            _ => {
                return RoundNotice {
                    tenants: (!payload.is_empty()).then(|| vec![payload.to_owned()]),
                    deliveries: true,
                };
            }
        };
        let tenants = (rest != "*").then(|| {
            rest.split(',')
                .filter(|tenant| !tenant.is_empty())
                .map(str::to_owned)
                .collect()
        });
        RoundNotice {
            tenants,
            deliveries,
        }
    }

    /// Whether the readers of `tenant_id` should read again.
    pub fn concerns(&self, tenant_id: &str) -> bool {
        self.tenants
            .as_ref()
            .is_none_or(|tenants| tenants.iter().any(|tenant| tenant == tenant_id))
    }
}

/// Bytes of the payload naming `tenants` (the flag, the names and their commas).
fn named_length(tenants: &[String]) -> usize {
    1 + tenants.iter().map(String::len).sum::<usize>() + tenants.len().saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(tenants: &[&str], deliveries: bool) -> RoundNotice {
        RoundNotice {
            tenants: Some(tenants.iter().map(|t| (*t).to_owned()).collect()),
            deliveries,
        }
    }

    #[test]
    fn payloads_name_tenants_and_deliveries() {
        assert_eq!(notice(&["acme", "globex"], true).encode(), "+acme,globex");
        assert_eq!(notice(&["acme"], false).encode(), "-acme");
        assert_eq!(
            RoundNotice::decode("+acme,globex"),
            notice(&["acme", "globex"], true)
        );
        assert_eq!(
            RoundNotice::decode("-*"),
            RoundNotice {
                tenants: None,
                deliveries: false
            }
        );
    }

    #[test]
    fn too_many_tenants_become_every_tenant() {
        let many: Vec<String> = (0..200).map(|n| format!("{n:0>64}")).collect();
        let payload = RoundNotice {
            tenants: Some(many),
            deliveries: true,
        }
        .encode();
        assert_eq!(payload, "+*");
        let decoded = RoundNotice::decode(&payload);
        assert!(decoded.deliveries && decoded.concerns("anyone"));
    }

    #[test]
    fn other_payloads_wake_conservatively() {
        let bare = RoundNotice::decode("acme");
        assert!(bare.deliveries && bare.concerns("acme") && !bare.concerns("globex"));
        let empty = RoundNotice::decode("");
        assert!(empty.deliveries && empty.concerns("anyone"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn a_payload_fits_and_wakes_every_tenant_it_names(
            tenants in proptest::collection::vec("[A-Za-z0-9_-]{1,64}", 0..300),
            deliveries: bool,
        ) {
            let sent = RoundNotice { tenants: Some(tenants.clone()), deliveries };
            let payload = sent.encode();
            proptest::prop_assert!(payload.len() <= PAYLOAD_LIMIT);
            let received = RoundNotice::decode(&payload);
            proptest::prop_assert_eq!(received.deliveries, deliveries);
            for tenant in &tenants {
                proptest::prop_assert!(received.concerns(tenant));
            }
            if received.tenants.is_some() {
                proptest::prop_assert_eq!(received, sent);
            }
        }
    }
}
