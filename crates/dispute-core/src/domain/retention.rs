//! Retention: how long idempotency keys, finished webhook deliveries and events are kept,
//! and the cutoffs a purge run derives from its settings and the time it starts.

use chrono::{DateTime, Duration, Utc};

/// SPEC: a request id is remembered at least this long.
pub const MIN_IDEMPOTENCY_RETENTION_HOURS: u32 = 24;
pub const DEFAULT_IDEMPOTENCY_RETENTION_HOURS: u32 = 48;
pub const DEFAULT_WEBHOOK_DELIVERY_RETENTION_DAYS: u32 = 30;
/// 0 keeps events forever.
pub const DEFAULT_EVENT_RETENTION_DAYS: u32 = 0;
pub const DEFAULT_RETENTION_INTERVAL_SECS: u64 = 300;
pub const DEFAULT_RETENTION_BATCH_SIZE: u32 = 1000;

/// How long each kind of row is kept. A period of 0 days keeps those rows forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub idempotency_hours: u32,
    pub webhook_delivery_days: u32,
    pub event_days: u32,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            idempotency_hours: DEFAULT_IDEMPOTENCY_RETENTION_HOURS,
            webhook_delivery_days: DEFAULT_WEBHOOK_DELIVERY_RETENTION_DAYS,
            event_days: DEFAULT_EVENT_RETENTION_DAYS,
        }
    }
}

/// What one purge run removes: rows created before each cutoff; `None` removes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    pub idempotency_keys: DateTime<Utc>,
    /// Finished (succeeded or failed) deliveries, with their attempts.
    pub webhook_deliveries: Option<DateTime<Utc>>,
    pub events: Option<DateTime<Utc>>,
}

impl RetentionPolicy {
    /// Refuses a window shorter than SPEC's 24 hours for request ids.
    pub fn check(&self) -> Result<(), String> {
        if self.idempotency_hours < MIN_IDEMPOTENCY_RETENTION_HOURS {
            return Err(format!(
                "--idempotency-retention-hours must be at least {MIN_IDEMPOTENCY_RETENTION_HOURS} \
                 (request ids are kept at least a day), got {}",
                self.idempotency_hours
            ));
        }
        Ok(())
    }

    /// The cutoffs of a run starting at `now`. The idempotency window never drops below the
    /// minimum, even if the policy was not checked.
    pub fn cutoffs(&self, now: DateTime<Utc>) -> Cutoffs {
        let hours = self.idempotency_hours.max(MIN_IDEMPOTENCY_RETENTION_HOURS);
        let days_before = |days: u32| (days > 0).then(|| now - Duration::days(i64::from(days)));
        Cutoffs {
            idempotency_keys: now - Duration::hours(i64::from(hours)),
            webhook_deliveries: days_before(self.webhook_delivery_days),
            events: days_before(self.event_days),
        }
    }
}

/// Whether a reader that has seen every event up to `after_position` (0: none) can go on
/// without missing one, given the tenant's highest purged position (`None`: nothing purged).
/// A cursor whose event is gone (`after_position` unknown) is purged when anything was.
pub fn cursor_is_purged(after_position: Option<i64>, purged_through: Option<i64>) -> bool {
    match (after_position, purged_through) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(seen), Some(purged)) => purged > seen,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap()
    }

    #[test]
    fn defaults_keep_keys_two_days_deliveries_thirty_days_and_events_forever() {
        let cutoffs = RetentionPolicy::default().cutoffs(now());
        assert_eq!(
            cutoffs.idempotency_keys,
            Utc.with_ymd_and_hms(2026, 3, 8, 12, 0, 0).unwrap()
        );
        assert_eq!(
            cutoffs.webhook_deliveries,
            Some(Utc.with_ymd_and_hms(2026, 2, 8, 12, 0, 0).unwrap())
        );
        assert_eq!(cutoffs.events, None);
    }

    #[test]
    fn zero_days_keeps_forever_and_events_follow_their_setting() {
        let policy = RetentionPolicy {
            idempotency_hours: 30,
            webhook_delivery_days: 0,
            event_days: 7,
        };
        let cutoffs = policy.cutoffs(now());
        assert_eq!(cutoffs.idempotency_keys, now() - Duration::hours(30));
        assert_eq!(cutoffs.webhook_deliveries, None);
        assert_eq!(
            cutoffs.events,
            Some(Utc.with_ymd_and_hms(2026, 3, 3, 12, 0, 0).unwrap())
        );
    }

    #[test]
    fn a_window_under_a_day_is_refused_and_never_applied() {
        let short = RetentionPolicy {
            idempotency_hours: 23,
            ..RetentionPolicy::default()
        };
        assert!(short.check().unwrap_err().contains("at least 24"));
        assert_eq!(
            short.cutoffs(now()).idempotency_keys,
            now() - Duration::hours(24)
        );
        let day = RetentionPolicy {
            idempotency_hours: 24,
            ..RetentionPolicy::default()
        };
        assert!(day.check().is_ok());
    }

    #[test]
    fn a_cursor_is_purged_only_when_something_after_it_is_gone() {
        assert!(!cursor_is_purged(Some(5), None));
        assert!(!cursor_is_purged(None, None));
        assert!(cursor_is_purged(None, Some(3)));
        assert!(cursor_is_purged(Some(2), Some(3)));
        // The reader saw the last purged event: nothing after it is missing.
        assert!(!cursor_is_purged(Some(3), Some(3)));
        assert!(!cursor_is_purged(Some(9), Some(3)));
    }
}
