//! Flags with environment fallbacks; defaults run on a dev box.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use service_kit::call_limit::CallLimits;
use service_kit::config::{
    AuthFlags, DatabaseFlags, ResilienceFlags, ServiceFlags, TelemetryFlags, TlsFlags,
};
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
    #[command(flatten)]
    pub database: DatabaseFlags<DisputeCore>,
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
    /// sweeper, retention purger) to finish; a run still going then is cut off and its
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
    /// Token verification (JWKS or, for development, a shared secret); required to serve,
    /// `migrate` does without.
    #[command(flatten)]
    pub auth: AuthFlags,
    /// File holding dispute-core's own token for background work (releasing the document
    /// locks of submissions that did not happen): a token of the identity provider that
    /// names no tenant and grants `documents:lock`, kept fresh by the platform (read at each
    /// use). Without it, in development (HS256) dispute-core mints one with the development
    /// key; with a JWKS provider, stale locks are then not released (a warning says so).
    #[arg(long, env = "DISPUTE_CORE_BACKGROUND_TOKEN_FILE")]
    pub background_token_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub telemetry: TelemetryFlags<DisputeCore>,
    #[command(flatten)]
    pub resilience: Resilience,
    #[command(flatten)]
    pub tls: Tls,
    #[command(flatten)]
    pub webhooks: WebhookFlags,
    #[command(flatten)]
    pub event_streams: EventStreamFlags,
    #[command(flatten)]
    pub retention: RetentionFlags,
}

/// dispute-core in the flag groups of the kit: `DISPUTE_CORE_…` variables.
#[derive(Debug, Clone, Copy, Default)]
pub struct DisputeCore;

impl ServiceFlags for DisputeCore {
    const NAME: &'static str = "dispute-core";
    const ENV_PREFIX: &'static str = "DISPUTE_CORE_";
    const DATABASE_NAME: &'static str = "disputes";
    const MAX_CONCURRENT_CALLS_HELP: &'static str = "Unary calls allowed in flight; beyond it \
        calls are shed at once with RESOURCE_EXHAUSTED (RetryInfo). Health and reflection are \
        never limited";
    const HEALTH_PROBE_INTERVAL_HELP: &'static str = "How often readiness checks the database \
        (`select 1`); health of disputes.v1.DisputeService is NOT_SERVING while the check fails";
}

/// Overload and dependency-failure settings: unary call limit and timeout, HTTP/2
/// keepalive, database timeouts and the readiness probe.
pub type Resilience = ResilienceFlags<DisputeCore>;

/// Streams outside the unary call limit and timeout: a stream of events lives as long as
/// its client wants.
const STREAMING_METHODS: [&str; 1] = ["/disputes.v1.EventService/StreamEvents"];

impl Config {
    /// Telemetry of this service as the flags ask.
    pub fn telemetry_options(&self) -> service_kit::telemetry::TelemetryOptions {
        self.telemetry.telemetry_options()
    }

