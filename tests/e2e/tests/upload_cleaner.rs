//! The abandoned-upload cleaner against the real stack: it removes each upload on its own, so
//! one that fails does not hold back the others, drains a backlog run after run, and aborts a
//! multipart upload whose id no row recorded (a crash between CreateMultipartUpload and
//! recording its id).

use std::time::Duration;

use bytes::Bytes;
use document_store::app::cleanup::CleanupReport;
use sqlx::PgPool;

use crate::fixtures::*;

const TENANT: &str = "ten_cleaner";
/// The age past which the cleaner takes a pending upload as abandoned.
const ABANDONED_AFTER: Duration = Duration::from_secs(3600);

/// Inserts a pending upload row created `age_secs` ago.
async fn insert_pending(
    pool: &PgPool,
    id: &str,
    object_key: &str,
    upload_id: Option<&str>,
    age_secs: i64,
) {
    sqlx::query(
        "insert into documents
            (tenant_id, id, filename, declared_content_type, state, object_key, upload_id,
             created_at)
         values ($1, $2, 'x.pdf', 'application/pdf', 'pending', $3, $4,
                 now() - make_interval(secs => $5))",
    )
    .bind(TENANT)
    .bind(id)
    .bind(object_key)
    .bind(upload_id)
    .bind(age_secs as f64)
    .execute(pool)
    .await
    .unwrap();
}

/// Open multipart-upload records and their parts on the S3 server's disk.
fn open_upload_files(stack: &harness::Stack) -> Vec<String> {
    stack
        .s3
        .files()
        .into_iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| n.starts_with(".upload"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_upload_cleaner_isolates_failures_drains_and_aborts_unrecorded_uploads() {
    let stack = stack().await;
    let pool = PgPool::connect(&stack.document_db_url).await.unwrap();
    let objects = stack.object_store();
    let documents = upload_cleaner(&stack, pool.clone());

    // The oldest row cannot be removed: its key is a folder on the S3 server's disk, so
    // DeleteObject fails every time. It must not hold back the others.
    let blocked_key = format!("{TENANT}/doc_a_blocked");
    std::fs::create_dir_all(stack.s3.root.join(&stack.bucket).join(&blocked_key)).unwrap();
    insert_pending(&pool, "doc_a_blocked", &blocked_key, None, 7200).await;
    // A crash right after CreateMultipartUpload: the upload exists (with a part), its id
    // was never recorded.
    let unrecorded_key = format!("{TENANT}/doc_b_unrecorded");
    let unrecorded = objects
        .create_multipart_upload_once(&unrecorded_key)
        .await
        .unwrap();
    objects
        .upload_part(
            &unrecorded_key,
            &unrecorded,
            1,
            Bytes::from_static(b"%PDF-1.7"),
        )
        .await
        .unwrap();
    insert_pending(&pool, "doc_b_unrecorded", &unrecorded_key, None, 7000).await;
    // A crash mid-upload with the id recorded.
    let recorded_key = format!("{TENANT}/doc_c_recorded");
    let recorded = objects
        .create_multipart_upload_once(&recorded_key)
        .await
        .unwrap();
    insert_pending(
        &pool,
        "doc_c_recorded",
        &recorded_key,
        Some(&recorded),
        6900,
    )
    .await;
    // A backlog of 120 more, and one upload still running (too young to touch).
    for i in 0..120 {
        insert_pending(
            &pool,
            &format!("doc_d_{i:03}"),
            &format!("{TENANT}/doc_d_{i:03}"),
            None,
            6000,
        )
        .await;
    }
    insert_pending(
        &pool,
        "doc_e_running",
        &format!("{TENANT}/doc_e_running"),
        None,
        10,
    )
    .await;
    assert_eq!(
        objects
            .list_multipart_uploads(&unrecorded_key)
            .await
            .unwrap(),
        vec![unrecorded.clone()]
    );
    // two upload records and one part
    assert_eq!(open_upload_files(&stack).len(), 3, "{:?}", stack.s3.files());

    // First run: 100 removed, the blocked one counted and skipped, more left.
    let first = documents
        .sweep_abandoned_uploads(ABANDONED_AFTER)
        .await
        .unwrap();
    assert_eq!(
        first,
        CleanupReport {
            removed: 100,
            failed: 1,
            more: true
        }
    );
    // Second run: the rest.
    let second = documents
        .sweep_abandoned_uploads(ABANDONED_AFTER)
        .await
        .unwrap();
    assert_eq!(
        second,
        CleanupReport {
            removed: 22,
            failed: 1,
            more: false
        }
    );

    assert_eq!(
        pending_document_ids(&pool).await,
        vec!["doc_a_blocked", "doc_e_running"]
    );
    assert!(
        objects
            .list_multipart_uploads(&unrecorded_key)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        objects
            .list_multipart_uploads(&recorded_key)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        open_upload_files(&stack).is_empty(),
        "incomplete multipart uploads remain: {:?}",
        stack.s3.files()
    );

    pool.close().await;
    stack.stop().await;
}
