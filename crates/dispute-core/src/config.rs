//! Flags with environment fallbacks; defaults run on a dev box.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use service_kit::call_limit::CallLimits;
use service_kit::database::DatabaseSettings;

use crate::domain::ledger::{FeeSchedule, MoneyPolicy};

/// What the binary does besides serving (the default).
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Apply the schema migrations to the database and exit (e.g. a Kubernetes Job run
    /// before a rollout). Takes the same database flags as serving.
    Migrate,
}

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "dispute-core",
    about = "disputes.v1.DisputeService: dispute lifecycle, evidence and events"
)]
pub struct Config {
    /// Address the gRPC server listens on.
    #[arg(
        long,
        env = "DISPUTE_CORE_LISTEN_ADDR",
        default_value = "127.0.0.1:50051"
    )]
    pub listen_addr: SocketAddr,
    /// PostgreSQL URL of dispute-core's own database.
    #[arg(
        long,
        env = "DISPUTE_CORE_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/disputes",
        hide_env_values = true
    )]
    pub database_url: SecretString,
    #[arg(long, env = "DISPUTE_CORE_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,
    /// Apply the schema migrations at start-up. Turn it off when a `dispute-core migrate` Job
    /// applies them, so the service's own database role needs no DDL rights; start-up then
    /// refuses a schema that lacks one of this binary's migrations.
    #[arg(long, env = "DISPUTE_CORE_MIGRATE_ON_START", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate_on_start: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
    /// gRPC URL of document-store.
    #[arg(
        long,
        env = "DISPUTE_CORE_DOCUMENT_STORE_URL",
        default_value = "http://127.0.0.1:50052"
    )]
    pub document_store_url: String,
    /// How long in-flight calls may run after SIGTERM.
    #[arg(long, env = "DISPUTE_CORE_DRAIN_TIMEOUT_SECS", default_value_t = 20)]
    pub drain_timeout_secs: u64,
    /// How long shutdown waits, after the drain, for a background worker run (deadline
    /// sweeper, key purger) to finish; a run still going then is cut off and its
    /// transaction rolls back. preStop + drain + this must fit in the pod's grace period.
    #[arg(
        long,
        env = "DISPUTE_CORE_WORKER_STOP_TIMEOUT_SECS",
        default_value_t = 5
    )]
    pub worker_stop_timeout_secs: u64,
    /// Dispute fee charged with a merchant-side chargeback withdrawal, per currency, in each
    /// currency's minor units (JPY=2000 is two thousand yen: JPY has no decimals). A dispute
    /// in a currency not listed is charged no fee (its history says so).
    #[arg(
        long,
        env = "DISPUTE_CORE_DISPUTE_FEES",
        default_value = crate::domain::ledger::DEFAULT_DISPUTE_FEES
    )]
    pub dispute_fees: FeeSchedule,
    /// The network's arbitration fee, per currency in minor units, charged to our side when
    /// a dispute enters arbitration and refunded when the network decides it for us.
    #[arg(
        long,
        env = "DISPUTE_CORE_ARBITRATION_FEES",
        default_value = crate::domain::ledger::DEFAULT_ARBITRATION_FEES
    )]
    pub arbitration_fees: FeeSchedule,
    /// Days after the day of a balance transaction until its money is available
    /// (`available_on`, midnight UTC); PENDING until then.
    #[arg(
        long,
        env = "DISPUTE_CORE_BALANCE_SETTLEMENT_DAYS",
        default_value_t = crate::domain::ledger::DEFAULT_SETTLEMENT_DAYS
    )]
    pub balance_settlement_days: u32,
    /// Give the dispute fee back when a merchant-side dispute is won.
    #[arg(long, env = "DISPUTE_CORE_REFUND_FEE_ON_WIN", default_value_t = false, action = clap::ArgAction::Set)]
    pub refund_fee_on_win: bool,
    /// How often the deadline sweeper looks for passed deadlines.
    #[arg(long, env = "DISPUTE_CORE_SWEEP_INTERVAL_SECS", default_value_t = 30)]
    pub sweep_interval_secs: u64,
    /// StreamEvents sends a heartbeat after this long without an event.
    #[arg(
        long,
        env = "DISPUTE_CORE_EVENT_STREAM_HEARTBEAT_MS",
        default_value_t = crate::app::DEFAULT_STREAM_HEARTBEAT_MS
    )]
    pub event_stream_heartbeat_ms: u64,
    /// How long before a dispute's `due_by` the deadline sweeper records
    /// `dispute.due_soon` (once per `due_by`); 0 records none.
    #[arg(
        long,
        env = "DISPUTE_CORE_DUE_SOON_LEAD_SECS",
        default_value_t = crate::domain::deadlines::DEFAULT_DUE_SOON_LEAD_SECS
    )]
    pub due_soon_lead_secs: u64,
    /// HS256 key shared with document-store (at least 32 bytes).
    /// Required to serve; `migrate` does without.
    #[arg(
        long,
        env = "AUTH_JWT_SECRET",
        hide_env_values = true,
        default_value = ""
    )]
    pub jwt_secret: SecretString,
    /// One log line per RPC (method, status, duration, tenant; target `access`).
    #[arg(long, env = "DISPUTE_CORE_ACCESS_LOG", default_value_t = true, action = clap::ArgAction::Set)]
    pub access_log: bool,
    /// Serve the metrics for Prometheus on `http://ADDR/metrics` (e.g. 0.0.0.0:9464), for
    /// clusters without an OpenTelemetry Collector. OTLP export follows the standard
    /// `OTEL_EXPORTER_OTLP_*` variables, like the spans.
    #[arg(long, env = "DISPUTE_CORE_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub resilience: Resilience,
    #[command(flatten)]
    pub tls: Tls,
    #[command(flatten)]
    pub webhooks: WebhookFlags,
}

