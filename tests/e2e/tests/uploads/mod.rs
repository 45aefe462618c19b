//! Uploads that do not go as planned leave nothing behind and hold nothing: uploads cancelled
//! or cut short mid-file (`cancel`), the bounds on an upload's memory and time (`limits`),
//! and the fair sharing of uploads and downloads between tenants (`fairness`).

use std::time::Duration;

use disputes_proto::documents_v1 as pb;
use harness::{Stack, StackOptions};

use crate::fixtures::*;

mod cancel;
mod fairness;
mod limits;

const PART: usize = 5 * MIB;

fn options() -> StackOptions {
    StackOptions {
        part_size_bytes: PART,
        max_upload_bytes: 25 * MIB as u64,
        ..Default::default()
    }
}

/// Rows of `tenant` in document-store's database, in any state.
async fn tenant_rows(stack: &Stack, tenant: &str) -> i64 {
    let pool = sqlx::PgPool::connect(&stack.document_db_url).await.unwrap();
    let count = sqlx::query_scalar("select count(*) from documents where tenant_id = $1")
        .bind(tenant)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    count
}

/// Objects the S3 server lists under `tenant`'s prefix.
async fn tenant_objects(stack: &Stack, tenant: &str) -> Vec<String> {
    let client = stack
        .s3
        .client(document_store::store::s3::ChecksumMode::WhenRequired);
    let listed = client
        .list_objects_v2()
        .bucket(&stack.bucket)
        .prefix(format!("tenants/{tenant}/"))
        .send()
        .await
        .unwrap();
    listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

/// Polls (up to 10 s: cleanup runs after the caller is gone) until `tenant` has no row, no
/// listed object, and the S3 server's folder holds nothing beyond `baseline`. s3s-fs does
/// not implement ListMultipartUploads; its folder holds every part and every open
/// multipart upload's record, so comparing the folder covers incomplete uploads.
async fn assert_tenant_left_nothing(stack: &Stack, tenant: &str, baseline: &[std::path::PathBuf]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let rows = tenant_rows(stack, tenant).await;
        let objects = tenant_objects(stack, tenant).await;
        let files = stack.s3.files();
        if rows == 0 && objects.is_empty() && files == baseline {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "leftovers of {tenant}: {rows} row(s), objects {objects:?}, files {files:?} (baseline {baseline:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (up to 10 s) until `check` holds.
async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A header declaring `declared` bytes.
fn sized_header(declared: usize) -> pb::DocumentHeader {
    pb::DocumentHeader {
        expected_size_bytes: declared as u64,
        ..header("sized.pdf", "application/pdf")
    }
}
