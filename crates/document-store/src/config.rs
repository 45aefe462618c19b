//! Flags with environment fallbacks; defaults run on a dev box.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use service_kit::call_limit::CallLimits;
use service_kit::database::DatabaseSettings;

use crate::store::s3::{ChecksumMode, S3Settings, S3Timeouts};

/// S3 rejects parts below 5 MiB (except the last one).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// What the binary does besides serving (the default).
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Apply the schema migrations to the database and exit (e.g. a Kubernetes Job run
    /// before a rollout). Takes the same database flags as serving.
    Migrate,
}

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "document-store",
    about = "documents.v1.DocumentService: evidence files on S3-compatible storage"
)]
pub struct Config {
    /// Address the gRPC server listens on.
    #[arg(
        long,
        env = "DOCUMENT_STORE_LISTEN_ADDR",
        default_value = "127.0.0.1:50052"
    )]
    pub listen_addr: SocketAddr,
    /// PostgreSQL URL of document-store's own database.
    #[arg(
        long,
        env = "DOCUMENT_STORE_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/documents",
        hide_env_values = true
    )]
    pub database_url: SecretString,
    #[arg(long, env = "DOCUMENT_STORE_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,
    /// Apply the schema migrations at start-up. Turn it off when a `document-store migrate` Job
    /// applies them, so the service's own database role needs no DDL rights; start-up then
    /// refuses a schema that lacks one of this binary's migrations.
    #[arg(long, env = "DOCUMENT_STORE_MIGRATE_ON_START", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate_on_start: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
    /// S3-compatible endpoint (MinIO, s3s-fs); empty for AWS S3's regional endpoint.
    #[arg(
        long,
        env = "DOCUMENT_STORE_S3_ENDPOINT",
        default_value = "http://127.0.0.1:9000"
    )]
    pub s3_endpoint: String,
    #[arg(long, env = "DOCUMENT_STORE_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    #[arg(
        long,
        env = "DOCUMENT_STORE_S3_BUCKET",
        default_value = "dispute-documents"
    )]
    pub s3_bucket: String,
    /// Static S3 access key. Empty (the default): the AWS SDK's default credential chain
    /// (AWS_* environment, web identity / IRSA, container credentials, instance metadata).
    #[arg(long, env = "DOCUMENT_STORE_S3_ACCESS_KEY_ID", default_value = "")]
    pub s3_access_key_id: String,
    #[arg(
        long,
        env = "DOCUMENT_STORE_S3_SECRET_ACCESS_KEY",
        default_value = "",
        hide_env_values = true
    )]
    pub s3_secret_access_key: SecretString,
    /// Path-style addressing (needed by MinIO and most S3-compatible servers).
    #[arg(long, env = "DOCUMENT_STORE_S3_FORCE_PATH_STYLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub s3_force_path_style: bool,
    /// aws-sdk-s3 request checksums: `when-required` sends plain bodies, `when-supported`
    /// sends aws-chunked bodies with a trailing CRC32.
    #[arg(
        long,
        env = "DOCUMENT_STORE_S3_CHECKSUM_MODE",
        value_enum,
        default_value = "when-required"
    )]
    pub s3_checksum_mode: ChecksumMode,
    /// Create the bucket at start-up if it is missing (local development).
    #[arg(long, env = "DOCUMENT_STORE_S3_CREATE_BUCKET", default_value_t = false, action = clap::ArgAction::Set)]
    pub s3_create_bucket: bool,
    /// Largest accepted document in bytes (default 25 MiB).
    #[arg(long, env = "DOCUMENT_STORE_MAX_UPLOAD_BYTES", default_value_t = 25 * 1024 * 1024)]
    pub max_upload_bytes: u64,
    /// Multipart part size in bytes (at least 5 MiB).
    #[arg(long, env = "DOCUMENT_STORE_PART_SIZE_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub part_size_bytes: usize,
    /// Parts uploaded concurrently per upload; memory per upload is about
    /// part size × (this + 1).
    #[arg(long, env = "DOCUMENT_STORE_MAX_PARTS_IN_FLIGHT", default_value_t = 2)]
    pub max_parts_in_flight: usize,
    /// An upload that sends nothing for this long is aborted.
    #[arg(
        long,
        env = "DOCUMENT_STORE_CHUNK_IDLE_TIMEOUT_SECS",
        default_value_t = 60
    )]
    pub chunk_idle_timeout_secs: u64,
    /// The upload's header message must arrive within this long of the call.
    #[arg(
        long,
        env = "DOCUMENT_STORE_UPLOAD_HEADER_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub upload_header_timeout_secs: u64,
    /// Total time an upload may take to send all its bytes; beyond it the upload fails with
    /// DEADLINE_EXCEEDED (UPLOAD_DEADLINE). Must stay under the abandoned-upload sweeper's
    /// age of 1 hour.
    #[arg(
        long,
        env = "DOCUMENT_STORE_UPLOAD_DEADLINE_SECS",
        default_value_t = 600
    )]
    pub upload_deadline_secs: u64,
    /// Uploads one replica runs at once; more are refused at once with RESOURCE_EXHAUSTED
    /// (UPLOAD_CAPACITY, RetryInfo 1 s) before any byte is read. Each upload buffers up to
    /// part size × (parts in flight + 1) plus its HTTP/2 stream window (8 MiB) and one
    /// message (4 MiB): 36 MiB at the defaults, so 8 uploads take at most ~290 MiB on top
    /// of the idle process, within a 512 Mi pod limit.
    #[arg(
        long,
        env = "DOCUMENT_STORE_MAX_CONCURRENT_UPLOADS",
        default_value_t = 8
    )]
    pub max_concurrent_uploads: usize,
    /// How long in-flight calls may run after SIGTERM.
    #[arg(long, env = "DOCUMENT_STORE_DRAIN_TIMEOUT_SECS", default_value_t = 20)]
    pub drain_timeout_secs: u64,
    /// How long shutdown waits, after the drain, for uploads cut off by it to remove what
    /// they created and for the abandoned-upload cleaner to stop (both at once); what is
    /// left then is removed later by the cleaner. preStop + drain + this must fit in the
    /// pod's grace period.
    #[arg(
        long,
        env = "DOCUMENT_STORE_UPLOAD_CLEANUP_TIMEOUT_SECS",
        default_value_t = 5
    )]
    pub upload_cleanup_timeout_secs: u64,
    /// HS256 key shared with dispute-core (at least 32 bytes).
    /// Required to serve; `migrate` does without.
    #[arg(
        long,
        env = "AUTH_JWT_SECRET",
        hide_env_values = true,
        default_value = ""
    )]
    pub jwt_secret: SecretString,
    /// One log line per RPC (method, status, duration, tenant; target `access`).
    #[arg(long, env = "DOCUMENT_STORE_ACCESS_LOG", default_value_t = true, action = clap::ArgAction::Set)]
    pub access_log: bool,
    /// Serve the metrics for Prometheus on `http://ADDR/metrics` (e.g. 0.0.0.0:9464), for
    /// clusters without an OpenTelemetry Collector. OTLP export follows the standard
    /// `OTEL_EXPORTER_OTLP_*` variables, like the spans.
    #[arg(long, env = "DOCUMENT_STORE_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub resilience: Resilience,
    #[command(flatten)]
    pub tls: Tls,
}