    /// The unary call limit and timeout.
    pub fn call_limits(&self) -> CallLimits {
        self.resilience.call_limits(STREAMING_METHODS.to_vec())
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
    /// Accept and deliver to every special-purpose address (loopback, private, link-local,
    /// CGNAT, NAT64 and the other IANA special-purpose ranges), for tests and development.
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
    /// Attempts in flight per endpoint, counted across replicas (one while its breaker is
    /// half-open): a slow endpoint holds at most this many slots.
    #[arg(
        long,
        env = "DISPUTE_CORE_WEBHOOK_ENDPOINT_CONCURRENCY",
        default_value_t = 16,
        value_parser = clap::value_parser!(u32).range(1..=1_000)
    )]
    pub webhook_endpoint_concurrency: u32,
    /// Attempts in flight per tenant on one replica; unset: half of
    /// `--webhook-concurrency` (at least 1). A value above `--webhook-concurrency` counts
    /// as it.
    #[arg(
        long,
        env = "DISPUTE_CORE_WEBHOOK_TENANT_CONCURRENCY",
        value_parser = clap::value_parser!(u32).range(1..=10_000)
    )]
    pub webhook_tenant_concurrency: Option<u32>,
    /// Failed attempts in a row (no answer, 5xx, 429) that open an endpoint's breaker.
    #[arg(
        long,
        env = "DISPUTE_CORE_WEBHOOK_BREAKER_THRESHOLD",
        default_value_t = crate::domain::webhooks::DEFAULT_BREAKER_THRESHOLD,
        value_parser = clap::value_parser!(u32).range(1..=1_000)
    )]
    pub webhook_breaker_threshold: u32,
    /// How long a breaker's first opening lasts (doubled at each opening in a row); divided
    /// by the time scale.
    #[arg(
        long,
        env = "DISPUTE_CORE_WEBHOOK_BREAKER_BACKOFF_MS",
        default_value_t = crate::domain::webhooks::DEFAULT_BREAKER_BACKOFF_MS,
        value_parser = clap::value_parser!(u64).range(1..=86_400_000)
    )]
    pub webhook_breaker_backoff_ms: u64,
    /// The longest a breaker stays open before its next probe (at least the first
    /// opening); divided by the time scale.
    #[arg(
        long,
        env = "DISPUTE_CORE_WEBHOOK_BREAKER_MAX_BACKOFF_MS",
        default_value_t = crate::domain::webhooks::DEFAULT_BREAKER_MAX_BACKOFF_MS,
        value_parser = clap::value_parser!(u64).range(1..=86_400_000)
    )]
    pub webhook_breaker_max_backoff_ms: u64,
    /// Webhook endpoints a tenant may have (deleted ones do not count); one more is
    /// RESOURCE_EXHAUSTED (`WEBHOOK_ENDPOINT_LIMIT`).
    #[arg(
        long,
        env = "DISPUTE_CORE_WEBHOOK_MAX_ENDPOINTS_PER_TENANT",
        default_value_t = crate::domain::webhooks::DEFAULT_MAX_ENDPOINTS_PER_TENANT,
        value_parser = clap::value_parser!(u32).range(1..=1_000)
    )]
    pub webhook_max_endpoints_per_tenant: u32,
    /// Keys that encrypt webhook signing secrets at rest (AES-256-GCM): comma-separated
    /// `key_id:base64 of 32 bytes` (make one with `openssl rand -base64 32`). The first
    /// encrypts; the others only decrypt, so a key can be rotated: put the new key first,
    /// keep the old one after it until every replica restarted (each start reseals the
    /// secrets under the first key), then drop it. Required to serve; `migrate` does
    /// without.
    #[arg(
        long,
        env = "DISPUTE_CORE_WEBHOOK_SECRET_KEYS",
        hide_env_values = true,
        hide_default_value = true,
        default_value = "",
        value_parser = SecretKeysParser
    )]
    pub webhook_secret_keys: crate::domain::webhooks::SecretKeyring,
}

/// Parses `--webhook-secret-keys` without echoing the value: clap's own errors quote it,
/// and it is key material.
#[derive(Debug, Clone, Copy)]
struct SecretKeysParser;

impl clap::builder::TypedValueParser for SecretKeysParser {
    type Value = crate::domain::webhooks::SecretKeyring;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Self::Value, clap::Error> {
        let refuse = |kind, why: String| {
            clap::Error::raw(kind, format!("invalid --webhook-secret-keys: {why}\n")).with_cmd(cmd)
        };
        let text = value
            .to_str()
            .ok_or_else(|| refuse(clap::error::ErrorKind::InvalidUtf8, "not UTF-8".to_owned()))?;
        text.parse()
            .map_err(|error| refuse(clap::error::ErrorKind::ValueValidation, format!("{error}")))
    }
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
            webhook_endpoint_concurrency: 16,
            webhook_tenant_concurrency: None,
            webhook_breaker_threshold: crate::domain::webhooks::DEFAULT_BREAKER_THRESHOLD,
            webhook_breaker_backoff_ms: crate::domain::webhooks::DEFAULT_BREAKER_BACKOFF_MS,
            webhook_breaker_max_backoff_ms: crate::domain::webhooks::DEFAULT_BREAKER_MAX_BACKOFF_MS,
            webhook_max_endpoints_per_tenant:
                crate::domain::webhooks::DEFAULT_MAX_ENDPOINTS_PER_TENANT,
            webhook_secret_keys: Default::default(),
        }
    }
}

