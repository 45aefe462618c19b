//! Store tests for document metadata against real PostgreSQL: every test gets a fresh
//! database with the migrations applied (`#[sqlx::test]`, `DATABASE_URL` at run time).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use document_store::domain::{Document, object_key};
use document_store::store::postgres::{
    DeleteOutcome, PendingDocument, StoredContent, claim_abandoned_uploads,
    delete_pending_document, delete_unlocked_document, find_available_document,
    insert_pending_document, list_available_documents, mark_document_available,
    record_multipart_upload_id,
};
use domain_kit::page_token::PageCursor;
use service_kit::testing::wait_until_a_session_blocks;
use sqlx::PgPool;

const TENANT: &str = "ten_alpha";
const OTHER_TENANT: &str = "ten_beta";
const SHA256_OF_EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

async fn insert_pending(pool: &PgPool, tenant_id: &str, id: &str, dispute_id: Option<&str>) {
    insert_pending_document(
        pool,
        &PendingDocument {
            tenant_id,
            id,
            dispute_id,
            filename: &format!("{id}.pdf"),
            declared_content_type: "application/pdf",
            object_key: &object_key(tenant_id, id),
        },
    )
    .await
    .unwrap();
}

async fn mark_available(pool: &PgPool, tenant_id: &str, id: &str) -> Document {
    mark_document_available(
        pool,
        tenant_id,
        id,
        &StoredContent {
            content_type: "application/pdf",
            size_bytes: 2_048,
            sha256: SHA256_OF_EMPTY,
        },
    )
    .await
    .unwrap()
}

async fn insert_available(
    pool: &PgPool,
    tenant_id: &str,
    id: &str,
    dispute_id: Option<&str>,
) -> Document {
    insert_pending(pool, tenant_id, id, dispute_id).await;
    mark_available(pool, tenant_id, id).await
}

/// The row's state and upload id, or `None` when there is no row.
async fn row_state(pool: &PgPool, tenant_id: &str, id: &str) -> Option<(String, Option<String>)> {
    sqlx::query_as("select state, upload_id from documents where tenant_id = $1 and id = $2")
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(pool)
        .await
        .unwrap()
}

async fn backdate(pool: &PgPool, id: &str, seconds: f64) {
    sqlx::query(
        "update documents set created_at = now() - make_interval(secs => $2) where id = $1",
    )
    .bind(id)
    .bind(seconds)
    .execute(pool)
    .await
    .unwrap();
}

async fn set_created_at(pool: &PgPool, id: &str, at: DateTime<Utc>) {
    sqlx::query("update documents set created_at = $2 where id = $1")
        .bind(id)
        .bind(at)
        .execute(pool)
        .await
        .unwrap();
}

fn ids(documents: &[Document]) -> Vec<&str> {
    documents.iter().map(|d| d.id.as_str()).collect()
}

/// Every available document of `dispute_id`, a page of `page_size` at a time.
async fn list_all_pages(
    pool: &PgPool,
    tenant_id: &str,
    dispute_id: Option<&str>,
    page_size: i64,
) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut after: Option<PageCursor> = None;
    loop {
        let page = list_available_documents(pool, tenant_id, dispute_id, after.as_ref(), page_size)
            .await
            .unwrap();
        assert!(page.len() as i64 <= page_size, "a page exceeds its limit");
        assert!(page.iter().all(|d| d.tenant_id == tenant_id));
        let Some(last) = page.last() else { break };
        after = Some(PageCursor {
            create_time: last.create_time,
            id: last.id.to_string(),
        });
        pages.push(page.iter().map(|d| d.id.to_string()).collect());
    }
    pages
}

