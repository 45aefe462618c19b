//! The abandoned-upload cleaner: uploads left pending by a crashed process are removed,
//! with their objects and open multipart uploads, by whichever replica claims them first.
//!
//! Each upload is cleaned in its own transaction: its row stays claimed (locked) until the
//! object store is clean, then goes. One that fails is logged, counted and left for the next
//! run; it never blocks the others. A run stops after [`ABANDONED_UPLOADS_PER_RUN`] removals
//! and reports that more remain, so the worker runs again at once and a backlog drains.

use std::time::Duration;

use anyhow::Context;
use service_kit::worker::{RunReport, Workers};

use super::Documents;
use crate::store::postgres::{self, AbandonedUpload};

/// How often, and after how long, uploads left pending by a crash are removed.
const ABANDONED_UPLOAD_SWEEP_EVERY: Duration = Duration::from_secs(300);
const ABANDONED_UPLOAD_AGE: Duration = Duration::from_secs(3600);
/// Most uploads one run removes before it reports that more remain.
const ABANDONED_UPLOADS_PER_RUN: u64 = 100;
/// Most uploads one run tries (failures included), so a run with the object store down ends.
const ABANDONED_UPLOAD_TRIES_PER_RUN: usize = 1000;

/// What a cleaner run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Uploads removed (row, object and open multipart uploads).
    pub removed: u64,
    /// Uploads whose cleanup failed: logged, counted and left for the next run.
    pub failed: u64,
    /// The run stopped at its limit: more abandoned uploads may remain.
    pub more: bool,
}

impl Documents {
    /// Starts the abandoned-upload cleaner among `workers`: now and every few minutes until
    /// the service stops.
    pub fn start_abandoned_upload_cleaner(&self, workers: &mut Workers) {
        let documents = self.clone();
        workers.spawn_periodic(
            "abandoned-upload-cleaner",
            ABANDONED_UPLOAD_SWEEP_EVERY,
            move || {
                let documents = documents.clone();
                async move {
                    let report = documents
                        .sweep_abandoned_uploads(ABANDONED_UPLOAD_AGE)
                        .await?;
                    Ok::<RunReport, anyhow::Error>(RunReport {
                        handled: report.removed,
                        failed: report.failed,
                        more: report.more,
                    })
                }
            },
        );
    }

    /// One cleaner run: removes up to [`ABANDONED_UPLOADS_PER_RUN`] uploads left pending
    /// for longer than `older_than`, each in its own transaction. Fails only when the
    /// database cannot be reached at all.
    pub async fn sweep_abandoned_uploads(
        &self,
        older_than: Duration,
    ) -> anyhow::Result<CleanupReport> {
        let mut report = CleanupReport::default();
        let mut tried: Vec<String> = Vec::new();
        while tried.len() < ABANDONED_UPLOAD_TRIES_PER_RUN {
            if report.removed == ABANDONED_UPLOADS_PER_RUN {
                report.more = true;
                return Ok(report);
            }
            let mut tx = service_kit::database::begin(&self.pool)
                .await
                .context("begin")?;
            let Some(upload) =
                postgres::claim_next_abandoned_upload(&mut tx, older_than.as_secs() as i64, &tried)
                    .await?
            else {
                return Ok(report);
            };
            tried.push(upload.id.clone());
            let cleaned = async {
                self.remove_abandoned_objects(&upload).await?;
                postgres::delete_abandoned_upload(&mut tx, &upload.tenant_id, &upload.id).await?;
                tx.commit().await.context("commit")
            }
            .await;
            match cleaned {
                Ok(()) => {
                    report.removed += 1;
                    tracing::info!(tenant_id = %upload.tenant_id, document_id = %upload.id, "removed abandoned upload");
                }
                Err(error) => {
                    report.failed += 1;
                    tracing::error!(
                        tenant_id = %upload.tenant_id,
                        document_id = %upload.id,
                        error = ?error,
                        "removing an abandoned upload failed; skipped and retried at the next run"
                    );
                }
            }
        }
        // Stopped by the tries bound: run again at once only if this run made progress.
        report.more = report.removed > 0;
        Ok(report)
    }

    /// Removes what an abandoned upload may have left in the object store: its recorded
    /// multipart upload, any other open multipart upload on its key (one created just
    /// before a crash, before its id was recorded), and the object itself (completion may
    /// have raced the crash).
    async fn remove_abandoned_objects(&self, upload: &AbandonedUpload) -> anyhow::Result<()> {
        let key = &upload.object_key;
        if let Some(upload_id) = &upload.upload_id {
            // It may be gone already: the listing below tells whether it still is open.
            let _ = self.objects.abort_multipart_upload(key, upload_id).await;
        }
        self.objects.abort_open_multipart_uploads(key).await?;
        self.objects.delete_object(key).await
    }
}
