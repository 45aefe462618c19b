//! Fair admission of unary calls: while tenant A floods dispute-core past its per-tenant cap
//! with calls held on a row lock, tenant B's calls are all served (none shed, none stuck
//! behind A's in the database pool's queue), and A's extra calls are shed with
//! TENANT_OVER_SHARE and RetryInfo. A process full of several tenants' calls sheds with
//! OVERLOADED once it reaches twice the limit.

use std::time::Duration;

use disputes_proto::disputes_v1 as dpb;
use harness::{Stack, StackOptions};
use sqlx::{Connection, PgConnection};
use tonic::Code;
use tonic_types::StatusExt;

use crate::fixtures::{act, create, error_reason, merchant_dispute, stack_with};

/// dispute-core's --max-concurrent-calls in these tests.
const LIMIT: usize = 16;
/// Its --max-concurrent-calls-per-tenant.
const TENANT_CAP: usize = 12;
/// Calls of one tenant that run at once: half of the harness's pool of 10.
const RUNNING_PER_TENANT: i64 = 5;

fn options() -> StackOptions {
    let mut options = StackOptions::default();
    let resilience = &mut options.dispute_core_resilience;
    resilience.max_concurrent_calls = LIMIT;
    resilience.max_concurrent_calls_per_tenant = Some(TENANT_CAP);
    // Held calls wait on the row lock for as long as the test holds it; a call stuck in
    // the pool's queue gives up soon (UNAVAILABLE), which the test would count.
    resilience.db_lock_timeout_ms = 60_000;
    resilience.db_statement_timeout_ms = 60_000;
    resilience.db_acquire_timeout_ms = 2_000;
    options
}

