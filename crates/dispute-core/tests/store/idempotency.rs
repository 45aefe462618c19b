//! Idempotency keys: claim, replay, concurrent claims and the purge.

use std::time::Duration;

use dispute_core::store::idempotency::{
    IdempotencyClaim, RememberedAnswer, claim_idempotency_key, save_idempotent_response,
};
use dispute_core::store::retention::purge_idempotency_keys;
use service_kit::testing::wait_until_a_session_blocks;
use sqlx::PgPool;

use super::{OTHER_TENANT, TENANT};

/// The fingerprint and response of a `Used` claim, or `None` for a `New` one.
type Replay = Option<(String, Vec<u8>)>;

fn used(claim: IdempotencyClaim) -> Replay {
    match claim {
        IdempotencyClaim::New => None,
        IdempotencyClaim::Used {
            request_fingerprint,
            answer: RememberedAnswer::Response(response),
        } => Some((request_fingerprint, response)),
        IdempotencyClaim::Used {
            request_fingerprint,
            answer: RememberedAnswer::Refusal(refusal),
        } => Some((request_fingerprint, refusal.message.into_bytes())),
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn an_idempotency_key_is_new_once_then_replays_after_commit(pool: PgPool) {
    let mut tx = pool.begin().await.unwrap();
    let first = claim_idempotency_key(&mut tx, TENANT, "CreateDispute", "req-1", "fp-1")
        .await
        .unwrap();
    assert!(used(first).is_none());
    save_idempotent_response(
        &mut tx,
        TENANT,
        "CreateDispute",
        "req-1",
        "dsp_a",
        b"response-1",
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let mut conn = pool.acquire().await.unwrap();
    // the retry learns the first request's fingerprint, whatever its own is
    for fingerprint in ["fp-1", "fp-2"] {
        let again = claim_idempotency_key(&mut conn, TENANT, "CreateDispute", "req-1", fingerprint)
            .await
            .unwrap();
        assert_eq!(
            used(again),
            Some(("fp-1".to_owned(), b"response-1".to_vec())),
            "{fingerprint}"
        );
    }

    // keys are per tenant and per operation
    let other_tenant =
        claim_idempotency_key(&mut conn, OTHER_TENANT, "CreateDispute", "req-1", "fp-9")
            .await
            .unwrap();
    assert!(used(other_tenant).is_none());
    let other_operation = claim_idempotency_key(&mut conn, TENANT, "CreateAction", "req-1", "fp-9")
        .await
        .unwrap();
    assert!(used(other_operation).is_none());

    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "select tenant_id, operation, request_fingerprint from idempotency_keys
          order by tenant_id, operation",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let expected = [
        (TENANT, "CreateAction", "fp-9"),
        (TENANT, "CreateDispute", "fp-1"),
        (OTHER_TENANT, "CreateDispute", "fp-9"),
    ]
    .map(|(t, o, f)| (t.to_owned(), o.to_owned(), f.to_owned()));
    assert_eq!(rows, expected);
}

#[sqlx::test(migrations = "./migrations")]
async fn a_rolled_back_claim_leaves_no_key(pool: PgPool) {
    let mut tx = pool.begin().await.unwrap();
    let claim = claim_idempotency_key(&mut tx, TENANT, "CreateDispute", "req-1", "fp-1")
        .await
        .unwrap();
    assert!(used(claim).is_none());
    tx.rollback().await.unwrap();

    let mut conn = pool.acquire().await.unwrap();
    let claim = claim_idempotency_key(&mut conn, TENANT, "CreateDispute", "req-1", "fp-2")
        .await
        .unwrap();
    assert!(used(claim).is_none());
}

/// Starts a second claim of `req-1` in its own transaction; it reports the claim and when it
/// returned, then commits.
fn spawn_second_claim(pool: &PgPool) -> tokio::task::JoinHandle<(Replay, tokio::time::Instant)> {
    let pool = pool.clone();
    tokio::spawn(async move {
        let mut tx = pool.begin().await.unwrap();
        let claim = claim_idempotency_key(&mut tx, TENANT, "CreateDispute", "req-1", "fp-2")
            .await
            .unwrap();
        let returned = tokio::time::Instant::now();
        let claim = used(claim);
        if claim.is_none() {
            save_idempotent_response(
                &mut tx,
                TENANT,
                "CreateDispute",
                "req-1",
                "dsp_a",
                b"response-2",
            )
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
        (claim, returned)
    })
}

#[sqlx::test(migrations = "./migrations")]
async fn a_concurrent_claim_waits_for_the_first_to_commit_then_replays(pool: PgPool) {
    let mut first = pool.begin().await.unwrap();
    let claim = claim_idempotency_key(&mut first, TENANT, "CreateDispute", "req-1", "fp-1")
        .await
        .unwrap();
    assert!(used(claim).is_none());

    let second = spawn_second_claim(&pool);
    wait_until_a_session_blocks(&pool).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !second.is_finished(),
        "the second claim returned while the first was open"
    );

    save_idempotent_response(
        &mut first,
        TENANT,
        "CreateDispute",
        "req-1",
        "dsp_a",
        b"response-1",
    )
    .await
    .unwrap();
    let committing = tokio::time::Instant::now();
    first.commit().await.unwrap();

    let (claim, returned) = second.await.unwrap();
    assert!(returned >= committing, "the second claim did not wait");
    assert_eq!(claim, Some(("fp-1".to_owned(), b"response-1".to_vec())));
}

#[sqlx::test(migrations = "./migrations")]
async fn a_concurrent_claim_takes_over_when_the_first_rolls_back(pool: PgPool) {
    let mut first = pool.begin().await.unwrap();
    let claim = claim_idempotency_key(&mut first, TENANT, "CreateDispute", "req-1", "fp-1")
        .await
        .unwrap();
    assert!(used(claim).is_none());

    let second = spawn_second_claim(&pool);
    wait_until_a_session_blocks(&pool).await;
    assert!(!second.is_finished());
    let rolling_back = tokio::time::Instant::now();
    first.rollback().await.unwrap();

    let (claim, returned) = second.await.unwrap();
    assert!(returned >= rolling_back, "the second claim did not wait");
    assert_eq!(claim, None);
    let stored: (String, Vec<u8>) = sqlx::query_as(
        "select request_fingerprint, response from idempotency_keys
          where tenant_id = $1 and operation = 'CreateDispute' and request_id = 'req-1'",
    )
    .bind(TENANT)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(stored, ("fp-2".to_owned(), b"response-2".to_vec()));
}

#[sqlx::test(migrations = "./migrations")]
async fn purge_removes_only_old_idempotency_keys(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    for (tenant, request_id) in [
        (TENANT, "fresh"),
        (TENANT, "47h"),
        (TENANT, "49h"),
        (OTHER_TENANT, "72h"),
    ] {
        claim_idempotency_key(&mut conn, tenant, "CreateDispute", request_id, "fp")
            .await
            .unwrap();
    }
    for (request_id, hours) in [("47h", 47), ("49h", 49), ("72h", 72)] {
        sqlx::query(
            "update idempotency_keys set created_at = now() - make_interval(hours => $2)
              where request_id = $1",
        )
        .bind(request_id)
        .bind(hours)
        .execute(&mut *conn)
        .await
        .unwrap();
    }

    // Batches of one: each call removes one old key, until none is left.
    let cutoff = chrono::Utc::now() - chrono::Duration::hours(48);
    assert_eq!(
        purge_idempotency_keys(&mut conn, cutoff, 1).await.unwrap(),
        1
    );
    assert_eq!(
        purge_idempotency_keys(&mut conn, cutoff, 1).await.unwrap(),
        1
    );
    assert_eq!(
        purge_idempotency_keys(&mut conn, cutoff, 1).await.unwrap(),
        0
    );
    let left: Vec<String> =
        sqlx::query_scalar("select request_id from idempotency_keys order by request_id")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    assert_eq!(left, ["47h", "fresh"]);
    assert_eq!(
        purge_idempotency_keys(&mut conn, cutoff, 1000)
            .await
            .unwrap(),
        0
    );

    // a purged key is new again
    let claim = claim_idempotency_key(&mut conn, TENANT, "CreateDispute", "49h", "fp")
        .await
        .unwrap();
    assert!(used(claim).is_none());
    // a kept key still replays
    let claim = claim_idempotency_key(&mut conn, TENANT, "CreateDispute", "47h", "fp")
        .await
        .unwrap();
    assert!(used(claim).is_some());
}
