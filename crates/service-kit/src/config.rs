//! Flag groups both services take, defined once: database, telemetry, resilience (call
//! limit and timeout, HTTP/2 keepalive, database timeouts, readiness probe), server TLS and
//! token verification ([`AuthFlags`]).
//!
//! A service flattens each group into its `clap::Parser` with `#[command(flatten)]`. The
//! groups are generic over the service ([`ServiceFlags`]): it spells their environment
//! variables (`DISPUTE_CORE_…`, `DOCUMENT_STORE_…`) and the few help texts that differ
//! between services. Flag names, defaults and help are the same as when each service
//! declared them itself.

use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;

use crate::auth::jwks::{DEFAULT_FETCH_TIMEOUT, JwksSettings};
use crate::auth::{self, TokenRules, TokenVerifier};
use crate::call_limit::CallLimits;
use crate::database::{self, DatabaseProbe, DatabaseSettings};
use crate::telemetry::TelemetryOptions;

/// What the flag groups need to know of the service that takes them; implemented by a
/// marker type of each service.
pub trait ServiceFlags {
    /// The binary, e.g. `dispute-core`: the telemetry service name, named in help texts.
    const NAME: &'static str;
    /// Prefix of the service's environment variables, e.g. `DISPUTE_CORE_`.
    const ENV_PREFIX: &'static str;
    /// The database of the default `--database-url`, e.g. `disputes`.
    const DATABASE_NAME: &'static str;
    /// Help of `--max-concurrent-calls`: which calls the limit leaves out.
    const MAX_CONCURRENT_CALLS_HELP: &'static str;
    /// Help of `--call-timeout-ms`.
    const CALL_TIMEOUT_HELP: &'static str =
        "Server-side limit of one unary call; past it the call answers DEADLINE_EXCEEDED";
    /// Help of `--health-probe-interval-ms`: what readiness checks.
    const HEALTH_PROBE_INTERVAL_HELP: &'static str;
}

/// The service a flag group belongs to; the logged configuration shows its name.
#[derive(Clone, Copy)]
pub struct ServiceOf<S>(PhantomData<S>);

impl<S> Default for ServiceOf<S> {
    fn default() -> Self {
        ServiceOf(PhantomData)
    }
}

impl<S: ServiceFlags> fmt::Debug for ServiceOf<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(S::NAME)
    }
}

/// The environment variable of flag `name` (its upper-case name) in service `S`.
fn env_var<S: ServiceFlags>(name: &str) -> String {
    format!("{}{name}", S::ENV_PREFIX)
}

/// The service's own PostgreSQL database and how its schema is applied.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseFlags<S: ServiceFlags> {
    #[arg(
        long,
        env = env_var::<S>("DATABASE_URL"),
        default_value = format!("postgres://postgres@127.0.0.1:5432/{}", S::DATABASE_NAME),
        hide_env_values = true,
        help = format!("PostgreSQL URL of {}'s own database", S::NAME)
    )]
    pub database_url: SecretString,
    #[arg(long, env = env_var::<S>("DB_MAX_CONNECTIONS"), default_value_t = 10)]
    pub db_max_connections: u32,
    #[arg(
        long,
        env = env_var::<S>("MIGRATE_ON_START"),
        default_value_t = true,
        action = clap::ArgAction::Set,
        help = format!(
            "Apply the schema migrations at start-up. Turn it off when a `{} migrate` Job \
             applies them, so the service's own database role needs no DDL rights; start-up \
             then refuses a schema that lacks one of this binary's migrations",
            S::NAME
        )
    )]
    pub migrate_on_start: bool,
    #[arg(skip)]
    pub service: ServiceOf<S>,
}

impl<S: ServiceFlags> DatabaseFlags<S> {
    /// `<service> migrate`: brings the schema up to date ([`database::migrate`]).
    pub async fn migrate(
        &self,
        settings: &DatabaseSettings,
        migrations: &sqlx::migrate::Migrator,
    ) -> anyhow::Result<()> {
        database::migrate(
            self.database_url.expose_secret(),
            settings,
            &format!("{}-migrate", S::NAME),
            migrations,
        )
        .await
    }

    /// The serving pool ([`database::connect_for_serving`]): migrated first unless
    /// `--migrate-on-start` is off.
    pub async fn connect_for_serving(
        &self,
        settings: &DatabaseSettings,
        migrations: &sqlx::migrate::Migrator,
    ) -> anyhow::Result<PgPool> {
        database::connect_for_serving(
            self.database_url.expose_secret(),
            settings,
            S::NAME,
            migrations,
            self.migrate_on_start,
        )
        .await
    }

