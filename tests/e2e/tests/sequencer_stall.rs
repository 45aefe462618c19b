//! No global stall (issue 21, point 6): a dispute-core replica stopped with `SIGSTOP` in the
//! middle of a sequencer round, holding the sequencer's lock, delays event numbering for the
//! other replicas by about its pool's `idle_in_transaction_session_timeout`, not until TCP
//! keepalive notices (hours).
//!
//! Replica A is a child process (so it can be stopped) with a 1 s idle-in-transaction
//! timeout and long statement and lock timeouts; the stack's own replica has a 200 ms lock
//! timeout. A session holding the tenant's `event_positions` row makes every round that got
//! the sequencer's lock wait inside its numbering statement: the stack's replica gives up
//! after 200 ms, A waits, so a round waiting longer than that is A's. A is stopped there,
//! the row released: A's statement ends on the server, its session sits idle in its
//! transaction until the server ends it, and the stack's replica numbers the event.

use std::process::Stdio;
use std::time::{Duration, Instant};

use harness::StackOptions;
use harness::process::{Service, ServiceCommand};
use secrecy::ExposeSecret;
use sqlx::{Connection, PgConnection};

use crate::fixtures::{create, merchant_dispute, stack_with};

/// The ignored test of this binary that runs a service child process (faults/mod.rs).
const ENTRY_TEST: &str = "faults::service_process";
const TENANT: &str = "acct_stall";
/// A's idle-in-transaction timeout (the default is 10 s).
const IDLE_TIMEOUT_MS: u64 = 1_000;
/// Generous bounds for a loaded machine; the delay itself is printed.
const WITHIN: Duration = Duration::from_secs(30);

fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

/// The tenant's events without a position yet.
async fn unnumbered(db: &mut PgConnection) -> i64 {
    sqlx::query_scalar(
        "select count(*) from dispute_events where tenant_id = $1 and position is null",
    )
    .bind(TENANT)
    .fetch_one(db)
    .await
    .unwrap()
}

async fn wait_until_numbered(db: &mut PgConnection, what: &str) {
    let started = Instant::now();
    while unnumbered(db).await > 0 {
        assert!(
            started.elapsed() < WITHIN,
            "{what}: not numbered within {WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_mid_round_delays_numbering_by_its_idle_timeout_only() {
    let mut options = StackOptions::default();
    options.dispute_core_resilience.db_lock_timeout_ms = 200;
    let stack = stack_with(options).await;
    let mut disputes = stack.disputes_of(TENANT).await;
    let mut db = PgConnection::connect(&stack.dispute_db_url).await.unwrap();

    // The tenant's counter row exists once its first event is numbered.
    create(&mut disputes, merchant_dispute("req-stall-0", "ch_stall_0")).await;
    wait_until_numbered(&mut db, "first event").await;

    let a_addr = std::net::SocketAddr::from((
        [127, 0, 0, 1],
        harness::private_postgres::free_port().unwrap(),
    ));
    let mut a = ServiceCommand::test_entry(Service::DisputeCore, ENTRY_TEST)
        .listen_addr(a_addr)
        .database_url(&stack.dispute_db_url)
        .document_store_url(format!("http://{}", stack.document_store_addr))
        .jwt_secret(stack.jwt_secret.expose_secret())
        .env("DISPUTE_CORE_DB_LOCK_TIMEOUT_MS", "60000")
        .env("DISPUTE_CORE_DB_STATEMENT_TIMEOUT_MS", "60000")
        .env(
            "DISPUTE_CORE_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS",
            IDLE_TIMEOUT_MS.to_string(),
        )
        .command()
        .unwrap()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let a_pid = a.id().unwrap();

    // Hold the counter row, then commit an event: rounds that get the lock wait on the row.
    let mut row = PgConnection::connect(&stack.dispute_db_url).await.unwrap();
    sqlx::query("begin").execute(&mut row).await.unwrap();
    sqlx::query("select 1 from event_positions where tenant_id = $1 for update")
        .bind(TENANT)
        .fetch_one(&mut row)
        .await
        .unwrap();
    create(&mut disputes, merchant_dispute("req-stall-1", "ch_stall_1")).await;

    // Wait until a round has waited on the row for longer than the stack's replica would:
    // A's round, holding the sequencer's lock.
    let started = Instant::now();
    loop {
        let a_waits: bool = sqlx::query_scalar(
            "select exists (select 1 from pg_stat_activity
                             where wait_event_type = 'Lock'
                               and query like '%event_positions%'
                               and now() - query_start > interval '1 second')",
        )
        .fetch_one(&mut db)
        .await
        .unwrap();
        if a_waits {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "replica A's round never waited on the row"
        );
        assert!(a.try_wait().unwrap().is_none(), "replica A exited");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Freeze A mid-round, then let its statement finish: its session now sits idle in its
    // transaction, holding the lock, and A sends nothing more.
    signal(a_pid, "-STOP");
    let stopped_at = Instant::now();
    row.close().await.unwrap();
    wait_until_numbered(&mut db, "event of the round A froze in").await;
    let delay = stopped_at.elapsed();
    println!(
        "numbering resumed {:.2} s after replica A was stopped mid-round \
         (its idle_in_transaction_session_timeout {IDLE_TIMEOUT_MS} ms)",
        delay.as_secs_f64()
    );
    assert!(
        delay >= Duration::from_millis(IDLE_TIMEOUT_MS),
        "A held the sequencer's lock until the server ended its session"
    );

    // Numbering goes on while A is still stopped; positions stay dense.
    create(&mut disputes, merchant_dispute("req-stall-2", "ch_stall_2")).await;
    let created_at = Instant::now();
    wait_until_numbered(&mut db, "event after the stall").await;
    println!(
        "the next event was numbered {:.0} ms after its commit, A still stopped",
        created_at.elapsed().as_secs_f64() * 1000.0
    );
    let positions: Vec<i64> = sqlx::query_scalar(
        "select position from dispute_events where tenant_id = $1 order by position",
    )
    .bind(TENANT)
    .fetch_all(&mut db)
    .await
    .unwrap();
    let dense: Vec<i64> = (1..=positions.len() as i64).collect();
    assert_eq!(positions, dense);
    assert!(a.try_wait().unwrap().is_none(), "replica A is only stopped");

    signal(a_pid, "-CONT");
    a.start_kill().unwrap();
    a.wait().await.unwrap();
    stack.stop().await;
}
