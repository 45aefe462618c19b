//! Event positions against real PostgreSQL (issue 12, point 1): positions are taken under a
//! per-tenant lock held until commit, so writers cannot commit out of position order and a
//! reader that follows `position > last` never skips or reorders an event.

use std::time::Duration;

use dispute_core::store::events::{events_after_position, insert_event};
use sqlx::PgPool;

use super::{OTHER_TENANT, TENANT, insert_plain};

/// How many sessions wait on a lock right now.
async fn sessions_waiting_on_a_lock(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "select count(*) from pg_stat_activity
          where wait_event_type = 'Lock' and datname = current_database()",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn positions_after(pool: &PgPool, tenant: &str, after: i64) -> Vec<(i64, String)> {
    let mut conn = pool.acquire().await.unwrap();
    events_after_position(&mut conn, tenant, after, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.position, row.id))
        .collect()
}

/// Transaction A inserts an event and stays open; B inserts one and tries to commit first.
/// With a `bigserial` B would commit position 2 while 1 is invisible and a reader would pass
/// it. Here B waits for A's lock: the reader sees nothing until A commits, then A before B.
#[sqlx::test(migrations = "./migrations")]
async fn writers_that_try_to_commit_out_of_order_are_serialized_and_a_reader_never_skips(
    pool: PgPool,
) {
    let mut conn = pool.acquire().await.unwrap();
    insert_plain(&mut conn, TENANT, "dsp_a").await;
    insert_plain(&mut conn, OTHER_TENANT, "dsp_other").await;
    drop(conn);

    let mut a = pool.begin().await.unwrap();
    let a_id = insert_event(&mut a, TENANT, "dsp_a", "dispute.updated", b"a")
        .await
        .unwrap();

    let b_pool = pool.clone();
    let b = tokio::spawn(async move {
        let mut b = b_pool.begin().await.unwrap();
        let id = insert_event(&mut b, TENANT, "dsp_a", "dispute.updated", b"b")
            .await
            .unwrap();
        b.commit().await.unwrap();
        id
    });
    // B is blocked on A's counter lock (it cannot get a position, let alone commit).
    while sessions_waiting_on_a_lock(&pool).await == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!b.is_finished());
    // Another tenant is not held up by A.
    let mut other = pool.begin().await.unwrap();
    insert_event(
        &mut other,
        OTHER_TENANT,
        "dsp_other",
        "dispute.updated",
        b"o",
    )
    .await
    .unwrap();
    other.commit().await.unwrap();
    assert_eq!(positions_after(&pool, OTHER_TENANT, 0).await.len(), 1);

    // The reader follows: nothing of TENANT is visible while A is open.
    assert_eq!(positions_after(&pool, TENANT, 0).await, vec![]);
    a.commit().await.unwrap();
    let b_id = b.await.unwrap();
    assert_eq!(
        positions_after(&pool, TENANT, 0).await,
        vec![(1, a_id), (2, b_id)]
    );
}

/// Many writers that hold their transaction open for varying times after inserting, while
/// a reader follows `position > last`: every position the reader sees is exactly the one
/// after the last it saw, and in the end it saw every event once.
#[sqlx::test(migrations = "./migrations")]
async fn a_reader_following_concurrent_writers_sees_dense_positions_in_order(pool: PgPool) {
    const WRITERS: usize = 6;
    const EACH: usize = 15;
    let mut conn = pool.acquire().await.unwrap();
    insert_plain(&mut conn, TENANT, "dsp_a").await;
    drop(conn);

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let pool = pool.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..EACH {
                let mut tx = pool.begin().await.unwrap();
                insert_event(&mut tx, TENANT, "dsp_a", "dispute.updated", b"x")
                    .await
                    .unwrap();
                // Hold the transaction a little, differently per writer and round.
                let hold = ((w * 7 + i * 3) % 5) as u64;
                tokio::time::sleep(Duration::from_millis(hold)).await;
                if (w + i) % 9 == 0 {
                    // A rolled-back event gives its position back: no gap.
                    tx.rollback().await.unwrap();
                } else {
                    tx.commit().await.unwrap();
                }
            }
        }));
    }
    let expected = (0..WRITERS)
        .flat_map(|w| (0..EACH).map(move |i| (w, i)))
        .filter(|(w, i)| (w + i) % 9 != 0)
        .count();
    let mut last = 0;
    let mut seen = Vec::new();
    while seen.len() < expected {
        for (position, id) in positions_after(&pool, TENANT, last).await {
            assert_eq!(position, last + 1, "a position was skipped or repeated");
            last = position;
            seen.push(id);
        }
    }
    for writer in writers {
        writer.await.unwrap();
    }
    assert_eq!(positions_after(&pool, TENANT, last).await, vec![]);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), expected);
}
