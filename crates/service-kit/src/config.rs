//! Flag groups both services take, defined once: database, telemetry, resilience (call
//! limit and timeout, HTTP/2 keepalive, database timeouts, readiness probe) and server TLS.
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

use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;

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
