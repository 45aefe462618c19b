//! Bounded work per request: the worst-case request of every RPC with a repeated field or a
//! map (close to the 4 MiB message cap, its items all bad) answers INVALID_ARGUMENT with
//! small error details (every client can read them), and another tenant's call right after
//! it succeeds. A table of the requests (size, time, details size) is printed; time is
//! shown, never asserted.

use std::collections::BTreeMap;
use std::time::Instant;

use disputes_proto::disputes_v1 as dpb;
use disputes_proto::disputes_v1::event_service_client::EventServiceClient;
use disputes_proto::documents_v1 as pb;
use domain_kit::ids::{DocumentId, WebhookEndpointId};
use harness::{Bearer, Stack};
use prost::Message;
use tonic::Code;
use tonic_types::StatusExt;

use crate::fixtures::stack;

/// Under the 4 MiB a server receives.
const NEAR_MESSAGE_CAP: usize = 4_000_000;

/// What every client can read (the Python client refused far more).
const MAX_DETAILS_BYTES: usize = 8 * 1024;

/// Strings of one NUL character, as many as fit in `NEAR_MESSAGE_CAP` (3 bytes each on the
/// wire).
fn nul_strings() -> Vec<String> {
    vec!["\0".to_owned(); NEAR_MESSAGE_CAP / 3 - 100]
}

/// Distinct keys holding NUL with empty values, as many as fit.
fn nul_metadata() -> BTreeMap<String, String> {
    (0..300_000)
        .map(|i| (format!("\0{i}"), String::new()))
        .collect()
}

/// One entry whose key, holding NUL, is almost the whole message.
fn huge_key_metadata() -> BTreeMap<String, String> {
    [(
        format!("\0{}", "k".repeat(NEAR_MESSAGE_CAP - 100)),
        "v".into(),
    )]
    .into()
}

struct Row {
    rpc: &'static str,
    request_bytes: usize,
    elapsed_ms: u128,
    details_bytes: usize,
    reported: usize,
    message: String,
}

/// Checks the refusal of one worst-case request and records its row.
fn refused<T: std::fmt::Debug>(
    rows: &mut Vec<Row>,
    rpc: &'static str,
    request_bytes: usize,
    started: Instant,
    result: Result<T, tonic::Status>,
) {
    let elapsed_ms = started.elapsed().as_millis();
    assert!(
        request_bytes <= 4 * 1024 * 1024,
        "{rpc}: {request_bytes} bytes"
    );
    let status = result.expect_err(rpc);
    assert_eq!(status.code(), Code::InvalidArgument, "{rpc}: {status:?}");
    let details_bytes = status.details().len() + status.message().len();
    assert!(
        details_bytes < MAX_DETAILS_BYTES,
        "{rpc}: {details_bytes} bytes of details"
    );
    let details = status.get_error_details();
    let reported = details
        .bad_request()
        .map_or(0, |b| b.field_violations.len());
    assert!((1..=20).contains(&reported), "{rpc}: {reported} violations");
    assert_eq!(
        details.error_info().map(|i| i.reason.as_str()),
        Some("INVALID_ARGUMENT"),
        "{rpc}"
    );
    rows.push(Row {
        rpc,
        request_bytes,
        elapsed_ms,
        details_bytes,
        reported,
        message: status.message().chars().take(90).collect(),
    });
}

