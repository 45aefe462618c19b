//! Webhooks: endpoints (`endpoints`: create, read, list, update, delete, rotate the secret),
//! deliveries (`deliveries`: list with their attempts, retry), signing secrets sealed at
//! rest (`secrets`: seal, open, the start-up job that seals and reseals) and the delivery
//! worker of each replica (`worker`), with its metrics (`metrics`).
//!
//! Deliveries are made in the transaction that records their event, by the same statement
//! (`store::events::insert_events_with_deliveries`, called where the app records events):
//! none is lost and none is made twice. The worker then POSTs them through the outbound
//! client in `clients::webhook_http`.
//!
//! This file holds what the others share; of them it uses only `metrics`, which uses
//! nothing else here, so no file imports one that imports it back.

mod deliveries;
mod endpoints;
mod metrics;
mod secrets;
mod worker;

pub use endpoints::EndpointWithSecret;
pub use secrets::ResealReport;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::clients::webhook_http::WebhookHttpClient;
use crate::domain::webhooks::{
    BreakerPolicy, DEFAULT_MAX_ENDPOINTS_PER_TENANT, SecretKeyring, UrlPolicy,
};

/// How deliveries are made: the deployment's flags.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub url_policy: UrlPolicy,
    /// Divides every delay of the retry schedule and the disable period (tests: e.g. 1000).
    pub time_scale: f64,
    /// One POST's limit, connection included.
    pub attempt_timeout: Duration,
    /// How long a claim lasts; another replica takes a delivery whose lease ran out.
    pub lease: Duration,
    /// How often workers look for due deliveries besides being woken by new ones.
    pub poll_interval: Duration,
    /// An endpoint all of whose attempts failed for this long (before scaling) is disabled.
    pub disable_after: Duration,
    /// POSTs in flight per replica.
    pub concurrency: usize,
    /// Attempts in flight per endpoint, across replicas (one while its breaker is half-open).
    pub endpoint_concurrency: usize,
    /// Attempts in flight per tenant on one replica (at most `concurrency`).
    pub tenant_concurrency: usize,
    /// When an endpoint's breaker opens and for how long (before the time scale).
    pub breaker: BreakerPolicy,
    /// Endpoints a tenant may have (deleted ones do not count).
    pub max_endpoints_per_tenant: u32,
    /// At shutdown, how long attempts in flight may finish before they are cut off and
    /// their claims released (within the worker stop timeout).
    pub stop_grace: Duration,
    /// Seal and open the endpoints' signing secrets (the first seals); Debug shows only
    /// the key ids.
    pub secret_keys: SecretKeyring,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            url_policy: UrlPolicy::default(),
            time_scale: 1.0,
            attempt_timeout: Duration::from_secs(10),
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            disable_after: Duration::from_secs(3 * 24 * 3600),
            concurrency: 16,
            endpoint_concurrency: 16,
            tenant_concurrency: 8,
            breaker: BreakerPolicy::default(),
            max_endpoints_per_tenant: DEFAULT_MAX_ENDPOINTS_PER_TENANT,
            stop_grace: Duration::from_secs(2),
            secret_keys: SecretKeyring::default(),
        }
    }
}

/// How a delivery's JSON body is made from its event: the transport knows the dispute's
/// wire form (`grpc::event_service::webhook_json::render`). Arguments: event id, type,
/// encoded dispute, creation time.
pub type WebhookBodyRenderer = fn(&str, &str, &[u8], DateTime<Utc>) -> anyhow::Result<Vec<u8>>;

/// The webhook use cases and worker. Cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    pool: PgPool,
    settings: WebhookSettings,
    render: WebhookBodyRenderer,
    client: WebhookHttpClient,
    /// Attempts by outcome and their latency (`webhooks.deliveries`,
    /// `webhooks.delivery.duration`).
    metrics: metrics::WebhookMetrics,
    /// Pending deliveries of every tenant as the worker last counted them
    /// (`webhooks.backlog`).
    backlog: Arc<AtomicU64>,
    /// Wakes this replica's worker after a manual retry (writers send no NOTIFY).
    retried: Arc<Notify>,
}

/// One page of endpoints or deliveries.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Empty on the last page.
    pub next_page_token: String,
}

impl Webhooks {
    /// The use cases over `pool`, delivering with `settings` and rendering bodies with
    /// `render`. Refused without a secret key: endpoints' secrets could be neither made nor
    /// opened.
    pub fn new(
        pool: PgPool,
        settings: WebhookSettings,
        render: WebhookBodyRenderer,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !settings.secret_keys.is_empty(),
            "--webhook-secret-keys (env DISPUTE_CORE_WEBHOOK_SECRET_KEYS) is required to \
             serve: comma-separated `key_id:base64 of 32 bytes`, the first encrypts webhook \
             signing secrets at rest; make a key with `openssl rand -base64 32`, e.g. \
             DISPUTE_CORE_WEBHOOK_SECRET_KEYS=k1:$(openssl rand -base64 32)"
        );
        let client = WebhookHttpClient::new(settings.url_policy, settings.attempt_timeout)?;
        let backlog = Arc::new(AtomicU64::new(0));
        let observed = backlog.clone();
        metrics::WebhookMetrics::observe_backlog(move || observed.load(Ordering::Relaxed));
        Ok(Self {
            pool,
            settings,
            render,
            client,
            metrics: metrics::WebhookMetrics::new(),
            backlog,
            retried: Arc::new(Notify::new()),
        })
    }

    /// Which endpoint URLs the deployment allows.
    pub fn url_policy(&self) -> UrlPolicy {
        self.settings.url_policy
    }
}
