//! The webhook RPCs' messages: drafts in (nothing checked here; the checks live in
//! `domain::requests`), endpoints and deliveries out.

use chrono::Utc;
use disputes_proto::disputes_v1 as pb;
use service_kit::time::timestamp;

use crate::domain::requests::{
    CreateWebhookEndpointDraft, ListDeliveriesDraft, OverlapDraft, UpdateWebhookEndpointDraft,
    WebhookEndpointDraft,
};
use crate::domain::webhooks::{DeliveryDetails, DeliveryStatus, WebhookAttempt, WebhookEndpoint};
use crate::grpc::convert::EnumInputFrom;

pub(super) fn create_endpoint_draft(
    request: pb::CreateWebhookEndpointRequest,
) -> CreateWebhookEndpointDraft {
    CreateWebhookEndpointDraft {
        url: request.url,
        event_types: request.event_types,
        description: request.description,
        request_id: request.request_id,
    }
}

pub(super) fn update_endpoint_draft(
    request: pb::UpdateWebhookEndpointRequest,
) -> UpdateWebhookEndpointDraft {
    UpdateWebhookEndpointDraft {
        endpoint: request.endpoint.map(|endpoint| WebhookEndpointDraft {
            id: endpoint.id,
            event_types: endpoint.event_types,
            description: endpoint.description,
            enabled: endpoint.enabled,
        }),
        paths: request.update_mask.map(|m| m.paths).unwrap_or_default(),
    }
}

pub(super) fn overlap_draft(overlap: Option<&prost_types::Duration>) -> Option<OverlapDraft> {
    overlap.map(|overlap| OverlapDraft {
        seconds: overlap.seconds,
        nanos: overlap.nanos,
    })
}

pub(super) fn list_deliveries_draft(request: pb::ListDeliveriesRequest) -> ListDeliveriesDraft {
    ListDeliveriesDraft {
        endpoint_id: request.endpoint_id,
        event_id: request.event_id,
        status: Some(DeliveryStatus::from_wire(request.status)),
        page_size: request.page_size,
        page_token: request.page_token,
    }
}

/// An endpoint as the API shows it (never its secrets).
pub(super) fn endpoint_message(endpoint: WebhookEndpoint) -> pb::WebhookEndpoint {
    let previous_secret_expire_time = endpoint.previous_secret_expire_time(Utc::now());
    pb::WebhookEndpoint {
        id: endpoint.id,
        url: endpoint.url,
        event_types: endpoint.event_types,
        description: endpoint.description,
        enabled: endpoint.enabled,
        disabled_reason: endpoint.disabled_reason,
        create_time: Some(timestamp(endpoint.created_at)),
        update_time: Some(timestamp(endpoint.updated_at)),
        failing_since: endpoint.failing_since.map(timestamp),
        previous_secret_expire_time: previous_secret_expire_time.map(timestamp),
    }
}

fn attempt_message(attempt: WebhookAttempt) -> pb::WebhookAttempt {
    let micros = attempt.latency_us.max(0);
    pb::WebhookAttempt {
        number: attempt.number,
        start_time: Some(timestamp(attempt.started_at)),
        response_status_code: attempt.response_status,
        error: attempt.error,
        latency: Some(prost_types::Duration {
            seconds: micros / 1_000_000,
            nanos: i32::try_from((micros % 1_000_000) * 1000).unwrap_or(0),
        }),
        response_body_prefix: attempt.response_body_prefix,
    }
}

pub(super) fn delivery_message(details: DeliveryDetails) -> pb::WebhookDelivery {
    let delivery = details.delivery;
    let next_attempt_time = delivery.next_attempt_time();
    pb::WebhookDelivery {
        id: delivery.id,
        endpoint_id: delivery.endpoint_id,
        event_id: delivery.event_id,
        event_type: delivery.event_type,
        status: pb::WebhookDeliveryStatus::from(delivery.status) as i32,
        attempt_count: delivery.attempt_count,
        attempts: details.attempts.into_iter().map(attempt_message).collect(),
        next_attempt_time: next_attempt_time.map(timestamp),
        create_time: Some(timestamp(delivery.created_at)),
    }
}