    /// The readiness check's own connection ([`DatabaseProbe`]).
    pub fn readiness_probe(
        &self,
        settings: &DatabaseSettings,
    ) -> anyhow::Result<Arc<DatabaseProbe>> {
        DatabaseProbe::new(
            self.database_url.expose_secret(),
            settings,
            &format!("{}-readiness", S::NAME),
        )
    }
}

/// Logs and metrics besides the OTLP export (which follows `OTEL_EXPORTER_OTLP_*`).
#[derive(Debug, Clone, clap::Args)]
pub struct TelemetryFlags<S: ServiceFlags> {
    /// One log line per RPC (method, status, duration, tenant; target `access`).
    #[arg(long, env = env_var::<S>("ACCESS_LOG"), default_value_t = true, action = clap::ArgAction::Set)]
    pub access_log: bool,
    /// Serve the metrics for Prometheus on `http://ADDR/metrics` (e.g. 0.0.0.0:9464), for
    /// clusters without an OpenTelemetry Collector. OTLP export follows the standard
    /// `OTEL_EXPORTER_OTLP_*` variables, like the spans.
    #[arg(long, env = env_var::<S>("METRICS_ADDR"))]
    pub metrics_addr: Option<SocketAddr>,
    #[arg(skip)]
    pub service: ServiceOf<S>,
}

impl<S: ServiceFlags> Default for TelemetryFlags<S> {
    /// The same values as the flags' defaults.
    fn default() -> Self {
        Self {
            access_log: true,
            metrics_addr: None,
            service: ServiceOf::default(),
        }
    }
}

impl<S: ServiceFlags> TelemetryFlags<S> {
    /// Telemetry of the service as the flags ask.
    pub fn telemetry_options(&self) -> TelemetryOptions {
        TelemetryOptions {
            prometheus_addr: self.metrics_addr,
            ..TelemetryOptions::for_service(S::NAME)
        }
    }
}

/// A count flag of at least 1.
fn positive_count(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(count) => Ok(count),
        Err(error) => Err(error.to_string()),
    }
}

/// Overload and dependency-failure settings: unary call limit and timeout, HTTP/2
/// keepalive, database timeouts and the readiness probe.
#[derive(Debug, Clone, clap::Args)]
pub struct ResilienceFlags<S: ServiceFlags> {
    #[arg(
        long,
        env = env_var::<S>("MAX_CONCURRENT_CALLS"),
        default_value_t = 64,
        help = S::MAX_CONCURRENT_CALLS_HELP
    )]
    pub max_concurrent_calls: usize,
    /// Most unary calls one tenant may have in flight (at least 1, at most
    /// --max-concurrent-calls, its default). Whatever it is, a tenant within its fair share
    /// (the limit divided by the tenants with calls in flight) is admitted while another
    /// floods; beyond it calls answer RESOURCE_EXHAUSTED (TENANT_OVER_SHARE).
    #[arg(
        long,
        env = env_var::<S>("MAX_CONCURRENT_CALLS_PER_TENANT"),
        value_parser = positive_count
    )]
    pub max_concurrent_calls_per_tenant: Option<usize>,
    #[arg(
        long,
        env = env_var::<S>("CALL_TIMEOUT_MS"),
        default_value_t = 30_000,
        help = S::CALL_TIMEOUT_HELP
    )]
    pub call_timeout_ms: u64,
    /// HTTP/2 PING interval on idle connections (0 = off).
    #[arg(long, env = env_var::<S>("HTTP2_KEEPALIVE_INTERVAL_SECS"), default_value_t = 30)]
    pub http2_keepalive_interval_secs: u64,
    /// A PING not acknowledged within this closes the connection.
    #[arg(long, env = env_var::<S>("HTTP2_KEEPALIVE_TIMEOUT_SECS"), default_value_t = 10)]
    pub http2_keepalive_timeout_secs: u64,
    /// How long a call waits for a pooled database connection (then UNAVAILABLE).
    #[arg(long, env = env_var::<S>("DB_ACQUIRE_TIMEOUT_MS"), default_value_t = 5_000)]
    pub db_acquire_timeout_ms: u64,
    /// PostgreSQL `statement_timeout` of every pooled session (then UNAVAILABLE).
    #[arg(long, env = env_var::<S>("DB_STATEMENT_TIMEOUT_MS"), default_value_t = 5_000)]
    pub db_statement_timeout_ms: u64,
    /// PostgreSQL `lock_timeout` of every pooled session (then UNAVAILABLE).
    #[arg(long, env = env_var::<S>("DB_LOCK_TIMEOUT_MS"), default_value_t = 2_000)]
    pub db_lock_timeout_ms: u64,
    /// PostgreSQL `idle_in_transaction_session_timeout` of every pooled session: a session
    /// idle inside a transaction this long (a frozen or partitioned replica) is ended and
    /// its locks released (0 = off).
    #[arg(
        long,
        env = env_var::<S>("DB_IDLE_IN_TRANSACTION_TIMEOUT_MS"),
        default_value_t = 10_000
    )]
    pub db_idle_in_transaction_timeout_ms: u64,
    #[arg(
        long,
        env = env_var::<S>("HEALTH_PROBE_INTERVAL_MS"),
        default_value_t = 2_000,
        help = S::HEALTH_PROBE_INTERVAL_HELP
    )]
    pub health_probe_interval_ms: u64,
    /// A readiness check taking longer than this counts as failed.
    #[arg(long, env = env_var::<S>("HEALTH_PROBE_TIMEOUT_MS"), default_value_t = 1_000)]
    pub health_probe_timeout_ms: u64,
    #[arg(skip)]
    pub service: ServiceOf<S>,
}

