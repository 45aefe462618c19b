//! Writers send no NOTIFY (issue 23, point 3): a transaction that has notified takes, at
//! commit, a lock of the whole cluster held through its commit flush, so notifying writers
//! of different tenants would wait for each other. Only a sequencer round notifies, once.

use std::time::Duration;

use dispute_core::store::events::{
    EVENTS_CHANNEL, insert_events_with_deliveries, number_committed_events,
};
use dispute_core::store::round_notice::RoundNotice;
use dispute_core::store::webhooks::retry_delivery;
use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgNotification};

use super::{OTHER_TENANT, TENANT, insert_plain};

/// Every channel a notification of this service was ever sent on.
const CHANNELS: [&str; 3] = [
    EVENTS_CHANNEL,
    "dispute_events_inserted",
    "webhook_deliveries",
];

/// What `listener` receives within `wait`.
async fn received(listener: &mut PgListener, wait: Duration) -> Vec<PgNotification> {
    let mut got = Vec::new();
    while let Ok(notification) = tokio::time::timeout(wait, listener.recv()).await {
        got.push(notification.unwrap());
    }
    got
}

/// One sequencer round, committed.
async fn round(pool: &PgPool) -> u64 {
    let mut tx = service_kit::database::begin(pool).await.unwrap();
    let numbered = number_committed_events(&mut tx, 1000)
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    numbered
}

#[sqlx::test(migrations = "./migrations")]
async fn writers_notify_nothing_and_each_round_announces_its_tenants_once(pool: PgPool) {
    let mut listener = PgListener::connect_with(&pool).await.unwrap();
    listener.listen_all(CHANNELS).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    insert_plain(&mut conn, TENANT, "dsp_a").await;
    insert_plain(&mut conn, OTHER_TENANT, "dsp_b").await;
    sqlx::query(
        "insert into webhook_endpoints (tenant_id, id, url, secret)
         values ($1, 'whe_all', 'https://example.com/hook', 'whsec_x')",
    )
    .bind(TENANT)
    .execute(&mut *conn)
    .await
    .unwrap();
    drop(conn);

    // A mutation's events of both tenants, with a webhook delivery for one, committed.
    let mut tx = service_kit::database::begin(&pool).await.unwrap();
    insert_events_with_deliveries(&mut tx, TENANT, "dsp_a", &["dispute.updated"], b"a")
        .await
        .unwrap();
    insert_events_with_deliveries(&mut tx, OTHER_TENANT, "dsp_b", &["dispute.updated"], b"b")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(
        received(&mut listener, Duration::from_millis(300))
            .await
            .is_empty(),
        "recording events notified"
    );
    // Nor does a manual retry of the delivery.
    let delivery: String = sqlx::query_scalar("select id from webhook_deliveries")
        .fetch_one(&pool)
        .await
        .unwrap();
    let mut tx = service_kit::database::begin(&pool).await.unwrap();
    retry_delivery(&mut tx, TENANT, &delivery).await.unwrap();
    tx.commit().await.unwrap();
    assert!(
        received(&mut listener, Duration::from_millis(300))
            .await
            .is_empty(),
        "a manual retry notified"
    );
    // No trigger of the written tables notifies.
    let notifying_triggers: i64 = sqlx::query_scalar(
        "select count(*) from pg_trigger t join pg_proc p on p.oid = t.tgfoid
          where t.tgrelid in ('dispute_events'::regclass, 'webhook_deliveries'::regclass)
            and p.prosrc ilike '%notify%'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(notifying_triggers, 0);

    // The round numbers both and announces them in one notification, deliveries included.
    assert_eq!(round(&pool).await, 2);
    let announced = received(&mut listener, Duration::from_millis(500)).await;
    assert_eq!(announced.len(), 1, "one notification per round");
    assert_eq!(announced[0].channel(), EVENTS_CHANNEL);
    let mut notice = RoundNotice::decode(announced[0].payload());
    if let Some(tenants) = notice.tenants.as_mut() {
        tenants.sort();
    }
    assert_eq!(
        notice,
        RoundNotice {
            tenants: Some(vec![TENANT.to_owned(), OTHER_TENANT.to_owned()]),
            deliveries: true,
        }
    );

    // Events without deliveries: announced as such, so webhook workers stay asleep; a round
    // that numbers nothing announces nothing.
    let mut conn = pool.acquire().await.unwrap();
    insert_events_with_deliveries(&mut conn, OTHER_TENANT, "dsp_b", &["dispute.updated"], b"c")
        .await
        .unwrap();
    drop(conn);
    assert_eq!(round(&pool).await, 1);
    assert_eq!(round(&pool).await, 0);
    let announced = received(&mut listener, Duration::from_millis(500)).await;
    assert_eq!(announced.len(), 1);
    assert_eq!(
        RoundNotice::decode(announced[0].payload()),
        RoundNotice {
            tenants: Some(vec![OTHER_TENANT.to_owned()]),
            deliveries: false,
        }
    );
}
