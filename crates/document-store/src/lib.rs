//! document-store: `documents.v1.DocumentService`. Streams evidence files to S3-compatible
//! storage and back; metadata lives in PostgreSQL.

pub mod app;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod store;

use std::time::Duration;

use disputes_proto::documents_v1::document_service_server::DocumentServiceServer;
use service_kit::auth::{AuthInterceptor, Scope};
use service_kit::database::DatabaseSettings;
use service_kit::readiness::ReadinessProbe;
use service_kit::server::{ServeSettings, serve};
use service_kit::worker::Workers;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;

use app::{Documents, UploadSettings};
pub use config::{Command, Config};
use store::s3::{ObjectStore, connect_client};

const SERVICE_NAME: &str = "documents.v1.DocumentService";
/// Streaming calls outside the unary call limit and timeout: uploads have their own caps,
/// minimum rate and deadline; downloads their own caps and stall timeout.
const STREAMING_METHODS: [&str; 2] = [
    "/documents.v1.DocumentService/UploadDocument",
    "/documents.v1.DocumentService/DownloadDocument",
];
/// Largest gRPC message accepted: a 1 MiB chunk plus framing, with room to spare.
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Large HTTP/2 windows: uploads stream at memory speed instead of ~50 MB/s.
const STREAM_WINDOW_BYTES: u32 = 8 * 1024 * 1024;
const CONNECTION_WINDOW_BYTES: u32 = 16 * 1024 * 1024;
static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Connects to PostgreSQL and applies migrations (safe with several replicas: sqlx takes an
/// advisory lock).
pub async fn connect_database(url: &str, max_connections: u32) -> anyhow::Result<sqlx::PgPool> {
    connect_database_with(url, &DatabaseSettings::new(max_connections)).await
}

/// [`connect_database`] with explicit pool size and timeouts.
pub async fn connect_database_with(
    url: &str,
    settings: &DatabaseSettings,
) -> anyhow::Result<sqlx::PgPool> {
    service_kit::database::connect_and_migrate(url, settings, "document-store", &MIGRATIONS).await
}

/// `document-store migrate`: applies the migrations and returns.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    config
        .database
        .migrate(&config.database_settings(), &MIGRATIONS)
        .await?;
    tracing::info!(migrations = MIGRATIONS.iter().count(), "schema up to date");
    Ok(())
}

/// Readiness: the database answers `select 1` and the bucket answers HeadBucket.
fn readiness_probe(config: &Config, objects: ObjectStore) -> anyhow::Result<ReadinessProbe> {
    let database = config
        .database
        .readiness_probe(&config.database_settings())?;
    Ok(ReadinessProbe::new(
        config.resilience.common.health_probe_interval(),
        config.resilience.common.health_probe_timeout(),
        move || {
            let database = database.clone();
            let objects = objects.clone();
            async move {
                database.check().await?;
                objects.check_bucket().await
            }
        },
    ))
}

/// Runs the service on `listener` until `shutdown` is cancelled, then drains.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.validate()?;
    // Secrets are SecretString: Debug prints them redacted.
    tracing::info!(config = ?config, "effective configuration");
    // dispute-core's background credential acts for the tenant it names, for locks only.
    let verifier = config.auth.verifier()?.delegating(&[Scope::DocumentsLock]);
    // The serving pool: migrated first unless `migrate_on_start` is off.
    let pool = config
        .database
        .connect_for_serving(&config.database_settings(), &MIGRATIONS)
        .await?;
    let objects = ObjectStore::new(
        connect_client(&config.s3_settings()).await,
        config.s3_bucket.clone(),
    );
    if config.s3_create_bucket {
        objects.ensure_bucket().await?;
    }
    if let Err(error) = objects.check_bucket().await {
        // Not fatal: readiness answers NOT_SERVING until the bucket answers, so a replica
        // started before its bucket exists (e.g. before the bucket Job ran) waits out of
        // rotation instead of crash-looping.
        tracing::warn!(
            error = ?error,
            bucket = %config.s3_bucket,
            "the bucket does not answer yet; not ready until it does"
        );
    }
    let probe_objects = objects.clone();

    let documents = Documents::new(
        pool.clone(),
        objects,
        UploadSettings {
            max_bytes: config.max_upload_bytes,
            part_size: config.part_size_bytes,
            max_parts_in_flight: config.max_parts_in_flight,
            chunk_idle_timeout: Duration::from_secs(config.chunk_idle_timeout_secs),
            header_timeout: Duration::from_secs(config.upload_header_timeout_secs),
            upload_deadline: Duration::from_secs(config.upload_deadline_secs),
            max_concurrent_uploads: config.max_concurrent_uploads,
        },
    )
    .with_fairness(config.fairness());
    let mut workers = Workers::new(&shutdown);
    documents.start_abandoned_upload_cleaner(&mut workers);
    let service = grpc::received::CountUploadBytes::new(InterceptedService::new(
        DocumentServiceServer::new(grpc::DocumentServiceHandler::new(documents.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
        AuthInterceptor::new(),
    ));

    tracing::info!(
        listen_addr = %listener.local_addr()?,
        s3_endpoint = %config.s3_endpoint,
        s3_bucket = %config.s3_bucket,
        s3_checksum_mode = ?config.s3_checksum_mode,
        max_upload_bytes = config.max_upload_bytes,
        part_size_bytes = config.part_size_bytes,
        max_concurrent_uploads = config.max_concurrent_uploads,
        fairness = ?config.fairness(),
        "document-store serving"
    );
    let (http2_keepalive_interval, http2_keepalive_timeout) =
        config.resilience.common.http2_keepalive();
    let settings = ServeSettings {
        initial_stream_window_size: Some(STREAM_WINDOW_BYTES),
        initial_connection_window_size: Some(CONNECTION_WINDOW_BYTES),
        call_limits: config
            .call_limits(STREAMING_METHODS.to_vec())
            .per_tenant(verifier, config.database.db_max_connections),
        http2_keepalive_interval,
        http2_keepalive_timeout,
        access_log: config.telemetry.access_log,
        tls: config.tls.server_config()?,
        readiness: Some(readiness_probe(&config, probe_objects)?),
        ..ServeSettings::new(
            SERVICE_NAME,
            disputes_proto::FILE_DESCRIPTOR_SET,
            config.drain_timeout(),
        )
    };
    let served = serve(Routes::new(service), listener, settings, shutdown.clone()).await;
    // Whatever ended the server, stop the cleaner too.
    shutdown.cancel();
    // Uploads still running after the drain abort and remove what they created while the
    // cleaner stops; both within the upload cleanup budget.
    let budget = config.upload_cleanup_timeout();
    let (uploads_clean, cleaner_stopped) =
        tokio::join!(documents.abort_uploads(budget), workers.stop(budget),);
    if !uploads_clean {
        tracing::warn!(
            "uploads still cleaning up at exit; the abandoned-upload sweeper will finish"
        );
    }
    if !cleaner_stopped {
        tracing::warn!(
            "the abandoned-upload cleaner was cut off at exit; it resumes at the next start"
        );
    }
    pool.close().await;
    served?;
    tracing::info!("document-store stopped");
    Ok(())
}
