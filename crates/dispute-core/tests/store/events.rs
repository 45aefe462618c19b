//! Event positions against real PostgreSQL (issue 12, point 1): positions are given to
//! committed events only, one sequencer round at a time, so writers that commit out of
//! order never make a reader that follows `position > last` skip or reorder an event.

use std::time::Duration;

use dispute_core::store::events::{
    EventQuery, events_after_position, find_event, insert_event, insert_events_with_deliveries,
    list_events, number_committed_events,
};
use sqlx::PgPool;

use super::{OTHER_TENANT, TENANT, insert_plain};

async fn positions_after(pool: &PgPool, tenant: &str, after: i64) -> Vec<(i64, String)> {
    let mut conn = pool.acquire().await.unwrap();
    events_after_position(&mut conn, tenant, after, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.position, row.id))
        .collect()
}

/// One sequencer round, committed; how many events it numbered.
async fn sequence(pool: &PgPool) -> u64 {
    let mut tx = pool.begin().await.unwrap();
    let numbered = number_committed_events(&mut tx, 1000)
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    numbered
}

/// Transaction A inserts an event first and commits last; B inserts and commits in
/// between. With `seq` as the cursor a reader would pass A's event (seq 1) after reading
/// B's (seq 2). Here B is numbered first and A after it commits: the reader following
/// positions sees B then A, nothing skipped, and writers never waited for each other.
#[sqlx::test(migrations = "./migrations")]
async fn writers_that_commit_out_of_order_never_make_a_following_reader_skip(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    insert_plain(&mut conn, TENANT, "dsp_a").await;
    insert_plain(&mut conn, OTHER_TENANT, "dsp_other").await;
    drop(conn);

    let mut a = pool.begin().await.unwrap();
    let a_id = insert_event(&mut a, TENANT, "dsp_a", "dispute.updated", b"a")
        .await
        .unwrap();
    let mut b = pool.begin().await.unwrap();
    let b_id = insert_event(&mut b, TENANT, "dsp_a", "dispute.updated", b"b")
        .await
        .unwrap();
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
    b.commit().await.unwrap();
    other.commit().await.unwrap();

    // Committed but not numbered yet: invisible to readers, shown with position 0.
    assert_eq!(positions_after(&pool, TENANT, 0).await, vec![]);
    let mut conn = pool.acquire().await.unwrap();
    let unnumbered = find_event(&mut conn, TENANT, &b_id).await.unwrap().unwrap();
    assert_eq!(unnumbered.position, 0);
    drop(conn);

    assert_eq!(sequence(&pool).await, 2, "B and the other tenant's event");
    let mut last = 0;
    let seen = positions_after(&pool, TENANT, last).await;
    assert_eq!(seen, vec![(1, b_id.clone())]);
    last = seen[0].0;
    assert_eq!(positions_after(&pool, OTHER_TENANT, 0).await.len(), 1);

    a.commit().await.unwrap();
    assert_eq!(positions_after(&pool, TENANT, last).await, vec![]);
    assert_eq!(sequence(&pool).await, 1);
    assert_eq!(
        positions_after(&pool, TENANT, last).await,
        vec![(2, a_id.clone())]
    );
    assert_eq!(
        positions_after(&pool, TENANT, 0).await,
        vec![(1, b_id), (2, a_id)]
    );
}

/// Only one round runs at a time: a second one while the first is open does nothing.
#[sqlx::test(migrations = "./migrations")]
async fn one_sequencer_round_at_a_time(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    insert_plain(&mut conn, TENANT, "dsp_a").await;
    insert_event(&mut conn, TENANT, "dsp_a", "dispute.updated", b"x")
        .await
        .unwrap();
    drop(conn);
    let mut first = pool.begin().await.unwrap();
    assert_eq!(
        number_committed_events(&mut first, 1000).await.unwrap(),
        Some(1)
    );
    let mut second = pool.begin().await.unwrap();
    assert_eq!(
        number_committed_events(&mut second, 1000).await.unwrap(),
        None
    );
    second.rollback().await.unwrap();
    first.commit().await.unwrap();
    assert_eq!(sequence(&pool).await, 0);
    assert_eq!(positions_after(&pool, TENANT, 0).await.len(), 1);
}

