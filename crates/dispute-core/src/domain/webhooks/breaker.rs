//! An endpoint's circuit breaker: after `threshold` attempts in a row fail for want of a
//! working receiver (no answer, 5xx, 429), the endpoint opens: none of its deliveries is
//! claimed until its backoff passes (growing with each opening, capped), then one probe
//! attempt at a time (half-open); an answer closes it, another failure opens it again for
//! longer. Deliveries waiting on an open breaker are not charged attempts.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::scaled;

/// The breaker's flags (before the time scale).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerPolicy {
    /// Failures in a row that open the breaker.
    pub threshold: u32,
    /// How long the first opening lasts; each further one in a row doubles it.
    pub base_backoff: Duration,
    /// The longest an opening lasts.
    pub max_backoff: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            threshold: DEFAULT_BREAKER_THRESHOLD,
            base_backoff: Duration::from_millis(DEFAULT_BREAKER_BACKOFF_MS),
            max_backoff: Duration::from_millis(DEFAULT_BREAKER_MAX_BACKOFF_MS),
        }
    }
}

/// Failures in a row that open a breaker, by default.
pub const DEFAULT_BREAKER_THRESHOLD: u32 = 3;
/// The first opening's length, by default: 30 s.
pub const DEFAULT_BREAKER_BACKOFF_MS: u64 = 30_000;
/// The longest opening, by default: 10 min.
pub const DEFAULT_BREAKER_MAX_BACKOFF_MS: u64 = 600_000;

/// An endpoint's breaker as stored on its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BreakerState {
    /// Attempts in a row that failed for want of a working receiver.
    pub consecutive_failures: u32,
    /// Openings in a row (the backoff grows with them); 0 once closed.
    pub opened_times: u32,
    /// Until when it is open: `None` closed; in the past, half-open.
    pub open_until: Option<DateTime<Utc>>,
}

/// What the claim may take of an endpoint now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: up to the per-endpoint cap in flight.
    Closed,
    /// Half-open: one probe attempt in flight at a time.
    Probe,
    /// Open until then: nothing.
    Open(DateTime<Utc>),
}

/// How an attempt went, as far as the breaker is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerOutcome {
    /// The receiver answered (2xx, or a 4xx other than 429: it works, it refused this one).
    Answered,
    /// No answer (timeout, refused, reset, ...), a 5xx, or 429 Too Many Requests.
    Failed,
}

impl BreakerOutcome {
    /// The outcome of an attempt answered with `status` (0: no answer).
    pub fn of_status(status: u16) -> BreakerOutcome {
        match status {
            0 | 429 | 500.. => BreakerOutcome::Failed,
            _ => BreakerOutcome::Answered,
        }
    }
}

impl BreakerState {
    /// What the claim may take of the endpoint at `now`.
    pub fn admission(&self, now: DateTime<Utc>) -> Admission {
        match self.open_until {
            None => Admission::Closed,
            Some(until) if until > now => Admission::Open(until),
            Some(_) => Admission::Probe,
        }
    }

    /// The state after an attempt that ended at `now` with `outcome`. A failure while the
    /// breaker is open (an attempt started before it opened) only counts: the opening stands.
    pub fn after_attempt(
        self,
        outcome: BreakerOutcome,
        now: DateTime<Utc>,
        policy: &BreakerPolicy,
        time_scale: f64,
    ) -> BreakerState {
        match outcome {
            BreakerOutcome::Answered => BreakerState::default(),
            BreakerOutcome::Failed => {
                let consecutive_failures = self.consecutive_failures.saturating_add(1);
                let still_open = matches!(self.admission(now), Admission::Open(_));
                if still_open || consecutive_failures < policy.threshold.max(1) {
                    return BreakerState {
                        consecutive_failures,
                        ..self
                    };
                }
                let backoff = breaker_backoff(self.opened_times, policy, time_scale);
                BreakerState {
                    consecutive_failures,
                    opened_times: self.opened_times.saturating_add(1),
                    open_until: Some(now + chrono::Duration::from_std(backoff).unwrap_or_default()),
                }
            }
        }
    }
}

