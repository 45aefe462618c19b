//! Flags with environment fallbacks; defaults run on a dev box.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;
use service_kit::call_limit::CallLimits;
use service_kit::config::{
    AuthFlags, DatabaseFlags, ResilienceFlags, ServiceFlags, TelemetryFlags, TlsFlags,
};
use service_kit::database::DatabaseSettings;

use crate::app::{
    DEFAULT_DOWNLOAD_STALL_TIMEOUT, DEFAULT_MAX_CONCURRENT_DOWNLOADS,
    DEFAULT_MIN_UPLOAD_RATE_BYTES_PER_SEC, DEFAULT_UPLOAD_RATE_GRACE, DEFAULT_UPLOAD_RATE_WINDOW,
    FairnessSettings,
};
use crate::domain::{RateFloor, SlotLimits};
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
    #[command(flatten)]
    pub database: DatabaseFlags<DocumentStore>,
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
    /// Token verification (JWKS or, for development, a shared secret); required to serve,
    /// `migrate` does without.
    #[command(flatten)]
    pub auth: AuthFlags,
    #[command(flatten)]
    pub telemetry: TelemetryFlags<DocumentStore>,
    #[command(flatten)]
    pub resilience: Resilience,
    #[command(flatten)]
    pub tls: Tls,
}

/// document-store in the flag groups of the kit: `DOCUMENT_STORE_…` variables.
#[derive(Debug, Clone, Copy, Default)]
pub struct DocumentStore;

impl ServiceFlags for DocumentStore {
    const NAME: &'static str = "document-store";
    const ENV_PREFIX: &'static str = "DOCUMENT_STORE_";
    const DATABASE_NAME: &'static str = "documents";
    const MAX_CONCURRENT_CALLS_HELP: &'static str = "Unary calls allowed in flight; beyond it \
        calls are shed at once with RESOURCE_EXHAUSTED (RetryInfo). UploadDocument and \
        DownloadDocument are not counted (each has its own per-replica and per-tenant caps), \
        nor are health and reflection";
    const CALL_TIMEOUT_HELP: &'static str = "Server-side limit of one unary call; past it the \
        call answers DEADLINE_EXCEEDED. Streaming calls are not cut by it";
    const HEALTH_PROBE_INTERVAL_HELP: &'static str = "How often readiness checks the database \
        (`select 1`) and the bucket (HeadBucket); health of documents.v1.DocumentService is \
        NOT_SERVING while the check fails";
}

/// TLS of the gRPC server.
pub type Tls = TlsFlags<DocumentStore>;

impl Config {
    /// Telemetry of this service as the flags ask.
    pub fn telemetry_options(&self) -> service_kit::telemetry::TelemetryOptions {
        self.telemetry.telemetry_options()
    }
}

/// Overload and dependency-failure settings: the kit's (unary call limit and timeout,
/// HTTP/2 keepalive, database timeouts and the readiness probe) and the S3 timeouts.
#[derive(Debug, Clone, clap::Args)]
pub struct Resilience {
    #[command(flatten)]
    pub common: ResilienceFlags<DocumentStore>,
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
    #[command(flatten)]
    pub fairness: Fairness,
}

