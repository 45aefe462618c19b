//! The webhook RPCs: CreateWebhookEndpoint, GetWebhookEndpoint, ListWebhookEndpoints,
//! UpdateWebhookEndpoint, DeleteWebhookEndpoint, RotateWebhookSecret, ListDeliveries and
//! RetryDelivery. Ids, request ids, NUL and paging follow the rules every request shares;
//! URLs, event types and descriptions the endpoint rules of `domain::webhooks`.

use std::time::Duration;

use domain_kit::ids::{EventId, WebhookDeliveryId, WebhookEndpointId};
use domain_kit::page_token::PageRequest;
use domain_kit::violation::{Violation, nul_violations};

use super::shared::*;
use crate::domain::webhooks::{
    DEFAULT_ROTATION_OVERLAP, DeliveryStatus, MAX_ROTATION_OVERLAP, UrlPolicy, check_description,
    check_event_types, check_url,
};
use crate::domain::{DisputeError, DisputeEvent, EnumInput};

/// A `whe_` endpoint id, or INVALID_ARGUMENT naming `field`.
pub fn webhook_endpoint_id(field: &str, value: &str) -> Result<WebhookEndpointId, DisputeError> {
    checked_id(field, value, WebhookEndpointId::parse)
}

/// A `whd_` delivery id, or INVALID_ARGUMENT naming `field`.
pub fn webhook_delivery_id(field: &str, value: &str) -> Result<WebhookDeliveryId, DisputeError> {
    checked_id(field, value, WebhookDeliveryId::parse)
}

/// The strings of a list of event types, named `{field}[i]`.
fn event_type_texts<'a>(field: &str, types: &'a [String], texts: &mut Texts<'a>) {
    texts.extend(
        types
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("{field}[{i}]"), t.as_str())),
    );
}

/// CreateWebhookEndpoint as it arrived.
#[derive(Debug, Clone, Default)]
pub struct CreateWebhookEndpointDraft {
    pub url: String,
    pub event_types: Vec<String>,
    pub description: String,
    pub request_id: String,
}

/// A valid CreateWebhookEndpoint.
#[derive(Debug, Clone)]
pub struct CreateWebhookEndpoint {
    pub url: String,
    /// Known and distinct; empty means all.
    pub event_types: Vec<String>,
    pub description: String,
    /// A retry with the same id returns the same endpoint and secret.
    pub request_id: Option<String>,
}

/// Checks a CreateWebhookEndpoint against the deployment's URL policy.
pub fn create_webhook_endpoint(
    draft: CreateWebhookEndpointDraft,
    policy: UrlPolicy,
) -> Result<CreateWebhookEndpoint, DisputeError> {
    refuse_over_caps([(
        "event_types",
        draft.event_types.len(),
        DisputeEvent::ALL.len(),
    )])?;
    let mut texts = vec![
        ("url".to_owned(), draft.url.as_str()),
        ("description".to_owned(), draft.description.as_str()),
        ("request_id".to_owned(), draft.request_id.as_str()),
    ];
    event_type_texts("event_types", &draft.event_types, &mut texts);
    let nul = nul_violations(texts);
    refuse_nul(nul, checked_create_webhook_endpoint(draft, policy))
}

fn checked_create_webhook_endpoint(
    draft: CreateWebhookEndpointDraft,
    policy: UrlPolicy,
) -> Result<CreateWebhookEndpoint, DisputeError> {
    let mut violations = Vec::new();
    if let Err(violation) = check_url(policy, &draft.url) {
        violations.push(violation);
    }
    violations.extend(check_event_types("event_types", &draft.event_types));
    violations.extend(check_description(&draft.description));
    let request_id = request_id(&draft.request_id, &mut violations);
    if !violations.is_empty() {
        return Err(DisputeError::Validation(violations));
    }
    Ok(CreateWebhookEndpoint {
        url: draft.url,
        event_types: draft.event_types,
        description: draft.description,
        request_id,
    })
}

/// The endpoint of an UpdateWebhookEndpoint as it arrived.
#[derive(Debug, Clone, Default)]
pub struct WebhookEndpointDraft {
    pub id: String,
    pub event_types: Vec<String>,
    pub description: String,
    pub enabled: bool,
}

