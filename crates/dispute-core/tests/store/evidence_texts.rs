//! Large evidence texts stored once per dispute: payloads read back byte for byte through
//! every reader, a text shared by events and remembered responses is one row, old rows
//! without cuts still read, and the purge deletes only texts nothing references, never one
//! a concurrent write has just used.

use chrono::{Duration, Utc};
use dispute_core::store::events::{
    EventQuery, events_after_position, find_event, insert_event, insert_events_with_deliveries,
    list_events, number_committed_events,
};
use dispute_core::store::evidence_texts::{purge_unused_texts, split_payload};
use dispute_core::store::idempotency::{
    IdempotencyClaim, RememberedAnswer, claim_idempotency_key, save_idempotent_response,
};
use sqlx::PgPool;

use super::{TENANT, insert_plain};

/// A text of `len` printable characters that differs for each `seed`.
fn text(seed: u8, len: usize) -> String {
    (0..len)
        .map(|i| char::from(b'!' + ((i * 31 + usize::from(seed) * 7) % 90) as u8))
        .collect()
}

/// A payload holding `texts` between some other bytes, as an encoder would.
fn payload(version: u8, texts: &[&str]) -> Vec<u8> {
    let mut whole = vec![version, 0x0a];
    for text in texts {
        whole.extend_from_slice(b"\x12\x34");
        whole.extend_from_slice(text.as_bytes());
    }
    whole.extend_from_slice(b"tail");
    whole
}

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("select count(*) from {table}"))
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn stored_bytes(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

async fn with_dispute(pool: &PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    insert_plain(&mut conn, TENANT, "dsp_a").await;
}

async fn number(pool: &PgPool) {
    let mut tx = pool.begin().await.unwrap();
    number_committed_events(&mut tx, 100).await.unwrap();
    tx.commit().await.unwrap();
}

#[sqlx::test(migrations = "./migrations")]
async fn events_and_responses_read_back_whole_and_share_one_copy(pool: PgPool) {
    with_dispute(&pool).await;
    let big = text(1, 20_000);
    let other = text(2, 5_000);
    let wholes: Vec<Vec<u8>> = (0..5)
        .map(|version| payload(version, &[&big, "small", &other, &big]))
        .collect();

    let mut tx = pool.begin().await.unwrap();
    for whole in &wholes[..4] {
        let stored = split_payload(whole.clone(), &[&big, "small", &other]);
        assert_eq!(stored.offsets.len(), 3);
        insert_events_with_deliveries(
            &mut tx,
            TENANT,
            "dsp_a",
            &["dispute.updated", "dispute.evidence_staged"],
            &stored,
        )
        .await
        .unwrap();
    }
    // A row stored whole (as before migration 0019) reads as it is.
    insert_event(&mut tx, TENANT, "dsp_a", "dispute.updated", &wholes[4])
        .await
        .unwrap();
    assert!(matches!(
        claim_idempotency_key(&mut tx, TENANT, "UpdateDispute", "req-1", "fp")
            .await
            .unwrap(),
        IdempotencyClaim::New
    ));
    let response = split_payload(wholes[3].clone(), &[&big, &other]);
    save_idempotent_response(
        &mut tx,
        TENANT,
        "UpdateDispute",
        "req-1",
        "dsp_a",
        &response,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    number(&pool).await;

    // Two texts, each once, however many rows use them.
    assert_eq!(count(&pool, "evidence_texts").await, 2);
    let events_bytes = stored_bytes(
        &pool,
        "select sum(pg_column_size(payload))::bigint from dispute_events where payload_texts is not null",
    )
    .await;
    assert!(events_bytes < 8 * 200, "events store {events_bytes} bytes");

    let mut conn = pool.acquire().await.unwrap();
    let expected: Vec<&Vec<u8>> = wholes[..4]
        .iter()
        .flat_map(|whole| [whole, whole])
        .chain([&wholes[4]])
        .collect();
    let listed = list_events(&mut conn, TENANT, &EventQuery::default(), 0, 100)
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|e| &e.payload).collect::<Vec<_>>(),
        expected
    );
    let streamed = events_after_position(&mut conn, TENANT, 2, 100)
        .await
        .unwrap();
    assert_eq!(
        streamed.iter().map(|e| &e.payload).collect::<Vec<_>>(),
        expected[2..]
    );
    let found = find_event(&mut conn, TENANT, &listed[0].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.payload, wholes[0]);

    let mut tx = pool.begin().await.unwrap();
    let claim = claim_idempotency_key(&mut tx, TENANT, "UpdateDispute", "req-1", "fp")
        .await
        .unwrap();
    let IdempotencyClaim::Used {
        answer: RememberedAnswer::Response(replayed),
        ..
    } = claim
    else {
        panic!("the key was not remembered with its response");
    };
    assert_eq!(replayed, wholes[3]);
}

