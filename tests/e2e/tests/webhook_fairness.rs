//! Fair webhook delivery (issue 21): a tenant whose endpoints are all black-holed (a
//! listener that accepts TCP and never answers) does not delay another tenant's deliveries;
//! its endpoints' breakers open, so their deliveries stop costing attempts; and a tenant
//! cannot register more endpoints than the cap, even with concurrent creates.

use std::time::{Duration, Instant};

use disputes_proto::disputes_v1 as pb;
use harness::StackOptions;
use harness::webhook_receiver::Receiver;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic_types::StatusExt;

use crate::fixtures::{create, merchant_dispute, stack_with};
use crate::webhooks::{create_endpoint, deliveries, events_of};

/// The endpoint cap of these tests (the flag's default is 16).
const ENDPOINT_CAP: u32 = 4;

/// A listener that accepts connections and never reads or answers: every attempt to it
/// spends the whole attempt timeout. Stops accepting when `stop` is cancelled.
async fn black_hole(stop: CancellationToken) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                accepted = listener.accept() => {
                    if let Ok((stream, _)) = accepted {
                        held.push(stream);
                    }
                }
            }
        }
    });
    format!("http://{addr}/hooks")
}

/// Whether every pending delivery of `endpoint` is due after `later`, at least one of them
/// attempted: its breaker is open.
fn breaker_shows_open(
    listed: &[pb::WebhookDelivery],
    endpoint: &str,
    later: chrono::DateTime<chrono::Utc>,
) -> bool {
    let mine: Vec<_> = listed
        .iter()
        .filter(|d| d.endpoint_id == endpoint)
        .collect();
    mine.iter().any(|d| d.attempt_count > 0)
        && mine
            .iter()
            .filter(|d| d.status() == pb::WebhookDeliveryStatus::Pending)
            .all(|d| {
                d.next_attempt_time.as_ref().is_some_and(|next| {
                    chrono::DateTime::from_timestamp(next.seconds, 0)
                        .is_some_and(|next| next > later)
                })
            })
}

