//! Webhook endpoints and deliveries (scope `webhooks:manage`): each handler checks the
//! request (rules in `domain::webhooks`), calls one use case (`app::webhooks`) and maps the
//! result back. Errors become statuses in status.rs.

use std::time::Duration;

use disputes_proto::disputes_v1 as pb;
use domain_kit::ids::{EventId, WebhookDeliveryId, WebhookEndpointId};
use domain_kit::page_token::effective_page_size;
use domain_kit::violation::{Violation, nul_violations};
use service_kit::auth::{Caller, Scope};
use service_kit::time::timestamp;
use tonic::{Request, Response, Status};

use crate::app::webhooks::{
    AttemptRow, DeliveryDetails, DeliveryQuery, EndpointRow, EndpointUpdate, NewEndpointInput,
    Webhooks,
};
use crate::domain::DisputeError;
use crate::domain::webhooks::{self as rules, DEFAULT_ROTATION_OVERLAP, MAX_ROTATION_OVERLAP};

pub struct WebhookRpcs {
    webhooks: Webhooks,
}

fn refuse(violations: Vec<Violation>) -> Result<(), Status> {
    if violations.is_empty() {
        Ok(())
    } else {
        Err(DisputeError::Validation(violations).into())
    }
}

fn endpoint_id(field: &str, value: &str) -> Result<WebhookEndpointId, Status> {
    refuse(nul_violations([(field, value)]))?;
    WebhookEndpointId::parse(field, value).map_err(|v| DisputeError::Validation(vec![v]).into())
}

fn check_request_id(value: &str) -> Option<Violation> {
    let ok = value.len() <= 255 && value.bytes().all(|b| (0x20..0x7f).contains(&b));
    (!ok).then(|| Violation::new("request_id", "must be 1-255 printable ASCII characters"))
}

fn event_type_nuls(types: &[String]) -> Vec<Violation> {
    nul_violations(
        types
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("event_types[{i}]"), t.as_str())),
    )
}

fn endpoint_of(row: EndpointRow) -> pb::WebhookEndpoint {
    pb::WebhookEndpoint {
        id: row.id,
        url: row.url,
        event_types: row.event_types,
        description: row.description,
        enabled: row.enabled,
        disabled_reason: row.disabled_reason,
        create_time: Some(timestamp(row.created_at)),
        update_time: Some(timestamp(row.updated_at)),
        failing_since: row.failing_since.map(timestamp),
        previous_secret_expire_time: row
            .previous_secret_expires_at
            .filter(|t| *t > chrono::Utc::now())
            .map(timestamp),
    }
}

fn status_of(stored: &str) -> pb::WebhookDeliveryStatus {
    match stored {
        "pending" => pb::WebhookDeliveryStatus::Pending,
        "succeeded" => pb::WebhookDeliveryStatus::Succeeded,
        "failed" => pb::WebhookDeliveryStatus::Failed,
        _ => pb::WebhookDeliveryStatus::Unspecified,
    }
}

fn attempt_of(row: AttemptRow) -> pb::WebhookAttempt {
    let micros = row.latency_us.max(0);
    pb::WebhookAttempt {
        number: row.number,
        start_time: Some(timestamp(row.started_at)),
        response_status_code: row.response_status,
        error: row.error,
        latency: Some(prost_types::Duration {
            seconds: micros / 1_000_000,
            nanos: i32::try_from((micros % 1_000_000) * 1000).unwrap_or(0),
        }),
        response_body_prefix: row.response_body_prefix,
    }
}

fn delivery_of(details: DeliveryDetails) -> pb::WebhookDelivery {
    let d = details.delivery;
    let status = status_of(&d.status);
    pb::WebhookDelivery {
        id: d.id,
        endpoint_id: d.endpoint_id,
        event_id: d.event_id,
        event_type: d.event_type,
        status: status as i32,
        attempt_count: d.attempt_count,
        attempts: details.attempts.into_iter().map(attempt_of).collect(),
        next_attempt_time: d
            .next_attempt_at
            .filter(|_| status == pb::WebhookDeliveryStatus::Pending)
            .map(timestamp),
        create_time: Some(timestamp(d.created_at)),
    }
}

