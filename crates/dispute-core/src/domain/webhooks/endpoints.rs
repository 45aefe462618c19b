//! Endpoints: what one is, and the rules of its description and rotated secrets.

use std::time::Duration;

use chrono::{DateTime, Utc};
use domain_kit::violation::Violation;

use crate::domain::DisputeEvent;

/// Longest description accepted.
pub const MAX_DESCRIPTION_LEN: usize = 500;

/// How long a rotated-out secret keeps signing when the request names no overlap.
pub const DEFAULT_ROTATION_OVERLAP: Duration = Duration::from_secs(24 * 3600);
/// The longest overlap accepted.
pub const MAX_ROTATION_OVERLAP: Duration = Duration::from_secs(30 * 24 * 3600);

/// Endpoints a tenant may have (deleted ones do not count), by default.
pub const DEFAULT_MAX_ENDPOINTS_PER_TENANT: u32 = 16;

/// Whether a tenant with `live_endpoints` (not deleted) may not add another under `limit`.
pub fn endpoint_limit_reached(live_endpoints: u64, limit: u32) -> bool {
    live_endpoints >= u64::from(limit)
}

/// A receiver of a tenant's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEndpoint {
    /// `whe_` id.
    pub id: String,
    pub url: String,
    /// Event types sent to it; empty means all.
    pub event_types: Vec<String>,
    pub description: String,
    pub enabled: bool,
    /// Why it was disabled (`failing`), empty while enabled or when a tenant disabled it.
    pub disabled_reason: String,
    /// The `whsec_` secret that signs.
    pub secret: String,
    /// The secret rotated out, which signs alongside until `previous_secret_expires_at`.
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// Since when every attempt failed; `None` after a success.
    pub failing_since: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl WebhookEndpoint {
    /// The rotated-out secret if it still signs at `now`.
    pub fn previous_secret_at(&self, now: DateTime<Utc>) -> Option<&str> {
        self.previous_secret
            .as_deref()
            .filter(|_| self.previous_secret_expire_time(now).is_some())
    }

    /// Until when the rotated-out secret signs, if it still does at `now`.
    pub fn previous_secret_expire_time(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.previous_secret_expires_at.filter(|t| *t > now)
    }
}

/// Checks a description.
pub fn check_description(description: &str) -> Option<Violation> {
    (description.chars().count() > MAX_DESCRIPTION_LEN)
        .then(|| Violation::new("description", "must be at most 500 characters"))
}

/// Checks a list of event types: each known (`DisputeEvent`), none twice. Empty means all.
pub fn check_event_types(field: &str, types: &[String]) -> Vec<Violation> {
    let mut violations = Vec::new();
    for (i, t) in types.iter().enumerate() {
        if DisputeEvent::from_name(t).is_none() {
            violations.push(Violation::new(
                format!("{field}[{i}]"),
                format!("unknown event type {t:?}"),
            ));
        } else if types[..i].contains(t) {
            violations.push(Violation::new(
                format!("{field}[{i}]"),
                format!("{t:?} is listed twice"),
            ));
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_limit_counts_live_endpoints() {
        assert!(!endpoint_limit_reached(0, 16));
        assert!(!endpoint_limit_reached(15, 16));
        assert!(endpoint_limit_reached(16, 16));
        assert!(endpoint_limit_reached(17, 16));
    }

    #[test]
    fn event_types_known_and_unique() {
        let types = vec![
            "dispute.won".to_owned(),
            "dispute.nope".to_owned(),
            "dispute.won".to_owned(),
        ];
        let v = check_event_types("event_types", &types);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].field, "event_types[1]");
        assert_eq!(v[1].field, "event_types[2]");
    }
}
