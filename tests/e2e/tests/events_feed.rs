//! The event feed: ListEvents pages in commit order with filters, tenancy and scope; GetEvent;
//! StreamEvents replays, follows live, sends heartbeats while idle, resumes exactly after the
//! last id a client saw (also while several writers commit concurrently) and ends cleanly on
//! shutdown; `dispute.due_soon` is recorded once per deadline and again when the deadline
//! moves; every event's payload holds the dispute after the change.

use std::collections::BTreeMap;
use std::time::Duration;

use disputes_proto::disputes_v1 as dpb;
use disputes_proto::disputes_v1::event_service_client::EventServiceClient;
use harness::{Bearer, Stack, StackOptions};
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::fixtures::{
    create, error_reason, event_payloads, in_millis, merchant_dispute, network_event, record,
    stack, stack_with, update, violated_fields,
};

type EventsClient = EventServiceClient<InterceptedService<Channel, Bearer>>;
type EventStream = tonic::Streaming<dpb::StreamEventsResponse>;

/// A guard against a hang, never an assertion on speed.
const PATIENCE: Duration = Duration::from_secs(60);

async fn events_client(stack: &Stack, token: &str) -> EventsClient {
    EventServiceClient::with_interceptor(
        harness::connect(stack.dispute_core_addr).await.unwrap(),
        Bearer::new(Some(token)).unwrap(),
    )
}

async fn events_of(stack: &Stack, tenant: &str) -> EventsClient {
    events_client(stack, &stack.full_token(tenant)).await
}

/// Every event ListEvents returns for `request`, walking the pages.
async fn list_all(client: &mut EventsClient, request: dpb::ListEventsRequest) -> Vec<dpb::Event> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_events(dpb::ListEventsRequest {
                page_token: page_token.clone(),
                ..request.clone()
            })
            .await
            .unwrap()
            .into_inner();
        all.extend(page.events);
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

