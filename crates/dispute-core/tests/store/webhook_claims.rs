//! The webhook worker's claim: round-robin across tenants and endpoints, the caps on
//! attempts in flight (per endpoint across replicas, per tenant on a replica) and endpoints
//! whose breaker is open or half-open.

use std::collections::BTreeMap;
use std::time::Duration;

use dispute_core::store::webhooks::{ClaimCaps, ClaimedDelivery, claim_due};
use sqlx::PgConnection;

const LEASE: Duration = Duration::from_secs(60);
const CAPS: ClaimCaps = ClaimCaps {
    per_endpoint: 2,
    per_tenant: 8,
};

async fn endpoint(conn: &mut PgConnection, tenant: &str, id: &str) {
    sqlx::query(
        "insert into webhook_endpoints (tenant_id, id, url, secret)
         values ($1, $2, 'https://example.com/hook', 'whsec_x')",
    )
    .bind(tenant)
    .bind(id)
    .execute(&mut *conn)
    .await
    .unwrap();
}

/// `count` deliveries due now to `endpoint`, the first one oldest (due `count` ms ago).
async fn deliveries(conn: &mut PgConnection, tenant: &str, endpoint: &str, count: i32) {
    sqlx::query(
        "insert into webhook_deliveries (tenant_id, id, endpoint_id, event_id, event_type,
            next_attempt_at)
         select $1, $2 || '_' || lpad(n::text, 4, '0'), $2, 'evt_' || $2 || n, 'dispute.created',
                now() - make_interval(secs => ($3 - n) / 1000.0)
           from generate_series(1, $3) n",
    )
    .bind(tenant)
    .bind(endpoint)
    .bind(count)
    .execute(&mut *conn)
    .await
    .unwrap();
}

fn per_endpoint(claimed: &[ClaimedDelivery]) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for delivery in claimed {
        *counts.entry(delivery.endpoint_id.as_str()).or_default() += 1;
    }
    counts
}

#[sqlx::test(migrations = "./migrations")]
async fn a_backlog_of_one_tenant_does_not_hold_back_another(pool: sqlx::PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    // Tenant A: 4 endpoints with 100 deliveries each, all older than B's one.
    for e in 0..4 {
        let id = format!("whe_a{e}");
        endpoint(&mut conn, "tenant_a", &id).await;
        deliveries(&mut conn, "tenant_a", &id, 100).await;
    }
    endpoint(&mut conn, "tenant_b", "whe_b").await;
    sqlx::query(
        "insert into webhook_deliveries (tenant_id, id, endpoint_id, event_id, event_type,
            next_attempt_at)
         values ('tenant_b', 'whd_b', 'whe_b', 'evt_b', 'dispute.created', now())",
    )
    .execute(&mut *conn)
    .await
    .unwrap();

    // Three slots: A's oldest first, then B's first pick before A's second.
    let claimed = claim_due(&mut conn, "rpl_1", LEASE, 3, CAPS).await.unwrap();
    let tenants: Vec<&str> = claimed.iter().map(|d| d.tenant_id.as_str()).collect();
    assert_eq!(tenants.len(), 3);
    assert!(tenants.contains(&"tenant_b"), "{tenants:?}");

    // Many slots: A gets its tenant cap (8), at most 2 per endpoint, each endpoint's oldest.
    let claimed = claim_due(&mut conn, "rpl_2", LEASE, 16, CAPS)
        .await
        .unwrap();
    assert_eq!(
        claimed.len(),
        4 * 2 - 2,
        "2 per endpoint, less the 2 rpl_1 holds"
    );
    let counts = per_endpoint(&claimed);
    assert!(counts.values().all(|n| *n <= 2), "{counts:?}");
    for delivery in &claimed {
        assert!(
            delivery.id.ends_with("_0001") || delivery.id.ends_with("_0002"),
            "{} is not among its endpoint's oldest",
            delivery.id
        );
    }
    // Every endpoint now has 2 in flight across the two replicas: nothing more for A.
    let claimed = claim_due(&mut conn, "rpl_3", LEASE, 16, CAPS)
        .await
        .unwrap();
    assert!(claimed.is_empty(), "{claimed:?}");
}

#[sqlx::test(migrations = "./migrations")]
async fn the_tenant_cap_counts_this_replicas_leases(pool: sqlx::PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    for e in 0..6 {
        let id = format!("whe_{e}");
        endpoint(&mut conn, "tenant_a", &id).await;
        deliveries(&mut conn, "tenant_a", &id, 5).await;
    }
    let caps = ClaimCaps {
        per_endpoint: 2,
        per_tenant: 3,
    };
    let first = claim_due(&mut conn, "rpl_1", LEASE, 16, caps)
        .await
        .unwrap();
    assert_eq!(first.len(), 3);
    // Round-robin: three different endpoints' oldest before any endpoint's second.
    assert_eq!(per_endpoint(&first).len(), 3);
    let again = claim_due(&mut conn, "rpl_1", LEASE, 16, caps)
        .await
        .unwrap();
    assert!(again.is_empty(), "the tenant's 3 slots on rpl_1 are taken");
    let other = claim_due(&mut conn, "rpl_2", LEASE, 16, caps)
        .await
        .unwrap();
    assert_eq!(other.len(), 3, "another replica has its own 3");
}

#[sqlx::test(migrations = "./migrations")]
async fn an_open_breaker_holds_back_its_endpoint_and_a_half_open_one_probes_once(
    pool: sqlx::PgPool,
) {
    let mut conn = pool.acquire().await.unwrap();
    for (id, open_until) in [
        ("whe_open", "now() + interval '1 hour'"),
        ("whe_half", "now() - interval '1 second'"),
        ("whe_closed", "null"),
    ] {
        endpoint(&mut conn, "tenant_a", id).await;
        deliveries(&mut conn, "tenant_a", id, 5).await;
        sqlx::query(&format!(
            "update webhook_endpoints set breaker_open_until = {open_until} where id = $1"
        ))
        .bind(id)
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    let claimed = claim_due(&mut conn, "rpl_1", LEASE, 16, CAPS)
        .await
        .unwrap();
    let counts = per_endpoint(&claimed);
    assert_eq!(
        counts,
        BTreeMap::from([("whe_closed", 2), ("whe_half", 1)]),
        "{claimed:?}"
    );
}
