//! Endpoints: what one is, and the rules of its description and rotated secrets.

use std::time::Duration;

use chrono::{DateTime, Utc};
use domain_kit::violation::Violation;
use sha2::{Digest, Sha256};

use super::StoredSecret;
use crate::domain::{DisputeError, DisputeEvent};

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

/// How long a replay of CreateWebhookEndpoint's `request_id` (same body) answers with the
/// secret again; after it the secret is no longer shown.
pub const CREATE_REPLAY_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// The ErrorInfo reason of a replay that can no longer show the secret.
pub const SECRET_NO_LONGER_AVAILABLE: &str = "SECRET_NO_LONGER_AVAILABLE";

/// A receiver of a tenant's events.
#[derive(Debug, Clone)]
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
    /// The `whsec_` secret that signs, as stored (sealed).
    pub secret: StoredSecret,
    /// The secret rotated out, which signs alongside until `previous_secret_expires_at`.
    pub previous_secret: Option<StoredSecret>,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// When the secret was last rotated; `None` while it is the one made with the endpoint.
    pub secret_rotated_at: Option<DateTime<Utc>>,
    /// Since when every attempt failed; `None` after a success.
    pub failing_since: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl WebhookEndpoint {
    /// The rotated-out secret if it still signs at `now`.
    pub fn previous_secret_at(&self, now: DateTime<Utc>) -> Option<&StoredSecret> {
        self.previous_secret
            .as_ref()
            .filter(|_| self.previous_secret_expire_time(now).is_some())
    }

    /// Until when the rotated-out secret signs, if it still does at `now`.
    pub fn previous_secret_expire_time(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.previous_secret_expires_at.filter(|t| *t > now)
    }
}

/// What identifies a CreateWebhookEndpoint's body: a SHA-256 over its fields, each length
/// prefixed (so no two different bodies give the same bytes). The request id is not part
/// of it: it is the key the fingerprint is kept under.
pub fn create_request_fingerprint(url: &str, event_types: &[String], description: &str) -> Vec<u8> {
    let mut hash = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hash.update(u64::try_from(bytes.len()).unwrap_or(u64::MAX).to_be_bytes());
        hash.update(bytes);
    };
    field(url.as_bytes());
    field(
        &u64::try_from(event_types.len())
            .unwrap_or(u64::MAX)
            .to_be_bytes(),
    );
    for event_type in event_types {
        field(event_type.as_bytes());
    }
    field(description.as_bytes());
    hash.finalize().to_vec()
}