/// UpdateWebhookEndpoint as it arrived.
#[derive(Debug, Clone, Default)]
pub struct UpdateWebhookEndpointDraft {
    /// `None`: the request named no endpoint.
    pub endpoint: Option<WebhookEndpointDraft>,
    /// The update mask's paths.
    pub paths: Vec<String>,
}

/// What an UpdateWebhookEndpoint changes (`None`: unchanged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookEndpointChanges {
    pub event_types: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// A valid UpdateWebhookEndpoint.
#[derive(Debug, Clone)]
pub struct UpdateWebhookEndpoint {
    pub id: WebhookEndpointId,
    pub changes: WebhookEndpointChanges,
}

/// Checks an UpdateWebhookEndpoint: an endpoint with a `whe_` id (each refused at once), and
/// a mask naming only `event_types`, `description` and `enabled`, whose fields are checked.
pub fn update_webhook_endpoint(
    draft: UpdateWebhookEndpointDraft,
) -> Result<UpdateWebhookEndpoint, DisputeError> {
    let Some(endpoint) = draft.endpoint else {
        return Err(DisputeError::Validation(vec![Violation::new(
            "endpoint",
            "is required",
        )]));
    };
    let id = webhook_endpoint_id("endpoint.id", &endpoint.id)?;
    refuse_over_caps([
        ("update_mask.paths", draft.paths.len(), MAX_MASK_PATHS),
        (
            "endpoint.event_types",
            endpoint.event_types.len(),
            DisputeEvent::ALL.len(),
        ),
    ])?;
    let mut texts = Texts::new();
    for path in &draft.paths {
        match path.as_str() {
            "event_types" => {
                event_type_texts("endpoint.event_types", &endpoint.event_types, &mut texts)
            }
            "description" => {
                texts.push((
                    "endpoint.description".to_owned(),
                    endpoint.description.as_str(),
                ));
            }
            _ => {}
        }
    }
    let nul = nul_violations(texts);
    let checked = checked_webhook_endpoint_changes(&draft.paths, &endpoint);
    refuse_nul(nul, checked).map(|changes| UpdateWebhookEndpoint { id, changes })
}

fn checked_webhook_endpoint_changes(
    paths: &[String],
    endpoint: &WebhookEndpointDraft,
) -> Result<WebhookEndpointChanges, DisputeError> {
    let mut violations = Vec::new();
    if paths.is_empty() {
        violations.push(Violation::new(
            "update_mask",
            "must name at least one of event_types, description, enabled",
        ));
    }
    let mut changes = WebhookEndpointChanges::default();
    for path in paths {
        match path.as_str() {
            "event_types" => {
                violations.extend(check_event_types(
                    "endpoint.event_types",
                    &endpoint.event_types,
                ));
                changes.event_types = Some(endpoint.event_types.clone());
            }
            "description" => {
                violations.extend(
                    check_description(&endpoint.description)
                        .map(|v| Violation::new(format!("endpoint.{}", v.field), v.description)),
                );
                changes.description = Some(endpoint.description.clone());
            }
            "enabled" => changes.enabled = Some(endpoint.enabled),
            other => violations.push(Violation::new(
                "update_mask",
                format!("{other:?} cannot be updated (event_types, description, enabled)"),
            )),
        }
    }
    if violations.is_empty() {
        Ok(changes)
    } else {
        Err(DisputeError::Validation(violations))
    }
}

/// The fingerprint ListWebhookEndpoints' page tokens carry (no filters).
const ENDPOINT_PAGES: &str = "endpoints";

/// A valid ListWebhookEndpoints: the page asked for.
#[derive(Debug, Clone)]
pub struct ListWebhookEndpoints {
    pub page: PageRequest,
}

/// Checks ListWebhookEndpoints' paging.
pub fn list_webhook_endpoints(
    page_size: i32,
    page_token: &str,
) -> Result<ListWebhookEndpoints, DisputeError> {
    let nul = nul_violations([("page_token", page_token)]);
    refuse_nul(nul, {
        let mut violations = Vec::new();
        let page = PageRequest::parse(page_size, page_token, ENDPOINT_PAGES, &mut violations);
        if violations.is_empty() {
            Ok(ListWebhookEndpoints { page })
        } else {
            Err(DisputeError::Validation(violations))
        }
    })
}

