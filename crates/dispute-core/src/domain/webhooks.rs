//! Pure rules of webhooks: which URLs and event types an endpoint may have, the retry
//! schedule, when a failing endpoint is disabled, and the Standard Webhooks signature.

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use domain_kit::violation::Violation;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Every event type an endpoint may subscribe to (docs/api.md, "Events").
pub const EVENT_TYPES: &[&str] = &[
    "dispute.created",
    "dispute.updated",
    "dispute.funds_withdrawn",
    "dispute.funds_reinstated",
    "dispute.evidence_submitted",
    "dispute.won",
    "dispute.lost",
    "dispute.closed",
    "dispute.defense_period_ended",
    "dispute.reopened",
    "dispute.overdue",
    "dispute.due_soon",
];

/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// Longest description accepted.
pub const MAX_DESCRIPTION_LEN: usize = 500;
/// How many bytes of a receiver's response body are kept.
pub const RESPONSE_BODY_PREFIX_BYTES: usize = 256;
/// The prefix of a signing secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Bytes of a signing key.
pub const SECRET_KEY_BYTES: usize = 32;
/// How long a rotated-out secret keeps signing when the request names no overlap.
pub const DEFAULT_ROTATION_OVERLAP: Duration = Duration::from_secs(24 * 3600);
/// The longest overlap accepted.
pub const MAX_ROTATION_OVERLAP: Duration = Duration::from_secs(30 * 24 * 3600);

/// What outbound URLs the deployment allows besides public https ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    /// `http://` URLs (receivers that are internal services).
    pub allow_http: bool,
    /// Loopback, private, link-local and other non-public addresses.
    pub allow_private_addresses: bool,
}

/// Checks an endpoint URL: absolute http(s) with a host, https unless allowed, no
/// credentials, no fragment, and not a literal private address unless allowed. Names are
/// resolved and checked again at each delivery ([`UrlPolicy::address_allowed`]).
pub fn check_url(policy: UrlPolicy, raw: &str) -> Result<url::Url, Violation> {
    let bad = |why: &str| Violation::new("url", why);
    if raw.is_empty() {
        return Err(bad("is required"));
    }
    if raw.len() > MAX_URL_LEN {
        return Err(bad("must be at most 2048 characters"));
    }
    let url = url::Url::parse(raw).map_err(|e| bad(&format!("is not a valid URL ({e})")))?;
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        "http" => return Err(bad("must use https (http is not allowed here)")),
        _ => return Err(bad("must be an https URL")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not contain credentials"));
    }
    if url.fragment().is_some() {
        return Err(bad("must not contain a fragment"));
    }
    let ip = match url.host() {
        None => return Err(bad("must have a host")),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.');
            if (name == "localhost" || name.ends_with(".localhost"))
                && !policy.allow_private_addresses
            {
                return Err(bad("must not point to a private or loopback address"));
            }
            None
        }
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
    };
    if let Some(ip) = ip
        && !policy.address_allowed(ip)
    {
        return Err(bad("must not point to a private or loopback address"));
    }
    Ok(url)
}

impl UrlPolicy {
    /// Whether a delivery may connect to `ip`.
    pub fn address_allowed(&self, ip: IpAddr) -> bool {
        self.allow_private_addresses || is_public(ip)
    }
}

/// A globally routable unicast address (not loopback, private, link-local, CGNAT,
/// unspecified, multicast, documentation or broadcast).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                || v6.segments()[0] == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

/// Checks a list of event types: each known, none twice. Empty means all.
pub fn check_event_types(field: &str, types: &[String]) -> Vec<Violation> {
    let mut violations = Vec::new();
    for (i, t) in types.iter().enumerate() {
        if !EVENT_TYPES.contains(&t.as_str()) {
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

/// Checks a description.
pub fn check_description(description: &str) -> Option<Violation> {
    (description.chars().count() > MAX_DESCRIPTION_LEN)
        .then(|| Violation::new("description", "must be at most 500 characters"))
}

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

/// A new secret from 32 random bytes: `whsec_` + base64.
pub fn secret_from_key(key: &[u8]) -> String {
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// The key of a `whsec_` secret.
pub fn key_of_secret(secret: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret))
        .ok()
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>` (Standard Webhooks).
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = key_of_secret(secret)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The `webhook-signature` header: the current secret's signature, then the previous
/// secret's while it still signs, separated by a space.
pub fn signature_header(
    secret: &str,
    previous: Option<&str>,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Option<String> {
    let mut header = sign(secret, id, timestamp, body)?;
    if let Some(previous) = previous.and_then(|p| sign(p, id, timestamp, body)) {
        header.push(' ');
        header.push_str(&previous);
    }
    Some(header)
}

/// The first [`RESPONSE_BODY_PREFIX_BYTES`] of a body, cut at a character boundary.
pub fn body_prefix(body: &[u8]) -> String {
    let cut = &body[..body.len().min(RESPONSE_BODY_PREFIX_BYTES)];
    let text = String::from_utf8_lossy(cut).into_owned();
    text.replace('\0', "")
}

/// Seed 004's name for an event type, where one matches.
pub fn seed_004_name(event_type: &str) -> Option<&'static str> {
    match event_type {
        "dispute.funds_withdrawn" => Some("DISPUTE_INITIATED"),
        "dispute.won" => Some("DISPUTE_WON"),
        "dispute.lost" => Some("DISPUTE_LOST"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: UrlPolicy = UrlPolicy {
        allow_http: true,
        allow_private_addresses: true,
    };

    #[test]
    fn urls_are_https_public_and_without_credentials_by_default() {
        let strict = UrlPolicy::default();
        assert!(check_url(strict, "https://hooks.example.com/in").is_ok());
        for bad in [
            "",
            "not a url",
            "http://hooks.example.com/in",
            "ftp://hooks.example.com/in",
            "https://user:pw@hooks.example.com/in",
            "https://user@hooks.example.com/in",
            "https://127.0.0.1/in",
            "https://10.1.2.3/in",
            "https://[::1]/in",
            "https://169.254.169.254/latest",
            "https://localhost/in",
            "https://hooks.example.com/in#frag",
        ] {
            let violation = check_url(strict, bad).unwrap_err();
            assert_eq!(violation.field, "url", "{bad}");
        }
        assert!(check_url(ALL, "http://127.0.0.1:8080/in").is_ok());
        assert!(check_url(ALL, "https://u:p@127.0.0.1/in").is_err());
    }

    #[test]
    fn public_addresses() {
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
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
    fn signatures_follow_standard_webhooks() {
        // The example of the Standard Webhooks reference libraries.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = br#"{"test": 2432232314}"#;
        let signature = sign(secret, id, 1614265330, body).unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let both = signature_header(secret, Some(secret), id, 1614265330, body).unwrap();
        assert_eq!(both, format!("{signature} {signature}"));
    }
}