/// Every event ListEvents returns, once at least `count` are there: an event is listed
/// once the sequencer numbered it, a few milliseconds after its change committed.
async fn list_numbered(
    client: &mut EventsClient,
    request: dpb::ListEventsRequest,
    count: usize,
) -> Vec<dpb::Event> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let all = list_all(client, request.clone()).await;
        if all.len() >= count {
            return all;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "events not numbered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A metadata change: one `dispute.updated` event.
async fn touch(client: &mut harness::DisputesClient, dispute_id: &str, value: &str) {
    update(
        client,
        dpb::UpdateDisputeRequest {
            id: dispute_id.to_owned(),
            metadata: BTreeMap::from([("k".to_owned(), value.to_owned())]),
            ..Default::default()
        },
    )
    .await;
}

/// The next message of a stream (failing on an error or the end).
async fn next(stream: &mut EventStream) -> dpb::stream_events_response::Kind {
    tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("stream stalled")
        .unwrap()
        .expect("stream ended")
        .kind
        .unwrap()
}

/// The next event of a stream, skipping heartbeats.
async fn next_event(stream: &mut EventStream) -> dpb::Event {
    loop {
        if let dpb::stream_events_response::Kind::Event(event) = next(stream).await {
            return event;
        }
    }
}

async fn open_stream(client: &mut EventsClient, request: dpb::StreamEventsRequest) -> EventStream {
    client.stream_events(request).await.unwrap().into_inner()
}

fn ids(events: &[dpb::Event]) -> Vec<String> {
    events.iter().map(|e| e.id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_events_pages_in_commit_order_with_filters_tenancy_and_scope() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("ten_feed_a").await;
    let mut others = stack.disputes_of("ten_feed_b").await;
    let mut events = events_of(&stack, "ten_feed_a").await;
    let mut other_events = events_of(&stack, "ten_feed_b").await;

    // Each merchant chargeback records dispute.created and dispute.funds_withdrawn.
    let mut created = Vec::new();
    for i in 0..3 {
        created.push(create(&mut disputes, merchant_dispute("", &format!("ch_feed_{i}"))).await);
    }
    touch(&mut disputes, &created[0].id, "v1").await;
    let foreign = create(&mut others, merchant_dispute("", "ch_feed_b")).await;

    // Pages of 2, oldest first, positions 1..=7 without a gap.
    let all = list_numbered(
        &mut events,
        dpb::ListEventsRequest {
            page_size: 2,
            ..Default::default()
        },
        7,
    )
    .await;
    let positions: Vec<i64> = all.iter().map(|e| e.position).collect();
    assert_eq!(positions, (1..=7).collect::<Vec<_>>());
    let types: Vec<&str> = all.iter().map(|e| e.r#type.as_str()).collect();
    assert_eq!(
        types,
        [
            "dispute.created",
            "dispute.funds_withdrawn",
            "dispute.created",
            "dispute.funds_withdrawn",
            "dispute.created",
            "dispute.funds_withdrawn",
            "dispute.updated",
        ]
    );
    // Each event holds the dispute after the change and the history entry that caused it.
    let updated = &all[6];
    assert!(updated.id.starts_with("evt_"));
    assert_eq!(updated.dispute_id, created[0].id);
    let dispute = updated.dispute.as_ref().unwrap();
    assert_eq!(dispute.id, created[0].id);
    assert_eq!(dispute.metadata.get("k").map(String::as_str), Some("v1"));
    assert_eq!(dispute.action_history.len(), 1);
    assert_eq!(updated.cause.as_ref(), dispute.action_history.first());
    assert!(updated.create_time.is_some());

    // Filters: types, dispute, time range.
    let only_updated = list_all(
        &mut events,
        dpb::ListEventsRequest {
            types: vec!["dispute.updated".into()],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(&only_updated), vec![updated.id.clone()]);
    let of_second = list_all(
        &mut events,
        dpb::ListEventsRequest {
            dispute_id: created[1].id.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(&of_second), ids(&all[2..4]));
    let in_the_future = list_all(
        &mut events,
        dpb::ListEventsRequest {
            created_after: Some(in_millis(60_000)),
            ..Default::default()
        },
    )
    .await;
    assert!(in_the_future.is_empty());
    let before_now = list_all(
        &mut events,
        dpb::ListEventsRequest {
            created_before: Some(in_millis(60_000)),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(&before_now), ids(&all));

    // Bad input: unknown type, malformed id, reversed range, a token of other filters.
    let refused = events
        .list_events(dpb::ListEventsRequest {
            types: vec!["dispute.created".into(), "dispute.exploded".into()],
            dispute_id: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&refused), ["types[1]", "dispute_id"]);
    let first_page = events
        .list_events(dpb::ListEventsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let refused = events
        .list_events(dpb::ListEventsRequest {
            page_size: 1,
            page_token: first_page.next_page_token,
            types: vec!["dispute.updated".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&refused), ["page_token"]);

    // GetEvent, and tenancy: the other tenant sees only its own events.
    let got = events
        .get_event(dpb::GetEventRequest {
            id: updated.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .event
        .unwrap();
    assert_eq!(&got, updated);
    let theirs = list_numbered(&mut other_events, dpb::ListEventsRequest::default(), 2).await;
    assert_eq!(theirs.len(), 2);
    assert!(theirs.iter().all(|e| e.dispute_id == foreign.id));
    assert_eq!(theirs[0].position, 1, "positions count per tenant");
    let hidden = other_events
        .get_event(dpb::GetEventRequest {
            id: updated.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    assert_eq!(error_reason(&hidden), "EVENT_NOT_FOUND");
    let malformed = events
        .get_event(dpb::GetEventRequest { id: "evt".into() })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&malformed), ["id"]);
    let foreign_start = events
        .stream_events(dpb::StreamEventsRequest {
            after_event_id: theirs[0].id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(foreign_start.code(), Code::NotFound);

    // Scope: events:read is needed for every read.
    let token = stack.token("ten_feed_a", &["disputes:read", "disputes:write"]);
    let mut unscoped = events_client(&stack, &token).await;
    let denied = [
        unscoped
            .list_events(dpb::ListEventsRequest::default())
            .await
            .unwrap_err(),
        unscoped
            .get_event(dpb::GetEventRequest {
                id: updated.id.clone(),
            })
            .await
            .unwrap_err(),
        unscoped
            .stream_events(dpb::StreamEventsRequest::default())
            .await
            .unwrap_err(),
    ];
    for status in denied {
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    }
    let token = stack.token("ten_feed_a", &["events:read"]);
    let mut scoped = events_client(&stack, &token).await;
    assert_eq!(
        list_all(&mut scoped, dpb::ListEventsRequest::default())
            .await
            .len(),
        7
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_replays_follows_live_beats_while_idle_and_resumes_after_the_last_id() {
    let stack = stack_with(StackOptions {
        event_stream_heartbeat_ms: 200,
        ..Default::default()
    })
    .await;
    let mut disputes = stack.disputes_of("ten_stream").await;
    let mut events = events_of(&stack, "ten_stream").await;
    let first = create(&mut disputes, merchant_dispute("", "ch_stream_1")).await;
    create(&mut disputes, merchant_dispute("", "ch_stream_2")).await;
    let stored = list_numbered(&mut events, dpb::ListEventsRequest::default(), 4).await;
    assert_eq!(stored.len(), 4);

    // Replay from the beginning: the stored events, as ListEvents returns them.
    let mut stream = open_stream(
        &mut events,
        dpb::StreamEventsRequest {
            from_beginning: true,
            ..Default::default()
        },
    )
    .await;
    let mut replayed = Vec::new();
    for _ in 0..4 {
        replayed.push(next_event(&mut stream).await);
    }
    assert_eq!(replayed, stored);
    // Idle: a heartbeat at the last position.
    match next(&mut stream).await {
        dpb::stream_events_response::Kind::Heartbeat(beat) => {
            assert_eq!(beat.position, 4);
            assert!(beat.time.is_some());
        }
        other => panic!("expected a heartbeat, got {other:?}"),
    }
    // Live: a change committed now arrives.
    touch(&mut disputes, &first.id, "live").await;
    let live = next_event(&mut stream).await;
    assert_eq!(
        (live.position, live.r#type.as_str()),
        (5, "dispute.updated")
    );
    drop(stream);

    // Changes while no stream runs; a reconnect with the last id gets exactly them.
    touch(&mut disputes, &first.id, "offline 1").await;
    touch(&mut disputes, &first.id, "offline 2").await;
    let mut resumed = open_stream(
        &mut events,
        dpb::StreamEventsRequest {
            after_event_id: live.id.clone(),
            ..Default::default()
        },
    )
    .await;
    let (six, seven) = (
        next_event(&mut resumed).await,
        next_event(&mut resumed).await,
    );
    assert_eq!((six.position, seven.position), (6, 7));
    let six_value = six.dispute.as_ref().unwrap().metadata.get("k").cloned();
    assert_eq!(six_value.as_deref(), Some("offline 1"));

    // From now (no id): only what commits afterwards; filters apply to the stream.
    let mut from_now = open_stream(&mut events, dpb::StreamEventsRequest::default()).await;
    let mut only_created = open_stream(
        &mut events,
        dpb::StreamEventsRequest {
            types: vec!["dispute.created".into()],
            from_beginning: true,
            ..Default::default()
        },
    )
    .await;
    let third = create(&mut disputes, merchant_dispute("", "ch_stream_3")).await;
    let after_now = next_event(&mut from_now).await;
    assert_eq!(
        (after_now.position, after_now.dispute_id.as_str()),
        (8, third.id.as_str())
    );
    let created: Vec<i64> = [
        next_event(&mut only_created).await,
        next_event(&mut only_created).await,
        next_event(&mut only_created).await,
    ]
    .iter()
    .map(|e| e.position)
    .collect();
    assert_eq!(created, [1, 3, 8]);

    // An unknown id is NOT_FOUND, a malformed one INVALID_ARGUMENT.
    let unknown = events
        .stream_events(dpb::StreamEventsRequest {
            after_event_id: "evt_01jd3s9v8m6q0n2c5x7r4t1k9e".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let malformed = events
        .stream_events(dpb::StreamEventsRequest {
            after_event_id: "x".into(),
            types: vec!["nope".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&malformed), ["types[0]", "after_event_id"]);

    // Shutdown ends the open streams cleanly (OK, not an error).
    stack.begin_shutdown();
    loop {
        let message = tokio::time::timeout(PATIENCE, from_now.message())
            .await
            .expect("stream did not end on shutdown");
        match message {
            Ok(Some(_heartbeat)) => continue,
            Ok(None) => break,
            Err(status) => panic!("stream ended with {status:?}"),
        }
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_see_every_event_once_in_order_while_four_writers_commit_concurrently() {
    const WRITERS: usize = 4;
    const EACH: usize = 25;
    let stack = stack_with(StackOptions {
        event_stream_heartbeat_ms: 500,
        ..Default::default()
    })
    .await;
    let tenant = "ten_concurrent";
    let mut disputes = stack.disputes_of(tenant).await;
    let mut events = events_of(&stack, tenant).await;
    let mut targets = Vec::new();
    for i in 0..WRITERS {
        targets.push(create(&mut disputes, merchant_dispute("", &format!("ch_conc_{i}"))).await);
    }
    let before = list_numbered(&mut events, dpb::ListEventsRequest::default(), 2 * WRITERS).await;
    let start = before.last().unwrap().id.clone();

    // One stream follows throughout; another reconnects midway with the last id it saw.
    let mut steady = open_stream(
        &mut events,
        dpb::StreamEventsRequest {
            after_event_id: start.clone(),
            ..Default::default()
        },
    )
    .await;
    let mut reconnecting = open_stream(
        &mut events,
        dpb::StreamEventsRequest {
            after_event_id: start,
            ..Default::default()
        },
    )
    .await;
    let mut writers = Vec::new();
    for (w, target) in targets.iter().enumerate() {
        let mut client = stack.disputes_of(tenant).await;
        let id = target.id.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..EACH {
                touch(&mut client, &id, &format!("{w}-{i}")).await;
            }
        }));
    }
    let total = WRITERS * EACH;
    let mut seen_steady = Vec::new();
    let mut seen_reconnecting = Vec::new();
    while seen_reconnecting.len() < total / 3 {
        seen_reconnecting.push(next_event(&mut reconnecting).await);
    }
    let last_id = seen_reconnecting.last().unwrap().id.clone();
    drop(reconnecting);
    let mut reconnected = open_stream(
        &mut events,
        dpb::StreamEventsRequest {
            after_event_id: last_id,
            ..Default::default()
        },
    )
    .await;
    while seen_steady.len() < total {
        seen_steady.push(next_event(&mut steady).await);
    }
    while seen_reconnecting.len() < total {
        seen_reconnecting.push(next_event(&mut reconnected).await);
    }
    for writer in writers {
        writer.await.unwrap();
    }

    let listed = list_all(&mut events, dpb::ListEventsRequest::default()).await;
    let after_start = &listed[before.len()..];
    assert_eq!(after_start.len(), total);
    assert_eq!(ids(&seen_steady), ids(after_start), "steady stream");
    assert_eq!(
        ids(&seen_reconnecting),
        ids(after_start),
        "reconnecting stream"
    );
    let positions: Vec<i64> = seen_steady.iter().map(|e| e.position).collect();
    let first = positions[0];
    assert_eq!(positions, (first..first + total as i64).collect::<Vec<_>>());
    stack.stop().await;
}

/// `dispute.due_soon` events of a dispute, oldest first.
async fn due_soon_of(events: &mut EventsClient, dispute_id: &str) -> Vec<dpb::Event> {
    list_all(
        events,
        dpb::ListEventsRequest {
            types: vec!["dispute.due_soon".into()],
            dispute_id: dispute_id.to_owned(),
            ..Default::default()
        },
    )
    .await
}

async fn wait_for_due_soon(events: &mut EventsClient, dispute_id: &str, count: usize) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while due_soon_of(events, dispute_id).await.len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no dispute.due_soon"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn due_by(event: &dpb::Event) -> Option<prost_types::Timestamp> {
    event
        .dispute
        .as_ref()
        .and_then(|d| d.evidence_details.as_ref())
        .and_then(|e| e.due_by)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_soon_is_recorded_once_per_deadline_and_again_when_it_moves() {
    // A lead of one hour: deadlines 30 and 40 minutes away are "soon".
    let stack = stack_with(StackOptions {
        due_soon_lead_secs: 3600,
        ..Default::default()
    })
    .await;
    let tenant = "ten_due_soon";
    let mut disputes = stack.disputes_of(tenant).await;
    let mut events = events_of(&stack, tenant).await;
    let inquiry = create(
        &mut disputes,
        dpb::CreateDisputeRequest {
            stage: dpb::DisputeStage::Inquiry.into(),
            network_case_id: "case_due_soon".into(),
            due_by: Some(in_millis(30 * 60 * 1000)),
            ..merchant_dispute("", "ch_due_soon")
        },
    )
    .await;
    let far = create(
        &mut disputes,
        dpb::CreateDisputeRequest {
            stage: dpb::DisputeStage::Inquiry.into(),
            due_by: Some(in_millis(3 * 3600 * 1000)),
            ..merchant_dispute("", "ch_due_far")
        },
    )
    .await;
    wait_for_due_soon(&mut events, &inquiry.id, 1).await;
    let first_due = inquiry.evidence_details.as_ref().unwrap().due_by;

    // The network moves the deadline: announced again, for the new due_by.
    let mut moved = network_event(
        dpb::CardNetwork::Visa,
        "case_due_soon",
        "evt-notified",
        dpb::NetworkEventType::ChargebackNotified,
    );
    moved.due_by = Some(in_millis(40 * 60 * 1000));
    let moved = record(&mut disputes, moved).await.unwrap();
    let second_due = moved.dispute.unwrap().evidence_details.unwrap().due_by;
    assert_ne!(first_due, second_due);
    wait_for_due_soon(&mut events, &inquiry.id, 2).await;

    // Another dispute's announcement proves more sweeps ran: still one per deadline.
    let later = create(
        &mut disputes,
        dpb::CreateDisputeRequest {
            stage: dpb::DisputeStage::Inquiry.into(),
            due_by: Some(in_millis(35 * 60 * 1000)),
            ..merchant_dispute("", "ch_due_later")
        },
    )
    .await;
    wait_for_due_soon(&mut events, &later.id, 1).await;
    let announced = due_soon_of(&mut events, &inquiry.id).await;
    assert_eq!(announced.len(), 2);
    assert_eq!(due_by(&announced[0]), first_due);
    assert_eq!(due_by(&announced[1]), second_due);
    // Nothing in the history caused it.
    assert!(announced.iter().all(|e| e.cause.is_none()));
    assert!(due_soon_of(&mut events, &far.id).await.is_empty());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_loses_nothing_when_the_listen_connection_drops() {
    // A heartbeat far away: the stream relies on the listener coming back.
    let stack = stack_with(StackOptions {
        event_stream_heartbeat_ms: 600_000,
        ..Default::default()
    })
    .await;
    let tenant = "ten_listener";
    let mut disputes = stack.disputes_of(tenant).await;
    let mut events = events_of(&stack, tenant).await;
    let dispute = create(&mut disputes, merchant_dispute("", "ch_listener")).await;
    let created = list_numbered(&mut events, dpb::ListEventsRequest::default(), 2).await;
    let mut stream = open_stream(
        &mut events,
        dpb::StreamEventsRequest {
            after_event_id: created[1].id.clone(),
            ..Default::default()
        },
    )
    .await;

    // Cut dispute-core's event LISTEN connection from the database side (the webhook
    // worker is woken through the same one).
    let pool = sqlx::PgPool::connect(&stack.dispute_db_url).await.unwrap();
    let cut: i64 = sqlx::query_scalar(
        "select count(pg_terminate_backend(pid)) from pg_stat_activity
          where datname = current_database() and query ilike 'listen%dispute_events%'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert_eq!(cut, 1, "one LISTEN connection per process");

    for i in 0..3 {
        touch(&mut disputes, &dispute.id, &format!("after cut {i}")).await;
    }
    let positions: Vec<i64> = [
        next_event(&mut stream).await,
        next_event(&mut stream).await,
        next_event(&mut stream).await,
    ]
    .iter()
    .map(|e| e.position)
    .collect();
    assert_eq!(positions, [3, 4, 5]);
    stack.stop().await;
}

/// Every event holds the dispute after the change encoded as `disputes.v1.Dispute`
/// (docs/api.md, "Events"; the `dispute_events.payload` column says so). Events written by CreateDispute hold a
/// `CreateDisputeResponse` instead (its encoder is reused for the events).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_create_dispute_hold_the_dispute() {
    use prost::Message;
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let dispute = create(&mut disputes, merchant_dispute("", "ch_event_payload")).await;
    let events = event_payloads(&stack, &dispute.id).await;
    assert_eq!(
        events.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
        vec!["dispute.created", "dispute.funds_withdrawn"]
    );
    for (kind, payload) in &events {
        let decoded = dpb::Dispute::decode(payload.as_slice());
        assert!(
            decoded.as_ref().is_ok_and(|d| d.id == dispute.id),
            "{kind}: {decoded:?}"
        );
    }
    stack.stop().await;
}
