//! Retention on the real stack: rows are made old in SQL (their `created_at` moved back),
//! then one purge run is made through dispute-core's `Retention::purge_once` with batches
//! of two rows. A request id past its window creates anew while a young one still replays;
//! finished old webhook deliveries go with their attempts while pending ones stay; events
//! purged from a tenant's feed make a page token or a stream resume point before them
//! answer OUT_OF_RANGE (EVENTS_PURGED) naming the oldest event kept.

use std::time::Duration;

use dispute_core::app::retention::{Retention, RetentionSettings};
use dispute_core::domain::retention::RetentionPolicy;
use disputes_proto::disputes_v1 as pb;
use harness::Stack;
use harness::webhook_receiver::Receiver;
use tonic::Code;
use tonic_types::StatusExt;

use crate::fixtures::{create, error_reason, merchant_dispute, stack};
use crate::webhooks::{EventsClient, create_endpoint, deliveries, events_of};

/// Batches of two rows: every purge below needs several.
fn retention(pool: &sqlx::PgPool, policy: RetentionPolicy) -> Retention {
    Retention::new(
        pool.clone(),
        RetentionSettings {
            policy,
            interval: Duration::from_secs(300),
            batch_size: 2,
        },
    )
}

async fn pool_of(stack: &Stack) -> sqlx::PgPool {
    sqlx::PgPool::connect(&stack.dispute_db_url).await.unwrap()
}

/// Polls until `done` holds (a guard against a hang, never an assertion on speed).
async fn eventually<T, F>(mut read: impl FnMut() -> F, done: impl Fn(&T) -> bool) -> T
where
    F: std::future::Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let value = read().await;
        if done(&value) {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition never held"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_past_the_window_are_forgotten_and_young_ones_still_replay() {
    let stack = stack().await;
    let pool = pool_of(&stack).await;
    let mut disputes = stack.disputes_of("acme").await;
    let mut first = Vec::new();
    for n in 0..5 {
        let request = merchant_dispute(&format!("old-{n}"), &format!("ch_old_{n}"));
        first.push(create(&mut disputes, request).await.id);
    }
    let young = create(&mut disputes, merchant_dispute("young", "ch_young")).await;
    // Past the 48-hour window (the SPEC minimum is 24).
    sqlx::query(
        "update idempotency_keys set created_at = now() - interval '49 hours'
          where request_id like 'old-%'",
    )
    .execute(&pool)
    .await
    .unwrap();

    // A run asked to stop (the service shutting down) stops before its next batch.
    let stopping = tokio_util::sync::CancellationToken::new();
    stopping.cancel();
    let purge = retention(&pool, RetentionPolicy::default());
    let stopped = purge.purge_at(chrono::Utc::now(), &stopping).await.unwrap();
    assert!(stopped.stopped);
    assert_eq!((stopped.batches, stopped.idempotency_keys), (0, 0));

    let report = purge.purge_once().await.unwrap();
    assert_eq!(report.idempotency_keys, 5);
    // 2 + 2 + 1 keys, then the (empty) delivery batch.
    assert!(report.batches >= 4, "{report:?}");
    assert!(!report.stopped);

    // A forgotten request id is new again: a second dispute is created.
    let again = create(&mut disputes, merchant_dispute("old-0", "ch_old_0")).await;
    assert_ne!(again.id, first[0]);
    // Inside the window, the first answer is replayed.
    let replayed = create(&mut disputes, merchant_dispute("young", "ch_young")).await;
    assert_eq!(replayed.id, young.id);
    let kept: i64 = sqlx::query_scalar("select count(*) from idempotency_keys")
        .fetch_one(&pool)
        .await
        .unwrap();
    // `young` and the new `old-0`.
    assert_eq!(kept, 2);
    stack.stop().await;
}

/// Deliveries of `endpoint_id`.
async fn deliveries_of(events: &mut EventsClient, endpoint_id: &str) -> Vec<pb::WebhookDelivery> {
    deliveries(
        events,
        pb::ListDeliveriesRequest {
            endpoint_id: endpoint_id.to_owned(),
            ..Default::default()
        },
    )
    .await
}