#[sqlx::test(migrations = "./migrations")]
async fn a_pending_document_is_invisible_until_available(pool: PgPool) {
    insert_pending(&pool, TENANT, "doc_1", Some("dsp_1")).await;
    record_multipart_upload_id(&pool, TENANT, "doc_1", "mpu-1")
        .await
        .unwrap();
    // another tenant's call does not touch the row
    record_multipart_upload_id(&pool, OTHER_TENANT, "doc_1", "mpu-evil")
        .await
        .unwrap();
    assert_eq!(
        row_state(&pool, TENANT, "doc_1").await,
        Some(("pending".to_owned(), Some("mpu-1".to_owned())))
    );

    assert!(
        find_available_document(&pool, TENANT, "doc_1")
            .await
            .unwrap()
            .is_none()
    );
    for dispute_id in [None, Some("dsp_1")] {
        assert!(
            list_available_documents(&pool, TENANT, dispute_id, None, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    let sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let document = mark_document_available(
        &pool,
        TENANT,
        "doc_1",
        &StoredContent {
            content_type: "image/png",
            size_bytes: 123_456,
            sha256: sha,
        },
    )
    .await
    .unwrap();
    assert_eq!(document.id.as_str(), "doc_1");
    assert_eq!(document.tenant_id, TENANT);
    assert_eq!(
        document.dispute_id.as_ref().map(|id| id.as_str()),
        Some("dsp_1")
    );
    assert_eq!(document.filename, "doc_1.pdf");
    assert_eq!(document.content_type, "image/png");
    assert_eq!(document.size_bytes, 123_456);
    assert_eq!(document.sha256, sha);
    assert_eq!(document.lock_time, None);
    assert_eq!(
        row_state(&pool, TENANT, "doc_1").await,
        Some(("available".to_owned(), None))
    );

    let found = find_available_document(&pool, TENANT, "doc_1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.document, document);
    assert_eq!(found.object_key, object_key(TENANT, "doc_1"));
    assert_eq!(found.object_key, "tenants/ten_alpha/documents/doc_1");
    let listed = list_available_documents(&pool, TENANT, Some("dsp_1"), None, 10)
        .await
        .unwrap();
    assert_eq!(listed, [document]);

    // other tenants see nothing
    assert!(
        find_available_document(&pool, OTHER_TENANT, "doc_1")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        list_available_documents(&pool, OTHER_TENANT, None, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn only_a_pending_document_of_the_tenant_can_be_marked_available(pool: PgPool) {
    insert_pending(&pool, TENANT, "doc_1", None).await;
    let content = StoredContent {
        content_type: "application/pdf",
        size_bytes: 1,
        sha256: SHA256_OF_EMPTY,
    };
    assert!(
        mark_document_available(&pool, OTHER_TENANT, "doc_1", &content)
            .await
            .is_err()
    );
    assert!(
        mark_document_available(&pool, TENANT, "doc_missing", &content)
            .await
            .is_err()
    );
    assert_eq!(
        row_state(&pool, TENANT, "doc_1").await,
        Some(("pending".to_owned(), None))
    );

    let first = mark_available(&pool, TENANT, "doc_1").await;
    // a second completion does not overwrite what the first stored
    let changed = StoredContent {
        content_type: "image/jpeg",
        size_bytes: 99,
        sha256: SHA256_OF_EMPTY,
    };
    assert!(
        mark_document_available(&pool, TENANT, "doc_1", &changed)
            .await
            .is_err()
    );
    let found = find_available_document(&pool, TENANT, "doc_1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.document, first);
    assert_eq!(found.document.content_type, "application/pdf");
}

#[sqlx::test(migrations = "./migrations")]
async fn delete_pending_document_removes_only_a_pending_row(pool: PgPool) {
    insert_pending(&pool, TENANT, "doc_pending", None).await;
    insert_available(&pool, TENANT, "doc_available", None).await;

    // another tenant cannot remove it
    delete_pending_document(&pool, OTHER_TENANT, "doc_pending")
        .await
        .unwrap();
    assert!(row_state(&pool, TENANT, "doc_pending").await.is_some());

    delete_pending_document(&pool, TENANT, "doc_pending")
        .await
        .unwrap();
    assert!(row_state(&pool, TENANT, "doc_pending").await.is_none());

    // an available document is not a failed upload
    delete_pending_document(&pool, TENANT, "doc_available")
        .await
        .unwrap();
    assert!(
        find_available_document(&pool, TENANT, "doc_available")
            .await
            .unwrap()
            .is_some()
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn list_pages_newest_first_by_dispute_and_tenant(pool: PgPool) {
    // Ids grow in insertion order, so the id order agrees with the time order.
    for (tenant, id, dispute) in [
        (TENANT, "doc_01", Some("dsp_1")),
        (TENANT, "doc_02", Some("dsp_2")),
        (OTHER_TENANT, "doc_03", Some("dsp_1")),
        (TENANT, "doc_04", Some("dsp_1")),
        (TENANT, "doc_05", None),
        (TENANT, "doc_06", Some("dsp_1")),
        (TENANT, "doc_07", Some("dsp_1")),
        (OTHER_TENANT, "doc_08", None),
        (TENANT, "doc_09", Some("dsp_2")),
        (TENANT, "doc_10", Some("dsp_1")),
    ] {
        insert_available(&pool, tenant, id, dispute).await;
    }
    // pending uploads never show up, whatever their dispute
    insert_pending(&pool, TENANT, "doc_11", Some("dsp_1")).await;
    insert_pending(&pool, TENANT, "doc_12", None).await;
    // doc_06 and doc_07 share a creation time: the id breaks the tie
    let tie: DateTime<Utc> =
        sqlx::query_scalar("select created_at from documents where id = 'doc_07'")
            .fetch_one(&pool)
            .await
            .unwrap();
    set_created_at(&pool, "doc_06", tie).await;

    let dsp_1 = list_all_pages(&pool, TENANT, Some("dsp_1"), 2).await;
    assert_eq!(
        dsp_1,
        vec![
            vec!["doc_10", "doc_07"],
            vec!["doc_06", "doc_04"],
            vec!["doc_01"],
        ]
    );
    assert_eq!(
        list_all_pages(&pool, TENANT, Some("dsp_2"), 2).await,
        vec![vec!["doc_09", "doc_02"]]
    );
    assert_eq!(
        list_all_pages(&pool, TENANT, None, 3).await,
        vec![
            vec!["doc_10", "doc_09", "doc_07"],
            vec!["doc_06", "doc_05", "doc_04"],
            vec!["doc_02", "doc_01"],
        ]
    );
    assert_eq!(
        list_all_pages(&pool, OTHER_TENANT, Some("dsp_1"), 2).await,
        vec![vec!["doc_03"]]
    );
    assert!(
        list_available_documents(&pool, TENANT, Some("dsp_unknown"), None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let all = list_available_documents(&pool, TENANT, None, None, 100)
        .await
        .unwrap();
    assert!(
        all.windows(2)
            .all(|w| (w[0].create_time, &w[0].id) > (w[1].create_time, &w[1].id)),
        "not newest first: {:?}",
        ids(&all)
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn a_deleted_document_is_gone_after_commit_and_back_after_rollback(pool: PgPool) {
    insert_available(&pool, TENANT, "doc_1", Some("dsp_1")).await;

    let mut tx = pool.begin().await.unwrap();
    match delete_unlocked_document(&mut tx, TENANT, "doc_1")
        .await
        .unwrap()
    {
        DeleteOutcome::Deleted { object_key: key } => {
            assert_eq!(key, object_key(TENANT, "doc_1"));
        }
        _ => panic!("expected Deleted"),
    }
    // not committed yet: others still see it
    assert!(
        find_available_document(&pool, TENANT, "doc_1")
            .await
            .unwrap()
            .is_some()
    );
    tx.rollback().await.unwrap();
    assert!(
        find_available_document(&pool, TENANT, "doc_1")
            .await
            .unwrap()
            .is_some()
    );

    let mut tx = pool.begin().await.unwrap();
    let outcome = delete_unlocked_document(&mut tx, TENANT, "doc_1")
        .await
        .unwrap();
    assert!(matches!(outcome, DeleteOutcome::Deleted { .. }));
    tx.commit().await.unwrap();
    assert!(
        find_available_document(&pool, TENANT, "doc_1")
            .await
            .unwrap()
            .is_none()
    );
    assert!(row_state(&pool, TENANT, "doc_1").await.is_none());

    // a second delete finds nothing
    let mut tx = pool.begin().await.unwrap();
    let outcome = delete_unlocked_document(&mut tx, TENANT, "doc_1")
        .await
        .unwrap();
    assert!(matches!(outcome, DeleteOutcome::NotFound));
}

#[sqlx::test(migrations = "./migrations")]
async fn a_locked_document_is_not_deleted(pool: PgPool) {
    insert_available(&pool, TENANT, "doc_1", Some("dsp_1")).await;
    sqlx::query("update documents set lock_time = now() where id = 'doc_1'")
        .execute(&pool)
        .await
        .unwrap();

    let mut tx = pool.begin().await.unwrap();
    let outcome = delete_unlocked_document(&mut tx, TENANT, "doc_1")
        .await
        .unwrap();
    assert!(matches!(outcome, DeleteOutcome::Locked));
    tx.commit().await.unwrap();

    let found = find_available_document(&pool, TENANT, "doc_1")
        .await
        .unwrap()
        .unwrap();
    assert!(found.document.lock_time.is_some());
}

#[sqlx::test(migrations = "./migrations")]
async fn deleting_an_unknown_foreign_or_pending_document_is_not_found(pool: PgPool) {
    insert_available(&pool, TENANT, "doc_mine", None).await;
    insert_pending(&pool, TENANT, "doc_pending", None).await;

    let mut tx = pool.begin().await.unwrap();
    for (tenant, id) in [
        (TENANT, "doc_unknown"),
        (OTHER_TENANT, "doc_mine"),
        (TENANT, "doc_pending"),
    ] {
        let outcome = delete_unlocked_document(&mut tx, tenant, id).await.unwrap();
        assert!(matches!(outcome, DeleteOutcome::NotFound), "{tenant} {id}");
    }
    tx.commit().await.unwrap();
    assert!(
        find_available_document(&pool, TENANT, "doc_mine")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        row_state(&pool, TENANT, "doc_pending").await,
        Some(("pending".to_owned(), None))
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn concurrent_deletes_delete_once(pool: PgPool) {
    insert_available(&pool, TENANT, "doc_1", None).await;

    let mut first = pool.begin().await.unwrap();
    let outcome = delete_unlocked_document(&mut first, TENANT, "doc_1")
        .await
        .unwrap();
    assert!(matches!(outcome, DeleteOutcome::Deleted { .. }));

    let second = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut tx = pool.begin().await.unwrap();
            let outcome = delete_unlocked_document(&mut tx, TENANT, "doc_1")
                .await
                .unwrap();
            let returned = tokio::time::Instant::now();
            tx.commit().await.unwrap();
            (matches!(outcome, DeleteOutcome::NotFound), returned)
        })
    };
    wait_until_a_session_blocks(&pool).await;
    assert!(!second.is_finished(), "the second delete did not wait");
    let committing = tokio::time::Instant::now();
    first.commit().await.unwrap();

    let (not_found, returned) = second.await.unwrap();
    assert!(returned >= committing);
    assert!(not_found, "the second delete must find nothing");
}

#[sqlx::test(migrations = "./migrations")]
async fn claim_abandoned_uploads_takes_only_old_pending_rows(pool: PgPool) {
    insert_pending(&pool, TENANT, "doc_old", Some("dsp_1")).await;
    record_multipart_upload_id(&pool, TENANT, "doc_old", "mpu-old")
        .await
        .unwrap();
    insert_pending(&pool, OTHER_TENANT, "doc_older", None).await;
    insert_pending(&pool, TENANT, "doc_fresh", None).await;
    insert_pending(&pool, TENANT, "doc_almost", None).await;
    insert_available(&pool, TENANT, "doc_done", None).await;
    backdate(&pool, "doc_old", 7_200.0).await;
    backdate(&pool, "doc_older", 10_800.0).await;
    backdate(&pool, "doc_almost", 3_000.0).await;
    backdate(&pool, "doc_done", 86_400.0).await;

    let mut tx = pool.begin().await.unwrap();
    let claimed = claim_abandoned_uploads(&mut tx, 3_600, 100).await.unwrap();
    let got: Vec<_> = claimed
        .iter()
        .map(|u| {
            (
                u.tenant_id.as_str(),
                u.id.as_str(),
                u.object_key.clone(),
                u.upload_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                OTHER_TENANT,
                "doc_older",
                object_key(OTHER_TENANT, "doc_older"),
                None
            ),
            (
                TENANT,
                "doc_old",
                object_key(TENANT, "doc_old"),
                Some("mpu-old")
            ),
        ],
        "oldest first, across tenants"
    );
    tx.commit().await.unwrap();

    assert!(row_state(&pool, TENANT, "doc_old").await.is_none());
    assert!(row_state(&pool, OTHER_TENANT, "doc_older").await.is_none());
    assert!(row_state(&pool, TENANT, "doc_fresh").await.is_some());
    assert!(row_state(&pool, TENANT, "doc_almost").await.is_some());
    assert!(
        find_available_document(&pool, TENANT, "doc_done")
            .await
            .unwrap()
            .is_some()
    );

    let mut tx = pool.begin().await.unwrap();
    assert!(
        claim_abandoned_uploads(&mut tx, 3_600, 100)
            .await
            .unwrap()
            .is_empty()
    );
    // a shorter age reaches the younger one
    let claimed = claim_abandoned_uploads(&mut tx, 1_800, 100).await.unwrap();
    assert_eq!(
        claimed.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(),
        ["doc_almost"]
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn claim_abandoned_uploads_respects_the_limit_oldest_first(pool: PgPool) {
    for (id, age) in [("doc_a", 5_000.0), ("doc_b", 9_000.0), ("doc_c", 7_000.0)] {
        insert_pending(&pool, TENANT, id, None).await;
        backdate(&pool, id, age).await;
    }
    let mut tx = pool.begin().await.unwrap();
    let first = claim_abandoned_uploads(&mut tx, 3_600, 2).await.unwrap();
    assert_eq!(
        first.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(),
        ["doc_b", "doc_c"]
    );
    let rest = claim_abandoned_uploads(&mut tx, 3_600, 2).await.unwrap();
    assert_eq!(
        rest.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(),
        ["doc_a"]
    );
    tx.commit().await.unwrap();
}

#[sqlx::test(migrations = "./migrations")]
async fn concurrent_claimers_never_get_the_same_upload(pool: PgPool) {
    let all: BTreeSet<String> = (1..=6).map(|i| format!("doc_{i}")).collect();
    for (i, id) in all.iter().enumerate() {
        insert_pending(&pool, TENANT, id, None).await;
        backdate(&pool, id, 7_200.0 + i as f64).await;
    }

    let mut first = pool.begin().await.unwrap();
    let mut second = pool.begin().await.unwrap();
    let claimed_first: BTreeSet<String> = claim_abandoned_uploads(&mut first, 3_600, 4)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    // skips the rows the first holds instead of waiting for them
    let claimed_second: BTreeSet<String> = tokio::time::timeout(
        Duration::from_secs(5),
        claim_abandoned_uploads(&mut second, 3_600, 4),
    )
    .await
    .expect("the second claimer blocked on the first")
    .unwrap()
    .into_iter()
    .map(|u| u.id)
    .collect();

    assert_eq!(claimed_first.len(), 4);
    assert_eq!(claimed_second.len(), 2);
    assert!(claimed_first.is_disjoint(&claimed_second));
    let union: BTreeSet<String> = claimed_first.union(&claimed_second).cloned().collect();
    assert_eq!(union, all);

    // the first crashes: its rows go back to the pool and a third claimer gets exactly them
    first.rollback().await.unwrap();
    second.commit().await.unwrap();
    let mut third = pool.begin().await.unwrap();
    let claimed_third: BTreeSet<String> = claim_abandoned_uploads(&mut third, 3_600, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    third.commit().await.unwrap();
    assert_eq!(claimed_third, claimed_first);
    let left: i64 = sqlx::query_scalar("select count(*) from documents")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
}
