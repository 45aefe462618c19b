//! The retention purge's batches against real PostgreSQL: events go with their finished
//! deliveries and attempts, an event with a pending delivery waits, each tenant's highest
//! purged position is recorded, and a batch never takes more than its limit.

use chrono::{Duration, Utc};
use dispute_core::store::events::{insert_event, number_committed_events};
use dispute_core::store::retention::{
    PurgedRows, oldest_event_id, purge_events, purge_finished_deliveries, purged_through,
};
use sqlx::PgPool;

use super::{OTHER_TENANT, TENANT, insert_plain};

/// Records an event of `dsp_a` (one delivery to the tenant's endpoint) and numbers it.
async fn event(pool: &PgPool) -> String {
    let mut tx = pool.begin().await.unwrap();
    let id = insert_event(&mut tx, TENANT, "dsp_a", "dispute.updated", b"x")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    number_committed_events(&mut tx, 100).await.unwrap();
    tx.commit().await.unwrap();
    id
}

/// Marks the delivery of `event_id` succeeded after one attempt.
async fn deliver(pool: &PgPool, event_id: &str) {
    sqlx::query(
        "with done as (
             update webhook_deliveries set status = 'succeeded', attempt_count = 1,
                    next_attempt_at = null
              where event_id = $1
             returning tenant_id, id)
         insert into webhook_attempts (tenant_id, delivery_id, number, started_at,
             response_status, latency_us, replica)
         select tenant_id, id, 1, now(), 204, 1000, 'test' from done",
    )
    .bind(event_id)
    .execute(pool)
    .await
    .unwrap();
}

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("select count(*) from {table}"))
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn purge_events_batch(pool: &PgPool, limit: i64) -> PurgedRows {
    let mut tx = pool.begin().await.unwrap();
    let purged = purge_events(&mut tx, Utc::now() - Duration::days(7), limit)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    purged
}

#[sqlx::test(migrations = "./migrations")]
async fn events_go_with_their_deliveries_and_a_pending_delivery_holds_its_event(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    insert_plain(&mut conn, TENANT, "dsp_a").await;
    insert_plain(&mut conn, OTHER_TENANT, "dsp_b").await;
    sqlx::query(
        "insert into webhook_endpoints (tenant_id, id, url, enabled, secret)
         values ($1, 'whe_a', 'https://example.com/hook', true, 'whsec_x')",
    )
    .bind(TENANT)
    .execute(&mut *conn)
    .await
    .unwrap();
    drop(conn);
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(event(&pool).await);
    }
    deliver(&pool, &ids[0]).await;
    deliver(&pool, &ids[1]).await;
    // ids[2]'s delivery stays pending; ids[3] stays young.
    sqlx::query(
        "update dispute_events set created_at = now() - interval '10 days' where id = any($1)",
    )
    .bind(&ids[..3])
    .execute(&pool)
    .await
    .unwrap();

    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(purged_through(&mut conn, TENANT).await.unwrap(), None);
    drop(conn);
    // A batch of one takes one event, with its delivery and attempt.
    let first = purge_events_batch(&pool, 1).await;
    assert_eq!(
        first,
        PurgedRows {
            picked: 1,
            events: 1,
            deliveries: 1,
            attempts: 1
        }
    );
    let second = purge_events_batch(&pool, 10).await;
    assert_eq!((second.picked, second.events, second.attempts), (1, 1, 1));
    assert_eq!(purge_events_batch(&pool, 10).await, PurgedRows::default());

    assert_eq!(count(&pool, "dispute_events").await, 2);
    assert_eq!(count(&pool, "webhook_deliveries").await, 2);
    assert_eq!(count(&pool, "webhook_attempts").await, 0);
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(purged_through(&mut conn, TENANT).await.unwrap(), Some(2));
    assert_eq!(purged_through(&mut conn, OTHER_TENANT).await.unwrap(), None);
    assert_eq!(
        oldest_event_id(&mut conn, TENANT).await.unwrap().as_deref(),
        Some(ids[2].as_str())
    );
    assert_eq!(
        oldest_event_id(&mut conn, OTHER_TENANT).await.unwrap(),
        None
    );
    drop(conn);

    // Once its delivery finishes, the held event goes too, and the horizon moves on.
    deliver(&pool, &ids[2]).await;
    assert_eq!(purge_events_batch(&pool, 10).await.events, 1);
    let mut conn = pool.acquire().await.unwrap();
    assert_eq!(purged_through(&mut conn, TENANT).await.unwrap(), Some(3));
    assert_eq!(
        oldest_event_id(&mut conn, TENANT).await.unwrap().as_deref(),
        Some(ids[3].as_str())
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn only_finished_old_deliveries_are_purged_in_batches(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    insert_plain(&mut conn, TENANT, "dsp_a").await;
    sqlx::query(
        "insert into webhook_endpoints (tenant_id, id, url, enabled, secret)
         values ($1, 'whe_a', 'https://example.com/hook', true, 'whsec_x')",
    )
    .bind(TENANT)
    .execute(&mut *conn)
    .await
    .unwrap();
    drop(conn);
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(event(&pool).await);
    }
    for id in &ids[..3] {
        deliver(&pool, id).await;
    }
    sqlx::query(
        "update webhook_deliveries set created_at = now() - interval '31 days'
          where event_id = any($1)",
    )
    .bind(&ids[1..])
    .execute(&pool)
    .await
    .unwrap();
    // Old and finished: ids[1] and ids[2]; ids[0] is young, ids[3] pending.
    let before = Utc::now() - Duration::days(30);
    let mut purged = Vec::new();
    loop {
        let mut tx = pool.begin().await.unwrap();
        let batch = purge_finished_deliveries(&mut tx, before, 1).await.unwrap();
        tx.commit().await.unwrap();
        if batch.picked == 0 {
            break;
        }
        purged.push((batch.deliveries, batch.attempts));
    }
    assert_eq!(purged, [(1, 1), (1, 1)]);
    let left: Vec<String> =
        sqlx::query_scalar("select event_id from webhook_deliveries order by event_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let mut expected = vec![ids[0].clone(), ids[3].clone()];
    expected.sort();
    assert_eq!(left, expected);
    assert_eq!(count(&pool, "webhook_attempts").await, 1);
    assert_eq!(
        count(&pool, "dispute_events").await,
        4,
        "events are not touched"
    );
}