#[sqlx::test(migrations = "./migrations")]
async fn a_missing_text_is_an_error_not_a_shorter_payload(pool: PgPool) {
    with_dispute(&pool).await;
    let big = text(3, 2_000);
    let mut tx = pool.begin().await.unwrap();
    let stored = split_payload(payload(1, &[&big]), &[&big]);
    let id = insert_event(&mut tx, TENANT, "dsp_a", "dispute.updated", &stored)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    sqlx::query("delete from evidence_texts")
        .execute(&pool)
        .await
        .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let error = find_event(&mut conn, TENANT, &id).await.unwrap_err();
    assert!(
        format!("{error:#}").contains("1 evidence texts, 0 were found"),
        "{error:#}"
    );
}

async fn purge(pool: &PgPool) -> u64 {
    let mut tx = pool.begin().await.unwrap();
    let purged = purge_unused_texts(&mut tx, Utc::now() - Duration::days(2), 100)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    purged
}

async fn age_texts(pool: &PgPool) {
    sqlx::query("update evidence_texts set last_used_at = now() - interval '3 days'")
        .execute(pool)
        .await
        .unwrap();
}

#[sqlx::test(migrations = "./migrations")]
async fn the_purge_deletes_only_old_texts_nothing_references(pool: PgPool) {
    with_dispute(&pool).await;
    let kept = text(4, 3_000);
    let dropped = text(5, 3_000);
    let answered = text(6, 3_000);
    let recent = text(7, 3_000);
    let mut tx = pool.begin().await.unwrap();
    for texts in [[kept.as_str()], [dropped.as_str()], [recent.as_str()]] {
        let stored = split_payload(payload(1, &texts), &texts);
        insert_event(&mut tx, TENANT, "dsp_a", "dispute.updated", &stored)
            .await
            .unwrap();
    }
    claim_idempotency_key(&mut tx, TENANT, "UpdateDispute", "req-1", "fp")
        .await
        .unwrap();
    let response = split_payload(payload(2, &[&answered]), &[&answered]);
    save_idempotent_response(
        &mut tx,
        TENANT,
        "UpdateDispute",
        "req-1",
        "dsp_a",
        &response,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    age_texts(&pool).await;
    // The events of `dropped` and `recent` are purged; `recent` was used again since.
    sqlx::query("delete from dispute_events where payload_texts[1] <> sha256($1)")
        .bind(kept.as_bytes())
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("update evidence_texts set last_used_at = now() where sha256 = sha256($1)")
        .bind(recent.as_bytes())
        .execute(&pool)
        .await
        .unwrap();

    assert_eq!(purge(&pool).await, 1);
    let left: Vec<Vec<u8>> = sqlx::query_scalar("select body from evidence_texts order by body")
        .fetch_all(&pool)
        .await
        .unwrap();
    let mut expected = vec![
        kept.as_bytes().to_vec(),
        answered.as_bytes().to_vec(),
        recent.as_bytes().to_vec(),
    ];
    expected.sort();
    assert_eq!(left, expected);
    // Once the remembered response is gone, its text goes too.
    sqlx::query("delete from idempotency_keys")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(purge(&pool).await, 1);
    assert_eq!(count(&pool, "evidence_texts").await, 2);
}

#[sqlx::test(migrations = "./migrations")]
async fn a_text_a_write_is_using_survives_the_purge(pool: PgPool) {
    with_dispute(&pool).await;
    let big = text(8, 4_000);
    let stored = split_payload(payload(1, &[&big]), &[&big]);
    let mut tx = pool.begin().await.unwrap();
    let first = insert_event(&mut tx, TENANT, "dsp_a", "dispute.updated", &stored)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    sqlx::query("delete from dispute_events")
        .execute(&pool)
        .await
        .unwrap();
    age_texts(&pool).await;

    // A write reuses the old, unreferenced text: until it commits the row is locked and
    // the purge skips it; after, the write's event references it and its use is recent.
    let mut write = pool.begin().await.unwrap();
    let second = insert_event(&mut write, TENANT, "dsp_a", "dispute.updated", &stored)
        .await
        .unwrap();
    assert_eq!(purge(&pool).await, 0);
    write.commit().await.unwrap();
    assert_eq!(purge(&pool).await, 0);
    number(&pool).await;
    let mut conn = pool.acquire().await.unwrap();
    assert!(
        find_event(&mut conn, TENANT, &first)
            .await
            .unwrap()
            .is_none()
    );
    let read = find_event(&mut conn, TENANT, &second)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.payload, payload(1, &[&big]));

    // A purge that locked the text first deletes it; the write then stores it again.
    sqlx::query("delete from dispute_events")
        .execute(&pool)
        .await
        .unwrap();
    age_texts(&pool).await;
    let mut purging = pool.begin().await.unwrap();
    assert_eq!(
        purge_unused_texts(&mut purging, Utc::now() - Duration::days(2), 100)
            .await
            .unwrap(),
        1
    );
    let writer = {
        let pool = pool.clone();
        let stored = stored.clone();
        tokio::spawn(async move {
            let mut write = pool.begin().await.unwrap();
            let id = insert_event(&mut write, TENANT, "dsp_a", "dispute.updated", &stored)
                .await
                .unwrap();
            write.commit().await.unwrap();
            id
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    purging.commit().await.unwrap();
    let third = writer.await.unwrap();
    let read = find_event(&mut conn, TENANT, &third)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.payload, payload(1, &[&big]));
}
