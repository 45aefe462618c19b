//! Webhooks: endpoint CRUD, scopes, tenancy and URL rules; signed deliveries verified by an
//! independent implementation (the Python `standardwebhooks` package); retries with backoff,
//! exactly as many POSTs as ListDeliveries records; rotation; delete and the disabling of a
//! failing endpoint. Receivers run on 127.0.0.1; the stack divides webhook delays by 1000.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use disputes_proto::disputes_v1 as pb;
use disputes_proto::disputes_v1::event_service_client::EventServiceClient;
use harness::webhook_receiver::{Received, Receiver};
use harness::{Bearer, Stack, StackOptions};
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::fixtures::{self, create, merchant_dispute, stack, stack_with, violated_fields};

pub type EventsClient = EventServiceClient<InterceptedService<Channel, Bearer>>;

/// An EventService client sending `token`.
pub async fn events_client(stack: &Stack, token: &str) -> EventsClient {
    EventServiceClient::with_interceptor(
        harness::connect(stack.dispute_core_addr).await.unwrap(),
        Bearer::new(Some(token)).unwrap(),
    )
}

/// An EventService client of `tenant` with every scope.
pub async fn events_of(stack: &Stack, tenant: &str) -> EventsClient {
    events_client(stack, &stack.full_token(tenant)).await
}