/// Many writers that hold their transaction open for varying times after inserting, while
/// a reader follows `position > last`: every position the reader sees is exactly the one
/// after the last it saw, and in the end it saw every event once.
#[sqlx::test(migrations = "./migrations")]
async fn a_reader_following_concurrent_writers_and_sequencers_sees_dense_positions_in_order(
    pool: PgPool,
) {
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
    // Two sequencers compete, as two replicas would.
    let stop = tokio_util::sync::CancellationToken::new();
    let mut sequencers = Vec::new();
    for _ in 0..2 {
        let pool = pool.clone();
        let stop = stop.clone();
        sequencers.push(tokio::spawn(async move {
            while !stop.is_cancelled() {
                let mut tx = pool.begin().await.unwrap();
                number_committed_events(&mut tx, 7).await.unwrap();
                tx.commit().await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }));
    }
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
    stop.cancel();
    for sequencer in sequencers {
        sequencer.await.unwrap();
    }
    assert_eq!(positions_after(&pool, TENANT, last).await, vec![]);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), expected);
}

#[sqlx::test(migrations = "./migrations")]
async fn events_come_in_order_with_their_deliveries(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    insert_plain(&mut conn, TENANT, "dsp_a").await;
    insert_plain(&mut conn, OTHER_TENANT, "dsp_other").await;

    // No endpoint: the events are recorded in order, no delivery is made (how workers are
    // woken: notifications.rs).
    let first = insert_events_with_deliveries(
        &mut conn,
        TENANT,
        "dsp_a",
        &["dispute.created", "dispute.funds_withdrawn"],
        b"x",
    )
    .await
    .unwrap();
    let recorded: Vec<(String, String)> =
        sqlx::query_as("select id, type from dispute_events where tenant_id = $1 order by seq")
            .bind(TENANT)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    assert_eq!(
        recorded,
        vec![
            (first[0].clone(), "dispute.created".to_owned()),
            (first[1].clone(), "dispute.funds_withdrawn".to_owned()),
        ]
    );

    // An endpoint taking one type, a disabled one and another tenant's: one delivery, of
    // that type.
    for (tenant, id, types, enabled) in [
        (TENANT, "whe_closed", vec!["dispute.closed"], true),
        (TENANT, "whe_off", vec![], false),
        (OTHER_TENANT, "whe_other", vec![], true),
    ] {
        sqlx::query(
            "insert into webhook_endpoints (tenant_id, id, url, event_types, enabled, secret)
             values ($1, $2, 'https://example.com/hook', $3, $4, 'whsec_x')",
        )
        .bind(tenant)
        .bind(id)
        .bind(types)
        .bind(enabled)
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    let second = insert_events_with_deliveries(
        &mut conn,
        TENANT,
        "dsp_a",
        &["dispute.updated", "dispute.closed"],
        b"y",
    )
    .await
    .unwrap();
    let deliveries: Vec<(String, String, String)> = sqlx::query_as(
        "select endpoint_id, event_id, event_type from webhook_deliveries order by id",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert_eq!(
        deliveries,
        vec![(
            "whe_closed".to_owned(),
            second[1].clone(),
            "dispute.closed".to_owned()
        )]
    );
}

/// ListEvents' statement is never prepared on the session, however often it runs: each call
/// is planned for its values, so PostgreSQL cannot switch it to the generic plan that reads
/// no filter index (docs/performance.md, "Indexes").
#[sqlx::test(migrations = "./migrations")]
async fn list_events_is_planned_for_its_values_on_every_call(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let types = ["dispute.won".to_owned()];
    for call in 0..8 {
        let query = EventQuery {
            types: if call % 2 == 0 { &[] } else { &types },
            ..EventQuery::default()
        };
        list_events(&mut conn, TENANT, &query, 0, 10).await.unwrap();
    }
    let prepared: Vec<String> = sqlx::query_scalar("select statement from pg_prepared_statements")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    assert!(
        !prepared
            .iter()
            .any(|statement| statement.contains("from dispute_events")),
        "ListEvents was prepared: {prepared:?}"
    );
    // The check can see a prepared statement: the one it ran itself is listed.
    assert!(
        prepared
            .iter()
            .any(|statement| statement.contains("pg_prepared_statements"))
    );
}