/// Whether a CreateWebhookEndpoint replaying the `request_id` of `first` may be answered
/// with the same response, secret included. `fingerprint` is the replay's body
/// ([`create_request_fingerprint`]); `first_fingerprint` the first request's, `None` for an
/// endpoint made before fingerprints were kept (its fields as they are stand in).
///
/// A changed body is `IdempotencyKeyReused`, whenever it comes. With the same body, the
/// secret is shown again only while the endpoint exists, its secret was never rotated and
/// the first request is less than [`CREATE_REPLAY_WINDOW`] old; otherwise the refusal says
/// why and that RotateWebhookSecret gives a new secret.
pub fn check_create_replay(
    first: &WebhookEndpoint,
    first_fingerprint: Option<&[u8]>,
    fingerprint: &[u8],
    now: DateTime<Utc>,
) -> Result<(), DisputeError> {
    let same_body = match first_fingerprint {
        Some(first_fingerprint) => first_fingerprint == fingerprint,
        None => {
            create_request_fingerprint(&first.url, &first.event_types, &first.description)
                == fingerprint
        }
    };
    if !same_body {
        return Err(DisputeError::IdempotencyKeyReused);
    }
    let id = &first.id;
    let refusal = |message: String| DisputeError::FailedPrecondition {
        reason: SECRET_NO_LONGER_AVAILABLE,
        message,
    };
    if first.deleted_at.is_some() {
        return Err(refusal(format!(
            "webhook endpoint {id}, made under this request_id, was deleted: its secret is \
             no longer shown; create a new endpoint with a new request_id"
        )));
    }
    if first.secret_rotated_at.is_some() {
        return Err(refusal(format!(
            "the secret of webhook endpoint {id}, made under this request_id, was rotated \
             since: it is no longer shown; call RotateWebhookSecret for a new one"
        )));
    }
    let window = chrono::Duration::from_std(CREATE_REPLAY_WINDOW).unwrap_or(chrono::Duration::MAX);
    if now - first.created_at >= window {
        return Err(refusal(format!(
            "webhook endpoint {id} was made under this request_id more than 24 hours ago: \
             its secret is no longer shown; call RotateWebhookSecret for a new one"
        )));
    }
    Ok(())
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

    fn endpoint(created_at: DateTime<Utc>) -> WebhookEndpoint {
        WebhookEndpoint {
            id: "whe_01".to_owned(),
            url: "https://example.com/hooks".to_owned(),
            event_types: vec!["dispute.won".to_owned()],
            description: "d".to_owned(),
            enabled: true,
            disabled_reason: String::new(),
            secret: StoredSecret::Plaintext("whsec_x".into()),
            previous_secret: None,
            previous_secret_expires_at: None,
            secret_rotated_at: None,
            failing_since: None,
            deleted_at: None,
            created_at,
            updated_at: created_at,
        }
    }

    fn reason(result: Result<(), DisputeError>) -> &'static str {
        match result {
            Ok(()) => "OK",
            Err(DisputeError::IdempotencyKeyReused) => "IDEMPOTENCY_KEY_REUSED",
            Err(DisputeError::FailedPrecondition { reason, .. }) => reason,
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn fingerprints_tell_bodies_apart() {
        let types = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let a = create_request_fingerprint("u", &types(&["x", "y"]), "d");
        assert_eq!(a, create_request_fingerprint("u", &types(&["x", "y"]), "d"));
        assert_ne!(a, create_request_fingerprint("u", &types(&["xy"]), "d"));
        assert_ne!(a, create_request_fingerprint("u", &types(&["x"]), "yd"));
        assert_ne!(
            a,
            create_request_fingerprint("u2", &types(&["x", "y"]), "d")
        );
        assert_ne!(a, create_request_fingerprint("u", &types(&["y", "x"]), "d"));
    }

    #[test]
    fn a_replay_shows_the_secret_only_while_nothing_changed() {
        let now = Utc::now();
        let made = endpoint(now - chrono::Duration::hours(1));
        let same = create_request_fingerprint(&made.url, &made.event_types, &made.description);
        let changed = create_request_fingerprint("https://example.com/other", &[], "");
        assert_eq!(
            reason(check_create_replay(&made, Some(&same), &same, now)),
            "OK"
        );
        // A row from before fingerprints: its fields stand in.
        assert_eq!(reason(check_create_replay(&made, None, &same, now)), "OK");
        assert_eq!(
            reason(check_create_replay(&made, Some(&same), &changed, now)),
            "IDEMPOTENCY_KEY_REUSED"
        );
        assert_eq!(
            reason(check_create_replay(&made, None, &changed, now)),
            "IDEMPOTENCY_KEY_REUSED"
        );

        let rotated = WebhookEndpoint {
            secret_rotated_at: Some(now),
            ..made.clone()
        };
        let deleted = WebhookEndpoint {
            deleted_at: Some(now),
            ..made.clone()
        };
        let old = endpoint(now - chrono::Duration::hours(24));
        for gone in [&rotated, &deleted, &old] {
            assert_eq!(
                reason(check_create_replay(gone, Some(&same), &same, now)),
                SECRET_NO_LONGER_AVAILABLE
            );
            // A changed body is still named as such.
            assert_eq!(
                reason(check_create_replay(gone, Some(&same), &changed, now)),
                "IDEMPOTENCY_KEY_REUSED"
            );
        }
        let just_inside =
            endpoint(now - chrono::Duration::hours(24) + chrono::Duration::seconds(1));
        assert_eq!(
            reason(check_create_replay(&just_inside, Some(&same), &same, now)),
            "OK"
        );
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
