//! Bearer authentication (docs/api.md, "Authentication and scopes"): every RPC of our
//! services carries `authorization: Bearer <jwt>`. In production the tokens come from the
//! identity provider and are verified against its JWKS ([`jwks`]: RS256, ES256, EdDSA);
//! for local development both services may share an HS256 secret instead. The claims name
//! the tenant and the scopes ([`claims`]: which claims is configurable). The call limit
//! verifies every call and hands the [`Caller`] on; handlers then check the scope they need.
//!
//! Background work that acts for a tenant without a caller uses a token without a tenant
//! claim and names the tenant in [`ACT_FOR_TENANT_HEADER`]; only a verifier made
//! [`TokenVerifier::delegating`] accepts it, and only for the scopes it delegates.

pub mod claims;
mod dev_tokens;
pub mod jwks;

pub use self::dev_tokens::{Claims, dev_claims, mint_background_token, mint_claims, mint_token};

use std::fmt;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use tonic::{Code, Request, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::errors::status_with_reason;

use self::claims::{ClaimName, TimeRules};
use self::jwks::{JWKS_ALGORITHMS, JwksCache, JwksSettings};

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
    /// Lock and unlock documents: what background work (lock repair) needs. Not in
    /// [`Scope::ALL`]; delegated tokens carry it ([`TokenVerifier::delegating`]).
    DocumentsLock,
}

impl Scope {
    /// The scopes a tenant's token may carry (the dev minter grants them all).
    pub const ALL: [Scope; 7] = [
        Scope::DisputesRead,
        Scope::DisputesWrite,
        Scope::DisputesNetwork,
        Scope::DocumentsRead,
        Scope::DocumentsWrite,
        Scope::EventsRead,
        Scope::WebhooksManage,
    ];

    /// Every scope we know: [`Scope::ALL`] and those of background work.
    pub const KNOWN: [Scope; 8] = [
        Scope::DisputesRead,
        Scope::DisputesWrite,
        Scope::DisputesNetwork,
        Scope::DocumentsRead,
        Scope::DocumentsWrite,
        Scope::EventsRead,
        Scope::WebhooksManage,
        Scope::DocumentsLock,
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
            Scope::DocumentsLock => "documents:lock",
        }
    }

    /// The scope spelled `name`, if it is one of ours.
    pub fn parse(name: &str) -> Option<Scope> {
        Scope::KNOWN.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The authenticated caller of one RPC.
#[derive(Clone)]
pub struct Caller {
    pub tenant_id: String,
    pub subject: String,
    scopes: Vec<Scope>,
    /// The token names no tenant: a background credential acting for the tenant of the
    /// request's [`ACT_FOR_TENANT_HEADER`].
    delegated: bool,
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
            .field("delegated", &self.delegated)
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
        self.scopes.contains(&scope)
    }

    /// The scopes the token grants that we know.
    pub fn scopes(&self) -> &[Scope] {
        &self.scopes
    }

    /// Whether a background credential acts for the tenant ([`TokenVerifier::delegating`]).
    pub fn is_delegated(&self) -> bool {
        self.delegated
    }

    /// PERMISSION_DENIED unless the token grants `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), Status> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(missing_scope(scope, AUTH_DOMAIN))
        }
    }

    /// `Bearer <token>`, to forward the caller's identity (a delegated caller's tenant goes
    /// in [`ACT_FOR_TENANT_HEADER`] besides).
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
    #[error("tokens from a JWKS need both an issuer and an audience to check")]
    MissingIssuerOrAudience,
    #[error("the JWKS URL must be an http or https URL")]
    InvalidJwksUrl,
    #[error("the {0} claim name must not be empty")]
    EmptyClaimName(&'static str),
    #[error("HTTP client for the JWKS: {0}")]
    HttpClient(#[from] reqwest::Error),
}

/// Header naming the tenant a background credential acts for ([`TokenVerifier::delegating`]).
pub const ACT_FOR_TENANT_HEADER: &str = "x-act-for-tenant";

/// Default `--jwt-tenant-claim`.
pub const DEFAULT_TENANT_CLAIM: &str = "tenant";
/// Default `--jwt-scope-claim`.
pub const DEFAULT_SCOPE_CLAIM: &str = "scopes";
/// Default `--jwt-leeway-secs`.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;
/// Default `--jwt-max-lifetime-secs`: a day, what the dev minter issues.
pub const DEFAULT_MAX_LIFETIME_SECS: u64 = 86_400;

/// What a token must say besides its signature, in both modes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRules {
    /// `iss` must equal this (required with a JWKS).
    pub issuer: Option<String>,
    /// `aud` must contain this (required with a JWKS).
    pub audience: Option<String>,
    /// Where the tenant is: a top-level claim, or a JSON Pointer when it starts with `/`.
    pub tenant_claim: String,
    /// Where the scopes are (an array or a space-separated string), named the same way.
    pub scope_claim: String,
    /// Clock skew allowed for `exp`, `nbf` and `iat`, in seconds.
    pub leeway_secs: u64,
    /// Longest accepted `exp - iat`, in seconds.
    pub max_lifetime_secs: u64,
}