/// How a rotated-out secret's overlap arrived (a protobuf Duration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverlapDraft {
    pub seconds: i64,
    pub nanos: i32,
}

/// A valid RotateWebhookSecret.
#[derive(Debug, Clone)]
pub struct RotateWebhookSecret {
    pub id: WebhookEndpointId,
    /// How long the current secret keeps signing alongside the new one.
    pub overlap: Duration,
}

/// Checks a RotateWebhookSecret: a `whe_` id (refused at once), and an overlap of 0 to 30
/// days (unset: 24 hours).
pub fn rotate_webhook_secret(
    id: &str,
    overlap: Option<OverlapDraft>,
) -> Result<RotateWebhookSecret, DisputeError> {
    let id = webhook_endpoint_id("id", id)?;
    let overlap = overlap_of(overlap).ok_or_else(|| {
        DisputeError::Validation(vec![Violation::new(
            "overlap",
            "must be between 0 and 30 days",
        )])
    })?;
    Ok(RotateWebhookSecret { id, overlap })
}

/// The overlap asked for; `None` when it is out of range.
fn overlap_of(overlap: Option<OverlapDraft>) -> Option<Duration> {
    let Some(overlap) = overlap else {
        return Some(DEFAULT_ROTATION_OVERLAP);
    };
    let value = Duration::new(
        u64::try_from(overlap.seconds).ok()?,
        u32::try_from(overlap.nanos).ok()?,
    );
    (value <= MAX_ROTATION_OVERLAP).then_some(value)
}

/// ListDeliveries as it arrived.
#[derive(Debug, Clone)]
pub struct ListDeliveriesDraft {
    pub endpoint_id: String,
    pub event_id: String,
    pub status: Option<EnumInput<DeliveryStatus>>,
    pub page_size: i32,
    pub page_token: String,
}

/// Which deliveries ListDeliveries reads; every filter set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    pub endpoint_id: Option<WebhookEndpointId>,
    pub event_id: Option<EventId>,
    pub status: Option<DeliveryStatus>,
}

impl DeliveryFilter {
    /// The fingerprint page tokens carry: the filters, so a token is valid only with them.
    fn canonical(&self) -> String {
        format!(
            "deliveries|{}|{}|{}",
            self.endpoint_id
                .as_ref()
                .map(WebhookEndpointId::as_str)
                .unwrap_or_default(),
            self.event_id
                .as_ref()
                .map(EventId::as_str)
                .unwrap_or_default(),
            self.status.map(DeliveryStatus::as_str).unwrap_or_default()
        )
    }
}

/// A valid ListDeliveries: its filters and the page asked for.
#[derive(Debug, Clone)]
pub struct ListDeliveries {
    pub filter: DeliveryFilter,
    pub page: PageRequest,
}

/// Checks ListDeliveries: optional `whe_` and `evt_` ids, a known status and paging.
pub fn list_deliveries(draft: ListDeliveriesDraft) -> Result<ListDeliveries, DisputeError> {
    let nul = nul_violations([
        ("endpoint_id", draft.endpoint_id.as_str()),
        ("event_id", draft.event_id.as_str()),
        ("page_token", draft.page_token.as_str()),
    ]);
    refuse_nul(nul, checked_list_deliveries(draft))
}

