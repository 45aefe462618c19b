//! No global stall (issue 21, point 6): a session that took the sequencer's lock and then
//! went silent inside its transaction (a frozen replica, `SIGSTOP`, a network partition)
//! holds numbering up only until the server's `idle_in_transaction_session_timeout` ends
//! it; and a transaction left open after inserting an event never holds up the others.

use std::time::{Duration, Instant};

use dispute_core::store::events::{events_after_position, insert_event, number_committed_events};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};

use super::{TENANT, insert_plain};

/// The holder's idle-in-transaction timeout, short for the test (the pools' default is 10 s).
const IDLE_TIMEOUT_MS: u64 = 1_000;
/// A generous bound: numbering must resume well within it on a loaded machine.
const RESUMES_WITHIN: Duration = Duration::from_secs(30);

async fn positions(pool: &PgPool) -> Vec<(i64, String)> {
    let mut conn = pool.acquire().await.unwrap();
    events_after_position(&mut conn, TENANT, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.position, row.id))
        .collect()
}

async fn committed_event(pool: &PgPool, payload: &[u8]) -> String {
    let mut tx = pool.begin().await.unwrap();
    let id = insert_event(&mut tx, TENANT, "dsp_a", "dispute.updated", payload)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    id
}

/// One sequencer round as a replica runs it: `None` while another session holds the lock.
async fn round(pool: &PgPool) -> Option<u64> {
    let mut tx = pool.begin().await.unwrap();
    let numbered = number_committed_events(&mut tx, 1000).await.unwrap();
    tx.commit().await.unwrap();
    numbered
}

/// A session set up as the pools set theirs up, with a short idle-in-transaction timeout.
async fn session_with_idle_timeout(pool: &PgPool) -> PgConnection {
    let options: PgConnectOptions = pool.connect_options().as_ref().clone().options([(
        "idle_in_transaction_session_timeout",
        IDLE_TIMEOUT_MS.to_string(),
    )]);
    PgConnection::connect_with(&options).await.unwrap()
}

#[sqlx::test(migrations = "./migrations")]
async fn a_sequencer_session_gone_silent_in_its_round_stops_numbering_only_until_the_idle_timeout(
    pool: PgPool,
) {
    let mut conn = pool.acquire().await.unwrap();
    insert_plain(&mut conn, TENANT, "dsp_a").await;
    drop(conn);
    let first = committed_event(&pool, b"1").await;

    // The frozen replica: its round took the lock and numbered `first`, then nothing more
    // is sent (no commit, no rollback, the connection stays open).
    let mut frozen = session_with_idle_timeout(&pool).await;
    let shown: String = sqlx::query_scalar("show idle_in_transaction_session_timeout")
        .fetch_one(&mut frozen)
        .await
        .unwrap();
    assert_eq!(shown, "1s");
    sqlx::query("begin").execute(&mut frozen).await.unwrap();
    assert_eq!(
        number_committed_events(&mut frozen, 1000).await.unwrap(),
        Some(1)
    );
    let stalled_at = Instant::now();

    let second = committed_event(&pool, b"2").await;
    assert_eq!(
        round(&pool).await,
        None,
        "the silent session holds the lock"
    );
    assert_eq!(positions(&pool).await, vec![], "nothing visible meanwhile");

    // Another replica keeps trying, as the sequencer does (every 20 ms when the lock is
    // busy), until the server has ended the silent session and released its lock.
    let numbered = loop {
        if let Some(numbered) = round(&pool).await {
            break numbered;
        }
        assert!(
            stalled_at.elapsed() < RESUMES_WITHIN,
            "numbering did not resume within {RESUMES_WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let delay = stalled_at.elapsed();
    println!(
        "numbering resumed {:.2} s after the lock holder went silent \
         (idle_in_transaction_session_timeout {IDLE_TIMEOUT_MS} ms)",
        delay.as_secs_f64()
    );
    assert!(
        delay >= Duration::from_millis(IDLE_TIMEOUT_MS),
        "the lock was held until the timeout"
    );
    // The silent round never committed: both events numbered by the other, dense and in
    // commit order.
    assert_eq!(numbered, 2);
    assert_eq!(positions(&pool).await, vec![(1, first), (2, second)]);

    // The silent session was ended by the server: whatever it sends next fails.
    assert!(
        sqlx::query("commit").execute(&mut frozen).await.is_err(),
        "the server ended the silent session"
    );
}

/// A writer that inserted an event and left its transaction open (for as long as it likes:
/// this session has no idle timeout) does not hold up numbering: uncommitted events are
/// invisible to the sequencer, which numbers the committed ones around them; the open one
/// gets the next position when (if ever) it commits.
#[sqlx::test(migrations = "./migrations")]
async fn a_transaction_left_open_after_inserting_an_event_does_not_stop_the_feed(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    insert_plain(&mut conn, TENANT, "dsp_a").await;
    drop(conn);

    let mut open = PgConnection::connect_with(pool.connect_options().as_ref())
        .await
        .unwrap();
    sqlx::query("begin").execute(&mut open).await.unwrap();
    let late = insert_event(&mut open, TENANT, "dsp_a", "dispute.updated", b"open")
        .await
        .unwrap();

    let mut committed = Vec::new();
    for i in 0..3u8 {
        committed.push(committed_event(&pool, &[i]).await);
        let started = Instant::now();
        assert_eq!(round(&pool).await, Some(1));
        println!(
            "round beside the open transaction took {:.1} ms",
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
    let expected: Vec<(i64, String)> = (1..).zip(committed.iter().cloned()).collect();
    assert_eq!(positions(&pool).await, expected);

    sqlx::query("commit").execute(&mut open).await.unwrap();
    assert_eq!(round(&pool).await, Some(1));
    let mut expected = expected;
    expected.push((4, late));
    assert_eq!(positions(&pool).await, expected);
}
