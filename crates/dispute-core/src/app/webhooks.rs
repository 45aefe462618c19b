//! Webhook use cases: endpoints (create, read, list, update, delete, rotate the secret)
//! and deliveries (list with attempts, retry). The delivery worker is in
//! `app/webhook_worker.rs`; deliveries are made by `app/webhook_fanout.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use domain_kit::ids::WebhookEndpointId;
use domain_kit::page_token::{PageCursor, decode_page_token, encode_page_token};
use domain_kit::violation::Violation;
use rand::RngCore;
use sqlx::PgPool;

use crate::domain::DisputeError;
use crate::domain::webhooks::{self as rules, UrlPolicy};
use crate::store::webhooks::{self as store, DeliveryFilter, EndpointChanges, NewEndpoint};
/// What the use cases return: the stored rows.
pub use crate::store::webhooks::{AttemptRow, DeliveryRow, EndpointRow};

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
    /// At shutdown, how long attempts in flight may finish before they are cut off and
    /// their claims released (within the worker stop timeout).
    pub stop_grace: Duration,
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
            stop_grace: Duration::from_secs(2),
        }
    }
}

/// How a delivery's JSON body is made from its event: the transport knows the dispute's
/// wire form (`grpc::webhook_json::render`). Arguments: event id, type, encoded dispute,
/// creation time.
pub type WebhookBodyRenderer = fn(&str, &str, &[u8], DateTime<Utc>) -> anyhow::Result<Vec<u8>>;

/// The webhook use cases and worker. Cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    pub(super) pool: PgPool,
    pub(super) settings: WebhookSettings,
    pub(super) render: WebhookBodyRenderer,
    pub(super) client: reqwest::Client,
    /// Attempts by outcome and their latency (`webhooks.deliveries`,
    /// `webhooks.delivery.duration`).
    pub(super) metrics: service_kit::metrics::WebhookMetrics,
    /// Pending deliveries of every tenant as the worker last counted them
    /// (`webhooks.backlog`).
    pub(super) backlog: Arc<AtomicU64>,
}

/// CreateWebhookEndpoint, checked.
#[derive(Debug, Clone)]
pub struct NewEndpointInput {
    pub url: String,
    pub event_types: Vec<String>,
    pub description: String,
    pub request_id: Option<String>,
}

/// UpdateWebhookEndpoint, checked.
#[derive(Debug, Clone, Default)]
pub struct EndpointUpdate {
    pub event_types: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// ListDeliveries' filters, checked.
#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    pub endpoint_id: Option<String>,
    pub event_id: Option<String>,
    pub status: Option<&'static str>,
}

/// One page of endpoints or deliveries.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: String,
}

/// A delivery with its attempts, oldest first.
#[derive(Debug, Clone)]
pub struct DeliveryDetails {
    pub delivery: DeliveryRow,
    pub attempts: Vec<AttemptRow>,
}

fn endpoint_not_found(id: &str) -> DisputeError {
    DisputeError::NotFound {
        kind: "webhook_endpoint",
        id: id.to_owned(),
    }
}

fn delivery_not_found(id: &str) -> DisputeError {
    DisputeError::NotFound {
        kind: "webhook_delivery",
        id: id.to_owned(),
    }
}

fn bad_token(error: domain_kit::page_token::PageTokenError) -> DisputeError {
    DisputeError::Validation(vec![Violation::new("page_token", error.to_string())])
}

/// A fresh `whsec_` secret.
fn new_secret() -> String {
    let mut key = [0u8; rules::SECRET_KEY_BYTES];
    rand::rng().fill_bytes(&mut key);
    rules::secret_from_key(&key)
}

impl Webhooks {
    /// The use cases over `pool`, delivering with `settings` and rendering bodies with
    /// `render`.
    pub fn new(
        pool: PgPool,
        settings: WebhookSettings,
        render: WebhookBodyRenderer,
    ) -> anyhow::Result<Self> {
        let client = super::webhook_worker::http_client(&settings)?;
        let backlog = Arc::new(AtomicU64::new(0));
        let observed = backlog.clone();
        service_kit::metrics::WebhookMetrics::observe_backlog(move || {
            observed.load(Ordering::Relaxed)
        });
        Ok(Self {
            pool,
            settings,
            render,
            client,
            metrics: service_kit::metrics::WebhookMetrics::new(),
            backlog,
        })
    }

    pub fn url_policy(&self) -> UrlPolicy {
        self.settings.url_policy
    }

    pub async fn create_endpoint(
        &self,
        tenant_id: &str,
        input: NewEndpointInput,
    ) -> Result<EndpointRow, DisputeError> {
        let id = WebhookEndpointId::generate();
        let secret = new_secret();
        let mut conn = self.pool.acquire().await.context("acquire")?;
        Ok(store::insert_endpoint(
            &mut conn,
            tenant_id,
            &NewEndpoint {
                id: id.as_str(),
                url: &input.url,
                event_types: &input.event_types,
                description: &input.description,
                secret: &secret,
                request_id: input.request_id.as_deref(),
            },
        )
        .await?)
    }