/// Another tenant's ordinary calls to both services succeed right after.
async fn another_tenant_is_served(stack: &Stack) {
    let mut disputes = stack.disputes_of("bystander").await;
    disputes
        .list_disputes(dpb::ListDisputesRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut documents = stack.documents_of("bystander").await;
    let found = documents
        .batch_get_documents(pb::BatchGetDocumentsRequest {
            ids: vec![DocumentId::generate().into_string()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.missing_ids.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worst_case_requests_are_refused_with_small_details() {
    let stack = stack().await;
    let token = stack.full_token("flooder");
    let mut events = EventServiceClient::with_interceptor(
        harness::connect(stack.dispute_core_addr).await.unwrap(),
        Bearer::new(Some(&token)).unwrap(),
    )
    .max_encoding_message_size(8 * 1024 * 1024);
    let mut disputes = stack
        .disputes_of("flooder")
        .await
        .max_encoding_message_size(8 * 1024 * 1024);
    let mut documents = stack
        .documents_of("flooder")
        .await
        .max_encoding_message_size(8 * 1024 * 1024);
    let mut rows = Vec::new();

    // ListEvents and StreamEvents: the `types` of the report, and 100 types (the cap) of
    // 39 KB each holding NUL, so that every item is a violation.
    let request = dpb::ListEventsRequest {
        types: nul_strings(),
        ..Default::default()
    };
    let (bytes, started) = (request.encoded_len(), Instant::now());
    refused(
        &mut rows,
        "ListEvents types",
        bytes,
        started,
        events.list_events(request).await,
    );
    another_tenant_is_served(&stack).await;
    let request = dpb::ListEventsRequest {
        types: vec![format!("\0{}", "t".repeat(39_000)); 100],
        ..Default::default()
    };
    let (bytes, started) = (request.encoded_len(), Instant::now());
    let result = events.list_events(request).await;
    assert!(
        result
            .as_ref()
            .unwrap_err()
            .message()
            .ends_with(" and 95 more"),
        "{result:?}"
    );
    refused(&mut rows, "ListEvents 100 long", bytes, started, result);
    another_tenant_is_served(&stack).await;
    let request = dpb::StreamEventsRequest {
        types: nul_strings(),
        ..Default::default()
    };
    let (bytes, started) = (request.encoded_len(), Instant::now());
    refused(
        &mut rows,
        "StreamEvents types",
        bytes,
        started,
        events.stream_events(request).await,
    );
    another_tenant_is_served(&stack).await;

    // CreateDispute, UpdateDispute and RecordNetworkEvent: metadata.
    let request = dpb::CreateDisputeRequest {
        metadata: nul_metadata(),
        ..Default::default()
    };
    let (bytes, started) = (request.encoded_len(), Instant::now());
    refused(
        &mut rows,
        "CreateDispute metadata",
        bytes,
        started,
        disputes.create_dispute(request).await,
    );
    another_tenant_is_served(&stack).await;
    let request = dpb::UpdateDisputeRequest {
        id: "dsp_x".into(),
        metadata: nul_metadata(),
        ..Default::default()
    };
    let (bytes, started) = (request.encoded_len(), Instant::now());
    refused(
        &mut rows,
        "UpdateDispute metadata",
        bytes,
        started,
        disputes.update_dispute(request).await,
    );
    another_tenant_is_served(&stack).await;
    // Under the key cap: one 4 MB key, echoed in its field path cut to 64 characters.
    let request = dpb::UpdateDisputeRequest {
        id: "dsp_x".into(),
        metadata: huge_key_metadata(),
        ..Default::default()
    };
    let (bytes, started) = (request.encoded_len(), Instant::now());
    let result = disputes.update_dispute(request).await;
    let fields: Vec<String> = result
        .as_ref()
        .unwrap_err()
        .get_error_details()
        .bad_request()
        .unwrap()
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect();
    assert!(
        fields.iter().any(|f| f.starts_with("metadata[\"\\0kkk")),
        "{fields:?}"
    );
    assert!(fields.iter().all(|f| f.len() <= 96), "{fields:?}");
    refused(&mut rows, "UpdateDispute 4 MB key", bytes, started, result);
    another_tenant_is_served(&stack).await;
    let request = dpb::RecordNetworkEventRequest {
        document_ids: nul_strings()[..NEAR_MESSAGE_CAP / 6].to_vec(),
        new_case: Some(dpb::CreateDisputeRequest {
            metadata: nul_metadata().into_iter().take(140_000).collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let (bytes, started) = (request.encoded_len(), Instant::now());
    refused(
        &mut rows,
        "RecordNetworkEvent ids+metadata",
        bytes,
        started,
        disputes.record_network_event(request).await,
    );
    another_tenant_is_served(&stack).await;

    // CreateAction: document ids.
    let request = dpb::CreateActionRequest {
        dispute_id: "dsp_x".into(),
        document_ids: nul_strings(),
        ..Default::default()
    };
    let (bytes, started) = (request.encoded_len(), Instant::now());
    refused(
        &mut rows,
        "CreateAction document_ids",
        bytes,
        started,
        disputes.create_action(request).await,
    );
    another_tenant_is_served(&stack).await;

    // Webhook endpoints: event types (and, for an update, the mask's paths).
    let request = dpb::CreateWebhookEndpointRequest {
        url: "https://example.com/hook".into(),
        event_types: nul_strings(),
        ..Default::default()
    };
    let (bytes, started) = (request.encoded_len(), Instant::now());
    refused(
        &mut rows,
        "CreateWebhookEndpoint event_types",
        bytes,
        started,
        events.create_webhook_endpoint(request).await,
    );
    another_tenant_is_served(&stack).await;
    // Within the cap, 12 unknown names of 300 KB: descriptions echo them cut short.
    let request = dpb::CreateWebhookEndpointRequest {
        url: "https://example.com/hook".into(),
        event_types: (0..12)
            .map(|i| format!("{i}{}", "x".repeat(300_000)))
            .collect(),
        ..Default::default()
    };
    let (bytes, started) = (request.encoded_len(), Instant::now());
    refused(
        &mut rows,
        "CreateWebhookEndpoint 12 long",
        bytes,
        started,
        events.create_webhook_endpoint(request).await,
    );
    another_tenant_is_served(&stack).await;
    let request = dpb::UpdateWebhookEndpointRequest {
        endpoint: Some(dpb::WebhookEndpoint {
            id: WebhookEndpointId::generate().into_string(),
            event_types: nul_strings()[..NEAR_MESSAGE_CAP / 6].to_vec(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: nul_strings()[..NEAR_MESSAGE_CAP / 6].to_vec(),
        }),
    };
    let (bytes, started) = (request.encoded_len(), Instant::now());
    refused(
        &mut rows,
        "UpdateWebhookEndpoint types+paths",
        bytes,
        started,
        events.update_webhook_endpoint(request).await,
    );
    another_tenant_is_served(&stack).await;

    // document-store's batch calls: ids.
    let request = pb::BatchGetDocumentsRequest { ids: nul_strings() };
    let (bytes, started) = (request.encoded_len(), Instant::now());
    refused(
        &mut rows,
        "BatchGetDocuments ids",
        bytes,
        started,
        documents.batch_get_documents(request).await,
    );
    another_tenant_is_served(&stack).await;
    let request = pb::LockDocumentsRequest {
        ids: nul_strings(),
        lock_id: "\0".into(),
    };
    let (bytes, started) = (request.encoded_len(), Instant::now());
    refused(
        &mut rows,
        "LockDocuments ids",
        bytes,
        started,
        documents.lock_documents(request).await,
    );
    another_tenant_is_served(&stack).await;
    let request = pb::UnlockDocumentsRequest {
        ids: nul_strings(),
        lock_id: "\0".into(),
    };
    let (bytes, started) = (request.encoded_len(), Instant::now());
    refused(
        &mut rows,
        "UnlockDocuments ids",
        bytes,
        started,
        documents.unlock_documents(request).await,
    );
    another_tenant_is_served(&stack).await;

    println!(
        "{:<34} {:>13} {:>10} {:>13} {:>8}  message",
        "RPC", "request bytes", "elapsed ms", "details bytes", "reported"
    );
    for row in &rows {
        println!(
            "{:<34} {:>13} {:>10} {:>13} {:>8}  {}",
            row.rpc,
            row.request_bytes,
            row.elapsed_ms,
            row.details_bytes,
            row.reported,
            row.message
        );
    }
    println!(
        "worst-case requests refused with small details: {}",
        rows.len()
    );
    stack.stop().await;
}
