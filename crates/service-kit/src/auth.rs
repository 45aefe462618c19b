//! JWT bearer authentication (docs/api.md, "Authentication and scopes"): every RPC of our services carries
//! `authorization: Bearer <jwt>` signed with HS256 by a key both services share. The
//! claims name the tenant and the scopes. An interceptor verifies the token and puts the
//! [`Caller`] into the request extensions; handlers then check the scope they need.

use std::fmt;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tonic::{Code, Request, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::errors::status_with_reason;

const AUTH_DOMAIN: &str = "auth.dispute-platform";
/// Shortest accepted HS256 key, in bytes.
pub const MIN_SECRET_LEN: usize = 32;
const MAX_TENANT_LEN: usize = 64;

/// A permission a token grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    DisputesRead,
    DisputesWrite,
    /// RecordNetworkEvent: moves money on the card network's word.
    DisputesNetwork,
    DocumentsRead,
    DocumentsWrite,
    EventsRead,
    WebhooksManage,
}

impl Scope {
    pub const ALL: [Scope; 7] = [
        Scope::DisputesRead,
        Scope::DisputesWrite,
        Scope::DisputesNetwork,
        Scope::DocumentsRead,
        Scope::DocumentsWrite,
        Scope::EventsRead,
        Scope::WebhooksManage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::DisputesRead => "disputes:read",
            Scope::DisputesWrite => "disputes:write",
            Scope::DisputesNetwork => "disputes:network",
            Scope::DocumentsRead => "documents:read",
            Scope::DocumentsWrite => "documents:write",
            Scope::EventsRead => "events:read",
            Scope::WebhooksManage => "webhooks:manage",
        }
    }

    /// The scope spelled `name`, if it is one of ours.
    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The claims our tokens carry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// Who the token was issued to (a service or an engineer).
    pub sub: String,
    /// Tenant every call of this token acts for.
    pub tenant: String,
    /// Granted scopes, e.g. `disputes:read`.
    pub scopes: Vec<String>,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expires at, seconds since the epoch.
    pub exp: i64,
}

/// The authenticated caller of one RPC.
#[derive(Clone)]
pub struct Caller {
    pub tenant_id: String,
    pub subject: String,
    scopes: Vec<String>,
    /// The raw token, forwarded when we call another service on the caller's behalf.
    bearer_token: Arc<str>,
    /// When the token expires (its `exp`): a long-lived call (a stream) ends then.
    expires_at: chrono::DateTime<chrono::Utc>,
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field("tenant_id", &self.tenant_id)
            .field("subject", &self.subject)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl Caller {
    /// The caller that the auth interceptor attached to `request`.
    pub fn of<T>(request: &Request<T>) -> Result<Caller, Status> {
        request
            .extensions()
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| unauthenticated("missing bearer token"))
    }

    /// Whether the token grants `scope`.
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|s| s == scope.as_str())
    }

    /// PERMISSION_DENIED unless the token grants `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), Status> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(missing_scope(scope, AUTH_DOMAIN))
        }
    }

    /// `Bearer <token>`, to forward the caller's identity.
    pub fn authorization_header(&self) -> String {
        format!("Bearer {}", self.bearer_token)
    }

    /// When the caller's token expires (its `exp` claim).
    pub fn expires_at(&self) -> chrono::DateTime<chrono::Utc> {
        self.expires_at
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("jwt secret must be at least {MIN_SECRET_LEN} bytes")]
    TooShort,
}

/// Verifies tokens with the shared HS256 key.
#[derive(Clone)]
pub struct TokenVerifier {
    key: Arc<DecodingKey>,
    validation: Arc<Validation>,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVerifier").finish_non_exhaustive()
    }
}

impl TokenVerifier {
    pub fn new(secret: &SecretString) -> Result<Self, KeyError> {
        let bytes = secret.expose_secret().as_bytes();
        if bytes.len() < MIN_SECRET_LEN {
            return Err(KeyError::TooShort);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 30;
        Ok(Self {
            key: Arc::new(DecodingKey::from_secret(bytes)),
            validation: Arc::new(validation),
        })
    }

    /// The caller a raw `authorization` header value stands for.
    pub fn verify_header(&self, header: Option<&str>) -> Result<Caller, Status> {
        let header = header.ok_or_else(|| unauthenticated("missing bearer token"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthenticated("authorization must be a bearer token"))?;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|_| unauthenticated("invalid or expired token"))?
            .claims;
        if !is_valid_tenant(&claims.tenant) {
            return Err(unauthenticated("token names no valid tenant"));
        }
        Ok(Caller {
            tenant_id: claims.tenant,
            subject: claims.sub,
            scopes: claims.scopes,
            bearer_token: Arc::from(token),
            // `exp` beyond chrono's range is as good as never.
            expires_at: chrono::DateTime::from_timestamp(claims.exp, 0)
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC),
        })
    }
}