impl<S: ServiceFlags> Default for ResilienceFlags<S> {
    /// The same values as the flags' defaults.
    fn default() -> Self {
        Self {
            max_concurrent_calls: 64,
            max_concurrent_calls_per_tenant: None,
            call_timeout_ms: 30_000,
            http2_keepalive_interval_secs: 30,
            http2_keepalive_timeout_secs: 10,
            db_acquire_timeout_ms: 5_000,
            db_statement_timeout_ms: 5_000,
            db_lock_timeout_ms: 2_000,
            db_idle_in_transaction_timeout_ms: 10_000,
            health_probe_interval_ms: 2_000,
            health_probe_timeout_ms: 1_000,
            service: ServiceOf::default(),
        }
    }
}

impl<S: ServiceFlags> ResilienceFlags<S> {
    /// The unary call limit and timeout; `exempt_methods` (full paths, e.g. streams) are
    /// neither counted nor timed.
    pub fn call_limits(&self, exempt_methods: Vec<&'static str>) -> CallLimits {
        CallLimits {
            max_concurrent_calls_per_tenant: self.max_concurrent_calls_per_tenant,
            ..CallLimits::from_flags(
                self.max_concurrent_calls,
                self.call_timeout_ms,
                exempt_methods,
            )
        }
    }

    /// (interval, timeout) of HTTP/2 keepalive; `None` when the interval is 0.
    pub fn http2_keepalive(&self) -> (Option<Duration>, Option<Duration>) {
        crate::server::http2_keepalive(
            self.http2_keepalive_interval_secs,
            self.http2_keepalive_timeout_secs,
        )
    }

    /// The pool of `database` with these timeouts.
    pub fn database_settings(&self, database: &DatabaseFlags<S>) -> DatabaseSettings {
        DatabaseSettings::from_millis(
            database.db_max_connections,
            self.db_acquire_timeout_ms,
            self.db_statement_timeout_ms,
            self.db_lock_timeout_ms,
            self.db_idle_in_transaction_timeout_ms,
        )
    }

    pub fn health_probe_interval(&self) -> Duration {
        Duration::from_millis(self.health_probe_interval_ms.max(10))
    }

    pub fn health_probe_timeout(&self) -> Duration {
        Duration::from_millis(self.health_probe_timeout_ms.max(10))
    }
}

/// TLS of the gRPC server. Without a certificate and key the server speaks plaintext
/// HTTP/2 (behind a mesh or on loopback).
#[derive(Debug, Clone, clap::Args)]
pub struct TlsFlags<S: ServiceFlags> {
    /// PEM certificate chain of the gRPC server; with `--tls-key-file` it serves TLS only.
    #[arg(long, env = env_var::<S>("TLS_CERT_FILE"))]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of the gRPC server.
    #[arg(long, env = env_var::<S>("TLS_KEY_FILE"))]
    pub tls_key_file: Option<PathBuf>,
    #[arg(skip)]
    pub service: ServiceOf<S>,
}

impl<S: ServiceFlags> Default for TlsFlags<S> {
    fn default() -> Self {
        Self {
            tls_cert_file: None,
            tls_key_file: None,
            service: ServiceOf::default(),
        }
    }
}

