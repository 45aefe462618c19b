//! Writers notify nothing (issue 23, point 3), yet events reach StreamEvents and webhooks of
//! every replica through wake-ups, not timers: a commit wakes its replica's sequencer in
//! process, each sequencer round announces what it numbered to every replica, and events
//! committed where no replica woke (here: straight in SQL) are found by the sequencers'
//! short poll.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use disputes_proto::disputes_v1 as dpb;
use disputes_proto::disputes_v1::dispute_service_client::DisputeServiceClient;
use disputes_proto::disputes_v1::event_service_client::EventServiceClient;
use harness::webhook_receiver::Receiver;
use harness::{Bearer, Stack, StackOptions};
use prost::Message;
use tokio_util::sync::CancellationToken;

use crate::fixtures::{create, merchant_dispute, stack_with, update};
use crate::webhooks::{create_endpoint, events_of};

/// A guard against a hang, never an assertion on speed.
const PATIENCE: Duration = Duration::from_secs(60);
/// Far beyond PATIENCE: the streams' heartbeat re-reads and the webhook workers' poll never
/// come within the test, so only wake-ups can bring the events.
const NEVER_MS: u64 = 600_000;

type EventStream = tonic::Streaming<dpb::StreamEventsResponse>;

async fn stream_at(stack: &Stack, addr: SocketAddr) -> EventStream {
    let mut client = EventServiceClient::with_interceptor(
        harness::connect(addr).await.unwrap(),
        Bearer::new(Some(&stack.full_token("acme"))).unwrap(),
    );
    client
        .stream_events(dpb::StreamEventsRequest {
            from_beginning: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// The next `count` event ids of a stream (heartbeats skipped).
async fn next_ids(stream: &mut EventStream, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    while ids.len() < count {
        let message = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("an event came through a wake-up")
            .unwrap()
            .expect("the stream stays open");
        if let Some(dpb::stream_events_response::Kind::Event(event)) = message.kind {
            ids.push(event.id);
        }
    }
    ids
}

async fn event_ids(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar("select id from dispute_events where tenant_id = 'acme' order by position")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_the_streams_and_webhooks_of_every_replica_through_wake_ups() {
    let webhooks = dispute_core::config::WebhookFlags {
        webhook_poll_interval_ms: NEVER_MS,
        ..harness::test_webhook_flags()
    };
    let stack = stack_with(StackOptions {
        event_stream_heartbeat_ms: NEVER_MS,
        webhooks: webhooks.clone(),
        ..Default::default()
    })
    .await;
    let shutdown = CancellationToken::new();
    let never = NEVER_MS.to_string();
    let (other_addr, other) = stack
        .start_dispute_core_replica(
            webhooks,
            &["--event-stream-heartbeat-ms", &never],
            &shutdown,
        )
        .await
        .unwrap();
    let receiver = Receiver::start(0).await;
    let mut events = events_of(&stack, "acme").await;
    create_endpoint(&mut events, &receiver.url(), &[]).await;
    let mut here = stack.disputes_of("acme").await;
    let mut there = DisputeServiceClient::with_interceptor(
        harness::connect(other_addr).await.unwrap(),
        Bearer::new(Some(&stack.full_token("acme"))).unwrap(),
    );
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&stack.dispute_db_url)
        .await
        .unwrap();

    // A chargeback (two events); a stream on each replica replays them, so both streams
    // are following before anything else is written.
    let dispute = create(&mut here, merchant_dispute("", "ch_quiet")).await;
    let mut stream_here = stream_at(&stack, stack.dispute_core_addr).await;
    let mut stream_there = stream_at(&stack, other_addr).await;
    let first = next_ids(&mut stream_here, 2).await;
    assert_eq!(next_ids(&mut stream_there, 2).await, first);

    // A change through each replica reaches the streams of both.
    for (n, client) in [&mut here, &mut there].into_iter().enumerate() {
        update(
            client,
            dpb::UpdateDisputeRequest {
                id: dispute.id.clone(),
                metadata: BTreeMap::from([("step".to_owned(), n.to_string())]),
                ..Default::default()
            },
        )
        .await;
        let seen = next_ids(&mut stream_here, 1).await;
        assert_eq!(next_ids(&mut stream_there, 1).await, seen);
    }

    // An event committed where no replica wakes: a sequencer's poll finds it.
    let mut conn = pool.acquire().await.unwrap();
    let inserted = dispute_core::store::events::insert_event(
        &mut conn,
        "acme",
        &dispute.id,
        "dispute.updated",
        &dispute.encode_to_vec(),
    )
    .await
    .unwrap();
    drop(conn);
    assert_eq!(next_ids(&mut stream_here, 1).await, vec![inserted.clone()]);
    assert_eq!(next_ids(&mut stream_there, 1).await, vec![inserted]);

    // Every event was delivered to the webhook endpoint, woken by the rounds' announcements
    // (the workers' poll never came).
    let expected = event_ids(&pool).await;
    assert_eq!(expected.len(), 5);
    let received = tokio::time::timeout(
        PATIENCE,
        receiver.wait_until(|received| received.len() >= expected.len()),
    )
    .await
    .expect("deliveries came through wake-ups");
    let mut delivered: Vec<String> = received
        .iter()
        .map(|r| r.json()["data"]["id"].as_str().unwrap().to_owned())
        .collect();
    delivered.sort();
    let mut expected = expected;
    expected.sort();
    assert_eq!(delivered, expected);

    shutdown.cancel();
    other.await.unwrap().unwrap();
    stack.stop().await;
}