/// Deliveries of `endpoint_id`, once `done` holds for them.
async fn deliveries_until(
    events: &EventsClient,
    endpoint_id: &str,
    done: impl Fn(&Vec<pb::WebhookDelivery>) -> bool,
) -> Vec<pb::WebhookDelivery> {
    eventually(
        || {
            let mut events = events.clone();
            let endpoint_id = endpoint_id.to_owned();
            async move { deliveries_of(&mut events, &endpoint_id).await }
        },
        done,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_finished_deliveries_go_with_their_attempts_and_pending_ones_stay() {
    let stack = stack().await;
    let pool = pool_of(&stack).await;
    let answering = Receiver::start(0).await;
    let failing = Receiver::start(0).await;
    failing.set_fail_all(true);
    let mut events = events_of(&stack, "acme").await;
    let delivered = create_endpoint(&mut events, &answering.url(), &["dispute.created"])
        .await
        .endpoint
        .unwrap()
        .id;
    let retried = create_endpoint(&mut events, &failing.url(), &["dispute.created"])
        .await
        .endpoint
        .unwrap()
        .id;
    let mut disputes = stack.disputes_of("acme").await;
    for n in 0..3 {
        create(&mut disputes, merchant_dispute("", &format!("ch_hook_{n}"))).await;
    }
    // Three succeeded; three pending, each failed at least once (retries take minutes).
    let succeeded = |d: &Vec<pb::WebhookDelivery>| {
        d.len() == 3
            && d.iter()
                .all(|d| d.status() == pb::WebhookDeliveryStatus::Succeeded)
    };
    deliveries_until(&events, &delivered, succeeded).await;
    deliveries_until(&events, &retried, |d| {
        d.len() == 3
            && d.iter()
                .all(|d| d.status() == pb::WebhookDeliveryStatus::Pending && d.attempt_count >= 1)
    })
    .await;
    sqlx::query("update webhook_deliveries set created_at = now() - interval '31 days'")
        .execute(&pool)
        .await
        .unwrap();
    // A young finished delivery, made after the others were aged.
    create(&mut disputes, merchant_dispute("", "ch_hook_young")).await;
    let young = deliveries_until(&events, &delivered, |d| {
        d.len() == 4
            && d.iter()
                .all(|d| d.status() == pb::WebhookDeliveryStatus::Succeeded)
    })
    .await;
    let young_id = young
        .iter()
        .map(|d| d.id.clone())
        .max()
        .expect("four deliveries");

    let report = retention(&pool, RetentionPolicy::default())
        .purge_once()
        .await
        .unwrap();
    assert_eq!(report.webhook_deliveries, 3, "{report:?}");
    assert_eq!(report.webhook_attempts, 3, "{report:?}");
    assert_eq!(report.events, 0, "events are kept forever by default");

    let kept = deliveries_of(&mut events, &delivered).await;
    assert_eq!(
        kept.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
        [young_id]
    );
    // The three old pending ones (with their attempts) and the young one's.
    let pending = deliveries_of(&mut events, &retried).await;
    assert_eq!(pending.len(), 4);
    assert!(
        pending
            .iter()
            .all(|d| d.status() == pb::WebhookDeliveryStatus::Pending)
    );
    assert!(pending.iter().filter(|d| !d.attempts.is_empty()).count() >= 3);
    let orphans: i64 = sqlx::query_scalar(
        "select count(*) from webhook_attempts a
          where not exists (select 1 from webhook_deliveries d
                             where d.tenant_id = a.tenant_id and d.id = a.delivery_id)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(orphans, 0);
    let answered_attempts: i64 = sqlx::query_scalar(
        "select count(*) from webhook_attempts a
           join webhook_deliveries d on d.tenant_id = a.tenant_id and d.id = a.delivery_id
          where d.endpoint_id = $1",
    )
    .bind(&delivered)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(answered_attempts, 1);
    stack.stop().await;
}

/// The EVENTS_PURGED refusal: OUT_OF_RANGE naming the oldest event kept.
fn assert_purged(status: &tonic::Status, oldest: &str) {
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert_eq!(error_reason(status), "EVENTS_PURGED");
    let info = status.get_error_details().error_info().cloned().unwrap();
    assert_eq!(info.metadata["oldest_event_id"], oldest);
    assert!(status.message().contains(oldest), "{}", status.message());
}

/// What StreamEvents answers for `request`: its refusal, or the first message's.
async fn stream_first(
    events: &mut EventsClient,
    request: pb::StreamEventsRequest,
) -> Result<pb::StreamEventsResponse, tonic::Status> {
    let mut stream = events.stream_events(request).await?.into_inner();
    tokio::time::timeout(Duration::from_secs(30), stream.message())
        .await
        .expect("a first message")?
        .ok_or_else(|| tonic::Status::unknown("the stream ended without a message"))
}

fn list_request(page_size: i32, page_token: &str) -> pb::ListEventsRequest {
    pb::ListEventsRequest {
        page_size,
        page_token: page_token.to_owned(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purged_events_refuse_old_page_tokens_and_resume_points_with_the_oldest_kept() {
    let stack = stack().await;
    let pool = pool_of(&stack).await;
    let mut disputes = stack.disputes_of("acme").await;
    for n in 0..3 {
        create(&mut disputes, merchant_dispute("", &format!("ch_evt_{n}"))).await;
    }
    // Each merchant chargeback records two events; wait until all six are numbered.
    let mut events = events_of(&stack, "acme").await;
    let all = eventually(
        || {
            let mut events = events.clone();
            async move {
                events
                    .list_events(list_request(100, ""))
                    .await
                    .unwrap()
                    .into_inner()
                    .events
            }
        },
        |listed| listed.len() == 6,
    )
    .await;
    let first_page = events
        .list_events(list_request(2, ""))
        .await
        .unwrap()
        .into_inner();
    let kept_page = events
        .list_events(list_request(5, ""))
        .await
        .unwrap()
        .into_inner();
    // Another tenant's feed is untouched.
    let mut other_disputes = stack.disputes_of("globex").await;
    create(&mut other_disputes, merchant_dispute("", "ch_other")).await;

    sqlx::query(
        "update dispute_events set created_at = now() - interval '10 days'
          where tenant_id = 'acme' and position <= 4",
    )
    .execute(&pool)
    .await
    .unwrap();
    let policy = RetentionPolicy {
        event_days: 7,
        ..RetentionPolicy::default()
    };
    let report = retention(&pool, policy).purge_once().await.unwrap();
    assert_eq!(report.events, 4, "{report:?}");
    let purged_through: i64 = sqlx::query_scalar(
        "select purged_through from purged_event_positions where tenant_id = 'acme'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(purged_through, 4);
    let oldest = &all[4].id;

    // A page token after a purged event: refused, not restarted from the beginning.
    let refused = events
        .list_events(list_request(2, &first_page.next_page_token))
        .await
        .unwrap_err();
    assert_purged(&refused, oldest);
    // A token after a kept event goes on.
    let next = events
        .list_events(list_request(10, &kept_page.next_page_token))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = next.events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, [all[5].id.as_str()]);
    // Without a token the feed starts at the oldest event kept.
    let fresh = events
        .list_events(list_request(10, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fresh.events.len(), 2);
    assert_eq!(&fresh.events[0].id, oldest);

    // StreamEvents resuming after a purged event: refused the same way.
    let resume = |after: &str| pb::StreamEventsRequest {
        after_event_id: after.to_owned(),
        ..Default::default()
    };
    let refused = stream_first(&mut events, resume(&all[1].id))
        .await
        .unwrap_err();
    assert_purged(&refused, oldest);
    // Resuming after a kept event goes on with the next one.
    let first = stream_first(&mut events, resume(&all[4].id)).await.unwrap();
    match first.kind {
        Some(pb::stream_events_response::Kind::Event(event)) => assert_eq!(event.id, all[5].id),
        other => panic!("expected an event, got {other:?}"),
    }
    // A purged event itself stays NOT_FOUND.
    let gone = events
        .get_event(pb::GetEventRequest {
            id: all[0].id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);

    // The other tenant lists and pages as before.
    let mut other = events_of(&stack, "globex").await;
    let page = eventually(
        || {
            let mut other = other.clone();
            async move {
                other
                    .list_events(list_request(1, ""))
                    .await
                    .unwrap()
                    .into_inner()
            }
        },
        |page| !page.next_page_token.is_empty(),
    )
    .await;
    let rest = other
        .list_events(list_request(10, &page.next_page_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.events.len(), 1);
    stack.stop().await;
}