impl Config {
    /// Telemetry of this service as the flags ask.
    pub fn telemetry_options(&self) -> service_kit::telemetry::TelemetryOptions {
        service_kit::telemetry::TelemetryOptions {
            prometheus_addr: self.metrics_addr,
            ..service_kit::telemetry::TelemetryOptions::for_service("document-store")
        }
    }
}

/// Overload and dependency-failure settings: unary call limit and timeout, HTTP/2
/// keepalive, database and S3 timeouts and the readiness probe.
#[derive(Debug, Clone, clap::Args)]
pub struct Resilience {
    /// Unary calls allowed in flight; beyond it calls are shed at once with
    /// RESOURCE_EXHAUSTED (RetryInfo). UploadDocument and DownloadDocument are not counted
    /// (uploads have their own admission limit), nor are health and reflection.
    #[arg(
        long,
        env = "DOCUMENT_STORE_MAX_CONCURRENT_CALLS",
        default_value_t = 64
    )]
    pub max_concurrent_calls: usize,
    /// Server-side limit of one unary call; past it the call answers DEADLINE_EXCEEDED.
    /// Streaming calls are not cut by it.
    #[arg(long, env = "DOCUMENT_STORE_CALL_TIMEOUT_MS", default_value_t = 30_000)]
    pub call_timeout_ms: u64,
    /// HTTP/2 PING interval on idle connections (0 = off).
    #[arg(
        long,
        env = "DOCUMENT_STORE_HTTP2_KEEPALIVE_INTERVAL_SECS",
        default_value_t = 30
    )]
    pub http2_keepalive_interval_secs: u64,
    /// A PING not acknowledged within this closes the connection.
    #[arg(
        long,
        env = "DOCUMENT_STORE_HTTP2_KEEPALIVE_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub http2_keepalive_timeout_secs: u64,
    /// How long a call waits for a pooled database connection (then UNAVAILABLE).
    #[arg(
        long,
        env = "DOCUMENT_STORE_DB_ACQUIRE_TIMEOUT_MS",
        default_value_t = 5_000
    )]
    pub db_acquire_timeout_ms: u64,
    /// PostgreSQL `statement_timeout` of every pooled session (then UNAVAILABLE).
    #[arg(
        long,
        env = "DOCUMENT_STORE_DB_STATEMENT_TIMEOUT_MS",
        default_value_t = 5_000
    )]
    pub db_statement_timeout_ms: u64,
    /// PostgreSQL `lock_timeout` of every pooled session (then UNAVAILABLE).
    #[arg(
        long,
        env = "DOCUMENT_STORE_DB_LOCK_TIMEOUT_MS",
        default_value_t = 2_000
    )]
    pub db_lock_timeout_ms: u64,
    /// S3 TCP/TLS connect timeout.
    #[arg(
        long,
        env = "DOCUMENT_STORE_S3_CONNECT_TIMEOUT_MS",
        default_value_t = 3_000
    )]
    pub s3_connect_timeout_ms: u64,
    /// Limit of one attempt of an S3 operation (a part upload included).
    #[arg(
        long,
        env = "DOCUMENT_STORE_S3_ATTEMPT_TIMEOUT_MS",
        default_value_t = 60_000
    )]
    pub s3_attempt_timeout_ms: u64,
    /// Limit of an S3 operation, retries included (then UNAVAILABLE).
    #[arg(
        long,
        env = "DOCUMENT_STORE_S3_OPERATION_TIMEOUT_MS",
        default_value_t = 120_000
    )]
    pub s3_operation_timeout_ms: u64,
    /// Attempts per S3 operation (standard retry with backoff; 1 = no retry).
    #[arg(long, env = "DOCUMENT_STORE_S3_MAX_ATTEMPTS", default_value_t = 3)]
    pub s3_max_attempts: u32,
    /// How often readiness checks the database (`select 1`) and the bucket (HeadBucket);
    /// health of documents.v1.DocumentService is NOT_SERVING while the check fails.
    #[arg(
        long,
        env = "DOCUMENT_STORE_HEALTH_PROBE_INTERVAL_MS",
        default_value_t = 2_000
    )]
    pub health_probe_interval_ms: u64,
    /// A readiness check taking longer than this counts as failed.
    #[arg(
        long,
        env = "DOCUMENT_STORE_HEALTH_PROBE_TIMEOUT_MS",
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
            s3_connect_timeout_ms: 3_000,
            s3_attempt_timeout_ms: 60_000,
            s3_operation_timeout_ms: 120_000,
            s3_max_attempts: 3,
            health_probe_interval_ms: 2_000,
            health_probe_timeout_ms: 1_000,
        }
    }
}

