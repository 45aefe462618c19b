//! StreamEvents admission and bounded streams, over real TCP against a dispute-core replica
//! started with small limits: the per-tenant and per-process caps refuse the stream beyond
//! them (RESOURCE_EXHAUSTED with RetryInfo, ErrorInfo naming the cap) and free a place when
//! a stream ends; a client that stops reading is ended with SLOW_CONSUMER naming the last
//! event it was given, and a stream resumed from there gets the rest with no gap or
//! duplicate; a stream ends with UNAUTHENTICATED when its token expires.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use disputes_proto::disputes_v1 as dpb;
use disputes_proto::disputes_v1::event_service_client::EventServiceClient;
use harness::{Bearer, Stack};
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::fixtures::{create, error_reason, merchant_dispute, stack, update};

type EventsClient = EventServiceClient<InterceptedService<Channel, Bearer>>;
type EventStream = tonic::Streaming<dpb::StreamEventsResponse>;

/// A guard against a hang, never an assertion on speed.
const PATIENCE: Duration = Duration::from_secs(60);

/// A dispute-core replica on the stack's databases with `flags`; stops with the guard.
struct Replica {
    addr: SocketAddr,
    shutdown: CancellationToken,
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn replica(stack: &Stack, flags: &[&str]) -> Replica {
    let shutdown = CancellationToken::new();
    let webhooks = dispute_core::config::WebhookFlags {
        webhook_worker: false,
        ..harness::test_webhook_flags()
    };
    let (addr, _handle) = stack
        .start_dispute_core_replica(webhooks, flags, &shutdown)
        .await
        .unwrap();
    Replica { addr, shutdown }
}

/// An EventService client of `addr` sending `token`, over a channel whose HTTP/2 stream
/// window is `window` bytes (a client that does not read stops the server at the window).
async fn events_client(addr: SocketAddr, token: &str, window: u32) -> EventsClient {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .initial_stream_window_size(Some(window))
        .initial_connection_window_size(Some(window.max(1 << 20)))
        .connect()
        .await
        .unwrap();
    EventServiceClient::with_interceptor(channel, Bearer::new(Some(token)).unwrap())
}

async fn open(client: &mut EventsClient, request: dpb::StreamEventsRequest) -> EventStream {
    client.stream_events(request).await.unwrap().into_inner()
}

fn from_beginning() -> dpb::StreamEventsRequest {
    dpb::StreamEventsRequest {
        from_beginning: true,
        ..Default::default()
    }
}

/// The events a stream sends until it ends with an error, and that error.
async fn events_until_error(stream: &mut EventStream) -> (Vec<dpb::Event>, tonic::Status) {
    let mut events = Vec::new();
    loop {
        let message = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("stream stalled");
        match message {
            Ok(Some(dpb::StreamEventsResponse {
                kind: Some(dpb::stream_events_response::Kind::Event(event)),
            })) => events.push(event),
            Ok(Some(_heartbeat)) => {}
            Ok(None) => panic!("stream ended without an error"),
            Err(status) => return (events, status),
        }
    }
}

/// The next `count` events of a stream, skipping heartbeats.
async fn next_events(stream: &mut EventStream, count: usize) -> Vec<dpb::Event> {
    let mut events = Vec::new();
    while events.len() < count {
        let message = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("stream stalled")
            .unwrap()
            .expect("stream ended");
        if let Some(dpb::stream_events_response::Kind::Event(event)) = message.kind {
            events.push(event);
        }
    }
    events
}

/// The ErrorInfo metadata value `key` of `status`.
fn error_metadata(status: &tonic::Status, key: &str) -> String {
    status
        .get_error_details()
        .error_info()
        .and_then(|info| info.metadata.get(key).cloned())
        .unwrap_or_default()
}

fn assert_refused(status: &tonic::Status, reason: &str, limit: &str) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(error_reason(status), reason);
    assert_eq!(error_metadata(status, "limit"), limit);
    let retry = status.get_error_details().retry_info().cloned();
    assert!(
        retry.and_then(|r| r.retry_delay).is_some(),
        "no RetryInfo: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_the_tenant_or_process_cap_are_refused_and_places_free_up() {
    let stack = stack().await;
    let replica = replica(
        &stack,
        &[
            "--max-event-streams",
            "3",
            "--max-event-streams-per-tenant",
            "2",
        ],
    )
    .await;
    let mut tenant_a = events_client(replica.addr, &stack.full_token("ten_cap_a"), 1 << 20).await;
    let mut tenant_b = events_client(replica.addr, &stack.full_token("ten_cap_b"), 1 << 20).await;
    let mut tenant_c = events_client(replica.addr, &stack.full_token("ten_cap_c"), 1 << 20).await;

    let first_a = open(&mut tenant_a, from_beginning()).await;
    let _second_a = open(&mut tenant_a, from_beginning()).await;
    let refused = tenant_a.stream_events(from_beginning()).await.unwrap_err();
    assert_refused(&refused, "EVENT_STREAMS_PER_TENANT", "2");
    println!(
        "third stream of a tenant with a cap of 2: {:?}",
        refused.code()
    );

    // Another tenant still opens one; the replica is then full for everyone.
    let _only_b = open(&mut tenant_b, from_beginning()).await;
    let refused = tenant_c.stream_events(from_beginning()).await.unwrap_err();
    assert_refused(&refused, "EVENT_STREAMS_PER_PROCESS", "3");
    println!(
        "fourth stream of a replica with a cap of 3: {:?}",
        refused.code()
    );

    // A stream that ends frees its place (the server notices the client left).
    drop(first_a);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let reopened = loop {
        match tenant_c.stream_events(from_beginning()).await {
            Ok(stream) => break stream.into_inner(),
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted);
                assert!(tokio::time::Instant::now() < deadline, "place not freed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    drop(reopened);
    drop(replica);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_ended_with_where_to_resume_and_resumes_without_gap() {
    const TOUCHES: usize = 12;
    let stack = stack().await;
    let replica = replica(
        &stack,
        &[
            "--event-stream-slow-consumer-ms",
            "300",
            "--event-stream-buffer-bytes",
            "16384",
        ],
    )
    .await;
    let tenant = "ten_slow";
    let token = stack.full_token(tenant);
    let mut disputes = stack.disputes_of(tenant).await;
    // Every event carries the whole dispute: with 30,000 characters of evidence, a 64 KiB
    // HTTP/2 window holds only a few of them.
    let dispute = create(&mut disputes, merchant_dispute("", "ch_slow")).await;
    update(
        &mut disputes,
        dpb::UpdateDisputeRequest {
            id: dispute.id.clone(),
            evidence: Some(dpb::EvidenceUpdate {
                uncategorized_text: Some("e".repeat(30_000)),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    for touch in 0..TOUCHES {
        update(
            &mut disputes,
            dpb::UpdateDisputeRequest {
                id: dispute.id.clone(),
                metadata: BTreeMap::from([("touch".to_owned(), touch.to_string())]),
                ..Default::default()
            },
        )
        .await;
    }
    let total = TOUCHES + 2;

    let mut slow_client = events_client(replica.addr, &token, 65_535).await;
    let mut slow = open(&mut slow_client, from_beginning()).await;
    // The client reads nothing for well over the slow-consumer time.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (delivered, status) = events_until_error(&mut slow).await;
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    assert_eq!(error_reason(&status), "SLOW_CONSUMER");
    let last = delivered.last().expect("some events were delivered");
    assert_eq!(error_metadata(&status, "last_event_id"), last.id);
    assert!(
        status
            .message()
            .contains(&format!("resume with after_event_id={}", last.id)),
        "{}",
        status.message()
    );
    assert!(delivered.len() < total, "the stream was never slow");
    println!(
        "slow consumer ended after {} of {total} events: {:?} {}",
        delivered.len(),
        status.code(),
        status.message()
    );

    // Resumed from the last event delivered: the rest, no gap, no duplicate.
    let mut reader = events_client(replica.addr, &token, 1 << 20).await;
    let mut resumed = open(
        &mut reader,
        dpb::StreamEventsRequest {
            after_event_id: last.id.clone(),
            ..Default::default()
        },
    )
    .await;
    let rest = next_events(&mut resumed, total - delivered.len()).await;
    let positions: Vec<i64> = delivered
        .iter()
        .chain(rest.iter())
        .map(|event| event.position)
        .collect();
    let expected: Vec<i64> = (1..=i64::try_from(total).unwrap()).collect();
    assert_eq!(positions, expected);
    println!(
        "resumed after {}: {} more events, positions 1..={total} each once",
        last.id,
        rest.len()
    );
    drop(resumed);
    drop(replica);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_when_its_token_expires_saying_where_to_resume() {
    let stack = stack().await;
    let tenant = "ten_expiry";
    let mut disputes = stack.disputes_of(tenant).await;
    create(&mut disputes, merchant_dispute("", "ch_expiry_1")).await;
    create(&mut disputes, merchant_dispute("", "ch_expiry_2")).await;
    let short_lived = service_kit::auth::mint_token(
        &stack.jwt_secret,
        "e2e",
        tenant,
        &["events:read"],
        chrono::Duration::seconds(2),
    )
    .unwrap();
    let mut client = events_client(stack.dispute_core_addr, &short_lived, 1 << 20).await;
    let mut stream = open(&mut client, from_beginning()).await;
    // Each dispute created makes two events (created, funds withdrawn).
    let seen = next_events(&mut stream, 4).await;
    let (more, status) = events_until_error(&mut stream).await;
    assert!(more.is_empty(), "{more:?}");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(error_reason(&status), "TOKEN_EXPIRED");
    assert_eq!(error_metadata(&status, "last_event_id"), seen[3].id);
    assert!(
        status
            .message()
            .contains(&format!("resume with after_event_id={}", seen[3].id)),
        "{}",
        status.message()
    );
    println!(
        "stream of a 2 s token ended: {:?} {}",
        status.code(),
        status.message()
    );
    stack.stop().await;
}
