//! Webhooks with several dispute-core replicas on one database (issue 12 §4, §5): every
//! event is delivered at least once and none is lost, duplicates only where an attempt
//! failed, and two StreamEvents clients (one reconnecting midway to another replica) each
//! see every event once and in order; the claims of a replica killed with -9 are delivered by another once their lease
//! ran out.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use disputes_proto::disputes_v1 as dpb;
use disputes_proto::disputes_v1::dispute_service_client::DisputeServiceClient;
use futures::StreamExt;
use harness::process::{Service, ServiceCommand, ServiceProcess};
use harness::webhook_receiver::{Received, Receiver};
use harness::{Bearer, Stack, StackOptions};
use secrecy::ExposeSecret;
use sqlx::Row;
use tokio_util::sync::CancellationToken;

use crate::fixtures::{act, create, merchant_dispute, stack, stack_with};
use crate::webhooks::{create_endpoint, events_of};

/// The ignored test of this binary that runs a service child process (faults/mod.rs).
const ENTRY_TEST: &str = "faults::service_process";

/// Disputes driven through the three replicas: issue 12's 500 (about 13 s on a 2-core
/// machine); WEBHOOK_REPLICAS_DISPUTES sets another count.
fn dispute_count() -> usize {
    std::env::var("WEBHOOK_REPLICAS_DISPUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500)
}

/// A further dispute-core replica in this process on the stack's database.
async fn start_replica(
    stack: &Stack,
    flags: dispute_core::config::WebhookFlags,
    shutdown: &CancellationToken,
) -> (SocketAddr, tokio::task::JoinHandle<anyhow::Result<()>>) {
    stack
        .start_dispute_core_replica(flags, &["--sweep-interval-secs", "1"], shutdown)
        .await
        .unwrap()
}

async fn disputes_at(stack: &Stack, addr: SocketAddr, tenant: &str) -> harness::DisputesClient {
    DisputeServiceClient::with_interceptor(
        harness::connect(addr).await.unwrap(),
        Bearer::new(Some(&stack.full_token(tenant))).unwrap(),
    )
}

/// Follows tenant `acme`'s events through StreamEvents on the replica at `addr`, starting
/// after event `after` (or at the first stored event), until `wanted` events arrived;
/// returns their ids in the order received.
async fn follow_events(
    stack: &Stack,
    addr: SocketAddr,
    after: Option<String>,
    wanted: usize,
) -> Vec<String> {
    use disputes_proto::disputes_v1::event_service_client::EventServiceClient;
    let mut client = EventServiceClient::with_interceptor(
        harness::connect(addr).await.unwrap(),
        Bearer::new(Some(&stack.full_token("acme"))).unwrap(),
    );
    let mut stream = client
        .stream_events(dpb::StreamEventsRequest {
            from_beginning: after.is_none(),
            after_event_id: after.unwrap_or_default(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut ids = Vec::new();
    while ids.len() < wanted {
        let message = tokio::time::timeout(Duration::from_secs(60), stream.message())
            .await
            .expect("an event or a heartbeat within 60 s")
            .unwrap()
            .expect("the stream stays open");
        if let Some(dpb::stream_events_response::Kind::Event(event)) = message.kind {
            ids.push(event.id);
        }
    }
    ids
}

async fn database(stack: &Stack) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&stack.dispute_db_url)
        .await
        .unwrap()
}

/// The event id a delivery carried.
fn event_of(received: &Received) -> String {
    received.json()["data"]["id"].as_str().unwrap().to_owned()
}

/// Waits until every delivery row of the tenant is SUCCEEDED; returns (id, attempt_count).
async fn all_succeeded(pool: &sqlx::PgPool, expected: usize) -> BTreeMap<String, i32> {
    loop {
        let rows = sqlx::query(
            "select id, attempt_count, status from webhook_deliveries where tenant_id = 'acme'",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        if rows.len() >= expected
            && rows
                .iter()
                .all(|r| r.get::<String, _>("status") == "succeeded")
        {
            return rows
                .iter()
                .map(|r| (r.get("id"), r.get("attempt_count")))
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_deliver_every_event_at_least_once() {
    let stack = stack().await;
    let receiver = Receiver::start(0).await;
    // Every 7th POST fails: those deliveries are sent again.
    receiver.set_fail_every(7);
    let mut events = events_of(&stack, "acme").await;
    create_endpoint(&mut events, &receiver.url(), &[]).await;

    let shutdown = CancellationToken::new();
    let mut addrs = vec![stack.dispute_core_addr];
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let (addr, handle) = start_replica(&stack, harness::test_webhook_flags(), &shutdown).await;
        addrs.push(addr);
        replicas.push(handle);
    }
    let mut clients = Vec::new();
    for addr in &addrs {
        clients.push(disputes_at(&stack, *addr, "acme").await);
    }

    // Each dispute through one replica: a chargeback (created, funds_withdrawn), and every
    // other one accepted (lost, defense_period_ended).
    let count = dispute_count();
    // 2 events per dispute, 2 more for every other one.
    let total_events = count * 2 + count.div_ceil(2) * 2;
    // Two StreamEvents clients follow while the replicas write: one on replica 1 throughout,
    // one on replica 2 that drops its stream midway and reconnects to replica 0 with the
    // last id it saw.
    let streams = async {
        let steady = follow_events(&stack, addrs[1], None, total_events);
        let reconnecting = async {
            let mut first = follow_events(&stack, addrs[2], None, total_events / 2).await;
            let last = first.last().cloned();
            let rest = follow_events(&stack, addrs[0], last, total_events - first.len()).await;
            first.extend(rest);
            first
        };
        tokio::join!(steady, reconnecting)
    };
    let clients = &clients;
    let writes = futures::stream::iter(0..count)
        .map(|i| async move {
            let mut client = clients[i % clients.len()].clone();
            let dispute = create(&mut client, merchant_dispute("", &format!("ch_rep_{i}"))).await;
            if i % 2 == 0 {
                let mut other = clients[(i + 1) % clients.len()].clone();
                act(&mut other, &dispute.id, dpb::DisputeActionType::Accept)
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>();
    let (_, (steady, reconnecting)) = tokio::join!(writes, streams);

    let pool = database(&stack).await;
    let expected: BTreeSet<String> =
        sqlx::query_scalar("select id from dispute_events where tenant_id = 'acme'")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert!(expected.len() >= count * 2);
    let attempts = all_succeeded(&pool, expected.len()).await;
    assert_eq!(attempts.len(), expected.len(), "one delivery per event");
    let received = receiver
        .wait_until(|r| r.iter().filter(|r| r.status == 204).count() >= expected.len())
        .await;

    // Every event arrived with a 2xx exactly once; the other POSTs of a delivery are the
    // failed ones before it, and the receiver saw exactly the attempts recorded.
    let mut by_delivery: BTreeMap<&str, Vec<&Received>> = BTreeMap::new();
    for r in &received {
        by_delivery.entry(&r.webhook_id).or_default().push(r);
    }
    let mut delivered = BTreeSet::new();
    let mut duplicates = 0;
    for (id, posts) in &by_delivery {
        let (last, before) = posts.split_last().unwrap();
        assert_eq!(last.status, 204, "{id}");
        assert!(
            before.iter().all(|p| p.status == 500),
            "{id}: a duplicate after a success"
        );
        duplicates += before.len();
        assert_eq!(
            usize::try_from(attempts[*id]).unwrap(),
            posts.len(),
            "{id}: POSTs received vs attempts recorded"
        );
        assert!(
            delivered.insert(event_of(last)),
            "{id}: event delivered twice"
        );
    }
    assert_eq!(delivered, expected, "every event delivered, none lost");

    // Both streams saw every event once, in position order, the reconnecting one included.
    let in_order: Vec<String> = sqlx::query_scalar(
        "select id from dispute_events where tenant_id = 'acme' order by position",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(in_order.len(), total_events, "events recorded");
    assert_eq!(steady, in_order, "the steady stream");
    assert_eq!(reconnecting, in_order, "the stream that reconnected midway");

    let shares: Vec<(String, i64)> = sqlx::query_as(
        "select replica, count(*) from webhook_attempts group by replica order by 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    println!(
        "{count} disputes, {} events, {} POSTs ({duplicates} retries after a failure); attempts per replica: {shares:?}",
        expected.len(),
        received.len()
    );
    pool.close().await;
    shutdown.cancel();
    for replica in replicas {
        replica.await.unwrap().unwrap();
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_of_a_replica_killed_with_sigkill_are_delivered_by_another() {
    // The stack's replica serves the API only; replica B (a child process) delivers.
    let stack = stack_with(StackOptions {
        webhooks: dispute_core::config::WebhookFlags {
            webhook_worker: false,
            ..harness::test_webhook_flags()
        },
        ..Default::default()
    })
    .await;
    let receiver = Receiver::start(0).await;
    receiver.set_hold(true);
    let mut events = events_of(&stack, "acme").await;
    create_endpoint(&mut events, &receiver.url(), &["dispute.created"]).await;

    let work = tempfile::tempdir().unwrap();
    let b_addr = SocketAddr::from((
        [127, 0, 0, 1],
        harness::private_postgres::free_port().unwrap(),
    ));
    let mut b = ServiceProcess::start(
        ServiceCommand::test_entry(Service::DisputeCore, ENTRY_TEST)
            .listen_addr(b_addr)
            .database_url(&stack.dispute_db_url)
            .document_store_url(format!("http://{}", stack.document_store_addr))
            .jwt_secret(stack.jwt_secret.expose_secret())
            .env("DISPUTE_CORE_WEBHOOK_ALLOW_HTTP", "true")
            .env("DISPUTE_CORE_WEBHOOK_ALLOW_PRIVATE_ADDRESSES", "true")
            .env("DISPUTE_CORE_WEBHOOK_TIME_SCALE", "1000")
            .env("DISPUTE_CORE_WEBHOOK_LEASE_MS", "3000")
            // B waits on the held POSTs until it is killed, all N of them at once on the
            // one endpoint (above the per-endpoint cap of 2).
            .env("DISPUTE_CORE_WEBHOOK_ATTEMPT_TIMEOUT_MS", "120000")
            .env("DISPUTE_CORE_WEBHOOK_ENDPOINT_CONCURRENCY", "16")
            .env("DISPUTE_CORE_WEBHOOK_POLL_INTERVAL_MS", "20"),
        work.path().join("replica-b.log"),
    )
    .await
    .unwrap();

    const N: usize = 5;
    let mut disputes = stack.disputes_of("acme").await;
    for i in 0..N {
        create(&mut disputes, merchant_dispute("", &format!("ch_kill_{i}"))).await;
    }
    // B has claimed and POSTed all of them; the receiver holds them unanswered.
    receiver.wait_until(|r| r.len() >= N).await;
    let pool = database(&stack).await;
    let owners: Vec<Option<String>> =
        sqlx::query_scalar("select lease_owner from webhook_deliveries where status = 'pending'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(owners.len(), N);
    let b_id = owners[0].clone().expect("B holds the claims");
    assert!(owners.iter().all(|o| o.as_deref() == Some(b_id.as_str())));

    b.kill9().await.unwrap();
    receiver.set_hold(false);
    let shutdown = CancellationToken::new();
    let (_c_addr, c) = start_replica(
        &stack,
        dispute_core::config::WebhookFlags {
            webhook_lease_ms: 3000,
            ..harness::test_webhook_flags()
        },
        &shutdown,
    )
    .await;

    // Once B's leases ran out, C delivers every one of them.
    let attempts = all_succeeded(&pool, N).await;
    let received = receiver.received();
    let recorded: Vec<(String, i32, String, i32, String)> = sqlx::query_as(
        "select delivery_id, number, replica, response_status, error from webhook_attempts
          order by delivery_id, number",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for (id, count) in &attempts {
        assert_eq!(
            *count,
            1,
            "{id}: only C's attempt is recorded; B was {b_id}; attempts {recorded:#?}; received {:?}",
            received
                .iter()
                .map(|r| (&r.webhook_id, r.status))
                .collect::<Vec<_>>()
        );
        let posts: Vec<u16> = received
            .iter()
            .filter(|r| &r.webhook_id == id)
            .map(|r| r.status)
            .collect();
        // B's POST (held, never answered to B), then C's.
        assert_eq!(posts, [0, 204], "{id}");
    }
    let replicas: Vec<String> = sqlx::query_scalar("select distinct replica from webhook_attempts")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(replicas.len(), 1);
    assert_ne!(replicas[0], b_id);
    pool.close().await;
    shutdown.cancel();
    c.await.unwrap().unwrap();
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_the_claims_of_a_replica() {
    // The stack's replica serves the API only; replica R delivers, with a long lease.
    let stack = stack_with(StackOptions {
        webhooks: dispute_core::config::WebhookFlags {
            webhook_worker: false,
            ..harness::test_webhook_flags()
        },
        ..Default::default()
    })
    .await;
    let receiver = Receiver::start(0).await;
    receiver.set_hold(true);
    let mut events = events_of(&stack, "acme").await;
    create_endpoint(&mut events, &receiver.url(), &["dispute.created"]).await;
    // All N held at once on the one endpoint: above the per-endpoint cap of 2.
    let long_lease = dispute_core::config::WebhookFlags {
        webhook_lease_ms: 600_000,
        webhook_attempt_timeout_ms: 600_000,
        webhook_endpoint_concurrency: 16,
        ..harness::test_webhook_flags()
    };
    let r_shutdown = CancellationToken::new();
    let (_r_addr, r) = start_replica(&stack, long_lease.clone(), &r_shutdown).await;

    const N: usize = 3;
    let mut disputes = stack.disputes_of("acme").await;
    for i in 0..N {
        create(&mut disputes, merchant_dispute("", &format!("ch_term_{i}"))).await;
    }
    receiver.wait_until(|r| r.len() >= N).await;
    let pool = database(&stack).await;
    let held: i64 =
        sqlx::query_scalar("select count(*) from webhook_deliveries where lease_owner is not null")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(held, i64::try_from(N).unwrap());

    // SIGTERM: R cuts off its held attempts and releases their claims at once.
    r_shutdown.cancel();
    r.await.unwrap().unwrap();
    let leased: i64 = sqlx::query_scalar(
        "select count(*) from webhook_deliveries
          where status = 'pending' and lease_owner is null and lease_expires_at is null",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(leased, i64::try_from(N).unwrap());

    // Another replica sends them now, long before R's 10-minute leases would have run out.
    receiver.set_hold(false);
    let shutdown = CancellationToken::new();
    let (_addr, other) = start_replica(&stack, long_lease, &shutdown).await;
    let attempts = all_succeeded(&pool, N).await;
    assert!(attempts.values().all(|count| *count == 1));
    pool.close().await;
    shutdown.cancel();
    other.await.unwrap().unwrap();
    stack.stop().await;
}