impl Resilience {
    pub fn call_limits(&self, exempt_methods: Vec<&'static str>) -> CallLimits {
        CallLimits::from_flags(
            self.max_concurrent_calls,
            self.call_timeout_ms,
            exempt_methods,
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

    pub fn s3_timeouts(&self) -> S3Timeouts {
        S3Timeouts {
            connect: Duration::from_millis(self.s3_connect_timeout_ms.max(1)),
            operation_attempt: Duration::from_millis(self.s3_attempt_timeout_ms.max(1)),
            operation: Duration::from_millis(self.s3_operation_timeout_ms.max(1)),
            max_attempts: self.s3_max_attempts.max(1),
        }
    }
}

impl Config {
    /// Rejects settings the service cannot run with.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.part_size_bytes >= MIN_PART_SIZE,
            "part size must be at least {MIN_PART_SIZE} bytes"
        );
        anyhow::ensure!(
            self.max_parts_in_flight >= 1,
            "max parts in flight must be at least 1"
        );
        anyhow::ensure!(
            self.max_upload_bytes >= 1,
            "max upload bytes must be at least 1"
        );
        anyhow::ensure!(
            self.chunk_idle_timeout_secs >= 1,
            "chunk idle timeout must be at least 1 second"
        );
        anyhow::ensure!(
            self.upload_header_timeout_secs >= 1,
            "upload header timeout must be at least 1 second"
        );
        anyhow::ensure!(
            (1..3600).contains(&self.upload_deadline_secs),
            "upload deadline must be between 1 second and 1 hour (the abandoned-upload sweeper's age)"
        );
        anyhow::ensure!(
            self.max_concurrent_uploads >= 1,
            "max concurrent uploads must be at least 1"
        );
        Ok(())
    }

    pub fn s3_settings(&self) -> S3Settings {
        S3Settings {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            bucket: self.s3_bucket.clone(),
            access_key_id: self.s3_access_key_id.clone(),
            secret_access_key: self.s3_secret_access_key.clone(),
            force_path_style: self.s3_force_path_style,
            checksum_mode: self.s3_checksum_mode,
            timeouts: self.resilience.s3_timeouts(),
        }
    }

    pub fn database_settings(&self) -> DatabaseSettings {
        DatabaseSettings::from_millis(
            self.db_max_connections,
            self.resilience.db_acquire_timeout_ms,
            self.resilience.db_statement_timeout_ms,
            self.resilience.db_lock_timeout_ms,
        )
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }

    pub fn upload_cleanup_timeout(&self) -> Duration {
        Duration::from_secs(self.upload_cleanup_timeout_secs)
    }
}

/// TLS of the gRPC server. Without a
/// certificate and key the server speaks plaintext HTTP/2 (behind a mesh or on loopback).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Tls {
    /// PEM certificate chain of the gRPC server; with `--tls-key-file` it serves TLS only.
    #[arg(long, env = "DOCUMENT_STORE_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of the gRPC server.
    #[arg(long, env = "DOCUMENT_STORE_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
}

impl Tls {
    /// The server's TLS configuration, `None` for plaintext.
    pub fn server_config(&self) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
        service_kit::tls::server_config(self.tls_cert_file.as_deref(), self.tls_key_file.as_deref())
    }
}