/// Locks the dispute's row in a transaction of the test: dispute-core's CreateAction on it
/// waits until the connection closes.
async fn lock_dispute_row(stack: &Stack, dispute_id: &str) -> PgConnection {
    let mut conn = PgConnection::connect(&stack.dispute_db_url).await.unwrap();
    sqlx::query("begin").execute(&mut conn).await.unwrap();
    sqlx::query("select id from disputes where id = $1 for update")
        .bind(dispute_id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn
}

/// dispute-core sessions waiting on a lock.
async fn lock_waiters(stack: &Stack) -> i64 {
    let mut conn = PgConnection::connect(&stack.dispute_db_url).await.unwrap();
    sqlx::query_scalar(
        "select count(*) from pg_stat_activity
         where datname = current_database() and application_name = 'dispute-core'
           and wait_event_type = 'Lock'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap()
}

async fn wait_for_lock_waiters(stack: &Stack, expected: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while lock_waiters(stack).await < expected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "fewer than {expected} dispute-core calls ever waited on the row lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn is_shed_with_retry(status: &tonic::Status, reason: &str) -> bool {
    status.code() == Code::ResourceExhausted
        && error_reason(status) == reason
        && status
            .get_error_details()
            .retry_info()
            .is_some_and(|retry| retry.retry_delay.is_some_and(|d| !d.is_zero()))
}

/// Sends `count` CreateActions on the locked dispute at once; returns the calls and waits
/// until the ones shed have answered.
async fn flood_held_calls(
    client: &harness::DisputesClient,
    dispute_id: &str,
    count: usize,
) -> Vec<tokio::task::JoinHandle<Result<dpb::Dispute, tonic::Status>>> {
    (0..count)
        .map(|_| {
            let mut client = client.clone();
            let id = dispute_id.to_owned();
            tokio::spawn(async move { act(&mut client, &id, dpb::DisputeActionType::Accept).await })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_within_its_share_is_served_while_another_floods() {
    let stack = stack_with(options()).await;
    let mut tenant_a = stack.disputes_of("acct_flooder").await;
    let mut tenant_b = stack.disputes_of("acct_bystander").await;
    let held_dispute = create(&mut tenant_a, merchant_dispute("req-a", "ch_flood")).await;
    let b_dispute = create(&mut tenant_b, merchant_dispute("req-b", "ch_quiet")).await;

    let lock = lock_dispute_row(&stack, &held_dispute.id).await;
    let flood = flood_held_calls(&tenant_a, &held_dispute.id, TENANT_CAP + 8).await;
    // A's calls beyond its cap answer at once; the others stay in flight.
    wait_for_lock_waiters(&stack, RUNNING_PER_TENANT).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while flood.iter().filter(|call| call.is_finished()).count() < 8 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "A's calls beyond its cap were not all answered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (mut still_held, mut a_shed) = (Vec::new(), 0);
    for call in flood {
        if call.is_finished() {
            let status = call.await.unwrap().unwrap_err();
            assert!(
                is_shed_with_retry(&status, "TENANT_OVER_SHARE"),
                "{status:?}"
            );
            a_shed += 1;
        } else {
            still_held.push(call);
        }
    }

    // B's calls, one after another, are all served while A floods.
    let (mut b_ok, mut b_shed, mut b_failed) = (0, 0, 0);
    for n in 0..30 {
        let result = if n % 2 == 0 {
            tenant_b
                .get_dispute(dpb::GetDisputeRequest {
                    id: b_dispute.id.clone(),
                })
                .await
                .map(|_| ())
        } else {
            tenant_b
                .list_disputes(dpb::ListDisputesRequest::default())
                .await
                .map(|_| ())
        };
        match result {
            Ok(()) => b_ok += 1,
            Err(status) if status.code() == Code::ResourceExhausted => b_shed += 1,
            Err(status) => {
                eprintln!("tenant B's call failed: {status:?}");
                b_failed += 1;
            }
        }
        // A keeps trying meanwhile: over its share, it is shed first.
        let extra = tenant_a
            .get_dispute(dpb::GetDisputeRequest {
                id: held_dispute.id.clone(),
            })
            .await
            .unwrap_err();
        assert!(is_shed_with_retry(&extra, "TENANT_OVER_SHARE"), "{extra:?}");
        a_shed += 1;
    }
    let waiting_on_lock = lock_waiters(&stack).await;
    println!(
        "fair admission: tenant A held {} calls ({waiting_on_lock} running on the locked row), \
         A shed {a_shed} (TENANT_OVER_SHARE); tenant B ok {b_ok}, shed {b_shed}, failed {b_failed}",
        still_held.len()
    );
    assert_eq!((b_ok, b_shed, b_failed), (30, 0, 0));
    assert_eq!(
        still_held.len(),
        TENANT_CAP,
        "A holds exactly its cap in flight"
    );
    assert_eq!(
        waiting_on_lock, RUNNING_PER_TENANT,
        "A's calls hold at most half the pool; the rest wait in A's own queue"
    );

    // Released, A's held calls all run: none of them was shed.
    lock.close().await.unwrap();
    for call in still_held {
        if let Err(status) = call.await.unwrap() {
            assert_ne!(status.code(), Code::ResourceExhausted, "{status:?}");
            assert_ne!(status.code(), Code::Unavailable, "{status:?}");
        }
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_at_twice_its_limit_sheds_everyone_as_overloaded() {
    let mut options = options();
    options.dispute_core_resilience.max_concurrent_calls = 2;
    options
        .dispute_core_resilience
        .max_concurrent_calls_per_tenant = None;
    let stack = stack_with(options).await;
    let mut tenants = Vec::new();
    for name in [
        "acct_one",
        "acct_two",
        "acct_three",
        "acct_four",
        "acct_five",
    ] {
        tenants.push(stack.disputes_of(name).await);
    }
    let dispute = create(&mut tenants[0], merchant_dispute("req-1", "ch_full")).await;
    let lock = lock_dispute_row(&stack, &dispute.id).await;
    // Four tenants each get one call in (each within its share) up to the hard bound of 4;
    // their calls wait on the lock (a dispute of another tenant reads as not found, so
    // every tenant acts on one of its own).
    let mut held = Vec::new();
    let mut locks = vec![lock];
    for (n, client) in tenants.iter_mut().enumerate().take(4).skip(1) {
        let own = create(client, merchant_dispute(&format!("req-{n}"), "ch_full")).await;
        locks.push(lock_dispute_row(&stack, &own.id).await);
        held.push(flood_held_calls(client, &own.id, 1).await);
    }
    held.push(flood_held_calls(&tenants[0], &dispute.id, 1).await);
    wait_for_lock_waiters(&stack, 4).await;

    let fifth = tenants[4]
        .list_disputes(dpb::ListDisputesRequest::default())
        .await
        .unwrap_err();
    println!(
        "hard bound: 4 calls in flight with a limit of 2; a fifth tenant's call: {:?} {}",
        fifth.code(),
        error_reason(&fifth)
    );
    assert!(is_shed_with_retry(&fifth, "OVERLOADED"), "{fifth:?}");
    for lock in locks {
        lock.close().await.unwrap();
    }
    for call in held.into_iter().flatten() {
        let accepted = call.await.unwrap().unwrap();
        assert_eq!(accepted.status(), dpb::DisputeStatus::Lost);
    }
    stack.stop().await;
}
