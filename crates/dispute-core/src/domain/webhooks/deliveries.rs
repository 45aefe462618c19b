//! Deliveries and their attempts: the status a delivery is in, the retry schedule, when a
//! failing endpoint is disabled, what is kept of a receiver's answer, and seed 004's names.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::{DisputeError, DisputeEvent};

/// RetryDelivery calls one delivery may have; the schedule's own retries do not count.
pub const MAX_MANUAL_RETRIES: i32 = 5;

/// Whether RetryDelivery may schedule another attempt of `delivery`, which was retried by
/// hand `manual_retries` times so far: not while an attempt is scheduled or in flight (a
/// pending delivery), and not beyond [`MAX_MANUAL_RETRIES`].
pub fn check_manual_retry(
    delivery: &WebhookDelivery,
    manual_retries: i32,
) -> Result<(), DisputeError> {
    let id = &delivery.id;
    if delivery.status == DeliveryStatus::Pending {
        return Err(DisputeError::FailedPrecondition {
            reason: "RETRY_ALREADY_PENDING",
            message: format!(
                "delivery {id} already has an attempt scheduled or in flight; retry it once \
                 it has succeeded or failed"
            ),
        });
    }
    if manual_retries >= MAX_MANUAL_RETRIES {
        return Err(DisputeError::FailedPrecondition {
            reason: "RETRY_LIMIT_REACHED",
            message: format!(
                "delivery {id} was retried {manual_retries} times, the most allowed \
                 ({MAX_MANUAL_RETRIES}); fix the receiver, then let new events through"
            ),
        });
    }
    Ok(())
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (`next_attempt_at`).
    Pending,
    /// A receiver answered 2xx.
    Succeeded,
    /// The schedule ran out, or the endpoint was disabled or deleted.
    Failed,
}

impl DeliveryStatus {
    /// Every status, in the order the API lists them.
    pub const ALL: [DeliveryStatus; 3] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Succeeded,
        DeliveryStatus::Failed,
    ];

    /// The stored name (`pending`, `succeeded`, `failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
        }
    }

    /// The status stored as `name`, if there is one.
    pub fn from_name(name: &str) -> Option<DeliveryStatus> {
        DeliveryStatus::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// One event sent to one endpoint, attempt after attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// `whd_` id (the `webhook-id` header of every attempt).
    pub id: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempt_count: i32,
    /// When the next attempt is due (meaningful while pending).
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl WebhookDelivery {
    /// When the next attempt is due: only a pending delivery has one.
    pub fn next_attempt_time(&self) -> Option<DateTime<Utc>> {
        self.next_attempt_at
            .filter(|_| self.status == DeliveryStatus::Pending)
    }
}

/// One POST of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookAttempt {
    pub delivery_id: String,
    /// 1-based.
    pub number: i32,
    pub started_at: DateTime<Utc>,
    /// The receiver's HTTP status; 0 when none came (see `error`).
    pub response_status: i32,
    /// Why no answer came (timeout, connection refused, ...); empty when one came.
    pub error: String,
    /// Microseconds from the start of the POST to the answer or the failure.
    pub latency_us: i64,
    /// The first [`RESPONSE_BODY_PREFIX_BYTES`] of the answer's body.
    pub response_body_prefix: String,
    /// The replica that made the attempt.
    pub replica: String,
}

/// A delivery with its attempts, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryDetails {
    pub delivery: WebhookDelivery,
    pub attempts: Vec<WebhookAttempt>,
}

/// How many bytes of a receiver's response body are kept.
pub const RESPONSE_BODY_PREFIX_BYTES: usize = 256;

/// The retry schedule: the delay after failed attempt n (1-based) before attempt n + 1.
/// Ten attempts over at least 3 days and 3 hours; each delay gets up to +20 % jitter (never
/// less than listed). After the tenth failed attempt the delivery is FAILED.
pub const RETRY_DELAYS: &[Duration] = &[
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(14 * 3600),
    Duration::from_secs(20 * 3600),
    Duration::from_secs(24 * 3600),
];

