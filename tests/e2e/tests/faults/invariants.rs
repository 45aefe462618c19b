//! The invariants checked once the faults are over.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use disputes_proto::disputes_v1 as dpb;
use disputes_proto::documents_v1 as pb;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::ledger::Ledger;
use super::platform::{Clients, Platform};
use super::{BUCKET, PART_SIZE, TENANT, ms};

/// Gives uploads the clients gave up on a moment to end on the server (abort or commit):
/// waits up to 5 s until no upload started since the last kill of document-store is pending.
pub async fn settle(platform: &Platform, ledger: &Ledger) {
    let since = ledger
        .lock()
        .unwrap()
        .last_docs_kill
        .unwrap_or(chrono::DateTime::UNIX_EPOCH);
    let pool = sqlx::PgPool::connect(&platform.document_db_url)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let running: i64 = sqlx::query_scalar(
            "select count(*) from documents where state = 'pending' and created_at > $1",
        )
        .bind(since)
        .fetch_one(&pool)
        .await
        .unwrap();
        if running == 0 {
            break;
        }
        tokio::time::sleep(ms(100)).await;
    }
    pool.close().await;
}

#[derive(Default)]
pub struct Report {
    pub verified: u64,
    pub applied_unacknowledged: u64,
    pub left_by_crash: u64,
    pub left_by_failure: u64,
    pub locked_without_submission: u64,
    pub recovery: Duration,
    pub violations: Vec<String>,
}