/// How a replica shares uploads and downloads between tenants.
#[derive(Debug, Clone, clap::Args)]
pub struct Fairness {
    /// Uploads one tenant may run at once on a replica; one more is refused at once with
    /// RESOURCE_EXHAUSTED (TENANT_UPLOAD_CAPACITY, RetryInfo 1 s). Default: a quarter of
    /// --max-concurrent-uploads, at least 1.
    #[arg(long, env = "DOCUMENT_STORE_MAX_UPLOADS_PER_TENANT")]
    pub max_uploads_per_tenant: Option<usize>,
    /// Slowest data rate an upload may keep, averaged over the rate window once the grace
    /// period is over; below it the upload fails with DEADLINE_EXCEEDED (UPLOAD_TOO_SLOW).
    /// 0 disables the check.
    #[arg(
        long,
        env = "DOCUMENT_STORE_MIN_UPLOAD_RATE_BYTES_PER_SEC",
        default_value_t = DEFAULT_MIN_UPLOAD_RATE_BYTES_PER_SEC
    )]
    pub min_upload_rate_bytes_per_sec: u64,
    /// The sliding window over which an upload's rate is averaged.
    #[arg(long, env = "DOCUMENT_STORE_UPLOAD_RATE_WINDOW_MS", default_value_t = DEFAULT_UPLOAD_RATE_WINDOW.as_millis() as u64)]
    pub upload_rate_window_ms: u64,
    /// How long an upload may send below the minimum rate at its start (time spent waiting
    /// for the client, from the header on).
    #[arg(long, env = "DOCUMENT_STORE_UPLOAD_RATE_GRACE_MS", default_value_t = DEFAULT_UPLOAD_RATE_GRACE.as_millis() as u64)]
    pub upload_rate_grace_ms: u64,
    /// DownloadDocument streams one replica serves at once; one more is refused at once
    /// with RESOURCE_EXHAUSTED (DOWNLOAD_CAPACITY, RetryInfo 1 s).
    #[arg(
        long,
        env = "DOCUMENT_STORE_MAX_CONCURRENT_DOWNLOADS",
        default_value_t = DEFAULT_MAX_CONCURRENT_DOWNLOADS
    )]
    pub max_concurrent_downloads: usize,
    /// DownloadDocument streams one tenant may have open on a replica; one more is refused
    /// with RESOURCE_EXHAUSTED (TENANT_DOWNLOAD_CAPACITY, RetryInfo 1 s). Default: a quarter
    /// of --max-concurrent-downloads, at least 1.
    #[arg(long, env = "DOCUMENT_STORE_MAX_DOWNLOADS_PER_TENANT")]
    pub max_downloads_per_tenant: Option<usize>,
    /// A download whose client takes no data for this long ends with DEADLINE_EXCEEDED
    /// (DOWNLOAD_STALLED) and gives its slot back.
    #[arg(long, env = "DOCUMENT_STORE_DOWNLOAD_STALL_TIMEOUT_MS", default_value_t = DEFAULT_DOWNLOAD_STALL_TIMEOUT.as_millis() as u64)]
    pub download_stall_timeout_ms: u64,
}

impl Default for Fairness {
    /// The same values as the flags' defaults.
    fn default() -> Self {
        Self {
            max_uploads_per_tenant: None,
            min_upload_rate_bytes_per_sec: DEFAULT_MIN_UPLOAD_RATE_BYTES_PER_SEC,
            upload_rate_window_ms: DEFAULT_UPLOAD_RATE_WINDOW.as_millis() as u64,
            upload_rate_grace_ms: DEFAULT_UPLOAD_RATE_GRACE.as_millis() as u64,
            max_concurrent_downloads: DEFAULT_MAX_CONCURRENT_DOWNLOADS,
            max_downloads_per_tenant: None,
            download_stall_timeout_ms: DEFAULT_DOWNLOAD_STALL_TIMEOUT.as_millis() as u64,
        }
    }
}

impl Fairness {
    /// The settings for a replica running at most `max_concurrent_uploads` uploads.
    pub fn settings(&self, max_concurrent_uploads: usize) -> FairnessSettings {
        FairnessSettings {
            uploads: SlotLimits::with_default_tenant_share(
                max_concurrent_uploads,
                self.max_uploads_per_tenant,
            ),
            upload_rate: RateFloor {
                bytes_per_sec: self.min_upload_rate_bytes_per_sec,
                window: Duration::from_millis(self.upload_rate_window_ms),
                grace: Duration::from_millis(self.upload_rate_grace_ms),
            },
            downloads: SlotLimits::with_default_tenant_share(
                self.max_concurrent_downloads,
                self.max_downloads_per_tenant,
            ),
            download_stall_timeout: Duration::from_millis(self.download_stall_timeout_ms),
        }
    }

