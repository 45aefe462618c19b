//! CreateWebhookEndpoint, GetWebhookEndpoint, ListWebhookEndpoints, UpdateWebhookEndpoint,
//! DeleteWebhookEndpoint and RotateWebhookSecret.

use anyhow::Context;
use chrono::Utc;
use domain_kit::ids::WebhookEndpointId;
use domain_kit::page_token::PageCursor;
use rand::RngCore;
use secrecy::SecretString;

use super::{Page, Webhooks};
use crate::domain::DisputeError;
use crate::domain::requests::{
    CreateWebhookEndpoint, ListWebhookEndpoints, RotateWebhookSecret, UpdateWebhookEndpoint,
};
use crate::domain::webhooks::{
    SECRET_KEY_BYTES, SecretSlot, WebhookEndpoint, check_create_replay, create_request_fingerprint,
    endpoint_limit_reached, secret_from_key,
};
use crate::store::webhooks::{
    self as store, EndpointChanges, EndpointInsert, NewEndpoint, SealedSecrets,
};

fn endpoint_not_found(id: &str) -> DisputeError {
    DisputeError::NotFound {
        kind: "webhook_endpoint",
        id: id.to_owned(),
    }
}

/// A fresh `whsec_` secret.
fn new_secret() -> SecretString {
    let mut key = [0u8; SECRET_KEY_BYTES];
    rand::rng().fill_bytes(&mut key);
    SecretString::from(secret_from_key(&key))
}

/// An endpoint with its current secret in the clear: what CreateWebhookEndpoint and
/// RotateWebhookSecret answer (the only time a secret leaves the service).
#[derive(Debug)]
pub struct EndpointWithSecret {
    pub endpoint: WebhookEndpoint,
    pub secret: SecretString,
}

impl Webhooks {
    /// A new endpoint with a fresh secret, sealed. With a request id already used: the same
    /// answer for the same body while the endpoint exists, its secret was never rotated and
    /// the first request is recent (`check_create_replay`); refused otherwise. A tenant that
    /// has the most endpoints allowed gets `LimitReached`.
    pub async fn create_endpoint(
        &self,
        tenant_id: &str,
        input: CreateWebhookEndpoint,
    ) -> Result<EndpointWithSecret, DisputeError> {
        let id = WebhookEndpointId::generate();
        let secret = new_secret();
        let sealed = self.seal(&secret, tenant_id, id.as_str(), SecretSlot::Current)?;
        let fingerprint =
            create_request_fingerprint(&input.url, &input.event_types, &input.description);
        let limit = self.settings.max_endpoints_per_tenant;
        let mut tx = service_kit::database::begin(&self.pool)
            .await
            .context("begin")?;
        let inserted = store::insert_endpoint(
            &mut tx,
            tenant_id,
            &NewEndpoint {
                id: id.as_str(),
                url: &input.url,
                event_types: &input.event_types,
                description: &input.description,
                secret: &sealed,
                request_id: input.request_id.as_deref(),
                request_fingerprint: &fingerprint,
            },
            |live| endpoint_limit_reached(live, limit),
        )
        .await?;
        tx.commit().await.context("commit")?;
        match inserted {
            EndpointInsert::Made(endpoint) => Ok(EndpointWithSecret {
                endpoint: *endpoint,
                secret,
            }),
            EndpointInsert::Replayed {
                endpoint,
                fingerprint: first_fingerprint,
            } => {
                check_create_replay(
                    &endpoint,
                    first_fingerprint.as_deref(),
                    &fingerprint,
                    Utc::now(),
                )?;
                let secret = self.open_current(tenant_id, &endpoint)?;
                Ok(EndpointWithSecret {
                    endpoint: *endpoint,
                    secret,
                })
            }
            EndpointInsert::LimitReached(_) => Err(DisputeError::LimitReached {
                reason: "WEBHOOK_ENDPOINT_LIMIT",
                message: format!(
                    "a tenant may have at most {limit} webhook endpoints; delete one first"
                ),
                limit: u64::from(limit),
            }),
        }
    }