pub async fn verify(
    platform: &Platform,
    clients: &mut Clients,
    ledger: &Ledger,
    report: &mut Report,
) {
    let disputes_db = sqlx::PgPool::connect(&platform.dispute_db_url)
        .await
        .unwrap();
    let documents_db = sqlx::PgPool::connect(&platform.document_db_url)
        .await
        .unwrap();
    let (creates, accepts, events, uploads, submissions, last_docs_kill) = {
        let mut record = ledger.lock().unwrap();
        (
            std::mem::take(&mut record.creates),
            std::mem::take(&mut record.accepts),
            std::mem::take(&mut record.events),
            std::mem::take(&mut record.uploads),
            std::mem::take(&mut record.submissions),
            record.last_docs_kill,
        )
    };

    // Disputes: one row per charge when acknowledged (with the acknowledged id), at most one
    // otherwise; acknowledged ones readable through the API.
    for write in &creates {
        let ids: Vec<String> =
            sqlx::query_scalar("select id from disputes where tenant_id = $1 and charge = $2")
                .bind(TENANT)
                .bind(&write.charge)
                .fetch_all(&disputes_db)
                .await
                .unwrap();
        match &write.acked {
            Some(id) => {
                if ids != [id.clone()] {
                    report.violations.push(format!(
                        "acknowledged dispute {id} (charge {}): rows {ids:?}",
                        write.charge
                    ));
                } else if let Err(e) = clients
                    .disputes
                    .get_dispute(dpb::GetDisputeRequest { id: id.clone() })
                    .await
                {
                    report
                        .violations
                        .push(format!("acknowledged dispute {id}: GetDispute {e:?}"));
                } else {
                    report.verified += 1;
                }
            }
            None => match ids.len() {
                0 => {}
                1 => report.applied_unacknowledged += 1,
                _ => report.violations.push(format!(
                    "unacknowledged create (charge {}) stored {} times",
                    write.charge,
                    ids.len()
                )),
            },
        }
    }

    // ACCEPT: exactly one history entry and status LOST when acknowledged; never two.
    for write in &accepts {
        let entries: i64 = sqlx::query_scalar(
            "select count(*) from dispute_actions where tenant_id = $1 and dispute_id = $2 and what = 'ACCEPT'",
        )
        .bind(TENANT)
        .bind(&write.dispute_id)
        .fetch_one(&disputes_db)
        .await
        .unwrap();
        if write.acked {
            let status = clients
                .disputes
                .get_dispute(dpb::GetDisputeRequest {
                    id: write.dispute_id.clone(),
                })
                .await
                .map(|r| r.into_inner().dispute.map(|d| d.status()));
            if entries != 1 || !matches!(status, Ok(Some(dpb::DisputeStatus::Lost))) {
                report.violations.push(format!(
                    "acknowledged ACCEPT of {}: {entries} history entries, status {status:?}",
                    write.dispute_id
                ));
            } else {
                report.verified += 1;
            }
        } else if entries == 1 {
            report.applied_unacknowledged += 1;
        } else if entries > 1 {
            report.violations.push(format!(
                "unacknowledged ACCEPT of {} applied {entries} times",
                write.dispute_id
            ));
        }
    }

    // Submissions: once in the history, UNDER_REVIEW, and the document locked in
    // document-store, when acknowledged; never twice; never submitted without the lock.
    for write in &submissions {
        let entries: i64 = sqlx::query_scalar(
            "select count(*) from dispute_actions where tenant_id = $1 and dispute_id = $2 and what = 'SUBMIT_EVIDENCE'",
        )
        .bind(TENANT)
        .bind(&write.dispute_id)
        .fetch_one(&disputes_db)
        .await
        .unwrap();
        let locked: Option<bool> = sqlx::query_scalar(
            "select lock_time is not null from documents where tenant_id = $1 and id = $2",
        )
        .bind(TENANT)
        .bind(&write.document_id)
        .fetch_optional(&documents_db)
        .await
        .unwrap();
        let locked = locked.unwrap_or(false);
        if write.acked {
            let status = clients
                .disputes
                .get_dispute(dpb::GetDisputeRequest {
                    id: write.dispute_id.clone(),
                })
                .await
                .map(|r| r.into_inner().dispute.map(|d| d.status()));
            if entries != 1
                || !locked
                || !matches!(status, Ok(Some(dpb::DisputeStatus::UnderReview)))
            {
                report.violations.push(format!(
                    "acknowledged submission of {}: {entries} history entries, document {} locked {locked}, status {status:?}",
                    write.dispute_id, write.document_id
                ));
            } else {
                report.verified += 1;
            }
        } else {
            match (entries, locked) {
                (0, false) => {}
                (1, true) => report.applied_unacknowledged += 1,
                (0, true) => report.locked_without_submission += 1,
                _ => report.violations.push(format!(
                    "unacknowledged submission of {}: {entries} history entries, document {} locked {locked}",
                    write.dispute_id, write.document_id
                )),
            }
        }
    }

    // Network events: one recorded event and one dispute per case.
    for write in &events {
        let recorded: i64 = sqlx::query_scalar(
            "select count(*) from network_events where tenant_id = $1 and network_case_id = $2 and event_id = $3",
        )
        .bind(TENANT)
        .bind(&write.case_id)
        .bind(&write.event_id)
        .fetch_one(&disputes_db)
        .await
        .unwrap();
        let ids: Vec<String> = sqlx::query_scalar(
            "select id from disputes where tenant_id = $1 and network_case_id = $2",
        )
        .bind(TENANT)
        .bind(&write.case_id)
        .fetch_all(&disputes_db)
        .await
        .unwrap();
        match &write.acked {
            Some(id) => {
                if recorded != 1 || ids != [id.clone()] {
                    report.violations.push(format!(
                        "acknowledged event {} of {}: {recorded} recorded, disputes {ids:?} (acknowledged {id})",
                        write.event_id, write.case_id
                    ));
                } else {
                    report.verified += 1;
                }
            }
            None => {
                if recorded > 1 || ids.len() > 1 || (recorded == 1) != (ids.len() == 1) {
                    report.violations.push(format!(
                        "unacknowledged event {} of {}: {recorded} recorded, disputes {ids:?}",
                        write.event_id, write.case_id
                    ));
                } else if recorded == 1 {
                    report.applied_unacknowledged += 1;
                }
            }
        }
    }

    // Uploads left pending (a figure: whose process was killed, or that failed while their
    // cleanup could not reach a dependency), then the abandoned-upload cleaner as it would
    // run once their age passed: every leftover must be one it can remove.
    let pending: Vec<DocumentRow> = sqlx::query_as(
        "select id, state, sha256, size_bytes, object_key, created_at
         from documents where state = 'pending'",
    )
    .fetch_all(&documents_db)
    .await
    .unwrap();
    for row in &pending {
        if last_docs_kill.is_some_and(|kill| row.created_at <= kill) {
            report.left_by_crash += 1;
        } else {
            report.left_by_failure += 1;
        }
    }
    let cleaner = document_store::app::Documents::new(
        documents_db.clone(),
        document_store::store::s3::ObjectStore::new(
            platform
                .s3
                .client(document_store::store::s3::ChecksumMode::WhenRequired),
            BUCKET.to_owned(),
        ),
        document_store::app::UploadSettings {
            max_bytes: 25 * 1024 * 1024,
            part_size: PART_SIZE,
            max_parts_in_flight: 2,
            chunk_idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            upload_deadline: Duration::from_secs(600),
            max_concurrent_uploads: 8,
        },
    );
    loop {
        match cleaner.sweep_abandoned_uploads(Duration::ZERO).await {
            Ok(run) if run.failed > 0 => {
                report.violations.push(format!(
                    "the abandoned-upload cleaner failed on {} uploads after recovery",
                    run.failed
                ));
                break;
            }
            Ok(run) if !run.more => break,
            Ok(_) => {}
            Err(e) => {
                report
                    .violations
                    .push(format!("the abandoned-upload cleaner failed: {e:#}"));
                break;
            }
        }
    }

    // Uploads: complete with the right SHA-256, or absent.
    let mut live_object_keys = BTreeSet::new();
    for write in &uploads {
        let rows: Vec<DocumentRow> = sqlx::query_as(
            "select id, state, sha256, size_bytes, object_key, created_at
             from documents where tenant_id = $1 and filename = $2",
        )
        .bind(TENANT)
        .bind(&write.filename)
        .fetch_all(&documents_db)
        .await
        .unwrap();
        for row in &rows {
            live_object_keys.insert(row.object_key.clone());
            if row.state != "available" {
                report.violations.push(format!(
                    "upload {} ({}) still {} after the cleaner",
                    write.filename, row.id, row.state
                ));
            }
        }
        let available: Vec<&DocumentRow> = rows.iter().filter(|r| r.state == "available").collect();
        if available.len() > 1 {
            report.violations.push(format!(
                "upload {} stored {} times",
                write.filename,
                available.len()
            ));
            continue;
        }
        let Some(row) = available.first() else {
            if let Some(id) = &write.acked {
                report.violations.push(format!(
                    "acknowledged upload {} ({id}) has no available row",
                    write.filename
                ));
            }
            continue;
        };
        if write.acked.as_ref().is_some_and(|id| *id != row.id) {
            report.violations.push(format!(
                "acknowledged upload {} is {:?} but the row is {}",
                write.filename, write.acked, row.id
            ));
            continue;
        }
        let downloaded = download_sha256(clients, &row.id).await;
        let matches = row.sha256.as_deref() == Some(write.sha256.as_str())
            && row.size_bytes == Some(write.size as i64)
            && downloaded.as_deref() == Ok(write.sha256.as_str());
        if !matches {
            report.violations.push(format!(
                "upload {} ({}, {}): stored {:?} bytes sha256 {:?}, download {:?}; sent {} bytes sha256 {}",
                write.filename,
                row.id,
                if write.acked.is_some() { "acknowledged" } else { "unacknowledged" },
                row.size_bytes,
                row.sha256,
                downloaded,
                write.size,
                write.sha256
            ));
        } else if write.acked.is_some() {
            report.verified += 1;
        } else {
            report.applied_unacknowledged += 1;
        }
    }

    // The S3 server: no incomplete multipart upload and no object without a row.
    let (incomplete, objects) = s3_leftovers(&platform.s3.root);
    for upload_id in &incomplete {
        // Without its key record the upload is invisible to ListMultipartUploads: the
        // server stopped half-way through creating it.
        let keyed = std::fs::read_dir(&platform.s3.root)
            .into_iter()
            .flatten()
            .flatten()
            .any(|entry| {
                entry
                    .file_name()
                    .to_string_lossy()
                    .ends_with(&format!(".upload-{upload_id}.metadata.json"))
            });
        let key = if keyed { "with" } else { "without" };
        report.violations.push(format!(
            "incomplete multipart upload {upload_id} on the S3 server ({key} its key record)"
        ));
    }
    for key in &objects {
        if !live_object_keys.contains(key) {
            report
                .violations
                .push(format!("object {key} without a document row"));
        }
    }
    disputes_db.close().await;
    documents_db.close().await;
}