/// How many attempts a delivery gets.
pub const MAX_ATTEMPTS: u32 = RETRY_DELAYS.len() as u32 + 1;

/// The delay before the attempt after failed attempt `attempt` (1-based), divided by
/// `time_scale`, with `jitter` in [0, 1) mapped to +0..20 %; `None` when the schedule is over.
pub fn retry_delay(attempt: u32, time_scale: f64, jitter: f64) -> Option<Duration> {
    let index = usize::try_from(attempt.checked_sub(1)?).ok()?;
    let base = RETRY_DELAYS.get(index)?;
    let factor = 1.0 + 0.2 * jitter.clamp(0.0, 1.0);
    Some(scaled(*base, time_scale).mul_f64(factor))
}

/// `delay` divided by `time_scale` (values ≤ 0 count as 1).
pub fn scaled(delay: Duration, time_scale: f64) -> Duration {
    if time_scale.is_finite() && time_scale > 0.0 {
        delay.div_f64(time_scale)
    } else {
        delay
    }
}

/// Whether an endpoint failing since `failing_for` is disabled (`failing`).
pub fn should_disable(failing_for: Duration, disable_after: Duration) -> bool {
    failing_for >= disable_after
}

/// The first [`RESPONSE_BODY_PREFIX_BYTES`] of a body, cut at a character boundary.
pub fn body_prefix(body: &[u8]) -> String {
    let cut = &body[..body.len().min(RESPONSE_BODY_PREFIX_BYTES)];
    let text = String::from_utf8_lossy(cut).into_owned();
    text.replace('\0', "")
}

/// Seed 004's name for an event type, where one matches.
pub fn seed_004_name(event_type: &str) -> Option<&'static str> {
    match DisputeEvent::from_name(event_type)? {
        DisputeEvent::FundsWithdrawn => Some("DISPUTE_INITIATED"),
        DisputeEvent::Won => Some("DISPUTE_WON"),
        DisputeEvent::Lost => Some("DISPUTE_LOST"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_retries_wait_for_the_attempt_and_stop_at_the_limit() {
        let delivery = |status| WebhookDelivery {
            id: "whd_01".to_owned(),
            endpoint_id: "whe_01".to_owned(),
            event_id: "evt_01".to_owned(),
            event_type: "dispute.won".to_owned(),
            status,
            attempt_count: 1,
            next_attempt_at: None,
            created_at: Utc::now(),
        };
        let reason = |result: Result<(), DisputeError>| match result {
            Ok(()) => "OK",
            Err(DisputeError::FailedPrecondition { reason, .. }) => reason,
            Err(other) => panic!("{other:?}"),
        };
        for status in [DeliveryStatus::Succeeded, DeliveryStatus::Failed] {
            assert_eq!(reason(check_manual_retry(&delivery(status), 0)), "OK");
            assert_eq!(
                reason(check_manual_retry(
                    &delivery(status),
                    MAX_MANUAL_RETRIES - 1
                )),
                "OK"
            );
            assert_eq!(
                reason(check_manual_retry(&delivery(status), MAX_MANUAL_RETRIES)),
                "RETRY_LIMIT_REACHED"
            );
        }
        assert_eq!(
            reason(check_manual_retry(&delivery(DeliveryStatus::Pending), 0)),
            "RETRY_ALREADY_PENDING"
        );
    }

    #[test]
    fn the_schedule_covers_three_days_and_ends() {
        let total: Duration = (1..MAX_ATTEMPTS)
            .map(|n| retry_delay(n, 1.0, 0.0).unwrap())
            .sum();
        assert!(total >= Duration::from_secs(72 * 3600), "{total:?}");
        assert!(retry_delay(MAX_ATTEMPTS, 1.0, 0.5).is_none());
        assert_eq!(
            retry_delay(1, 1000.0, 0.0).unwrap(),
            Duration::from_millis(5)
        );
    }

    #[test]
    fn statuses_round_trip_their_stored_names() {
        for status in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::from_name(status.as_str()), Some(status));
        }
        assert_eq!(DeliveryStatus::from_name("unknown"), None);
    }
}