impl WebhookFlags {
    /// The worker's settings.
    pub fn settings(&self) -> crate::app::WebhookSettings {
        let concurrency = self.webhook_concurrency.max(1);
        let tenant_concurrency = match self.webhook_tenant_concurrency {
            Some(cap) => usize::try_from(cap).unwrap_or(concurrency),
            None => concurrency / 2,
        }
        .clamp(1, concurrency);
        let base_backoff = Duration::from_millis(self.webhook_breaker_backoff_ms.max(1));
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
            concurrency,
            endpoint_concurrency: usize::try_from(self.webhook_endpoint_concurrency.max(1))
                .unwrap_or(1),
            tenant_concurrency,
            breaker: crate::domain::webhooks::BreakerPolicy {
                threshold: self.webhook_breaker_threshold.max(1),
                base_backoff,
                max_backoff: Duration::from_millis(self.webhook_breaker_max_backoff_ms)
                    .max(base_backoff),
            },
            max_endpoints_per_tenant: self.webhook_max_endpoints_per_tenant.max(1),
            stop_grace: Duration::from_secs(2),
            secret_keys: self.webhook_secret_keys.clone(),
        }
    }
}

/// StreamEvents admission and buffering (docs/api.md, "Limits"), and how recorded events
/// are picked up.
#[derive(Debug, Clone, clap::Args)]
pub struct EventStreamFlags {
    /// StreamEvents streams open in this process; beyond it a new stream is refused with
    /// RESOURCE_EXHAUSTED (RetryInfo, reason EVENT_STREAMS_PER_PROCESS).
    #[arg(long, env = "DISPUTE_CORE_MAX_EVENT_STREAMS", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_event_streams: u32,
    /// StreamEvents streams one tenant may have open in this process; beyond it a new
    /// stream is refused with RESOURCE_EXHAUSTED (RetryInfo, reason EVENT_STREAMS_PER_TENANT).
    #[arg(long, env = "DISPUTE_CORE_MAX_EVENT_STREAMS_PER_TENANT", default_value_t = 128,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_event_streams_per_tenant: u32,
    /// Bytes one stream may buffer for its client, counted on the events' encoded size; an
    /// event larger than this is still sent, alone.
    #[arg(long, env = "DISPUTE_CORE_EVENT_STREAM_BUFFER_BYTES", default_value_t = 1 << 20,
          value_parser = clap::value_parser!(u32).range(4096..=(64 << 20)))]
    pub event_stream_buffer_bytes: u32,
    /// Bytes all streams of this process may buffer together; a stream waits for room.
    #[arg(long, env = "DISPUTE_CORE_EVENT_STREAM_PROCESS_BUFFER_BYTES", default_value_t = 256 << 20,
          value_parser = clap::value_parser!(u32).range(4096..=(2048 << 20)))]
    pub event_stream_process_buffer_bytes: u32,
    /// A stream whose client takes nothing of what is buffered for this long is ended with
    /// ABORTED (reason SLOW_CONSUMER) naming the last event delivered.
    #[arg(long, env = "DISPUTE_CORE_EVENT_STREAM_SLOW_CONSUMER_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(10..))]
    pub event_stream_slow_consumer_ms: u64,
    /// Catch-up reads of all streams at once: the pooled connections streams may hold
    /// together. Must be below --db-max-connections, so unary calls keep the rest.
    #[arg(long, env = "DISPUTE_CORE_EVENT_STREAM_READS", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub event_stream_reads: u32,
    /// How often the sequencer looks for events committed by other replicas (this
    /// replica's own commits wake it at once). Bounds the StreamEvents latency of events
    /// written through another replica.
    #[arg(long, env = "DISPUTE_CORE_EVENT_POLL_MS", default_value_t = crate::app::events::DEFAULT_EVENT_POLL_MS,
          value_parser = clap::value_parser!(u64).range(5..=60_000))]
    pub event_poll_ms: u64,
    /// Benchmarks only: off, mutations record no events and no webhook deliveries.
    #[arg(long, env = "DISPUTE_CORE_RECORD_EVENTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub record_events: bool,
}