    pub async fn get_endpoint(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<EndpointRow, DisputeError> {
        let mut conn = self.pool.acquire().await.context("acquire")?;
        store::find_endpoint(&mut conn, tenant_id, id)
            .await?
            .ok_or_else(|| endpoint_not_found(id))
    }

    pub async fn list_endpoints(
        &self,
        tenant_id: &str,
        page_size: i64,
        page_token: &str,
    ) -> Result<Page<EndpointRow>, DisputeError> {
        let after = decode_page_token(page_token, "endpoints").map_err(bad_token)?;
        let mut conn = self.pool.acquire().await.context("acquire")?;
        let mut rows =
            store::list_endpoints(&mut conn, tenant_id, after.as_ref(), page_size + 1).await?;
        let next_page_token = next_token(&mut rows, page_size, "endpoints", |r| PageCursor {
            create_time: r.created_at,
            id: r.id.clone(),
        });
        Ok(Page {
            items: rows,
            next_page_token,
        })
    }

    pub async fn update_endpoint(
        &self,
        tenant_id: &str,
        id: &str,
        update: EndpointUpdate,
    ) -> Result<EndpointRow, DisputeError> {
        let mut conn = self.pool.acquire().await.context("acquire")?;
        store::update_endpoint(
            &mut conn,
            tenant_id,
            id,
            &EndpointChanges {
                event_types: update.event_types.as_deref(),
                description: update.description.as_deref(),
                enabled: update.enabled,
            },
        )
        .await?
        .ok_or_else(|| endpoint_not_found(id))
    }

    pub async fn delete_endpoint(&self, tenant_id: &str, id: &str) -> Result<(), DisputeError> {
        let mut tx = self.pool.begin().await.context("begin")?;
        if !store::delete_endpoint(&mut tx, tenant_id, id).await? {
            return Err(endpoint_not_found(id));
        }
        tx.commit().await.context("commit")?;
        Ok(())
    }

    /// A new secret; the current one signs alongside it for `overlap`.
    pub async fn rotate_secret(
        &self,
        tenant_id: &str,
        id: &str,
        overlap: Duration,
    ) -> Result<EndpointRow, DisputeError> {
        let until =
            Utc::now() + chrono::Duration::from_std(overlap).context("overlap out of range")?;
        let mut conn = self.pool.acquire().await.context("acquire")?;
        store::rotate_secret(&mut conn, tenant_id, id, &new_secret(), until)
            .await?
            .ok_or_else(|| endpoint_not_found(id))
    }

    pub async fn list_deliveries(
        &self,
        tenant_id: &str,
        query: &DeliveryQuery,
        page_size: i64,
        page_token: &str,
    ) -> Result<Page<DeliveryDetails>, DisputeError> {
        let fingerprint = format!(
            "deliveries|{}|{}|{}",
            query.endpoint_id.as_deref().unwrap_or_default(),
            query.event_id.as_deref().unwrap_or_default(),
            query.status.unwrap_or_default()
        );
        let after = decode_page_token(page_token, &fingerprint).map_err(bad_token)?;
        let mut conn = self.pool.acquire().await.context("acquire")?;
        let filter = DeliveryFilter {
            endpoint_id: query.endpoint_id.as_deref(),
            event_id: query.event_id.as_deref(),
            status: query.status,
        };
        let mut rows =
            store::list_deliveries(&mut conn, tenant_id, &filter, after.as_ref(), page_size + 1)
                .await?;
        let next_page_token = next_token(&mut rows, page_size, &fingerprint, |r| PageCursor {
            create_time: r.created_at,
            id: r.id.clone(),
        });
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let mut attempts = store::attempts_of(&mut conn, tenant_id, &ids).await?;
        let items = rows
            .into_iter()
            .map(|delivery| {
                let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut attempts)
                    .into_iter()
                    .partition(|a| a.delivery_id == delivery.id);
                attempts = rest;
                DeliveryDetails {
                    delivery,
                    attempts: mine,
                }
            })
            .collect();
        Ok(Page {
            items,
            next_page_token,
        })
    }

    pub async fn retry_delivery(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<DeliveryDetails, DisputeError> {
        let mut tx = self.pool.begin().await.context("begin")?;
        let delivery = store::retry_delivery(&mut tx, tenant_id, id)
            .await?
            .ok_or_else(|| delivery_not_found(id))?;
        let attempts =
            store::attempts_of(&mut tx, tenant_id, std::slice::from_ref(&delivery.id)).await?;
        tx.commit().await.context("commit")?;
        Ok(DeliveryDetails { delivery, attempts })
    }
}

/// Cuts the extra row fetched to know whether a next page exists; its token.
fn next_token<T>(
    rows: &mut Vec<T>,
    page_size: i64,
    fingerprint: &str,
    cursor: impl Fn(&T) -> PageCursor,
) -> String {
    let size = usize::try_from(page_size).unwrap_or(usize::MAX);
    if rows.len() > size {
        rows.truncate(size);
        rows.last()
            .map(|last| encode_page_token(&cursor(last), fingerprint))
            .unwrap_or_default()
    } else {
        String::new()
    }
}
