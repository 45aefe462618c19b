//! Signing secrets and the Standard Webhooks signature.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of a signing secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Bytes of a signing key.
pub const SECRET_KEY_BYTES: usize = 32;

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

#[cfg(test)]
mod tests {
    use super::*;

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