/// How long the opening after `opened_times` openings in a row lasts: the base doubled each
/// time, capped, divided by `time_scale`.
pub fn breaker_backoff(opened_times: u32, policy: &BreakerPolicy, time_scale: f64) -> Duration {
    let doubling = 2u32.saturating_pow(opened_times.min(31));
    let unscaled = policy
        .base_backoff
        .saturating_mul(doubling)
        .min(policy.max_backoff);
    scaled(unscaled, time_scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn fail(state: BreakerState, now: DateTime<Utc>) -> BreakerState {
        state.after_attempt(BreakerOutcome::Failed, now, &BreakerPolicy::default(), 1.0)
    }

    #[test]
    fn statuses_that_open_the_breaker() {
        for status in [0, 429, 500, 502, 503, 504, 599] {
            assert_eq!(BreakerOutcome::of_status(status), BreakerOutcome::Failed);
        }
        for status in [200, 204, 299, 301, 400, 401, 404, 410, 422] {
            assert_eq!(BreakerOutcome::of_status(status), BreakerOutcome::Answered);
        }
    }

    #[test]
    fn opens_after_the_threshold_then_probes_then_closes() {
        let closed = BreakerState::default();
        assert_eq!(closed.admission(at(0)), Admission::Closed);
        let twice = fail(fail(closed, at(0)), at(1));
        assert_eq!(twice.admission(at(1)), Admission::Closed);
        assert_eq!(twice.consecutive_failures, 2);

        let open = fail(twice, at(2));
        assert_eq!(open.open_until, Some(at(32)));
        assert_eq!(open.opened_times, 1);
        assert_eq!(open.admission(at(31)), Admission::Open(at(32)));
        assert_eq!(open.admission(at(32)), Admission::Probe);

        // An attempt started before the opening fails late: counted, the opening stands.
        let late = fail(open, at(3));
        assert_eq!(late.open_until, Some(at(32)));
        assert_eq!(late.consecutive_failures, 4);

        // The probe fails: open again, twice as long.
        let reopened = fail(late, at(40));
        assert_eq!(reopened.open_until, Some(at(100)));
        assert_eq!(reopened.opened_times, 2);

        // The next probe is answered: closed, counters back to zero.
        let closed_again = reopened.after_attempt(
            BreakerOutcome::Answered,
            at(100),
            &BreakerPolicy::default(),
            1.0,
        );
        assert_eq!(closed_again, BreakerState::default());
    }

    #[test]
    fn the_backoff_doubles_up_to_its_cap_and_scales() {
        let policy = BreakerPolicy::default();
        let secs: Vec<u64> = (0..7)
            .map(|n| breaker_backoff(n, &policy, 1.0).as_secs())
            .collect();
        assert_eq!(secs, [30, 60, 120, 240, 480, 600, 600]);
        assert_eq!(breaker_backoff(u32::MAX, &policy, 1.0), policy.max_backoff);
        assert_eq!(
            breaker_backoff(0, &policy, 1000.0),
            Duration::from_millis(30)
        );
    }

    #[test]
    fn a_threshold_of_zero_counts_as_one() {
        let policy = BreakerPolicy {
            threshold: 0,
            ..BreakerPolicy::default()
        };
        let open =
            BreakerState::default().after_attempt(BreakerOutcome::Failed, at(0), &policy, 1.0);
        assert!(matches!(open.admission(at(0)), Admission::Open(_)));
    }

    proptest! {
        /// Whatever the outcomes: an answer always closes; an opening never lasts longer than
        /// the cap; failures below the threshold in a closed breaker never open it.
        #[test]
        fn transitions_hold_their_rules(outcomes in prop::collection::vec(any::<bool>(), 0..40)) {
            let policy = BreakerPolicy::default();
            let mut state = BreakerState::default();
            for (i, failed) in outcomes.into_iter().enumerate() {
                let now = at(i64::try_from(i).unwrap() * 100);
                let outcome = if failed {
                    BreakerOutcome::Failed
                } else {
                    BreakerOutcome::Answered
                };
                let before = state;
                state = state.after_attempt(outcome, now, &policy, 1.0);
                if !failed {
                    prop_assert_eq!(state, BreakerState::default());
                }
                if let Some(until) = state.open_until {
                    prop_assert!(until - now <= chrono::Duration::seconds(600));
                }
                let below_threshold = state.consecutive_failures < policy.threshold;
                if failed && before.open_until.is_none() && below_threshold {
                    prop_assert_eq!(state.admission(now), Admission::Closed);
                }
            }
        }
    }
}