impl Default for TokenRules {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            tenant_claim: DEFAULT_TENANT_CLAIM.to_owned(),
            scope_claim: DEFAULT_SCOPE_CLAIM.to_owned(),
            leeway_secs: DEFAULT_LEEWAY_SECS,
            max_lifetime_secs: DEFAULT_MAX_LIFETIME_SECS,
        }
    }
}

/// Verifies bearer tokens: against an identity provider's JWKS, or (local development)
/// with a shared HS256 secret. Cheap to clone.
#[derive(Clone)]
pub struct TokenVerifier {
    inner: Arc<VerifierInner>,
    /// Scopes a tenant-less token may use for the tenant of [`ACT_FOR_TENANT_HEADER`].
    delegated_scopes: Arc<[Scope]>,
}

struct VerifierInner {
    keys: Keys,
    /// The rules for each algorithm the mode accepts (the key decides which applies).
    validations: Vec<(Algorithm, Validation)>,
    time_rules: TimeRules,
    tenant_claim: ClaimName,
    scope_claim: ClaimName,
}

enum Keys {
    SharedSecret(DecodingKey),
    Jwks(JwksCache),
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.inner.keys {
            Keys::SharedSecret(_) => "shared secret",
            Keys::Jwks(_) => "jwks",
        };
        f.debug_struct("TokenVerifier")
            .field("mode", &mode)
            .field("delegated_scopes", &self.delegated_scopes)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// HS256 with `secret` and the default rules (no issuer or audience): development and
    /// tests.
    pub fn new(secret: &SecretString) -> Result<Self, KeyError> {
        Self::shared_secret(secret, TokenRules::default())
    }

    /// HS256 with `secret` (at least [`MIN_SECRET_LEN`] bytes): local development only.
    /// `iat` is optional; issuer and audience are checked when set.
    pub fn shared_secret(secret: &SecretString, rules: TokenRules) -> Result<Self, KeyError> {
        let bytes = secret.expose_secret().as_bytes();
        if bytes.len() < MIN_SECRET_LEN {
            return Err(KeyError::TooShort);
        }
        Self::build(
            Keys::SharedSecret(DecodingKey::from_secret(bytes)),
            &[Algorithm::HS256],
            rules,
            false,
        )
    }

    /// RS256, ES256 and EdDSA tokens verified with the keys of a JWKS URL; issuer and
    /// audience are required, and so is `iat`. Keys are fetched on first use.
    pub fn jwks(settings: JwksSettings, rules: TokenRules) -> Result<Self, KeyError> {
        if rules.issuer.as_deref().is_none_or(str::is_empty)
            || rules.audience.as_deref().is_none_or(str::is_empty)
        {
            return Err(KeyError::MissingIssuerOrAudience);
        }
        if !(settings.url.starts_with("https://") || settings.url.starts_with("http://")) {
            return Err(KeyError::InvalidJwksUrl);
        }
        Self::build(
            Keys::Jwks(JwksCache::new(settings)?),
            &JWKS_ALGORITHMS,
            rules,
            true,
        )
    }

    fn build(
        keys: Keys,
        algorithms: &[Algorithm],
        rules: TokenRules,
        require_issued_at: bool,
    ) -> Result<Self, KeyError> {
        let tenant_claim =
            ClaimName::parse(&rules.tenant_claim).ok_or(KeyError::EmptyClaimName("tenant"))?;
        let scope_claim =
            ClaimName::parse(&rules.scope_claim).ok_or(KeyError::EmptyClaimName("scope"))?;
        let mut validation = Validation::new(Algorithm::HS256);
        let mut required = vec!["exp", "sub"];
        validation.leeway = rules.leeway_secs;
        validation.validate_nbf = true;
        match &rules.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &rules.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            // Without an audience to check, a token's `aud` is not ours to judge.
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        let validations = algorithms
            .iter()
            .map(|&algorithm| {
                let mut validation = validation.clone();
                validation.algorithms = vec![algorithm];
                (algorithm, validation)
            })
            .collect();
        Ok(Self {
            inner: Arc::new(VerifierInner {
                keys,
                validations,
                time_rules: TimeRules {
                    require_issued_at,
                    leeway_secs: rules.leeway_secs,
                    max_lifetime_secs: rules.max_lifetime_secs,
                },
                tenant_claim,
                scope_claim,
            }),
            delegated_scopes: Arc::from(Vec::new()),
        })
    }

