//! The JSON body of a webhook delivery (Standard Webhooks):
//! `{"type": ..., "timestamp": RFC 3339, "data": {...}}`, where `data` holds the event's id,
//! type and creation time, seed 004's name where one matches (`name` and `eventType`), and
//! the dispute in the proto3 JSON mapping (lowerCamelCase names, enums as strings).

use std::sync::LazyLock;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use serde_json::json;

use crate::domain::webhooks::seed_004_name;

static DISPUTE: LazyLock<Option<MessageDescriptor>> = LazyLock::new(|| {
    DescriptorPool::decode(disputes_proto::FILE_DESCRIPTOR_SET)
        .ok()?
        .get_message_by_name("disputes.v1.Dispute")
});

/// The body of a delivery of event `id` (given to the app as its `WebhookBodyRenderer`).
pub fn render(
    id: &str,
    event_type: &str,
    dispute: &[u8],
    created: DateTime<Utc>,
) -> anyhow::Result<Vec<u8>> {
    let descriptor = DISPUTE
        .clone()
        .context("disputes.v1.Dispute missing from the descriptor set")?;
    let dispute = DynamicMessage::decode(descriptor, dispute).context("decode event dispute")?;
    let created = created.to_rfc3339_opts(SecondsFormat::Millis, true);
    let mut data = json!({
        "id": id,
        "object": "event",
        "type": event_type,
        "created": created,
        "dispute": serde_json::to_value(&dispute).context("dispute as JSON")?,
    });
    if let Some(name) = seed_004_name(event_type) {
        data["name"] = json!(name);
        data["eventType"] = json!(name);
    }
    let body = json!({
        "type": event_type,
        "timestamp": created,
        "data": data,
    });
    serde_json::to_vec(&body).context("webhook body")
}
