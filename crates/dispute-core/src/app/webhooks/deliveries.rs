//! ListDeliveries and RetryDelivery: deliveries with their attempts.

use anyhow::Context;
use domain_kit::ids::WebhookDeliveryId;
use domain_kit::page_token::PageCursor;

use super::{Page, Webhooks};
use crate::domain::DisputeError;
use crate::domain::requests::ListDeliveries;
use crate::domain::webhooks::{DeliveryDetails, check_manual_retry};
use crate::store::webhooks::{self as store, DeliveryFilter};

fn delivery_not_found(id: &str) -> DisputeError {
    DisputeError::NotFound {
        kind: "webhook_delivery",
        id: id.to_owned(),
    }
}

impl Webhooks {
    /// The tenant's deliveries that pass the filters, newest first, each with its attempts.
    pub async fn list_deliveries(
        &self,
        tenant_id: &str,
        request: &ListDeliveries,
    ) -> Result<Page<DeliveryDetails>, DisputeError> {
        let page = &request.page;
        let filter = DeliveryFilter {
            endpoint_id: request.filter.endpoint_id.as_ref().map(|id| id.as_str()),
            event_id: request.filter.event_id.as_ref().map(|id| id.as_str()),
            status: request.filter.status,
        };
        let mut conn = self.pool.acquire().await.context("acquire")?;
        let rows = store::list_deliveries(
            &mut conn,
            tenant_id,
            &filter,
            page.after.as_ref(),
            page.fetch_limit(),
        )
        .await?;
        let (rows, next_page_token) = page.cut(rows, |last| PageCursor {
            create_time: last.created_at,
            id: last.id.clone(),
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

    /// Schedules another attempt of a delivery that succeeded or failed, now, at most
    /// `MAX_MANUAL_RETRIES` times (`check_manual_retry`).
    pub async fn retry_delivery(
        &self,
        tenant_id: &str,
        id: &WebhookDeliveryId,
    ) -> Result<DeliveryDetails, DisputeError> {
        let mut tx = service_kit::database::begin(&self.pool)
            .await
            .context("begin")?;
        let (delivery, manual_retries) =
            store::lock_delivery_for_retry(&mut tx, tenant_id, id.as_str())
                .await?
                .ok_or_else(|| delivery_not_found(id.as_str()))?;
        check_manual_retry(&delivery, manual_retries)?;
        let delivery = store::retry_delivery(&mut tx, tenant_id, id.as_str())
            .await?
            .ok_or_else(|| delivery_not_found(id.as_str()))?;
        let attempts =
            store::attempts_of(&mut tx, tenant_id, std::slice::from_ref(&delivery.id)).await?;
        tx.commit().await.context("commit")?;
        // This replica's worker tries it now; the others' find it when they poll.
        self.retried.notify_one();
        Ok(DeliveryDetails { delivery, attempts })
    }
}