    fn validate(&self, max_concurrent_uploads: usize) -> anyhow::Result<()> {
        let caps = [
            (
                "uploads",
                self.max_uploads_per_tenant,
                max_concurrent_uploads,
            ),
            (
                "downloads",
                self.max_downloads_per_tenant,
                self.max_concurrent_downloads,
            ),
        ];
        for (what, per_tenant, per_process) in caps {
            if let Some(per_tenant) = per_tenant {
                anyhow::ensure!(
                    (1..=per_process).contains(&per_tenant),
                    "max {what} per tenant must be between 1 and the replica's cap ({per_process})"
                );
            }
        }
        anyhow::ensure!(
            self.max_concurrent_downloads >= 1,
            "max concurrent downloads must be at least 1"
        );
        anyhow::ensure!(
            (100..=3_600_000).contains(&self.upload_rate_window_ms),
            "upload rate window must be between 100 ms and 1 hour"
        );
        anyhow::ensure!(
            self.upload_rate_grace_ms <= 3_600_000,
            "upload rate grace must be at most 1 hour"
        );
        anyhow::ensure!(
            self.download_stall_timeout_ms >= 100,
            "download stall timeout must be at least 100 ms"
        );
        Ok(())
    }
}

impl Default for Resilience {
    /// The same values as the flags' defaults.
    fn default() -> Self {
        Self {
            common: ResilienceFlags::default(),
            s3_connect_timeout_ms: 3_000,
            s3_attempt_timeout_ms: 60_000,
            s3_operation_timeout_ms: 120_000,
            s3_max_attempts: 3,
            fairness: Fairness::default(),
        }
    }
}

impl Resilience {
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
        self.resilience
            .fairness
            .validate(self.max_concurrent_uploads)?;
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
        self.resilience.common.database_settings(&self.database)
    }

    /// The unary call limit and timeout; `exempt_methods` are neither counted nor timed.
    pub fn call_limits(&self, exempt_methods: Vec<&'static str>) -> CallLimits {
        self.resilience.common.call_limits(exempt_methods)
    }

    /// How uploads and downloads are shared between tenants.
    pub fn fairness(&self) -> FairnessSettings {
        self.resilience
            .fairness
            .settings(self.max_concurrent_uploads)
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }

    pub fn upload_cleanup_timeout(&self) -> Duration {
        Duration::from_secs(self.upload_cleanup_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut all = vec!["document-store"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).expect("flags parse")
    }

    #[test]
    fn the_default_shares_are_a_quarter_of_each_cap() {
        let config = parse(&[]);
        config.validate().expect("defaults are valid");
        let fairness = config.fairness();
        assert_eq!(
            fairness.uploads,
            SlotLimits {
                per_process: 8,
                per_tenant: 2
            }
        );
        assert_eq!(
            fairness.downloads,
            SlotLimits {
                per_process: 64,
                per_tenant: 16
            }
        );
        assert_eq!(fairness.upload_rate.bytes_per_sec, 16 * 1024);
        assert_eq!(fairness.upload_rate.window, Duration::from_secs(10));
        assert_eq!(fairness.download_stall_timeout, Duration::from_secs(30));
    }

    #[test]
    fn explicit_shares_and_a_zero_floor_are_taken_as_given() {
        let config = parse(&[
            "--max-concurrent-uploads",
            "3",
            "--max-uploads-per-tenant",
            "3",
            "--max-downloads-per-tenant",
            "1",
            "--min-upload-rate-bytes-per-sec",
            "0",
        ]);
        config.validate().expect("valid");
        let fairness = config.fairness();
        assert_eq!(
            fairness.uploads,
            SlotLimits {
                per_process: 3,
                per_tenant: 3
            }
        );
        assert_eq!(fairness.downloads.per_tenant, 1);
        assert!(!fairness.upload_rate.is_enabled());
    }

    #[test]
    fn shares_beyond_the_replica_cap_and_tiny_timeouts_are_refused() {
        for args in [
            &["--max-uploads-per-tenant", "9"][..],
            &["--max-uploads-per-tenant", "0"],
            &[
                "--max-concurrent-downloads",
                "4",
                "--max-downloads-per-tenant",
                "5",
            ],
            &["--max-concurrent-downloads", "0"],
            &["--upload-rate-window-ms", "10"],
            &["--download-stall-timeout-ms", "0"],
        ] {
            assert!(parse(args).validate().is_err(), "{args:?} accepted");
        }
    }
}
