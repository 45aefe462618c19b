//! dispute-core: `disputes.v1.DisputeService` and `disputes.v1.EventService`. Owns disputes,
//! their history, money and events in PostgreSQL, reads documents from document-store over
//! gRPC (`clients::documents`) and sends the events to webhook endpoints
//! (`clients::webhook_http`).
//!
//! Layers: `grpc` (transport) → `app` (use cases and background workers) → `store`
//! (PostgreSQL) and `clients` (outbound calls), all over `domain` (pure rules, which uses
//! none of them). No arrow runs the other way.

pub mod app;
pub mod clients;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod store;

use std::time::Duration;

use clients::documents::BackgroundCredential;
use disputes_proto::disputes_v1::dispute_service_server::DisputeServiceServer;
use disputes_proto::disputes_v1::event_service_server::EventServiceServer;
use service_kit::auth::AuthInterceptor;
use service_kit::database::DatabaseSettings;
use service_kit::readiness::ReadinessProbe;
use service_kit::server::{ServeSettings, serve};
use service_kit::worker::Workers;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;

pub use config::{Command, Config};

const SERVICE_NAME: &str = "disputes.v1.DisputeService";
const EVENT_SERVICE_NAME: &str = "disputes.v1.EventService";
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

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
    service_kit::database::connect_and_migrate(url, settings, "dispute-core", &MIGRATIONS).await
}

/// `dispute-core migrate`: applies the migrations and returns.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    config
        .database
        .migrate(&config.database_settings(), &MIGRATIONS)
        .await?;
    tracing::info!(migrations = MIGRATIONS.iter().count(), "schema up to date");
    Ok(())
}

/// dispute-core's own credential for background calls to document-store: the token file
/// when one is configured, else (development, HS256) tokens minted with the development key.
fn background_credential(config: &Config) -> Option<BackgroundCredential> {
    match (&config.background_token_file, config.auth.dev_secret()) {
        (Some(path), _) => Some(BackgroundCredential::TokenFile(path.clone())),
        (None, Some(secret)) => Some(BackgroundCredential::DevMinted(secret.clone())),
        (None, None) => {
            tracing::warn!(
                "no --background-token-file: the locks of submissions that did not happen \
                 are not released until one is configured"
            );
            None
        }
    }
}

/// Runs the service on `listener` until `shutdown` is cancelled, then drains.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let verifier = config.auth.verifier()?;
    let stream_limits = app::events::StreamLimits::new(config.event_stream_limits()?);
    let retention_settings = config.retention.settings()?;
    // Secrets are SecretString: Debug prints them redacted.
    tracing::info!(config = ?config, "effective configuration");
    // The serving pool: migrated first unless `migrate_on_start` is off.
    let pool = config
        .database
        .connect_for_serving(&config.database_settings(), &MIGRATIONS)
        .await?;
    let app = app::Disputes {
        pool,
        documents: clients::documents::DocumentsClient::connect_lazy_with_tls(
            &config.document_store_url,
            config.tls.document_store_ca(),
        )?
        .with_background(background_credential(&config)),
        policy: config.money_policy(),
    }
    .with_snapshots(grpc::encode_dispute, grpc::status::encode_refusal)
    .with_due_soon_lead(config.due_soon_lead())
    .with_event_recording(config.event_streams.record_events);
    let webhook_settings = app::WebhookSettings {
        // Attempts in flight at SIGTERM get half the worker stop timeout, then their claims
        // are released.
        stop_grace: config.worker_stop_timeout() / 2,
        ..config.webhooks.settings()
    };
    let webhooks = app::Webhooks::new(
        app.pool().clone(),
        webhook_settings,
        grpc::event_service::webhook_json::render,
    )?;
    // Before serving: no secret stays in plaintext or under a retired key, and a secret
    // under a key no longer configured stops the start rather than the deliveries.
    let resealed = webhooks.reseal_secrets().await?;
    tracing::info!(
        endpoints = resealed.endpoints,
        "webhook secrets sealed under the active key"
    );
    // The background workers, each started through the kit and stopped with the service:
    // the deadline sweeper and its fellow periodic jobs, the event listener (one LISTEN
    // connection wakes every StreamEvents stream of this process) and sequencer, the
    // retention purge and the webhook delivery worker.
    let mut workers = Workers::new(&shutdown);
    app.start_workers(
        &mut workers,
        Duration::from_secs(config.sweep_interval_secs.max(1)),
    );
    let event_hub = app::events::start_event_workers(
        &mut workers,
        app.pool().clone(),
        app.event_wake(),
        config.event_poll_interval(),
    );
    app::retention::Retention::new(app.pool().clone(), retention_settings)
        .start_worker(&mut workers, shutdown.clone());
    if config.webhooks.webhook_worker {
        webhooks.start_worker(&mut workers, event_hub.deliveries_announced());
    }
    let service = InterceptedService::new(
        DisputeServiceServer::new(grpc::DisputeServiceHandler::new(app.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
        AuthInterceptor::new(),
    );
    let event_service = InterceptedService::new(
        EventServiceServer::new(grpc::event_service::EventServiceHandler::new(
            app.clone(),
            event_hub,
            grpc::event_service::FeedSettings {
                heartbeat: config.event_stream_heartbeat(),
                shutdown: shutdown.clone(),
                limits: stream_limits,
            },
            webhooks,
        ))
        .max_decoding_message_size(MAX_MESSAGE_BYTES),
        AuthInterceptor::new(),
    );

    tracing::info!(
        listen_addr = %listener.local_addr()?,
        document_store_url = %config.document_store_url,
        "dispute-core serving"
    );
    let (http2_keepalive_interval, http2_keepalive_timeout) = config.resilience.http2_keepalive();
    let database_probe = config
        .database
        .readiness_probe(&config.database_settings())?;
    let settings = ServeSettings {
        call_limits: config
            .call_limits()
            .per_tenant(verifier, config.database.db_max_connections),
        http2_keepalive_interval,
        http2_keepalive_timeout,
        access_log: config.telemetry.access_log,
        tls: config.tls.server_config()?,
        readiness: Some(ReadinessProbe::new(
            config.resilience.health_probe_interval(),
            config.resilience.health_probe_timeout(),
            move || {
                let probe = database_probe.clone();
                async move { probe.check().await }
            },
        )),
        other_service_names: &[EVENT_SERVICE_NAME],
        ..ServeSettings::new(
            SERVICE_NAME,
            disputes_proto::FILE_DESCRIPTOR_SET,
            config.drain_timeout(),
        )
    };
    let served = serve(
        tonic::service::Routes::new(service).add_service(event_service),
        listener,
        settings,
        shutdown.clone(),
    )
    .await;
    // `serve` leaves `shutdown` cancelled, so the workers stop too; on an error, stop them.
    shutdown.cancel();
    if !workers.stop(config.worker_stop_timeout()).await {
        tracing::warn!(
            "a background worker run was cut off at exit; it is retried at the next start"
        );
    }
    app.pool().close().await;
    tracing::info!("dispute-core stopped");
    served
}