impl<S: ServiceFlags> TlsFlags<S> {
    /// The server's TLS configuration, `None` for plaintext.
    pub fn server_config(&self) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
        crate::tls::server_config(self.tls_cert_file.as_deref(), self.tls_key_file.as_deref())
    }
}

/// How both services verify bearer tokens: exactly one of an identity provider's JWKS
/// (production) or a shared HS256 secret (local development). The environment variables
/// carry no service prefix: both services read the same ones.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthFlags {
    /// HS256 key shared by both services (at least 32 bytes): LOCAL DEVELOPMENT ONLY.
    /// Exactly one of this and --jwks-url is required to serve; `migrate` does without.
    #[arg(long, env = "AUTH_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<SecretString>,
    /// JWKS URL of the identity provider (e.g. Keycloak's
    /// `…/realms/<realm>/protocol/openid-connect/certs`); RS256, ES256 and EdDSA tokens are
    /// verified with its keys. Requires --jwt-issuer and --jwt-audience.
    #[arg(long, env = "AUTH_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// `iss` every token must carry (required with --jwks-url; checked when set).
    #[arg(long, env = "AUTH_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// A value the token's `aud` must contain (required with --jwks-url; checked when set).
    #[arg(long, env = "AUTH_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Claim naming the tenant: a top-level claim taken literally (e.g.
    /// `https://example.com/tenant`), or a JSON Pointer when it starts with `/` (e.g.
    /// `/org/tenant_id`).
    #[arg(long, env = "AUTH_JWT_TENANT_CLAIM", default_value = auth::DEFAULT_TENANT_CLAIM)]
    pub jwt_tenant_claim: String,
    /// Claim naming the scopes (an array of strings or one space-separated string), e.g.
    /// `scope`, `scp` or `permissions`; named like --jwt-tenant-claim.
    #[arg(long, env = "AUTH_JWT_SCOPE_CLAIM", default_value = auth::DEFAULT_SCOPE_CLAIM)]
    pub jwt_scope_claim: String,
    /// Longest accepted token lifetime (`exp - iat`), in seconds.
    #[arg(long, env = "AUTH_JWT_MAX_LIFETIME_SECS", default_value_t = auth::DEFAULT_MAX_LIFETIME_SECS)]
    pub jwt_max_lifetime_secs: u64,
    /// Clock skew allowed for `exp`, `nbf` and `iat`, in seconds.
    #[arg(long, env = "AUTH_JWT_LEEWAY_SECS", default_value_t = auth::DEFAULT_LEEWAY_SECS)]
    pub jwt_leeway_secs: u64,
    /// Signing keys older than this are fetched again, in seconds.
    #[arg(long, env = "AUTH_JWKS_REFRESH_SECS", default_value_t = 300)]
    pub jwks_refresh_secs: u64,
    /// At most one JWKS fetch for an unknown `kid` (or after a failed fetch) per this many
    /// milliseconds.
    #[arg(long, env = "AUTH_JWKS_MIN_REFETCH_MS", default_value_t = 10_000)]
    pub jwks_min_refetch_ms: u64,
}

impl Default for AuthFlags {
    /// The flags' defaults: no secret and no JWKS (enough for `migrate`, not to serve).
    fn default() -> Self {
        Self {
            jwt_secret: None,
            jwks_url: None,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_tenant_claim: auth::DEFAULT_TENANT_CLAIM.to_owned(),
            jwt_scope_claim: auth::DEFAULT_SCOPE_CLAIM.to_owned(),
            jwt_max_lifetime_secs: auth::DEFAULT_MAX_LIFETIME_SECS,
            jwt_leeway_secs: auth::DEFAULT_LEEWAY_SECS,
            jwks_refresh_secs: 300,
            jwks_min_refetch_ms: 10_000,
        }
    }
}

impl AuthFlags {
    /// HS256 with `secret` and otherwise the defaults (development and tests).
    pub fn shared_secret(secret: SecretString) -> Self {
        Self {
            jwt_secret: Some(secret),
            ..Self::default()
        }
    }

    /// The shared secret in HS256 (development) mode; `None` with a JWKS.
    pub fn dev_secret(&self) -> Option<&SecretString> {
        self.jwt_secret
            .as_ref()
            .filter(|secret| !secret.expose_secret().is_empty())
    }

    fn jwks_url(&self) -> Option<&str> {
        self.jwks_url.as_deref().filter(|url| !url.is_empty())
    }