pub async fn create_endpoint(
    client: &mut EventsClient,
    url: &str,
    types: &[&str],
) -> pb::CreateWebhookEndpointResponse {
    client
        .create_webhook_endpoint(pb::CreateWebhookEndpointRequest {
            url: url.to_owned(),
            event_types: types.iter().map(|t| (*t).to_owned()).collect(),
            description: "test receiver".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

pub async fn deliveries(
    client: &mut EventsClient,
    request: pb::ListDeliveriesRequest,
) -> Vec<pb::WebhookDelivery> {
    let mut all = Vec::new();
    let mut request = pb::ListDeliveriesRequest {
        page_size: 100,
        ..request
    };
    loop {
        let page = client
            .list_deliveries(request.clone())
            .await
            .unwrap()
            .into_inner();
        all.extend(page.deliveries);
        if page.next_page_token.is_empty() {
            return all;
        }
        request.page_token = page.next_page_token;
    }
}

/// Polls ListDeliveries until `done` holds.
async fn deliveries_until(
    client: &mut EventsClient,
    request: pb::ListDeliveriesRequest,
    done: impl Fn(&[pb::WebhookDelivery]) -> bool,
) -> Vec<pb::WebhookDelivery> {
    loop {
        let found = deliveries(client, request.clone()).await;
        if done(&found) {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The venv python with `standardwebhooks` (set by scripts/test, or installed here).
fn verify_python() -> PathBuf {
    if let Ok(python) = std::env::var("WEBHOOK_VERIFY_PYTHON") {
        return python.into();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".local/tools/venv/bin/python");
    let present = Command::new(&python)
        .args(["-c", "import standardwebhooks"])
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        let installed = Command::new("bash")
            .args(["-c", "source scripts/lib.sh && ensure_standardwebhooks"])
            .current_dir(&root)
            .status()
            .unwrap();
        assert!(installed.success(), "installing standardwebhooks failed");
    }
    python
}

const VERIFY: &str = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
args = json.load(sys.stdin)
try:
    Webhook(args["secret"]).verify(args["body"].encode(), args["headers"])
    print("ok")
except Exception as e:
    print("fail:", type(e).__name__, e)
"#;

/// What `standardwebhooks` says of a delivery: "ok" or "fail: ...".
pub fn verify(secret: &str, body: &[u8], id: &str, timestamp: &str, signature: &str) -> String {
    use std::io::Write;
    let input = serde_json::json!({
        "secret": secret,
        "body": String::from_utf8(body.to_vec()).unwrap(),
        "headers": {
            "webhook-id": id,
            "webhook-timestamp": timestamp,
            "webhook-signature": signature,
        },
    });
    let mut child = Command::new(verify_python())
        .args(["-c", VERIFY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

fn verify_received(secret: &str, received: &Received) -> String {
    verify(
        secret,
        &received.body,
        &received.webhook_id,
        &received.timestamp,
        &received.signature,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_signed_and_verify_with_standardwebhooks() {
    let stack = stack().await;
    let receiver = Receiver::start(0).await;
    let mut events = events_of(&stack, "acme").await;
    let created = create_endpoint(&mut events, &receiver.url(), &[]).await;
    assert!(created.secret.starts_with("whsec_"));
    let endpoint = created.endpoint.unwrap();
    assert!(endpoint.enabled);

    // A merchant chargeback: dispute.created then dispute.funds_withdrawn.
    let mut disputes = stack.disputes_of("acme").await;
    let dispute = create(&mut disputes, merchant_dispute("", "ch_signed")).await;
    let received = receiver.wait_until(|r| r.len() >= 2).await;
    let mut types: Vec<String> = received
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_owned())
        .collect();
    types.sort();
    assert_eq!(types, ["dispute.created", "dispute.funds_withdrawn"]);

    let withdrawn = received
        .iter()
        .find(|r| r.json()["type"] == "dispute.funds_withdrawn")
        .unwrap();
    let body = withdrawn.json();
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(body["data"]["name"], "DISPUTE_INITIATED");
    assert_eq!(body["data"]["eventType"], "DISPUTE_INITIATED");
    assert!(body["data"]["id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(body["data"]["dispute"]["id"], dispute.id.as_str());
    assert_eq!(body["data"]["dispute"]["amount"], "12500");
    assert!(withdrawn.webhook_id.starts_with("whd_"));
    assert!(withdrawn.signature.starts_with("v1,"));

    // An independent implementation verifies the signature; tampering and staleness fail.
    assert_eq!(verify_received(&created.secret, withdrawn), "ok");
    let mut tampered = withdrawn.clone();
    tampered.body = bytes::Bytes::from(
        String::from_utf8(withdrawn.body.to_vec())
            .unwrap()
            .replace("12500", "99999"),
    );
    assert!(verify_received(&created.secret, &tampered).starts_with("fail"));
    let stale = chrono::Utc::now().timestamp() - 3600;
    let resigned = dispute_core::domain::webhooks::sign(
        &created.secret,
        &withdrawn.webhook_id,
        stale,
        &withdrawn.body,
    )
    .unwrap();
    let answer = verify(
        &created.secret,
        &withdrawn.body,
        &withdrawn.webhook_id,
        &stale.to_string(),
        &resigned,
    );
    assert!(answer.starts_with("fail"), "{answer}");
    assert!(answer.contains("too old"), "{answer}");
    assert!(
        verify_received("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", withdrawn).starts_with("fail")
    );

    // ListDeliveries: both succeeded at the first attempt.
    let listed = deliveries_until(
        &mut events,
        pb::ListDeliveriesRequest {
            endpoint_id: endpoint.id.clone(),
            ..Default::default()
        },
        |d| {
            d.len() == 2
                && d.iter()
                    .all(|d| d.status() == pb::WebhookDeliveryStatus::Succeeded)
        },
    )
    .await;
    for delivery in &listed {
        assert_eq!(delivery.attempt_count, 1);
        assert_eq!(delivery.attempts.len(), 1);
        assert_eq!(delivery.attempts[0].response_status_code, 204);
        assert!(delivery.next_attempt_time.is_none());
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_exactly_the_attempts_listed_with_backoff() {
    let stack = stack().await;
    let receiver = Receiver::start(3).await;
    let mut events = events_of(&stack, "acme").await;
    let created = create_endpoint(&mut events, &receiver.url(), &["dispute.created"]).await;
    let mut disputes = stack.disputes_of("acme").await;
    create(&mut disputes, merchant_dispute("", "ch_retry")).await;

    receiver.wait_until(|r| r.len() >= 4).await;
    let listed = deliveries_until(&mut events, pb::ListDeliveriesRequest::default(), |d| {
        d.len() == 1 && d[0].status() == pb::WebhookDeliveryStatus::Succeeded
    })
    .await;
    let delivery = &listed[0];
    assert_eq!(delivery.event_type, "dispute.created");
    // Only dispute.created is sent to this endpoint, once per attempt, with a stable id.
    let received = receiver.received();
    assert!(received.iter().all(|r| r.webhook_id == delivery.id));
    assert_eq!(received.len(), 4);
    assert_eq!(delivery.attempt_count, 4);
    let codes: Vec<i32> = delivery
        .attempts
        .iter()
        .map(|a| a.response_status_code)
        .collect();
    assert_eq!(codes, [500, 500, 500, 204]);
    assert_eq!(
        delivery.attempts[0].response_body_prefix,
        "receiver says no"
    );
    assert_eq!(
        delivery
            .attempts
            .iter()
            .map(|a| a.number)
            .collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    // Backoff: each gap at least the scaled schedule (5 s, 5 min, 30 min / 1000).
    let schedule = &dispute_core::domain::webhooks::RETRY_DELAYS;
    for (i, pair) in received.windows(2).enumerate() {
        let gap = pair[1].at - pair[0].at;
        let least = schedule[i] / 1000;
        assert!(gap >= least, "gap {i}: {gap:?} < {least:?}");
    }
    for received in &received {
        assert_eq!(verify_received(&created.secret, received), "ok");
    }

    // RetryDelivery: one more attempt, now.
    let retried = events
        .retry_delivery(pb::RetryDeliveryRequest {
            id: delivery.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .delivery
        .unwrap();
    assert_eq!(retried.status(), pb::WebhookDeliveryStatus::Pending);
    receiver.wait_until(|r| r.len() >= 5).await;
    let listed = deliveries_until(&mut events, pb::ListDeliveriesRequest::default(), |d| {
        d[0].attempt_count == 5 && d[0].status() == pb::WebhookDeliveryStatus::Succeeded
    })
    .await;
    assert_eq!(listed[0].attempts.len(), 5);
    assert_eq!(receiver.received().len(), 5);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_crud_scopes_and_tenancy() {
    let stack = stack().await;
    let mut events = events_of(&stack, "acme").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let created = create_endpoint(
            &mut events,
            &format!("http://127.0.0.1:9/hooks/{i}"),
            &["dispute.won", "dispute.due_soon"],
        )
        .await;
        ids.push(created.endpoint.unwrap().id);
    }
    // Get, and List newest first in pages.
    let got = events
        .get_webhook_endpoint(pb::GetWebhookEndpointRequest { id: ids[0].clone() })
        .await
        .unwrap()
        .into_inner()
        .endpoint
        .unwrap();
    assert_eq!(got.url, "http://127.0.0.1:9/hooks/0");
    assert_eq!(got.event_types, ["dispute.won", "dispute.due_soon"]);
    let first = events
        .list_webhook_endpoints(pb::ListWebhookEndpointsRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.endpoints.len(), 2);
    assert_eq!(first.endpoints[0].id, ids[2]);
    let second = events
        .list_webhook_endpoints(pb::ListWebhookEndpointsRequest {
            page_size: 2,
            page_token: first.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.endpoints.len(), 1);
    assert_eq!(second.endpoints[0].id, ids[0]);
    assert!(second.next_page_token.is_empty());

    // Idempotent create: the same request id gives the same endpoint and secret.
    let request = pb::CreateWebhookEndpointRequest {
        url: "http://127.0.0.1:9/idem".to_owned(),
        request_id: "req-1".to_owned(),
        ..Default::default()
    };
    let a = events
        .create_webhook_endpoint(request.clone())
        .await
        .unwrap()
        .into_inner();
    let b = events
        .create_webhook_endpoint(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.endpoint.unwrap().id, b.endpoint.unwrap().id);
    assert_eq!(a.secret, b.secret);

    // Update with a mask.
    let updated = events
        .update_webhook_endpoint(pb::UpdateWebhookEndpointRequest {
            endpoint: Some(pb::WebhookEndpoint {
                id: ids[0].clone(),
                event_types: vec!["dispute.lost".to_owned()],
                description: "changed".to_owned(),
                enabled: false,
                url: "http://ignored".to_owned(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["event_types".to_owned(), "enabled".to_owned()],
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .endpoint
        .unwrap();
    assert_eq!(updated.event_types, ["dispute.lost"]);
    assert!(!updated.enabled);
    assert_eq!(updated.description, "test receiver");
    assert_eq!(updated.url, "http://127.0.0.1:9/hooks/0");
    let bad_mask = events
        .update_webhook_endpoint(pb::UpdateWebhookEndpointRequest {
            endpoint: Some(pb::WebhookEndpoint {
                id: ids[0].clone(),
                event_types: vec!["dispute.nope".to_owned()],
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["url".to_owned(), "event_types".to_owned()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_mask.code(), Code::InvalidArgument);
    assert_eq!(
        fixtures::sorted_violated_fields(&bad_mask),
        ["endpoint.event_types[0]", "update_mask"]
    );

    // Unknown event types and bad ids are INVALID_ARGUMENT naming the field.
    let unknown = events
        .create_webhook_endpoint(pb::CreateWebhookEndpointRequest {
            url: "http://127.0.0.1:9/x".to_owned(),
            event_types: vec!["dispute.won".to_owned(), "charge.refunded".to_owned()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&unknown), ["event_types[1]"]);
    let bad_id = events
        .get_webhook_endpoint(pb::GetWebhookEndpointRequest {
            id: "dsp_01jd3s9v8m6q0n2c5x7r4t1k9e".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad_id), ["id"]);

    // Another tenant's endpoint is NOT_FOUND; without the scope, PERMISSION_DENIED.
    let mut other = events_of(&stack, "globex").await;
    let hidden = other
        .get_webhook_endpoint(pb::GetWebhookEndpointRequest { id: ids[1].clone() })
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    let hidden = other
        .delete_webhook_endpoint(pb::DeleteWebhookEndpointRequest { id: ids[1].clone() })
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    assert!(
        other
            .list_webhook_endpoints(pb::ListWebhookEndpointsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .endpoints
            .is_empty()
    );
    let mut reader = events_client(&stack, &stack.token("acme", &["events:read"])).await;
    let denied = reader
        .list_webhook_endpoints(pb::ListWebhookEndpointsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let denied = reader
        .list_deliveries(pb::ListDeliveriesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    // Delete: gone for Get and List.
    events
        .delete_webhook_endpoint(pb::DeleteWebhookEndpointRequest { id: ids[1].clone() })
        .await
        .unwrap();
    let gone = events
        .get_webhook_endpoint(pb::GetWebhookEndpointRequest { id: ids[1].clone() })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_are_https_and_public_unless_configured() {
    // The production defaults (https only, no private addresses), with the test keyring.
    let stack = stack_with(StackOptions {
        webhooks: dispute_core::config::WebhookFlags {
            webhook_secret_keys: harness::test_webhook_flags().webhook_secret_keys,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let mut events = events_of(&stack, "acme").await;
    for bad in [
        "http://hooks.example.com/in",
        "https://127.0.0.1/in",
        "https://10.0.0.7/in",
        "https://[::1]/in",
        "https://localhost/in",
        "https://user:secret@hooks.example.com/in",
        "ftp://hooks.example.com/in",
        "not a url",
        "",
    ] {
        let refused = events
            .create_webhook_endpoint(pb::CreateWebhookEndpointRequest {
                url: bad.to_owned(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{bad}");
        assert_eq!(violated_fields(&refused), ["url"], "{bad}");
    }
    let accepted = create_endpoint(&mut events, "https://hooks.example.com/in", &[]).await;
    assert!(accepted.endpoint.unwrap().enabled);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_signs_alongside_the_new_one_during_the_overlap() {
    let stack = stack().await;
    let receiver = Receiver::start(0).await;
    let mut events = events_of(&stack, "acme").await;
    let created = create_endpoint(&mut events, &receiver.url(), &["dispute.created"]).await;
    let id = created.endpoint.unwrap().id;
    let rotated = events
        .rotate_webhook_secret(pb::RotateWebhookSecretRequest {
            id: id.clone(),
            overlap: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(rotated.secret, created.secret);
    let expires = rotated
        .endpoint
        .unwrap()
        .previous_secret_expire_time
        .unwrap();
    let in_a_day = chrono::Utc::now().timestamp() + 24 * 3600;
    assert!((expires.seconds - in_a_day).abs() < 60);

    let mut disputes = stack.disputes_of("acme").await;
    create(&mut disputes, merchant_dispute("", "ch_rotate_1")).await;
    let first = receiver.wait_until(|r| !r.is_empty()).await[0].clone();
    assert_eq!(first.signature.split(' ').count(), 2, "{}", first.signature);
    assert_eq!(verify_received(&rotated.secret, &first), "ok");
    assert_eq!(verify_received(&created.secret, &first), "ok");

    // No overlap: only the newest secret signs.
    let again = events
        .rotate_webhook_secret(pb::RotateWebhookSecretRequest {
            id,
            overlap: Some(prost_types::Duration {
                seconds: 0,
                nanos: 0,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    create(&mut disputes, merchant_dispute("", "ch_rotate_2")).await;
    let second = receiver.wait_until(|r| r.len() >= 2).await[1].clone();
    assert_eq!(second.signature.split(' ').count(), 1);
    assert_eq!(verify_received(&again.secret, &second), "ok");
    assert!(verify_received(&rotated.secret, &second).starts_with("fail"));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_endpoint_fails_its_pending_deliveries() {
    let stack = stack().await;
    let receiver = Receiver::start(0).await;
    receiver.set_fail_all(true);
    let mut events = events_of(&stack, "acme").await;
    let created = create_endpoint(&mut events, &receiver.url(), &["dispute.created"]).await;
    let id = created.endpoint.unwrap().id;
    let mut disputes = stack.disputes_of("acme").await;
    create(&mut disputes, merchant_dispute("", "ch_delete")).await;
    receiver.wait_until(|r| !r.is_empty()).await;
    events
        .delete_webhook_endpoint(pb::DeleteWebhookEndpointRequest { id: id.clone() })
        .await
        .unwrap();
    let listed = deliveries_until(
        &mut events,
        pb::ListDeliveriesRequest {
            endpoint_id: id,
            ..Default::default()
        },
        // An attempt in flight at the delete is still recorded: every POST is listed.
        |d| {
            d.len() == 1
                && d[0].status() == pb::WebhookDeliveryStatus::Failed
                && usize::try_from(d[0].attempt_count).unwrap() == receiver.received().len()
        },
    )
    .await;
    assert!(listed[0].next_attempt_time.is_none());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_failing_for_the_disable_period_is_disabled() {
    // 1000 s of failing, divided by the time scale of 1000: one second.
    let stack = stack_with(StackOptions {
        webhooks: dispute_core::config::WebhookFlags {
            webhook_disable_after_secs: 1000,
            ..harness::test_webhook_flags()
        },
        ..Default::default()
    })
    .await;
    let receiver = Receiver::start(0).await;
    receiver.set_fail_all(true);
    let mut events = events_of(&stack, "acme").await;
    let created = create_endpoint(&mut events, &receiver.url(), &["dispute.created"]).await;
    let id = created.endpoint.unwrap().id;
    let mut disputes = stack.disputes_of("acme").await;
    create(&mut disputes, merchant_dispute("", "ch_disable")).await;
    let endpoint = loop {
        let endpoint = events
            .get_webhook_endpoint(pb::GetWebhookEndpointRequest { id: id.clone() })
            .await
            .unwrap()
            .into_inner()
            .endpoint
            .unwrap();
        if !endpoint.enabled {
            break endpoint;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(endpoint.disabled_reason, "failing");
    assert!(endpoint.failing_since.is_some());
    let listed = deliveries(&mut events, pb::ListDeliveriesRequest::default()).await;
    assert_eq!(listed[0].status(), pb::WebhookDeliveryStatus::Failed);

    // Disabled endpoints get no new deliveries; enabling again clears the reason.
    create(&mut disputes, merchant_dispute("", "ch_disable_2")).await;
    let enabled = events
        .update_webhook_endpoint(pb::UpdateWebhookEndpointRequest {
            endpoint: Some(pb::WebhookEndpoint {
                id: id.clone(),
                enabled: true,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["enabled".to_owned()],
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .endpoint
        .unwrap();
    assert!(enabled.enabled);
    assert_eq!(enabled.disabled_reason, "");
    assert!(enabled.failing_since.is_none());
    assert_eq!(
        deliveries(&mut events, pb::ListDeliveriesRequest::default())
            .await
            .len(),
        1
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_fails_after_the_last_attempt_of_the_schedule() {
    // The whole schedule (over 3 days) divided by 100,000: under 3 s. The endpoint is never
    // disabled here.
    let stack = stack_with(StackOptions {
        webhooks: dispute_core::config::WebhookFlags {
            webhook_time_scale: 100_000.0,
            webhook_disable_after_secs: 1_000_000_000,
            ..harness::test_webhook_flags()
        },
        ..Default::default()
    })
    .await;
    let receiver = Receiver::start(0).await;
    receiver.set_fail_all(true);
    let mut events = events_of(&stack, "acme").await;
    let created = create_endpoint(&mut events, &receiver.url(), &["dispute.created"]).await;
    let endpoint_id = created.endpoint.unwrap().id;
    let mut disputes = stack.disputes_of("acme").await;
    create(&mut disputes, merchant_dispute("", "ch_give_up")).await;

    let failed = deliveries_until(
        &mut events,
        pb::ListDeliveriesRequest {
            status: pb::WebhookDeliveryStatus::Failed.into(),
            ..Default::default()
        },
        |d| d.len() == 1,
    )
    .await;
    let delivery = &failed[0];
    let attempts = dispute_core::domain::webhooks::MAX_ATTEMPTS;
    assert_eq!(delivery.attempt_count, i32::try_from(attempts).unwrap());
    assert_eq!(
        receiver.received().len(),
        usize::try_from(attempts).unwrap()
    );
    assert!(delivery.next_attempt_time.is_none());
    assert!(
        delivery
            .attempts
            .iter()
            .all(|a| a.response_status_code == 500)
    );
    // The other filters find it too; PENDING and SUCCEEDED do not.
    let by_event = deliveries(
        &mut events,
        pb::ListDeliveriesRequest {
            event_id: delivery.event_id.clone(),
            endpoint_id: endpoint_id.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_event.len(), 1);
    for status in [
        pb::WebhookDeliveryStatus::Pending,
        pb::WebhookDeliveryStatus::Succeeded,
    ] {
        let none = deliveries(
            &mut events,
            pb::ListDeliveriesRequest {
                status: status.into(),
                ..Default::default()
            },
        )
        .await;
        assert!(none.is_empty());
    }
    let endpoint = events
        .get_webhook_endpoint(pb::GetWebhookEndpointRequest { id: endpoint_id })
        .await
        .unwrap()
        .into_inner()
        .endpoint
        .unwrap();
    assert!(endpoint.enabled);
    assert!(endpoint.failing_since.is_some());
    stack.stop().await;
}