impl Default for EventStreamFlags {
    /// The same values as the flags' defaults.
    fn default() -> Self {
        Self {
            max_event_streams: 4096,
            max_event_streams_per_tenant: 128,
            event_stream_buffer_bytes: 1 << 20,
            event_stream_process_buffer_bytes: 256 << 20,
            event_stream_slow_consumer_ms: 30_000,
            event_stream_reads: 2,
            event_poll_ms: crate::app::events::DEFAULT_EVENT_POLL_MS,
            record_events: true,
        }
    }
}

impl EventStreamFlags {
    /// The limits of the flags, checked against each other and against the pool of
    /// `db_max_connections`.
    pub fn settings(
        &self,
        db_max_connections: u32,
    ) -> anyhow::Result<crate::app::events::StreamLimitSettings> {
        anyhow::ensure!(
            self.event_stream_reads < db_max_connections,
            "--event-stream-reads ({}) must be below --db-max-connections ({db_max_connections})",
            self.event_stream_reads
        );
        anyhow::ensure!(
            self.event_stream_process_buffer_bytes >= self.event_stream_buffer_bytes,
            "--event-stream-process-buffer-bytes must be at least --event-stream-buffer-bytes"
        );
        anyhow::ensure!(
            self.max_event_streams_per_tenant <= self.max_event_streams,
            "--max-event-streams-per-tenant must be at most --max-event-streams"
        );
        Ok(crate::app::events::StreamLimitSettings {
            max_streams: self.max_event_streams as usize,
            max_streams_per_tenant: self.max_event_streams_per_tenant as usize,
            stream_buffer_bytes: self.event_stream_buffer_bytes,
            process_buffer_bytes: self.event_stream_process_buffer_bytes,
            slow_consumer_after: Duration::from_millis(self.event_stream_slow_consumer_ms),
            concurrent_reads: self.event_stream_reads as usize,
        })
    }
}

impl Config {
    /// StreamEvents' limits (`--max-event-streams` and the `--event-stream-…` flags).
    pub fn event_stream_limits(&self) -> anyhow::Result<crate::app::events::StreamLimitSettings> {
        self.event_streams
            .settings(self.database.db_max_connections)
    }

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

    /// How often the sequencer looks for events committed elsewhere (`--event-poll-ms`).
    pub fn event_poll_interval(&self) -> Duration {
        Duration::from_millis(self.event_streams.event_poll_ms.max(5))
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
        self.resilience.database_settings(&self.database)
    }
}