    fn rules(&self) -> TokenRules {
        let set = |value: &Option<String>| value.clone().filter(|v| !v.is_empty());
        TokenRules {
            issuer: set(&self.jwt_issuer),
            audience: set(&self.jwt_audience),
            tenant_claim: self.jwt_tenant_claim.clone(),
            scope_claim: self.jwt_scope_claim.clone(),
            leeway_secs: self.jwt_leeway_secs,
            max_lifetime_secs: self.jwt_max_lifetime_secs.max(1),
        }
    }

    /// The token verifier the flags describe. Refused: neither or both of a secret and a
    /// JWKS URL, a JWKS without issuer or audience, a short secret. The shared-secret mode
    /// warns that it is for local development.
    pub fn verifier(&self) -> anyhow::Result<TokenVerifier> {
        match (self.dev_secret(), self.jwks_url()) {
            (None, None) => anyhow::bail!(
                "no token verification configured: set AUTH_JWKS_URL (with AUTH_JWT_ISSUER and \
                 AUTH_JWT_AUDIENCE) or, for local development, AUTH_JWT_SECRET"
            ),
            (Some(_), Some(_)) => anyhow::bail!(
                "AUTH_JWT_SECRET and AUTH_JWKS_URL are both set; configure exactly one"
            ),
            (Some(secret), None) => {
                let verifier = TokenVerifier::shared_secret(secret, self.rules())
                    .context("AUTH_JWT_SECRET")?;
                tracing::warn!(
                    "tokens are verified with the shared HS256 secret AUTH_JWT_SECRET: for local \
                     development only; in production set AUTH_JWKS_URL to the identity \
                     provider's keys"
                );
                Ok(verifier)
            }
            (None, Some(url)) => {
                let settings = JwksSettings {
                    url: url.to_owned(),
                    refresh: Duration::from_secs(self.jwks_refresh_secs.max(1)),
                    min_refetch: Duration::from_millis(self.jwks_min_refetch_ms),
                    fetch_timeout: DEFAULT_FETCH_TIMEOUT,
                };
                let verifier = TokenVerifier::jwks(settings, self.rules())
                    .context("AUTH_JWKS_URL needs AUTH_JWT_ISSUER and AUTH_JWT_AUDIENCE")?;
                tracing::info!(jwks_url = %url, "tokens are verified with the identity provider's keys");
                Ok(verifier)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        auth: AuthFlags,
    }

    fn parse(args: &[&str]) -> AuthFlags {
        let mut argv = vec!["service"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("flags").auth
    }

    const SECRET: &str = "a-test-secret-that-is-long-enough-0123456789";

    #[test]
    fn exactly_one_mode_is_required() {
        assert!(parse(&[]).verifier().is_err());
        assert!(
            parse(&[
                "--jwt-secret",
                SECRET,
                "--jwks-url",
                "https://idp.example/jwks",
                "--jwt-issuer",
                "i",
                "--jwt-audience",
                "a",
            ])
            .verifier()
            .is_err()
        );
        let dev = parse(&["--jwt-secret", SECRET]);
        assert!(dev.verifier().is_ok_and(|v| !v.is_jwks()));
        assert!(dev.dev_secret().is_some());
        assert!(parse(&["--jwt-secret", "short"]).verifier().is_err());
    }

    #[test]
    fn a_jwks_needs_issuer_and_audience() {
        let jwks = ["--jwks-url", "https://idp.example/jwks"];
        assert!(parse(&jwks).verifier().is_err());
        assert!(
            parse(&[jwks[0], jwks[1], "--jwt-issuer", "https://idp.example"])
                .verifier()
                .is_err()
        );
        let complete = parse(&[
            jwks[0],
            jwks[1],
            "--jwt-issuer",
            "https://idp.example",
            "--jwt-audience",
            "disputes",
            "--jwt-scope-claim",
            "scp",
        ]);
        assert!(complete.verifier().is_ok_and(|v| v.is_jwks()));
        assert!(complete.dev_secret().is_none());
        assert_eq!(complete.jwt_scope_claim, "scp");
    }

    #[test]
    fn the_defaults_match_the_flags() {
        let parsed = parse(&[]);
        let default = AuthFlags::default();
        assert_eq!(parsed.jwt_tenant_claim, default.jwt_tenant_claim);
        assert_eq!(parsed.jwt_scope_claim, default.jwt_scope_claim);
        assert_eq!(parsed.jwt_max_lifetime_secs, default.jwt_max_lifetime_secs);
        assert_eq!(parsed.jwt_leeway_secs, default.jwt_leeway_secs);
        assert_eq!(parsed.jwks_refresh_secs, default.jwks_refresh_secs);
        assert_eq!(parsed.jwks_min_refetch_ms, default.jwks_min_refetch_ms);
    }
}
