//! dispute-core: `disputes.v1.DisputeService`. Owns disputes, their history and money in
//! PostgreSQL, and reads documents from document-store over gRPC.

pub mod app;
pub mod config;
pub mod documents;
pub mod domain;
pub mod grpc;
pub mod store;

use std::time::Duration;

use anyhow::Context;
use disputes_proto::disputes_v1::dispute_service_server::DisputeServiceServer;
use secrecy::ExposeSecret;
use service_kit::auth::{AuthInterceptor, TokenVerifier};
use service_kit::propagation::GrpcServerTraceLayer;
use service_kit::server::{drain_deadline, health_off_on_shutdown, reflection_services};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;

pub use config::Config;

const SERVICE_NAME: &str = "disputes.v1.DisputeService";
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
const IDEMPOTENCY_PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Connects to PostgreSQL and applies migrations (safe with several replicas: sqlx takes an
/// advisory lock).
pub async fn connect_database(url: &str, max_connections: u32) -> anyhow::Result<sqlx::PgPool> {
    let pool = service_kit::database::connect_pool(url, max_connections, "dispute-core").await?;
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
    let verifier = TokenVerifier::new(&config.jwt_secret)?;
    // Secrets are SecretString: Debug prints them redacted.
    tracing::info!(config = ?config, "effective configuration");
    let pool = connect_database(
        config.database_url.expose_secret(),
        config.db_max_connections,
    )
    .await?;
    let disputes = app::Disputes {
        pool: pool.clone(),
        documents: documents::DocumentsClient::connect_lazy(&config.document_store_url)?,
        policy: domain::MoneyPolicy {
            dispute_fee: config.dispute_fee,
            refund_fee_on_win: config.refund_fee_on_win,
        },
    };
    let sweeper = tokio::spawn(sweep_deadlines_until(
        disputes.clone(),
        Duration::from_secs(config.sweep_interval_secs.max(1)),
        shutdown.clone(),
    ));
    let purger = tokio::spawn(purge_idempotency_keys_until(
        disputes.clone(),
        shutdown.clone(),
    ));

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<DisputeServiceServer<grpc::DisputeServiceHandler>>()
        .await;
    let (reflection_v1, reflection_v1alpha) = reflection_services(SERVICE_NAME)?;
    let service = InterceptedService::new(
        DisputeServiceServer::new(grpc::DisputeServiceHandler::new(disputes))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
        AuthInterceptor::new(verifier),
    );

    tracing::info!(
        listen_addr = %listener.local_addr()?,
        document_store_url = %config.document_store_url,
        "dispute-core serving"
    );
    let server = tonic::transport::Server::builder()
        .layer(GrpcServerTraceLayer)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(service)
        .serve_with_incoming_shutdown(
            TcpListenerStream::new(listener),
            health_off_on_shutdown(shutdown.clone(), health_reporter, SERVICE_NAME),
        );
    tokio::select! {
        result = server => result.context("grpc server")?,
        _ = drain_deadline(shutdown.clone(), config.drain_timeout()) => {},
    }
    shutdown.cancel();
    let _ = purger.await;
    let _ = sweeper.await;
    pool.close().await;
    tracing::info!("dispute-core stopped");
    Ok(())
}

async fn purge_idempotency_keys_until(disputes: app::Disputes, shutdown: CancellationToken) {
    loop {
        match disputes.purge_old_idempotency_keys().await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "purged old idempotency keys"),
            Err(error) => tracing::warn!(error = ?error, "idempotency key purge failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(IDEMPOTENCY_PURGE_EVERY) => {},
        }
    }
}

/// The deadline sweeper: applies passed deadlines until shutdown. Several replicas may run it
/// at once; each dispute is claimed by one of them.
async fn sweep_deadlines_until(
    disputes: app::Disputes,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        match disputes
            .sweep_deadlines_once(chrono::Utc::now(), grpc::encode_dispute)
            .await
        {
            Ok(0) => {}
            Ok(applied) => tracing::info!(applied, "deadlines applied"),
            Err(error) => tracing::warn!(error = ?error, "deadline sweep failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {},
        }
    }
}