/// How long old rows are kept, and how the purge runs (docs/api.md, "Retention").
#[derive(Debug, Clone, clap::Args)]
pub struct RetentionFlags {
    /// Hours a request id (and the answer it replays) is kept; at least 24. A key is removed
    /// within one purge interval after its window.
    #[arg(
        long,
        env = "DISPUTE_CORE_IDEMPOTENCY_RETENTION_HOURS",
        default_value_t = crate::domain::retention::DEFAULT_IDEMPOTENCY_RETENTION_HOURS,
        value_parser = clap::value_parser!(u32)
            .range(i64::from(crate::domain::retention::MIN_IDEMPOTENCY_RETENTION_HOURS)..)
    )]
    pub idempotency_retention_hours: u32,
    /// Days a finished (succeeded or failed) webhook delivery and its attempts are kept,
    /// counted from the delivery's creation; 0 keeps them forever.
    #[arg(
        long,
        env = "DISPUTE_CORE_WEBHOOK_DELIVERY_RETENTION_DAYS",
        default_value_t = crate::domain::retention::DEFAULT_WEBHOOK_DELIVERY_RETENTION_DAYS
    )]
    pub webhook_delivery_retention_days: u32,
    /// Days an event is kept; 0 (the default) keeps events forever. A ListEvents page token
    /// or StreamEvents resume point before a purged event is answered OUT_OF_RANGE
    /// (EVENTS_PURGED).
    #[arg(
        long,
        env = "DISPUTE_CORE_EVENT_RETENTION_DAYS",
        default_value_t = crate::domain::retention::DEFAULT_EVENT_RETENTION_DAYS
    )]
    pub event_retention_days: u32,
    /// How often the purge runs.
    #[arg(
        long,
        env = "DISPUTE_CORE_RETENTION_INTERVAL_SECS",
        default_value_t = crate::domain::retention::DEFAULT_RETENTION_INTERVAL_SECS,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub retention_interval_secs: u64,
    /// Rows one purge statement (one transaction) deletes at most.
    #[arg(
        long,
        env = "DISPUTE_CORE_RETENTION_BATCH_SIZE",
        default_value_t = crate::domain::retention::DEFAULT_RETENTION_BATCH_SIZE,
        value_parser = clap::value_parser!(u32).range(1..=100_000)
    )]
    pub retention_batch_size: u32,
}

impl Default for RetentionFlags {
    /// The same values as the flags' defaults.
    fn default() -> Self {
        use crate::domain::retention as defaults;
        Self {
            idempotency_retention_hours: defaults::DEFAULT_IDEMPOTENCY_RETENTION_HOURS,
            webhook_delivery_retention_days: defaults::DEFAULT_WEBHOOK_DELIVERY_RETENTION_DAYS,
            event_retention_days: defaults::DEFAULT_EVENT_RETENTION_DAYS,
            retention_interval_secs: defaults::DEFAULT_RETENTION_INTERVAL_SECS,
            retention_batch_size: defaults::DEFAULT_RETENTION_BATCH_SIZE,
        }
    }
}

impl RetentionFlags {
    /// The purge's settings; refuses an idempotency window under 24 hours (also when the
    /// flags were built in code rather than parsed).
    pub fn settings(&self) -> anyhow::Result<crate::app::retention::RetentionSettings> {
        let policy = crate::domain::retention::RetentionPolicy {
            idempotency_hours: self.idempotency_retention_hours,
            webhook_delivery_days: self.webhook_delivery_retention_days,
            event_days: self.event_retention_days,
        };
        policy.check().map_err(anyhow::Error::msg)?;
        Ok(crate::app::retention::RetentionSettings {
            policy,
            interval: Duration::from_secs(self.retention_interval_secs.max(1)),
            batch_size: self.retention_batch_size.max(1),
        })
    }
}

/// TLS of the gRPC server and of the channel to document-store. Without a
/// certificate and key the server speaks plaintext HTTP/2 (behind a mesh or on loopback).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Tls {
    #[command(flatten)]
    pub server: TlsFlags<DisputeCore>,
    /// PEM CA bundle trusted, besides the system roots, when `--document-store-url` is
    /// https:// (e.g. the cluster's private CA).
    #[arg(long, env = "DISPUTE_CORE_DOCUMENT_STORE_CA_FILE")]
    pub document_store_ca_file: Option<PathBuf>,
}

impl Tls {
    /// The server's TLS configuration, `None` for plaintext.
    pub fn server_config(&self) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
        self.server.server_config()
    }

    /// The CA bundle for the channel to document-store, if one is set.
    pub fn document_store_ca(&self) -> Option<&Path> {
        self.document_store_ca_file.as_deref()
    }
}