    pub async fn get_endpoint(
        &self,
        tenant_id: &str,
        id: &WebhookEndpointId,
    ) -> Result<WebhookEndpoint, DisputeError> {
        let mut conn = self.pool.acquire().await.context("acquire")?;
        store::find_endpoint(&mut conn, tenant_id, id.as_str())
            .await?
            .ok_or_else(|| endpoint_not_found(id.as_str()))
    }

    /// The tenant's endpoints, newest first.
    pub async fn list_endpoints(
        &self,
        tenant_id: &str,
        request: &ListWebhookEndpoints,
    ) -> Result<Page<WebhookEndpoint>, DisputeError> {
        let page = &request.page;
        let mut conn = self.pool.acquire().await.context("acquire")?;
        let rows = store::list_endpoints(
            &mut conn,
            tenant_id,
            page.after.as_ref(),
            page.fetch_limit(),
        )
        .await?;
        let (items, next_page_token) = page.cut(rows, |last| PageCursor {
            create_time: last.created_at,
            id: last.id.clone(),
        });
        Ok(Page {
            items,
            next_page_token,
        })
    }

    pub async fn update_endpoint(
        &self,
        tenant_id: &str,
        update: UpdateWebhookEndpoint,
    ) -> Result<WebhookEndpoint, DisputeError> {
        let mut conn = self.pool.acquire().await.context("acquire")?;
        let changes = &update.changes;
        store::update_endpoint(
            &mut conn,
            tenant_id,
            update.id.as_str(),
            &EndpointChanges {
                event_types: changes.event_types.as_deref(),
                description: changes.description.as_deref(),
                enabled: changes.enabled,
            },
        )
        .await?
        .ok_or_else(|| endpoint_not_found(update.id.as_str()))
    }

    /// Deletes an endpoint and fails its pending deliveries.
    pub async fn delete_endpoint(
        &self,
        tenant_id: &str,
        id: &WebhookEndpointId,
    ) -> Result<(), DisputeError> {
        let mut tx = service_kit::database::begin(&self.pool)
            .await
            .context("begin")?;
        if !store::delete_endpoint(&mut tx, tenant_id, id.as_str()).await? {
            return Err(endpoint_not_found(id.as_str()));
        }
        tx.commit().await.context("commit")?;
        Ok(())
    }

    /// A new secret; the current one signs alongside it for the overlap (none with an
    /// overlap of zero). Both are sealed anew: the previous slot is part of the associated
    /// data.
    pub async fn rotate_secret(
        &self,
        tenant_id: &str,
        request: &RotateWebhookSecret,
    ) -> Result<EndpointWithSecret, DisputeError> {
        let until = Utc::now()
            + chrono::Duration::from_std(request.overlap).context("overlap out of range")?;
        let id = request.id.as_str();
        let secret = new_secret();
        let current = self.seal(&secret, tenant_id, id, SecretSlot::Current)?;
        let mut tx = service_kit::database::begin(&self.pool)
            .await
            .context("begin")?;
        let endpoint = store::lock_endpoint(&mut tx, tenant_id, id)
            .await?
            .ok_or_else(|| endpoint_not_found(id))?;
        let previous = match request.overlap.is_zero() {
            true => None,
            false => {
                let outgoing = self.open_current(tenant_id, &endpoint)?;
                Some(self.seal(&outgoing, tenant_id, id, SecretSlot::Previous)?)
            }
        };
        let rotated = store::rotate_secret(
            &mut tx,
            tenant_id,
            id,
            &SealedSecrets {
                current: &current,
                previous: previous.as_ref(),
            },
            until,
        )
        .await?
        .ok_or_else(|| endpoint_not_found(id))?;
        tx.commit().await.context("commit")?;
        Ok(EndpointWithSecret {
            endpoint: rotated,
            secret,
        })
    }
}
