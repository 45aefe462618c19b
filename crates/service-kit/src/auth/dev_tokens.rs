//! Development tokens (HS256 with the shared secret): what `mint-dev-token`, the local
//! stack and the tests sign. Production tokens come from the identity provider.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// The claims of the tokens we mint for development and tests (HS256).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// Who the token was issued to (a service or an engineer).
    pub sub: String,
    /// Tenant every call of this token acts for; `None` for background tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Granted scopes, e.g. `disputes:read`.
    pub scopes: Vec<String>,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expires at, seconds since the epoch.
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// Signs an HS256 token for `tenant`; used by the dev token command and by tests.
pub fn mint_token(
    secret: &SecretString,
    subject: &str,
    tenant: &str,
    scopes: &[&str],
    ttl: chrono::Duration,
) -> Result<String, jsonwebtoken::errors::Error> {
    mint_claims(secret, &dev_claims(subject, Some(tenant), scopes, ttl))
}

/// Signs an HS256 background token: no tenant claim, so it acts only for the tenant a
/// request names in [`ACT_FOR_TENANT_HEADER`](super::ACT_FOR_TENANT_HEADER), and only with the scopes a
/// [`TokenVerifier::delegating`](super::TokenVerifier::delegating) verifier delegates. Development (shared secret) only.
pub fn mint_background_token(
    secret: &SecretString,
    subject: &str,
    scopes: &[&str],
    ttl: chrono::Duration,
) -> Result<String, jsonwebtoken::errors::Error> {
    mint_claims(secret, &dev_claims(subject, None, scopes, ttl))
}

/// Claims issued now for `ttl`, without issuer or audience.
pub fn dev_claims(
    subject: &str,
    tenant: Option<&str>,
    scopes: &[&str],
    ttl: chrono::Duration,
) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        sub: subject.to_owned(),
        tenant: tenant.map(str::to_owned),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        iat: now,
        exp: now + ttl.num_seconds(),
        iss: None,
        aud: None,
    }
}

/// Signs `claims` with HS256 and `secret`.
pub fn mint_claims(
    secret: &SecretString,
    claims: &Claims,
) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.expose_secret().as_bytes()),
    )
}
