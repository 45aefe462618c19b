//! document-store: `documents.v1.DocumentService`. Streams evidence files to S3-compatible
//! storage and back; metadata lives in PostgreSQL.

pub mod config;
pub mod domain;
pub mod grpc;
pub mod store;
pub mod upload;

use std::time::Duration;

use anyhow::Context;
use disputes_proto::documents_v1::document_service_server::DocumentServiceServer;
use secrecy::ExposeSecret;
use service_kit::auth::{AuthInterceptor, TokenVerifier};
use service_kit::propagation::GrpcServerTraceLayer;
use service_kit::server::{drain_deadline, health_off_on_shutdown, reflection_services};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::service::interceptor::InterceptedService;

pub use config::Config;
use store::s3::{ObjectStore, build_client};
use upload::{UploadSettings, Uploads};

const SERVICE_NAME: &str = "documents.v1.DocumentService";
/// Largest gRPC message accepted: a 1 MiB chunk plus framing, with room to spare.
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// How often, and after how long, uploads left pending by a crash are removed.
const ABANDONED_UPLOAD_SWEEP_EVERY: Duration = Duration::from_secs(300);
const UPLOAD_CLEANUP_WAIT: Duration = Duration::from_secs(10);
const ABANDONED_UPLOAD_AGE: Duration = Duration::from_secs(3600);

/// Connects to PostgreSQL and applies migrations (safe with several replicas: sqlx takes an
/// advisory lock).
pub async fn connect_database(url: &str, max_connections: u32) -> anyhow::Result<sqlx::PgPool> {
    let pool = service_kit::database::connect_pool(url, max_connections, "document-store").await?;
    sqlx::migrate!("./migrations")
        .run(&pool)
        .await
        .context("apply migrations")?;
    Ok(pool)
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
    let verifier = TokenVerifier::new(&config.jwt_secret)?;
    let pool = connect_database(
        config.database_url.expose_secret(),
        config.db_max_connections,
    )
    .await?;
    let objects = ObjectStore::new(
        build_client(&config.s3_settings()),
        config.s3_bucket.clone(),
    );
    if config.s3_create_bucket {
        objects.ensure_bucket().await?;
    }
    objects.check_bucket().await?;

    let uploads = Uploads {
        pool: pool.clone(),
        objects,
        settings: UploadSettings {
            max_bytes: config.max_upload_bytes,
            part_size: config.part_size_bytes,
            max_parts_in_flight: config.max_parts_in_flight,
            chunk_idle_timeout: Duration::from_secs(config.chunk_idle_timeout_secs),
        },
        abort: CancellationToken::new(),
        tasks: TaskTracker::new(),
    };
    let uploads_handle = uploads.clone();
    let sweeper = tokio::spawn(sweep_abandoned_uploads_until(
        uploads.clone(),
        shutdown.clone(),
    ));

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<DocumentServiceServer<grpc::DocumentServiceHandler>>()
        .await;
    let (reflection_v1, reflection_v1alpha) = reflection_services(SERVICE_NAME)?;
    let documents = InterceptedService::new(
        DocumentServiceServer::new(grpc::DocumentServiceHandler::new(uploads))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
        AuthInterceptor::new(verifier),
    );

    tracing::info!(
        listen_addr = %listener.local_addr()?,
        s3_endpoint = %config.s3_endpoint,
        s3_bucket = %config.s3_bucket,
        s3_checksum_mode = ?config.s3_checksum_mode,
        max_upload_bytes = config.max_upload_bytes,
        part_size_bytes = config.part_size_bytes,
        "document-store serving"
    );
    let server = tonic::transport::Server::builder()
        // Large HTTP/2 windows: uploads stream at memory speed instead of ~50 MB/s.
        .initial_stream_window_size(Some(8 * 1024 * 1024))
        .initial_connection_window_size(Some(16 * 1024 * 1024))
        .layer(GrpcServerTraceLayer)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(documents)
        .serve_with_incoming_shutdown(
            TcpListenerStream::new(listener),
            health_off_on_shutdown(shutdown.clone(), health_reporter, SERVICE_NAME),
        );
    tokio::select! {
        result = server => result.context("grpc server")?,
        _ = drain_deadline(shutdown.clone(), config.drain_timeout()) => {},
    }
    shutdown.cancel();
    // Uploads still running after the drain abort and remove what they created.
    uploads_handle.abort.cancel();
    uploads_handle.tasks.close();
    if tokio::time::timeout(UPLOAD_CLEANUP_WAIT, uploads_handle.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "uploads still cleaning up at exit; the abandoned-upload sweeper will finish"
        );
    }
    let _ = sweeper.await;
    pool.close().await;
    tracing::info!("document-store stopped");
    Ok(())
}

async fn sweep_abandoned_uploads_until(uploads: Uploads, shutdown: CancellationToken) {
    loop {
        match upload::sweep_abandoned_uploads(&uploads, ABANDONED_UPLOAD_AGE).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "removed abandoned uploads"),
            Err(error) => tracing::warn!(error = ?error, "abandoned upload sweep failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(ABANDONED_UPLOAD_SWEEP_EVERY) => {},
        }
    }
}