/// The overlap of a rotation: default 24 hours, 0 to 30 days.
fn overlap_of(overlap: Option<&prost_types::Duration>) -> Result<Duration, Status> {
    let Some(overlap) = overlap else {
        return Ok(DEFAULT_ROTATION_OVERLAP);
    };
    let bad = || {
        Status::from(DisputeError::Validation(vec![Violation::new(
            "overlap",
            "must be between 0 and 30 days",
        )]))
    };
    if overlap.seconds < 0 || overlap.nanos < 0 {
        return Err(bad());
    }
    let value = Duration::new(
        u64::try_from(overlap.seconds).map_err(|_| bad())?,
        u32::try_from(overlap.nanos).map_err(|_| bad())?,
    );
    if value > MAX_ROTATION_OVERLAP {
        return Err(bad());
    }
    Ok(value)
}

impl WebhookRpcs {
    pub fn new(webhooks: Webhooks) -> Self {
        Self { webhooks }
    }

    pub async fn create_endpoint(
        &self,
        request: Request<pb::CreateWebhookEndpointRequest>,
    ) -> Result<Response<pb::CreateWebhookEndpointResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::WebhooksManage)?;
        let request = request.into_inner();
        let mut nul = nul_violations([
            ("url", request.url.as_str()),
            ("description", request.description.as_str()),
            ("request_id", request.request_id.as_str()),
        ]);
        nul.extend(event_type_nuls(&request.event_types));
        refuse(nul)?;
        let mut violations = Vec::new();
        if let Err(v) = rules::check_url(self.webhooks.url_policy(), &request.url) {
            violations.push(v);
        }
        violations.extend(rules::check_event_types(
            "event_types",
            &request.event_types,
        ));
        violations.extend(rules::check_description(&request.description));
        violations.extend(check_request_id(&request.request_id));
        refuse(violations)?;
        let row = self
            .webhooks
            .create_endpoint(
                &caller.tenant_id,
                NewEndpointInput {
                    url: request.url,
                    event_types: request.event_types,
                    description: request.description,
                    request_id: (!request.request_id.is_empty()).then_some(request.request_id),
                },
            )
            .await?;
        let secret = row.secret.clone();
        Ok(Response::new(pb::CreateWebhookEndpointResponse {
            endpoint: Some(endpoint_of(row)),
            secret,
        }))
    }

    pub async fn get_endpoint(
        &self,
        request: Request<pb::GetWebhookEndpointRequest>,
    ) -> Result<Response<pb::GetWebhookEndpointResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::WebhooksManage)?;
        let id = endpoint_id("id", &request.get_ref().id)?;
        let row = self
            .webhooks
            .get_endpoint(&caller.tenant_id, id.as_str())
            .await?;
        Ok(Response::new(pb::GetWebhookEndpointResponse {
            endpoint: Some(endpoint_of(row)),
        }))
    }

    pub async fn list_endpoints(
        &self,
        request: Request<pb::ListWebhookEndpointsRequest>,
    ) -> Result<Response<pb::ListWebhookEndpointsResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::WebhooksManage)?;
        let request = request.into_inner();
        refuse(nul_violations([(
            "page_token",
            request.page_token.as_str(),
        )]))?;
        let page = self
            .webhooks
            .list_endpoints(
                &caller.tenant_id,
                effective_page_size(request.page_size),
                &request.page_token,
            )
            .await?;
        Ok(Response::new(pb::ListWebhookEndpointsResponse {
            endpoints: page.items.into_iter().map(endpoint_of).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    pub async fn update_endpoint(
        &self,
        request: Request<pb::UpdateWebhookEndpointRequest>,
    ) -> Result<Response<pb::UpdateWebhookEndpointResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::WebhooksManage)?;
        let request = request.into_inner();
        let Some(endpoint) = request.endpoint else {
            return Err(
                DisputeError::Validation(vec![Violation::new("endpoint", "is required")]).into(),
            );
        };
        let id = endpoint_id("endpoint.id", &endpoint.id)?;
        let paths = request.update_mask.map(|m| m.paths).unwrap_or_default();
        let mut violations = Vec::new();
        if paths.is_empty() {
            violations.push(Violation::new(
                "update_mask",
                "must name at least one of event_types, description, enabled",
            ));
        }
        let mut update = EndpointUpdate::default();
        for path in &paths {
            match path.as_str() {
                "event_types" => {
                    let mut found = event_type_nuls(&endpoint.event_types);
                    if found.is_empty() {
                        found =
                            rules::check_event_types("endpoint.event_types", &endpoint.event_types);
                    }
                    violations.extend(found);
                    update.event_types = Some(endpoint.event_types.clone());
                }
                "description" => {
                    violations.extend(nul_violations([(
                        "endpoint.description",
                        endpoint.description.as_str(),
                    )]));
                    violations.extend(
                        rules::check_description(&endpoint.description).map(|v| {
                            Violation::new(format!("endpoint.{}", v.field), v.description)
                        }),
                    );
                    update.description = Some(endpoint.description.clone());
                }
                "enabled" => update.enabled = Some(endpoint.enabled),
                other => violations.push(Violation::new(
                    "update_mask",
                    format!("{other:?} cannot be updated (event_types, description, enabled)"),
                )),
            }
        }
        refuse(violations)?;
        let row = self
            .webhooks
            .update_endpoint(&caller.tenant_id, id.as_str(), update)
            .await?;
        Ok(Response::new(pb::UpdateWebhookEndpointResponse {
            endpoint: Some(endpoint_of(row)),
        }))
    }

    pub async fn delete_endpoint(
        &self,
        request: Request<pb::DeleteWebhookEndpointRequest>,
    ) -> Result<Response<pb::DeleteWebhookEndpointResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::WebhooksManage)?;
        let id = endpoint_id("id", &request.get_ref().id)?;
        self.webhooks
            .delete_endpoint(&caller.tenant_id, id.as_str())
            .await?;
        Ok(Response::new(pb::DeleteWebhookEndpointResponse {}))
    }

    pub async fn rotate_secret(
        &self,
        request: Request<pb::RotateWebhookSecretRequest>,
    ) -> Result<Response<pb::RotateWebhookSecretResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::WebhooksManage)?;
        let request = request.into_inner();
        let id = endpoint_id("id", &request.id)?;
        let overlap = overlap_of(request.overlap.as_ref())?;
        let row = self
            .webhooks
            .rotate_secret(&caller.tenant_id, id.as_str(), overlap)
            .await?;
        let secret = row.secret.clone();
        Ok(Response::new(pb::RotateWebhookSecretResponse {
            endpoint: Some(endpoint_of(row)),
            secret,
        }))
    }

    pub async fn list_deliveries(
        &self,
        request: Request<pb::ListDeliveriesRequest>,
    ) -> Result<Response<pb::ListDeliveriesResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::WebhooksManage)?;
        let request = request.into_inner();
        refuse(nul_violations([
            ("endpoint_id", request.endpoint_id.as_str()),
            ("event_id", request.event_id.as_str()),
            ("page_token", request.page_token.as_str()),
        ]))?;
        let mut violations = Vec::new();
        let mut query = DeliveryQuery::default();
        if !request.endpoint_id.is_empty() {
            match WebhookEndpointId::parse("endpoint_id", &request.endpoint_id) {
                Ok(id) => query.endpoint_id = Some(id.into_string()),
                Err(v) => violations.push(v),
            }
        }
        if !request.event_id.is_empty() {
            match EventId::parse("event_id", &request.event_id) {
                Ok(id) => query.event_id = Some(id.into_string()),
                Err(v) => violations.push(v),
            }
        }
        match pb::WebhookDeliveryStatus::try_from(request.status) {
            Ok(pb::WebhookDeliveryStatus::Unspecified) => {}
            Ok(pb::WebhookDeliveryStatus::Pending) => query.status = Some("pending"),
            Ok(pb::WebhookDeliveryStatus::Succeeded) => query.status = Some("succeeded"),
            Ok(pb::WebhookDeliveryStatus::Failed) => query.status = Some("failed"),
            Err(_) => violations.push(Violation::new("status", "unknown delivery status")),
        }
        refuse(violations)?;
        let page = self
            .webhooks
            .list_deliveries(
                &caller.tenant_id,
                &query,
                effective_page_size(request.page_size),
                &request.page_token,
            )
            .await?;
        Ok(Response::new(pb::ListDeliveriesResponse {
            deliveries: page.items.into_iter().map(delivery_of).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    pub async fn retry_delivery(
        &self,
        request: Request<pb::RetryDeliveryRequest>,
    ) -> Result<Response<pb::RetryDeliveryResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::WebhooksManage)?;
        let value = request.get_ref().id.as_str();
        refuse(nul_violations([("id", value)]))?;
        let id = WebhookDeliveryId::parse("id", value)
            .map_err(|v| Status::from(DisputeError::Validation(vec![v])))?;
        let details = self
            .webhooks
            .retry_delivery(&caller.tenant_id, id.as_str())
            .await?;
        Ok(Response::new(pb::RetryDeliveryResponse {
            delivery: Some(delivery_of(details)),
        }))
    }
}