    /// Also accepts tokens without a tenant claim whose scopes include one of `scopes`,
    /// for the tenant the request names in [`ACT_FOR_TENANT_HEADER`]; such a caller gets
    /// only those of its scopes that are in `scopes`.
    pub fn delegating(self, scopes: &[Scope]) -> Self {
        Self {
            delegated_scopes: Arc::from(scopes.to_vec()),
            ..self
        }
    }

    /// Whether tokens come from a JWKS (production) rather than a shared secret.
    pub fn is_jwks(&self) -> bool {
        matches!(self.inner.keys, Keys::Jwks(_))
    }

    /// The caller the request's `authorization` (and [`ACT_FOR_TENANT_HEADER`]) headers
    /// stand for.
    pub async fn verify(&self, headers: &http::HeaderMap) -> Result<Caller, Status> {
        let authorization = match headers.get(http::header::AUTHORIZATION) {
            None => None,
            Some(value) => Some(
                value
                    .to_str()
                    .map_err(|_| unauthenticated("authorization must be a bearer token"))?,
            ),
        };
        let act_for = headers
            .get(ACT_FOR_TENANT_HEADER)
            .map(|value| value.to_str().unwrap_or_default());
        self.verify_parts(authorization, act_for).await
    }

    /// The caller a raw `authorization` header value stands for (no delegation header).
    pub async fn verify_header(&self, header: Option<&str>) -> Result<Caller, Status> {
        self.verify_parts(header, None).await
    }

    async fn verify_parts(
        &self,
        authorization: Option<&str>,
        act_for: Option<&str>,
    ) -> Result<Caller, Status> {
        let header = authorization.ok_or_else(|| unauthenticated("missing bearer token"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthenticated("authorization must be a bearer token"))?;
        let claims = self.verified_claims(token).await?;
        self.caller_from(&claims, token, act_for)
    }

    /// The token's claims once its signature, algorithm and time and issuer rules hold.
    async fn verified_claims(&self, token: &str) -> Result<serde_json::Value, Status> {
        let inner = &*self.inner;
        let invalid = || unauthenticated(INVALID_TOKEN);
        // Why a token was refused goes to the debug log, never to the caller.
        let refused = |why: &dyn fmt::Display| {
            tracing::debug!(reason = %why, "token refused");
            invalid()
        };
        let header = jsonwebtoken::decode_header(token).map_err(|error| refused(&error))?;
        let jwks_key;
        let (key, algorithm) = match &inner.keys {
            Keys::SharedSecret(key) => (key, Algorithm::HS256),
            Keys::Jwks(cache) => {
                jwks_key = cache
                    .key_for(header.kid.as_deref())
                    .await
                    .map_err(|unavailable| refused(&format_args!("{unavailable:?}")))?;
                (&jwks_key.key, jwks_key.algorithm)
            }
        };
        // The key decides the algorithm, never the token: an HS256 token "signed" with a
        // public key, or one of another family, is refused here.
        if header.alg != algorithm {
            return Err(refused(&format_args!(
                "token algorithm {:?}, key algorithm {algorithm:?}",
                header.alg
            )));
        }
        let validation = inner
            .validations
            .iter()
            .find_map(|(accepted, validation)| (*accepted == algorithm).then_some(validation))
            .ok_or_else(invalid)?;
        let claims = jsonwebtoken::decode::<serde_json::Value>(token, key, validation)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    unauthenticated("token expired")
                }
                _ => refused(&error),
            })?
            .claims;
        let expires_at = claims::numeric_date(claims.get("exp")).ok_or_else(invalid)?;
        let issued_at = match claims.get("iat") {
            None => None,
            Some(value) => Some(claims::numeric_date(Some(value)).ok_or_else(invalid)?),
        };
        inner
            .time_rules
            .check(issued_at, expires_at, chrono::Utc::now().timestamp())
            .map_err(|why| refused(&format_args!("{why:?}")))?;
        Ok(claims)
    }

    fn caller_from(
        &self,
        claims: &serde_json::Value,
        token: &str,
        act_for: Option<&str>,
    ) -> Result<Caller, Status> {
        let inner = &*self.inner;
        let subject = claims
            .get("sub")
            .and_then(serde_json::Value::as_str)
            .filter(|sub| !sub.is_empty())
            .ok_or_else(|| unauthenticated(INVALID_TOKEN))?;
        let mut scopes = claims::scopes_in(inner.scope_claim.find(claims));
        let (tenant_id, delegated) = match inner.tenant_claim.find(claims) {
            Some(tenant) => {
                let tenant = tenant
                    .as_str()
                    .filter(|tenant| is_valid_tenant(tenant))
                    .ok_or_else(|| unauthenticated("token names no valid tenant"))?;
                (tenant.to_owned(), false)
            }
            None => {
                scopes.retain(|scope| self.delegated_scopes.contains(scope));
                let tenant = act_for
                    .filter(|_| !scopes.is_empty())
                    .ok_or_else(|| unauthenticated("token names no tenant"))?;
                if !is_valid_tenant(tenant) {
                    return Err(unauthenticated(
                        "x-act-for-tenant must be 1 to 64 characters of [A-Za-z0-9_-]",
                    ));
                }
                (tenant.to_owned(), true)
            }
        };
        let expires_at = claims::numeric_date(claims.get("exp"))
            .and_then(|exp| chrono::DateTime::from_timestamp(exp, 0))
            // `exp` beyond chrono's range is as good as never.
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
        Ok(Caller {
            tenant_id,
            subject: subject.to_owned(),
            scopes,
            delegated,
            bearer_token: Arc::from(token),
            expires_at,
        })
    }
}