fn fairness_flags() -> dispute_core::config::WebhookFlags {
    dispute_core::config::WebhookFlags {
        // 4 slots, at most 2 per tenant and 2 per endpoint: tenant A's stuck attempts can
        // hold only half of the replica.
        webhook_concurrency: 4,
        webhook_attempt_timeout_ms: 1_000,
        webhook_breaker_threshold: 2,
        // 20,000 s divided by the time scale of 1000: an opened breaker stays open for
        // 20 s, longer than the test looks.
        webhook_breaker_backoff_ms: 20_000_000,
        webhook_breaker_max_backoff_ms: 20_000_000,
        webhook_max_endpoints_per_tenant: ENDPOINT_CAP,
        ..harness::test_webhook_flags()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_with_black_holed_endpoints_does_not_delay_another() {
    let stack = stack_with(StackOptions {
        webhooks: fairness_flags(),
        ..Default::default()
    })
    .await;
    let stop = CancellationToken::new();
    let hole = black_hole(stop.clone()).await;
    let mut events_a = events_of(&stack, "tenant-a").await;
    let mut a_endpoints = Vec::new();
    for _ in 0..ENDPOINT_CAP {
        let made = create_endpoint(&mut events_a, &hole, &[]).await;
        a_endpoints.push(made.endpoint.unwrap().id);
    }
    // Tenant A: 6 disputes, 2 events each, to every endpoint: 48 deliveries, each attempt
    // waiting the whole second of the timeout.
    let mut disputes_a = stack.disputes_of("tenant-a").await;
    for i in 0..6 {
        create(
            &mut disputes_a,
            merchant_dispute("", &format!("ch_hole_{i}")),
        )
        .await;
    }
    let a_deliveries = ENDPOINT_CAP as usize * 6 * 2;

    // Tenant B's receiver works; its event is made while A's attempts hang.
    let receiver = Receiver::start(0).await;
    let mut events_b = events_of(&stack, "tenant-b").await;
    create_endpoint(&mut events_b, &receiver.url(), &["dispute.created"]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut disputes_b = stack.disputes_of("tenant-b").await;
    let committed = Instant::now();
    create(&mut disputes_b, merchant_dispute("", "ch_fair_b")).await;
    // A guard against a hang only, not a timing assertion.
    tokio::time::timeout(
        Duration::from_secs(60),
        receiver.wait_until(|r| !r.is_empty()),
    )
    .await
    .expect("tenant B's delivery never arrived");
    let took = committed.elapsed();
    println!(
        "tenant B's first delivery arrived {took:?} after its commit, while tenant A's \
         {a_deliveries} deliveries to {ENDPOINT_CAP} black-holed endpoints were stuck"
    );

    // Each of A's endpoints opens its breaker after 2 failures in a row: its pending
    // deliveries then show when the probe goes (the breaker's reopening, 20 s away) rather
    // than a time already passed, and they stop being attempted.
    let wait_for_breakers = Instant::now();
    let listed = loop {
        let listed = deliveries(&mut events_a, pb::ListDeliveriesRequest::default()).await;
        let later = chrono::Utc::now() + chrono::Duration::seconds(5);
        let open = a_endpoints
            .iter()
            .filter(|endpoint| breaker_shows_open(&listed, endpoint, later))
            .count();
        if open == a_endpoints.len() {
            break listed;
        }
        assert!(
            wait_for_breakers.elapsed() < Duration::from_secs(60),
            "only {open} of {} breakers open",
            a_endpoints.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(listed.len(), a_deliveries);
    let attempts: i32 = listed.iter().map(|d| d.attempt_count).sum();
    let never_attempted = listed.iter().filter(|d| d.attempt_count == 0).count();
    println!(
        "tenant A: {a_deliveries} deliveries, {attempts} attempts, {never_attempted} never \
         attempted (breakers open after {:?})",
        wait_for_breakers.elapsed()
    );
    assert!(
        usize::try_from(attempts).unwrap() < a_deliveries,
        "{attempts} attempts for {a_deliveries} deliveries: the breakers did not open"
    );
    stop.cancel();
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_cap_refuses_one_more_even_when_creates_race() {
    let stack = stack_with(StackOptions {
        webhooks: fairness_flags(),
        ..Default::default()
    })
    .await;
    let receiver = Receiver::start(0).await;
    let mut events = events_of(&stack, "capped").await;
    let first = events
        .create_webhook_endpoint(pb::CreateWebhookEndpointRequest {
            url: receiver.url(),
            request_id: "make-first".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    for _ in 1..ENDPOINT_CAP {
        create_endpoint(&mut events, &receiver.url(), &[]).await;
    }

    // One more: RESOURCE_EXHAUSTED, ErrorInfo with the limit, no RetryInfo.
    let refused = events
        .create_webhook_endpoint(pb::CreateWebhookEndpointRequest {
            url: receiver.url(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let details = refused.get_error_details();
    let info = details.error_info().unwrap();
    assert_eq!(info.reason, "WEBHOOK_ENDPOINT_LIMIT");
    assert_eq!(info.metadata["limit"], ENDPOINT_CAP.to_string());
    assert!(details.retry_info().is_none());
    println!(
        "endpoint {}: {:?} {}",
        ENDPOINT_CAP + 1,
        refused.code(),
        refused.message()
    );

    // A replay of a create made before the cap was reached still answers it.
    let replayed = events
        .create_webhook_endpoint(pb::CreateWebhookEndpointRequest {
            url: receiver.url(),
            request_id: "make-first".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replayed.endpoint.unwrap().id, first.endpoint.unwrap().id);
    assert_eq!(replayed.secret, first.secret);

    // A deleted endpoint does not count.
    let listed = events
        .list_webhook_endpoints(pb::ListWebhookEndpointsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .endpoints;
    events
        .delete_webhook_endpoint(pb::DeleteWebhookEndpointRequest {
            id: listed[0].id.clone(),
        })
        .await
        .unwrap();
    create_endpoint(&mut events, &receiver.url(), &[]).await;

    // Another tenant: 12 creates at once, exactly the cap pass.
    let racing = events_of(&stack, "racing").await;
    let url = receiver.url();
    let outcomes = futures::future::join_all((0..12).map(|_| {
        let mut client = racing.clone();
        let url = url.clone();
        async move {
            client
                .create_webhook_endpoint(pb::CreateWebhookEndpointRequest {
                    url,
                    ..Default::default()
                })
                .await
                .map_err(|status| status.code())
        }
    }))
    .await;
    let made = outcomes.iter().filter(|o| o.is_ok()).count();
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, Err(Code::ResourceExhausted)))
        .count();
    println!("12 concurrent creates: {made} made, {refused} refused");
    assert_eq!(made, ENDPOINT_CAP as usize);
    assert_eq!(refused, 12 - ENDPOINT_CAP as usize);
    stack.stop().await;
}