impl Config {
    /// Telemetry of this service as the flags ask.
    pub fn telemetry_options(&self) -> service_kit::telemetry::TelemetryOptions {
        service_kit::telemetry::TelemetryOptions {
            prometheus_addr: self.metrics_addr,
            ..service_kit::telemetry::TelemetryOptions::for_service("dispute-core")
        }
    }
}

/// Webhook delivery settings (docs/api.md, "Webhooks").
#[derive(Debug, Clone, clap::Args)]
pub struct WebhookFlags {
    /// Run this replica's delivery worker. Off: the replica serves the API and makes
    /// deliveries (in the event's transaction) but leaves sending them to the others.
    #[arg(long, env = "DISPUTE_CORE_WEBHOOK_WORKER", default_value_t = true, action = clap::ArgAction::Set)]
    pub webhook_worker: bool,
    /// Accept `http://` endpoint URLs (receivers that are internal services).
    #[arg(long, env = "DISPUTE_CORE_WEBHOOK_ALLOW_HTTP", default_value_t = false, action = clap::ArgAction::Set)]
    pub webhook_allow_http: bool,
    /// Accept and deliver to loopback, private and link-local addresses.
    #[arg(long, env = "DISPUTE_CORE_WEBHOOK_ALLOW_PRIVATE_ADDRESSES", default_value_t = false, action = clap::ArgAction::Set)]
    pub webhook_allow_private_addresses: bool,
    /// Divides every delay of the retry schedule and the disable period (tests use e.g.
    /// 1000 so that 3 days pass in minutes). 1.0 in production.
    #[arg(long, env = "DISPUTE_CORE_WEBHOOK_TIME_SCALE", default_value_t = 1.0)]
    pub webhook_time_scale: f64,
    /// Limit of one delivery attempt (connect, send, response headers).
    #[arg(
        long,
        env = "DISPUTE_CORE_WEBHOOK_ATTEMPT_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub webhook_attempt_timeout_ms: u64,
    /// How long a replica's claim on a delivery lasts; after it another replica takes it.
    /// Keep it well above the attempt timeout.
    #[arg(long, env = "DISPUTE_CORE_WEBHOOK_LEASE_MS", default_value_t = 60_000)]
    pub webhook_lease_ms: u64,
    /// How often the worker looks for due retries (new deliveries wake it at once).
    #[arg(
        long,
        env = "DISPUTE_CORE_WEBHOOK_POLL_INTERVAL_MS",
        default_value_t = 1_000
    )]
    pub webhook_poll_interval_ms: u64,
    /// An endpoint whose attempts all failed for this long is disabled (`failing`);
    /// divided by the time scale.
    #[arg(
        long,
        env = "DISPUTE_CORE_WEBHOOK_DISABLE_AFTER_SECS",
        default_value_t = 259_200
    )]
    pub webhook_disable_after_secs: u64,
    /// Delivery attempts in flight per replica.
    #[arg(long, env = "DISPUTE_CORE_WEBHOOK_CONCURRENCY", default_value_t = 16)]
    pub webhook_concurrency: usize,
}