#[derive(sqlx::FromRow)]
struct DocumentRow {
    pub id: String,
    pub state: String,
    pub sha256: Option<String>,
    pub size_bytes: Option<i64>,
    pub object_key: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// Downloads a document and hashes what arrived.
async fn download_sha256(clients: &mut Clients, id: &str) -> Result<String, String> {
    let mut stream = clients
        .documents
        .download_document(pb::DownloadDocumentRequest {
            id: id.to_owned(),
            offset: 0,
            length: 0,
        })
        .await
        .map_err(|e| format!("{e:?}"))?
        .into_inner();
    let mut hasher = Sha256::new();
    while let Some(message) = stream.message().await.map_err(|e| format!("{e:?}"))? {
        hasher.update(&message.chunk);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Incomplete multipart upload ids (s3s-fs keeps `.upload-<id>.json` until completion or
/// abort) and object keys in the bucket, read from the S3 server's folder.
fn s3_leftovers(root: &Path) -> (BTreeSet<String>, BTreeSet<String>) {
    let incomplete = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_str()?.to_owned();
            let id = name.strip_prefix(".upload-")?.strip_suffix(".json")?;
            Some(id.to_owned())
        })
        .collect();
    fn walk(dir: &Path, bucket: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path: PathBuf = entry.path();
            if path.is_dir() {
                walk(&path, bucket, out);
            } else if let Ok(key) = path.strip_prefix(bucket)
                && let Some(key) = key.to_str()
            {
                out.insert(key.to_owned());
            }
        }
    }
    let mut objects = BTreeSet::new();
    let bucket = root.join(BUCKET);
    walk(&bucket, &bucket, &mut objects);
    (incomplete, objects)
}