/// The message of every refusal that says nothing more precise.
const INVALID_TOKEN: &str = "invalid or expired token";

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

/// Interceptor for our own services (not health or reflection): takes the [`Caller`] the
/// call limit verified and put into the request's extensions, and names its tenant in the
/// access log. A request without one (a server without the call limit) is refused.
#[derive(Debug, Clone, Default)]
pub struct AuthInterceptor;

impl AuthInterceptor {
    pub fn new() -> Self {
        Self
    }
}

impl tonic::service::Interceptor for AuthInterceptor {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let caller = request
            .extensions()
            .get::<Caller>()
            .ok_or_else(|| unauthenticated("missing bearer token"))?;
        tracing::Span::current().record("tenant_id", caller.tenant_id.as_str());
        if let Some(tenant) = request.extensions().get::<crate::propagation::CallTenant>() {
            tenant.set(&caller.tenant_id);
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

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

    /// An HS256 token with exactly `claims`.
    fn signed(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret().expose_secret().as_bytes()),
        )
        .unwrap_or_default()
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    fn headers(token: &str, act_for: Option<&str>) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        if let Ok(value) = http::HeaderValue::from_str(&bearer(token)) {
            headers.insert(http::header::AUTHORIZATION, value);
        }
        if let Some(tenant) = act_for.and_then(|t| http::HeaderValue::from_str(t).ok()) {
            headers.insert(ACT_FOR_TENANT_HEADER, tenant);
        }
        headers
    }

    #[tokio::test]
    async fn valid_token_yields_tenant_and_scopes() {
        let verifier = TokenVerifier::new(&secret()).expect("key");
        let header = bearer(&token("acme", &["disputes:read", "openid"], 60));
        let caller = verifier.verify_header(Some(&header)).await.expect("valid");
        assert_eq!(caller.tenant_id, "acme");
        assert_eq!(caller.subject, "tester");
        assert_eq!(caller.scopes(), &[Scope::DisputesRead]);
        assert!(!caller.is_delegated());
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

    #[tokio::test]
    async fn missing_malformed_expired_or_forged_tokens_are_unauthenticated() {
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
            Some(bearer(&token("acme", &["disputes:read"], -3600))),
            Some(bearer(&forged)),
            Some(bearer(&token("bad tenant!", &[], 60))),
            // No subject.
            Some(bearer(&signed(
                json!({"tenant": "acme", "scopes": [], "iat": now(), "exp": now() + 60}),
            ))),
            // No expiry.
            Some(bearer(&signed(
                json!({"sub": "x", "tenant": "acme", "iat": now()}),
            ))),
            // A tenant that is not a string.
            Some(bearer(&signed(
                json!({"sub": "x", "tenant": 7, "iat": now(), "exp": now() + 60}),
            ))),
        ];
        for case in cases {
            let err = verifier
                .verify_header(case.as_deref())
                .await
                .expect_err("must be rejected");
            assert_eq!(err.code(), Code::Unauthenticated, "{case:?}");
            assert_eq!(
                err.get_error_details()
                    .error_info()
                    .map(|info| info.reason.as_str()),
                Some("UNAUTHENTICATED")
            );
        }
    }

    #[tokio::test]
    async fn an_expired_token_says_so() {
        let verifier = TokenVerifier::new(&secret()).expect("key");
        let err = verifier
            .verify_header(Some(&bearer(&token("acme", &[], -3600))))
            .await
            .expect_err("expired");
        assert_eq!(err.message(), "token expired");
    }

    #[tokio::test]
    async fn not_before_lifetime_and_issued_at_are_checked() {
        let verifier = TokenVerifier::shared_secret(
            &secret(),
            TokenRules {
                max_lifetime_secs: 3600,
                ..TokenRules::default()
            },
        )
        .expect("key");
        let now = now();
        let base = json!({"sub": "x", "tenant": "acme", "scopes": "disputes:read"});
        let with = |extra: serde_json::Value| {
            let mut claims = base.clone();
            if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
                claims.extend(extra.clone());
            }
            bearer(&signed(claims))
        };
        let accepted = [
            with(json!({"iat": now, "exp": now + 3600})),
            // `iat` is optional with a shared secret.
            with(json!({"exp": now + 600})),
            with(json!({"iat": now, "exp": now + 60, "nbf": now - 5})),
            // Within the leeway.
            with(json!({"iat": now + 20, "exp": now + 60, "nbf": now + 20})),
        ];
        for header in accepted {
            let caller = verifier.verify_header(Some(&header)).await.expect("valid");
            assert_eq!(caller.scopes(), &[Scope::DisputesRead]);
        }
        let refused = [
            with(json!({"iat": now, "exp": now + 3601})),
            with(json!({"exp": now + 4000})),
            with(json!({"iat": now, "exp": now + 60, "nbf": now + 120})),
            with(json!({"iat": now + 120, "exp": now + 600})),
            with(json!({"iat": "yesterday", "exp": now + 600})),
        ];
        for header in refused {
            let err = verifier
                .verify_header(Some(&header))
                .await
                .expect_err("refused");
            assert_eq!(err.code(), Code::Unauthenticated);
            assert_eq!(err.message(), INVALID_TOKEN);
        }
    }

    #[tokio::test]
    async fn issuer_and_audience_are_checked_when_set() {
        let verifier = TokenVerifier::shared_secret(
            &secret(),
            TokenRules {
                issuer: Some("https://idp.example".into()),
                audience: Some("disputes".into()),
                ..TokenRules::default()
            },
        )
        .expect("key");
        let now = now();
        let claims = |iss: serde_json::Value, aud: serde_json::Value| {
            let mut claims = json!({"sub": "x", "tenant": "acme", "iat": now, "exp": now + 60});
            if let Some(map) = claims.as_object_mut() {
                if !iss.is_null() {
                    map.insert("iss".into(), iss);
                }
                if !aud.is_null() {
                    map.insert("aud".into(), aud);
                }
            }
            bearer(&signed(claims))
        };
        let ok = [
            claims(json!("https://idp.example"), json!("disputes")),
            claims(json!("https://idp.example"), json!(["other", "disputes"])),
        ];
        for header in ok {
            verifier.verify_header(Some(&header)).await.expect("valid");
        }
        let refused = [
            claims(json!("https://evil.example"), json!("disputes")),
            claims(json!("https://idp.example"), json!("other")),
            claims(json!(null), json!("disputes")),
            claims(json!("https://idp.example"), json!(null)),
        ];
        for header in refused {
            let err = verifier
                .verify_header(Some(&header))
                .await
                .expect_err("refused");
            assert_eq!(err.code(), Code::Unauthenticated);
        }
        // Without an audience configured, a token's `aud` is ignored.
        let plain = TokenVerifier::new(&secret()).expect("key");
        plain
            .verify_header(Some(&claims(json!("anyone"), json!("anything"))))
            .await
            .expect("valid");
    }

    #[tokio::test]
    async fn tenant_and_scopes_come_from_the_configured_claims() {
        let verifier = TokenVerifier::shared_secret(
            &secret(),
            TokenRules {
                tenant_claim: "/org/tenant_id".into(),
                scope_claim: "scp".into(),
                ..TokenRules::default()
            },
        )
        .expect("key");
        let now = now();
        let header = bearer(&signed(json!({
            "sub": "x", "iat": now, "exp": now + 60,
            "org": {"tenant_id": "acme"}, "scp": ["disputes:write", "offline_access"],
            "tenant": "ignored", "scopes": ["disputes:read"],
        })));
        let caller = verifier.verify_header(Some(&header)).await.expect("valid");
        assert_eq!(caller.tenant_id, "acme");
        assert_eq!(caller.scopes(), &[Scope::DisputesWrite]);
    }

    #[tokio::test]
    async fn a_background_token_acts_only_for_the_named_tenant_with_delegated_scopes() {
        let background = mint_background_token(
            &secret(),
            "dispute-core",
            &["documents:lock", "documents:read"],
            chrono::Duration::minutes(5),
        )
        .expect("token");
        let plain = TokenVerifier::new(&secret()).expect("key");
        let delegating = plain.clone().delegating(&[Scope::DocumentsLock]);

        let caller = delegating
            .verify(&headers(&background, Some("acme")))
            .await
            .expect("delegated");
        assert_eq!(caller.tenant_id, "acme");
        assert_eq!(caller.subject, "dispute-core");
        assert!(caller.is_delegated());
        // Only the delegated scopes survive.
        assert_eq!(caller.scopes(), &[Scope::DocumentsLock]);

        let refusals = [
            (&delegating, headers(&background, None)),
            (&delegating, headers(&background, Some("bad tenant"))),
            (&plain, headers(&background, Some("acme"))),
        ];
        for (verifier, headers) in refusals {
            let err = verifier.verify(&headers).await.expect_err("refused");
            assert_eq!(err.code(), Code::Unauthenticated);
        }
        let no_tenant = delegating
            .verify(&headers(&background, None))
            .await
            .expect_err("refused");
        assert_eq!(no_tenant.message(), "token names no tenant");

        // A background token without a delegated scope is refused even with the header.
        let read_only = mint_background_token(
            &secret(),
            "dispute-core",
            &["documents:read"],
            chrono::Duration::minutes(5),
        )
        .expect("token");
        assert!(
            delegating
                .verify(&headers(&read_only, Some("acme")))
                .await
                .is_err()
        );

        // A tenant's token ignores the header.
        let tenant_token = token("acme", &["documents:read"], 60);
        let caller = delegating
            .verify(&headers(&tenant_token, Some("globex")))
            .await
            .expect("valid");
        assert_eq!(caller.tenant_id, "acme");
        assert!(!caller.is_delegated());
    }

    #[test]
    fn short_keys_and_incomplete_jwks_settings_are_refused() {
        assert!(matches!(
            TokenVerifier::new(&SecretString::from("short")),
            Err(KeyError::TooShort)
        ));
        let settings = JwksSettings {
            url: "https://idp.example/jwks".into(),
            refresh: std::time::Duration::from_secs(300),
            min_refetch: std::time::Duration::from_secs(10),
            fetch_timeout: jwks::DEFAULT_FETCH_TIMEOUT,
        };
        let complete = TokenRules {
            issuer: Some("https://idp.example".into()),
            audience: Some("disputes".into()),
            ..TokenRules::default()
        };
        assert!(TokenVerifier::jwks(settings.clone(), complete.clone()).is_ok_and(|v| v.is_jwks()));
        for rules in [
            TokenRules {
                issuer: None,
                ..complete.clone()
            },
            TokenRules {
                audience: Some(String::new()),
                ..complete.clone()
            },
        ] {
            assert!(matches!(
                TokenVerifier::jwks(settings.clone(), rules),
                Err(KeyError::MissingIssuerOrAudience)
            ));
        }
        let ftp = JwksSettings {
            url: "ftp://idp.example/jwks".into(),
            ..settings
        };
        assert!(matches!(
            TokenVerifier::jwks(ftp, complete),
            Err(KeyError::InvalidJwksUrl)
        ));
    }

    #[test]
    fn background_scopes_are_known_but_not_granted_to_tenants() {
        assert_eq!(Scope::parse("documents:lock"), Some(Scope::DocumentsLock));
        assert!(!Scope::ALL.contains(&Scope::DocumentsLock));
    }

    #[test]
    fn tenant_ids_are_checked() {
        assert!(is_valid_tenant("acme-bank_1"));
        assert!(!is_valid_tenant(""));
        assert!(!is_valid_tenant("a/b"));
        assert!(!is_valid_tenant(&"a".repeat(65)));
    }
}