impl Default for WebhookFlags {
    /// The same values as the flags' defaults.
    fn default() -> Self {
        Self {
            webhook_worker: true,
            webhook_allow_http: false,
            webhook_allow_private_addresses: false,
            webhook_time_scale: 1.0,
            webhook_attempt_timeout_ms: 10_000,
            webhook_lease_ms: 60_000,
            webhook_poll_interval_ms: 1_000,
            webhook_disable_after_secs: 259_200,
            webhook_concurrency: 16,
        }
    }
}

impl WebhookFlags {
    /// The worker's settings.
    pub fn settings(&self) -> crate::app::WebhookSettings {
        crate::app::WebhookSettings {
            url_policy: crate::domain::webhooks::UrlPolicy {
                allow_http: self.webhook_allow_http,
                allow_private_addresses: self.webhook_allow_private_addresses,
            },
            time_scale: self.webhook_time_scale,
            attempt_timeout: Duration::from_millis(self.webhook_attempt_timeout_ms.max(1)),
            lease: Duration::from_millis(self.webhook_lease_ms.max(1)),
            poll_interval: Duration::from_millis(self.webhook_poll_interval_ms.max(5)),
            disable_after: Duration::from_secs(self.webhook_disable_after_secs),
            concurrency: self.webhook_concurrency.max(1),
            stop_grace: Duration::from_secs(2),
        }
    }
}

/// Overload and dependency-failure settings: unary call limit and timeout, HTTP/2
/// keepalive, database timeouts and the readiness probe.
#[derive(Debug, Clone, clap::Args)]
pub struct Resilience {
    /// Unary calls allowed in flight; beyond it calls are shed at once with
    /// RESOURCE_EXHAUSTED (RetryInfo). Health and reflection are never limited.
    #[arg(long, env = "DISPUTE_CORE_MAX_CONCURRENT_CALLS", default_value_t = 64)]
    pub max_concurrent_calls: usize,
    /// Server-side limit of one unary call; past it the call answers DEADLINE_EXCEEDED.
    #[arg(long, env = "DISPUTE_CORE_CALL_TIMEOUT_MS", default_value_t = 30_000)]
    pub call_timeout_ms: u64,
    /// HTTP/2 PING interval on idle connections (0 = off).
    #[arg(
        long,
        env = "DISPUTE_CORE_HTTP2_KEEPALIVE_INTERVAL_SECS",
        default_value_t = 30
    )]
    pub http2_keepalive_interval_secs: u64,
    /// A PING not acknowledged within this closes the connection.
    #[arg(
        long,
        env = "DISPUTE_CORE_HTTP2_KEEPALIVE_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub http2_keepalive_timeout_secs: u64,
    /// How long a call waits for a pooled database connection (then UNAVAILABLE).
    #[arg(
        long,
        env = "DISPUTE_CORE_DB_ACQUIRE_TIMEOUT_MS",
        default_value_t = 5_000
    )]
    pub db_acquire_timeout_ms: u64,
    /// PostgreSQL `statement_timeout` of every pooled session (then UNAVAILABLE).
    #[arg(
        long,
        env = "DISPUTE_CORE_DB_STATEMENT_TIMEOUT_MS",
        default_value_t = 5_000
    )]
    pub db_statement_timeout_ms: u64,
    /// PostgreSQL `lock_timeout` of every pooled session (then UNAVAILABLE).
    #[arg(long, env = "DISPUTE_CORE_DB_LOCK_TIMEOUT_MS", default_value_t = 2_000)]
    pub db_lock_timeout_ms: u64,
    /// How often readiness checks the database (`select 1`); health of
    /// disputes.v1.DisputeService is NOT_SERVING while the check fails.
    #[arg(
        long,
        env = "DISPUTE_CORE_HEALTH_PROBE_INTERVAL_MS",
        default_value_t = 2_000
    )]
    pub health_probe_interval_ms: u64,
    /// A readiness check taking longer than this counts as failed.
    #[arg(
        long,
        env = "DISPUTE_CORE_HEALTH_PROBE_TIMEOUT_MS",
        default_value_t = 1_000
    )]
    pub health_probe_timeout_ms: u64,
}

