//! The abandoned-upload cleaner: uploads left pending by a crashed process are removed,
//! with their objects, by whichever replica claims them first.

use std::time::Duration;

use service_kit::worker::spawn_periodic;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Documents;
use crate::store::postgres;

/// How often, and after how long, uploads left pending by a crash are removed.
const ABANDONED_UPLOAD_SWEEP_EVERY: Duration = Duration::from_secs(300);
const ABANDONED_UPLOAD_AGE: Duration = Duration::from_secs(3600);
/// Most uploads one run removes.
const ABANDONED_UPLOADS_PER_RUN: i64 = 100;

impl Documents {
    /// Runs the abandoned-upload cleaner now and every few minutes until `shutdown`.
    pub fn spawn_abandoned_upload_cleaner(&self, shutdown: CancellationToken) -> JoinHandle<()> {
        let documents = self.clone();
        spawn_periodic(
            "abandoned-upload-cleaner",
            ABANDONED_UPLOAD_SWEEP_EVERY,
            shutdown,
            move || {
                let documents = documents.clone();
                async move {
                    documents
                        .sweep_abandoned_uploads(ABANDONED_UPLOAD_AGE)
                        .await
                }
            },
        )
    }

    /// Deletes uploads left pending by a crashed process, and their objects; returns how
    /// many it removed.
    pub async fn sweep_abandoned_uploads(&self, older_than: Duration) -> anyhow::Result<u64> {
        let mut tx = self.pool.begin().await?;
        let abandoned = postgres::claim_abandoned_uploads(
            &mut tx,
            older_than.as_secs() as i64,
            ABANDONED_UPLOADS_PER_RUN,
        )
        .await?;
        for upload in &abandoned {
            if let Some(upload_id) = &upload.upload_id {
                // The upload may already be gone; the object may exist if completion raced.
                let _ = self
                    .objects
                    .abort_multipart_upload(&upload.object_key, upload_id)
                    .await;
            }
            self.objects.delete_object(&upload.object_key).await?;
            tracing::info!(tenant_id = %upload.tenant_id, document_id = %upload.id, "removed abandoned upload");
        }
        tx.commit().await?;
        Ok(abandoned.len() as u64)
    }
}