#[cfg(test)]
mod retention_flag_tests {
    use clap::Parser;

    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from([&["dispute-core"], args].concat())
    }

    #[test]
    fn defaults_match_and_a_window_under_a_day_is_refused() {
        let parsed = parse(&[]).unwrap().retention;
        let defaults = RetentionFlags::default();
        assert_eq!(
            parsed.settings().unwrap(),
            defaults.settings().unwrap(),
            "the flags' defaults and Default agree"
        );
        let settings = defaults.settings().unwrap();
        assert_eq!(settings.policy.idempotency_hours, 48);
        assert_eq!(settings.policy.webhook_delivery_days, 30);
        assert_eq!(settings.policy.event_days, 0);
        assert_eq!(settings.interval, Duration::from_secs(300));
        assert_eq!(settings.batch_size, 1000);

        assert!(parse(&["--idempotency-retention-hours", "23"]).is_err());
        assert!(parse(&["--retention-batch-size", "0"]).is_err());
        let day = parse(&["--idempotency-retention-hours", "24"]).unwrap();
        assert_eq!(
            day.retention.settings().unwrap().policy.idempotency_hours,
            24
        );
        // Built in code, past the parser: still refused at start-up.
        let short = RetentionFlags {
            idempotency_retention_hours: 1,
            ..RetentionFlags::default()
        };
        assert!(short.settings().is_err());
    }
}

#[cfg(test)]
mod webhook_flag_tests {
    use clap::Parser;

    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from([&["dispute-core"], args].concat())
    }

    #[test]
    fn fairness_defaults_and_the_tenant_cap_follow_the_concurrency() {
        let settings = WebhookFlags::default().settings();
        assert_eq!(settings.endpoint_concurrency, 16);
        assert_eq!(settings.tenant_concurrency, 8);
        assert_eq!(settings.max_endpoints_per_tenant, 16);
        assert_eq!(settings.breaker.threshold, 3);

        let config = parse(&["--webhook-concurrency", "5"]).unwrap();
        assert_eq!(config.webhooks.settings().tenant_concurrency, 2);
        let config = parse(&["--webhook-concurrency", "1"]).unwrap();
        assert_eq!(config.webhooks.settings().tenant_concurrency, 1);
        let config = parse(&[
            "--webhook-concurrency",
            "4",
            "--webhook-tenant-concurrency",
            "9",
        ])
        .unwrap();
        assert_eq!(config.webhooks.settings().tenant_concurrency, 4);
        let config = parse(&[
            "--webhook-breaker-backoff-ms",
            "5000",
            "--webhook-breaker-max-backoff-ms",
            "10",
        ])
        .unwrap();
        let breaker = config.webhooks.settings().breaker;
        assert_eq!(breaker.max_backoff, breaker.base_backoff);
    }

    #[test]
    fn secret_keys_parse_from_the_flag_and_never_show() {
        let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let config = parse(&["--webhook-secret-keys", &format!("new:{key},old:{key}")]).unwrap();
        let keys = &config.webhooks.webhook_secret_keys;
        assert_eq!(keys.active_key_id(), Some("new"));
        assert!(keys.holds("old"));
        let shown = format!("{config:?}");
        assert!(!shown.contains(key), "{shown}");
        assert!(config.webhooks.settings().secret_keys.holds("old"));
        // Absent: an empty keyring (`migrate` needs none; serving refuses it).
        assert!(parse(&[]).unwrap().webhooks.webhook_secret_keys.is_empty());
        for bad in ["k1", "k1:c2hvcnQ=", &format!("k1:{key},k1:{key}")] {
            let error = parse(&["--webhook-secret-keys", bad])
                .unwrap_err()
                .to_string();
            assert!(!error.contains(key), "{error}");
        }
    }

    #[test]
    fn out_of_range_fairness_flags_are_refused() {
        for args in [
            ["--webhook-endpoint-concurrency", "0"],
            ["--webhook-tenant-concurrency", "0"],
            ["--webhook-breaker-threshold", "0"],
            ["--webhook-breaker-backoff-ms", "0"],
            ["--webhook-max-endpoints-per-tenant", "0"],
            ["--webhook-max-endpoints-per-tenant", "1001"],
        ] {
            assert!(parse(&args).is_err(), "{args:?}");
        }
    }
}