/// Tenant ids are 1 to 64 characters of `[A-Za-z0-9_-]`.
pub fn is_valid_tenant(tenant: &str) -> bool {
    !tenant.is_empty()
        && tenant.len() <= MAX_TENANT_LEN
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// ErrorInfo metadata key naming the missing scope of a `MISSING_SCOPE` answer.
pub const MISSING_SCOPE_METADATA_KEY: &str = "scope";

/// PERMISSION_DENIED, ErrorInfo reason `MISSING_SCOPE` in `domain`, with the scope in the
/// message and in the ErrorInfo metadata (key [`MISSING_SCOPE_METADATA_KEY`]).
pub fn missing_scope(scope: Scope, domain: &str) -> Status {
    missing_scope_status(scope.as_str(), domain, format!("token lacks scope {scope}"))
}

/// [`missing_scope`] with a message of the caller's choosing.
pub fn missing_scope_status(scope: &str, domain: &str, message: impl Into<String>) -> Status {
    let details = ErrorDetails::with_error_info(
        "MISSING_SCOPE",
        domain,
        [(MISSING_SCOPE_METADATA_KEY.to_owned(), scope.to_owned())],
    );
    Status::with_error_details(Code::PermissionDenied, message, details)
}

/// The scope a `MISSING_SCOPE` answer names: its ErrorInfo metadata, else the last word of
/// its message; `None` when neither names one of our scopes.
pub fn missing_scope_of(status: &Status) -> Option<Scope> {
    let details = status.get_error_details();
    details
        .error_info()
        .and_then(|info| info.metadata.get(MISSING_SCOPE_METADATA_KEY))
        .and_then(|name| Scope::parse(name))
        .or_else(|| {
            status
                .message()
                .split_whitespace()
                .find_map(|word| Scope::parse(word.trim_matches(|c: char| c == ',' || c == '.')))
        })
}

fn unauthenticated(message: &str) -> Status {
    status_with_reason(
        Code::Unauthenticated,
        message,
        "UNAUTHENTICATED",
        AUTH_DOMAIN,
    )
}

/// Interceptor for our own services (not health or reflection): attaches the [`Caller`],
/// the one the call limit already verified (it puts it into the request's extensions) or,
/// for calls the limit leaves out (streams), the bearer token's.
#[derive(Clone)]
pub struct AuthInterceptor {
    verifier: TokenVerifier,
}

impl AuthInterceptor {
    pub fn new(verifier: TokenVerifier) -> Self {
        Self { verifier }
    }
}

impl tonic::service::Interceptor for AuthInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let caller = match request.extensions().get::<Caller>() {
            Some(verified) => verified.clone(),
            None => {
                let header = request
                    .metadata()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok());
                self.verifier.verify_header(header)?
            }
        };
        tracing::Span::current().record("tenant_id", caller.tenant_id.as_str());
        if let Some(tenant) = request.extensions().get::<crate::propagation::CallTenant>() {
            tenant.set(&caller.tenant_id);
        }
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

/// Signs a token; used by the dev token command and by tests.
pub fn mint_token(
    secret: &SecretString,
    subject: &str,
    tenant: &str,
    scopes: &[&str],
    ttl: chrono::Duration,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        sub: subject.to_owned(),
        tenant: tenant.to_owned(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        iat: now,
        exp: now + ttl.num_seconds(),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.expose_secret().as_bytes()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> SecretString {
        SecretString::from("a-test-secret-that-is-long-enough-0123456789")
    }

    fn token(tenant: &str, scopes: &[&str], ttl_secs: i64) -> String {
        mint_token(
            &secret(),
            "tester",
            tenant,
            scopes,
            chrono::Duration::seconds(ttl_secs),
        )
        .unwrap_or_default()
    }

    #[test]
    fn valid_token_yields_tenant_and_scopes() {
        let verifier = TokenVerifier::new(&secret()).expect("key");
        let header = format!("Bearer {}", token("acme", &["disputes:read"], 60));
        let caller = verifier.verify_header(Some(&header)).expect("valid");
        assert_eq!(caller.tenant_id, "acme");
        assert!(caller.require(Scope::DisputesRead).is_ok());
        let denied = caller
            .require(Scope::DisputesWrite)
            .expect_err("no write scope");
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert_eq!(missing_scope_of(&denied), Some(Scope::DisputesWrite));
        assert!(!caller.has(Scope::DisputesNetwork));
        assert_eq!(caller.authorization_header(), header);
        let left = caller.expires_at() - chrono::Utc::now();
        assert!(left > chrono::Duration::seconds(50) && left <= chrono::Duration::seconds(60));
    }

    #[test]
    fn missing_malformed_expired_or_forged_tokens_are_unauthenticated() {
        let verifier = TokenVerifier::new(&secret()).expect("key");
        let other_key = SecretString::from("another-secret-that-is-long-enough-987654321");
        let forged = mint_token(
            &other_key,
            "x",
            "acme",
            &["disputes:read"],
            chrono::Duration::seconds(60),
        )
        .unwrap_or_default();
        let cases = [
            None,
            Some("".to_owned()),
            Some("Basic dXNlcjpwYXNz".to_owned()),
            Some("Bearer ".to_owned()),
            Some("Bearer not.a.jwt".to_owned()),
            Some(format!(
                "Bearer {}",
                token("acme", &["disputes:read"], -3600)
            )),
            Some(format!("Bearer {forged}")),
            Some(format!("Bearer {}", token("bad tenant!", &[], 60))),
        ];
        for case in cases {
            let err = verifier
                .verify_header(case.as_deref())
                .expect_err("must be rejected");
            assert_eq!(err.code(), Code::Unauthenticated, "{case:?}");
        }
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(TokenVerifier::new(&SecretString::from("short")).is_err());
    }

    #[test]
    fn tenant_ids_are_checked() {
        assert!(is_valid_tenant("acme-bank_1"));
        assert!(!is_valid_tenant(""));
        assert!(!is_valid_tenant("a/b"));
        assert!(!is_valid_tenant(&"a".repeat(65)));
    }
}