fn checked_list_deliveries(draft: ListDeliveriesDraft) -> Result<ListDeliveries, DisputeError> {
    let mut violations = Vec::new();
    let mut filter = DeliveryFilter::default();
    if !draft.endpoint_id.is_empty() {
        filter.endpoint_id = WebhookEndpointId::parse("endpoint_id", &draft.endpoint_id)
            .map_err(|v| violations.push(v))
            .ok();
    }
    if !draft.event_id.is_empty() {
        filter.event_id = EventId::parse("event_id", &draft.event_id)
            .map_err(|v| violations.push(v))
            .ok();
    }
    filter.status = optional("status", draft.status, &mut violations);
    let page = PageRequest::parse(
        draft.page_size,
        &draft.page_token,
        filter.canonical(),
        &mut violations,
    );
    if violations.is_empty() {
        Ok(ListDeliveries { filter, page })
    } else {
        Err(DisputeError::Validation(violations))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::requests::shared::test_support::*;

    const OPEN: UrlPolicy = UrlPolicy {
        allow_http: true,
        allow_private_addresses: true,
    };

    #[test]
    fn a_new_endpoint_names_every_bad_field_and_nul_first() {
        let draft = CreateWebhookEndpointDraft {
            url: "ftp://example.com".into(),
            event_types: vec!["dispute.won".into(), "charge.refunded".into()],
            description: "d".repeat(501),
            request_id: "has space".into(),
        };
        assert_eq!(
            fields(create_webhook_endpoint(draft.clone(), OPEN)),
            vec!["url", "event_types[1]", "description", "request_id"]
        );
        let nul = CreateWebhookEndpointDraft {
            description: "a\0b".into(),
            ..draft
        };
        assert_eq!(
            fields(create_webhook_endpoint(nul, OPEN)),
            vec!["description", "url", "event_types[1]", "request_id"]
        );
        let fine = create_webhook_endpoint(
            CreateWebhookEndpointDraft {
                url: "http://127.0.0.1:9/in".into(),
                request_id: "req-1".into(),
                ..Default::default()
            },
            OPEN,
        )
        .unwrap();
        assert_eq!(fine.request_id.as_deref(), Some("req-1"));
    }

    #[test]
    fn an_update_needs_an_endpoint_an_id_and_a_mask_of_known_fields() {
        assert_eq!(
            fields(update_webhook_endpoint(
                UpdateWebhookEndpointDraft::default()
            )),
            vec!["endpoint"]
        );
        let endpoint = WebhookEndpointDraft {
            id: WebhookEndpointId::generate().into_string(),
            event_types: vec!["dispute.nope".into()],
            ..Default::default()
        };
        let draft = |paths: &[&str]| UpdateWebhookEndpointDraft {
            endpoint: Some(endpoint.clone()),
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        };
        assert_eq!(
            fields(update_webhook_endpoint(draft(&["url", "event_types"]))),
            vec!["update_mask", "endpoint.event_types[0]"]
        );
        assert_eq!(
            fields(update_webhook_endpoint(draft(&[]))),
            vec!["update_mask"]
        );
        let enabled = update_webhook_endpoint(draft(&["enabled"])).unwrap();
        assert_eq!(enabled.changes.enabled, Some(false));
        assert_eq!(enabled.changes.event_types, None);
    }

    #[test]
    fn overlaps_are_zero_to_thirty_days() {
        let id = WebhookEndpointId::generate().into_string();
        let rotate =
            |seconds, nanos| rotate_webhook_secret(&id, Some(OverlapDraft { seconds, nanos }));
        assert_eq!(
            rotate_webhook_secret(&id, None).unwrap().overlap,
            DEFAULT_ROTATION_OVERLAP
        );
        assert_eq!(rotate(0, 0).unwrap().overlap, Duration::ZERO);
        assert_eq!(fields(rotate(-1, 0)), vec!["overlap"]);
        assert_eq!(fields(rotate(0, -1)), vec!["overlap"]);
        assert_eq!(fields(rotate(30 * 24 * 3600 + 1, 0)), vec!["overlap"]);
        assert_eq!(fields(rotate_webhook_secret("whd_1", None)), vec!["id"]);
    }

    #[test]
    fn delivery_filters_and_tokens() {
        let draft = ListDeliveriesDraft {
            endpoint_id: "dsp_01jd3s9v8m6q0n2c5x7r4t1k9e".into(),
            event_id: "nope".into(),
            status: Some(EnumInput::Unknown(9)),
            page_size: -1,
            page_token: "garbage".into(),
        };
        assert_eq!(
            fields(list_deliveries(draft.clone())),
            vec![
                "endpoint_id",
                "event_id",
                "status",
                "page_size",
                "page_token"
            ]
        );
        let pending = list_deliveries(ListDeliveriesDraft {
            endpoint_id: String::new(),
            event_id: String::new(),
            status: Some(EnumInput::Known(DeliveryStatus::Pending)),
            page_size: 0,
            page_token: String::new(),
        })
        .unwrap();
        assert_eq!(pending.filter.status, Some(DeliveryStatus::Pending));
        assert_eq!(pending.filter.canonical(), "deliveries|||pending");
        assert_eq!(fields(list_webhook_endpoints(0, "x\0")), vec!["page_token"]);
    }
}