impl Default for Resilience {
    /// The same values as the flags' defaults.
    fn default() -> Self {
        Self {
            max_concurrent_calls: 64,
            call_timeout_ms: 30_000,
            http2_keepalive_interval_secs: 30,
            http2_keepalive_timeout_secs: 10,
            db_acquire_timeout_ms: 5_000,
            db_statement_timeout_ms: 5_000,
            db_lock_timeout_ms: 2_000,
            health_probe_interval_ms: 2_000,
            health_probe_timeout_ms: 1_000,
        }
    }
}

impl Config {
    /// The money rules of the flags.
    pub fn money_policy(&self) -> MoneyPolicy {
        MoneyPolicy {
            dispute_fees: self.dispute_fees.clone(),
            arbitration_fees: self.arbitration_fees.clone(),
            refund_fee_on_win: self.refund_fee_on_win,
            settlement_days: self.balance_settlement_days,
        }
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }

    pub fn event_stream_heartbeat(&self) -> Duration {
        Duration::from_millis(self.event_stream_heartbeat_ms.max(10))
    }

    pub fn due_soon_lead(&self) -> Duration {
        Duration::from_secs(self.due_soon_lead_secs)
    }

    pub fn worker_stop_timeout(&self) -> Duration {
        Duration::from_secs(self.worker_stop_timeout_secs)
    }

    pub fn database_settings(&self) -> DatabaseSettings {
        DatabaseSettings::from_millis(
            self.db_max_connections,
            self.resilience.db_acquire_timeout_ms,
            self.resilience.db_statement_timeout_ms,
            self.resilience.db_lock_timeout_ms,
        )
    }
}

impl Resilience {
    pub fn call_limits(&self) -> CallLimits {
        // A stream of events lives as long as its client wants: neither counted nor timed.
        CallLimits::from_flags(
            self.max_concurrent_calls,
            self.call_timeout_ms,
            vec!["/disputes.v1.EventService/StreamEvents"],
        )
    }

    /// (interval, timeout) of HTTP/2 keepalive; `None` when the interval is 0.
    pub fn http2_keepalive(&self) -> (Option<Duration>, Option<Duration>) {
        service_kit::server::http2_keepalive(
            self.http2_keepalive_interval_secs,
            self.http2_keepalive_timeout_secs,
        )
    }

    pub fn health_probe_interval(&self) -> Duration {
        Duration::from_millis(self.health_probe_interval_ms.max(10))
    }

    pub fn health_probe_timeout(&self) -> Duration {
        Duration::from_millis(self.health_probe_timeout_ms.max(10))
    }
}

/// TLS of the gRPC server and of the channel to document-store. Without a
/// certificate and key the server speaks plaintext HTTP/2 (behind a mesh or on loopback).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Tls {
    /// PEM certificate chain of the gRPC server; with `--tls-key-file` it serves TLS only.
    #[arg(long, env = "DISPUTE_CORE_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of the gRPC server.
    #[arg(long, env = "DISPUTE_CORE_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA bundle trusted, besides the system roots, when `--document-store-url` is
    /// https:// (e.g. the cluster's private CA).
    #[arg(long, env = "DISPUTE_CORE_DOCUMENT_STORE_CA_FILE")]
    pub document_store_ca_file: Option<PathBuf>,
}

impl Tls {
    /// The server's TLS configuration, `None` for plaintext.
    pub fn server_config(&self) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
        service_kit::tls::server_config(self.tls_cert_file.as_deref(), self.tls_key_file.as_deref())
    }

    /// The CA bundle for the channel to document-store, if one is set.
    pub fn document_store_ca(&self) -> Option<&Path> {
        self.document_store_ca_file.as_deref()
    }
}
