//! The upload pipeline: chunks stream into S3 parts while they are hashed and sniffed.
//! Memory stays bounded by `part_size * (max_parts_in_flight + 1)` whatever the file
//! size. Any failure, cap breach or cancellation removes everything the upload created:
//! the multipart upload, the object and the metadata row.

use std::time::Duration;

use aws_sdk_s3::types::CompletedPart;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::domain::content::SNIFF_LEN;
use crate::domain::{ContentType, Document, DocumentError, Sniff, UploadHeader, object_key, sniff};
use crate::store::postgres::{self, PendingDocument, StoredContent};
use crate::store::s3::ObjectStore;

/// Tunables of the pipeline.
#[derive(Debug, Clone, Copy)]
pub struct UploadSettings {
    pub max_bytes: u64,
    /// Size of each multipart part (S3 needs at least 5 MiB but for the last one).
    pub part_size: usize,
    pub max_parts_in_flight: usize,
    /// A client that sends nothing for this long is cut off.
    pub chunk_idle_timeout: Duration,
}

/// Everything an upload needs.
#[derive(Clone)]
pub struct Uploads {
    pub pool: sqlx::PgPool,
    pub objects: ObjectStore,
    pub settings: UploadSettings,
    /// Cancelled when the drain time after SIGTERM is over: uploads still open then abort
    /// cleanly instead of being cut off half-way.
    pub abort: CancellationToken,
    /// Upload tasks, so shutdown can wait for their cleanup.
    pub tasks: TaskTracker,
}

/// What became of the object while the upload ran, for cleanup.
enum ObjectState {
    Nothing,
    Multipart { upload_id: String },
    Stored,
}

impl Uploads {
    /// Streams `chunks` into storage as document `document_id` of `tenant_id`.
    pub async fn upload<S>(
        &self,
        tenant_id: &str,
        document_id: &str,
        header: UploadHeader,
        chunks: S,
    ) -> Result<Document, DocumentError>
    where
        S: Stream<Item = Result<Bytes, DocumentError>> + Unpin,
    {
        let key = object_key(tenant_id, document_id);
        postgres::insert_pending_document(
            &self.pool,
            &PendingDocument {
                tenant_id,
                id: document_id,
                dispute_id: header.dispute_id.as_deref(),
                filename: &header.filename,
                declared_content_type: header.declared.mime(),
                object_key: &key,
            },
        )
        .await?;

        let mut object = ObjectState::Nothing;
        let result = self
            .stream_to_storage(tenant_id, document_id, &key, &header, chunks, &mut object)
            .await;
        match result {
            Ok(document) => Ok(document),
            Err(error) => {
                self.clean_up_failed_upload(tenant_id, document_id, &key, object)
                    .await;
                Err(error)
            }
        }
    }

    async fn stream_to_storage<S>(
        &self,
        tenant_id: &str,
        document_id: &str,
        key: &str,
        header: &UploadHeader,
        mut chunks: S,
        object: &mut ObjectState,
    ) -> Result<Document, DocumentError>
    where
        S: Stream<Item = Result<Bytes, DocumentError>> + Unpin,
    {
        let settings = self.settings;
        let mut hasher = Sha256::new();
        let mut buffer = BytesMut::with_capacity(settings.part_size.min(1 << 20));
        let mut total: u64 = 0;
        let mut detected: Option<ContentType> = None;
        let mut parts_in_flight: JoinSet<anyhow::Result<CompletedPart>> = JoinSet::new();
        let mut completed_parts = Vec::new();
        let mut next_part_number = 1;

        loop {
            let next = tokio::select! {
                next = tokio::time::timeout(settings.chunk_idle_timeout, chunks.next()) => next,
                _ = self.abort.cancelled() => return Err(DocumentError::ShuttingDown),
            };
            let chunk = match next {
                Err(_) => {
                    return Err(DocumentError::IdleTimeout {
                        secs: settings.chunk_idle_timeout.as_secs(),
                    });
                }
                Ok(None) => break,
                Ok(Some(chunk)) => chunk?,
            };
            total += chunk.len() as u64;
            if total > settings.max_bytes {
                return Err(DocumentError::TooLarge {
                    limit: settings.max_bytes,
                });
            }
            hasher.update(&chunk);
            buffer.extend_from_slice(&chunk);
            if detected.is_none() {
                detected = check_content(header.declared, &buffer, false)?;
            }

            // Ship full parts once more bytes than one part are buffered, so the last part
            // is never empty.
            while buffer.len() > settings.part_size {
                let upload_id = match object {
                    ObjectState::Multipart { upload_id } => upload_id.clone(),
                    _ => {
                        let upload_id = self.objects.create_multipart_upload(key).await?;
                        *object = ObjectState::Multipart {
                            upload_id: upload_id.clone(),
                        };
                        postgres::record_multipart_upload_id(
                            &self.pool,
                            tenant_id,
                            document_id,
                            &upload_id,
                        )
                        .await?;
                        upload_id
                    }
                };
                let part = buffer.split_to(settings.part_size).freeze();
                while parts_in_flight.len() >= settings.max_parts_in_flight {
                    completed_parts.push(join_part(&mut parts_in_flight).await?);
                }
                let objects = self.objects.clone();
                let key = key.to_owned();
                let part_number = next_part_number;
                next_part_number += 1;
                parts_in_flight.spawn(async move {
                    objects
                        .upload_part(&key, &upload_id, part_number, part)
                        .await
                });
            }
        }

        let content_type = match detected {
            Some(content_type) => content_type,
            None => check_content(header.declared, &buffer, true)?
                .ok_or(DocumentError::TooShortToIdentify)?,
        };
        let sha256 = hex::encode(hasher.finalize());
        if let Some(expected) = &header.expected_sha256
            && *expected != sha256
        {
            return Err(DocumentError::Sha256Mismatch {
                expected: expected.clone(),
                actual: sha256,
            });
        }

        match object {
            ObjectState::Multipart { upload_id } => {
                let upload_id = upload_id.clone();
                let last = buffer.split().freeze();
                let objects = self.objects.clone();
                let key_owned = key.to_owned();
                let part_number = next_part_number;
                let last_upload_id = upload_id.clone();
                parts_in_flight.spawn(async move {
                    objects
                        .upload_part(&key_owned, &last_upload_id, part_number, last)
                        .await
                });
                while !parts_in_flight.is_empty() {
                    completed_parts.push(join_part(&mut parts_in_flight).await?);
                }
                self.objects
                    .complete_multipart_upload(key, &upload_id, completed_parts)
                    .await?;
                *object = ObjectState::Stored;
            }
            _ => {
                // Mark first: a put that fails after the server stored the bytes must still
                // be cleaned up.
                *object = ObjectState::Stored;
                self.objects
                    .put_object(key, buffer.split().freeze())
                    .await?;
            }
        }

        let document = postgres::mark_document_available(
            &self.pool,
            tenant_id,
            document_id,
            &StoredContent {
                content_type: content_type.mime(),
                size_bytes: total as i64,
                sha256: &sha256,
            },
        )
        .await?;
        Ok(document)
    }

    /// Best effort: each step is tried even if an earlier one fails, and failures are
    /// logged; the abandoned-upload sweeper retries whatever is left.
    async fn clean_up_failed_upload(
        &self,
        tenant_id: &str,
        document_id: &str,
        key: &str,
        object: ObjectState,
    ) {
        let object_cleanup = match &object {
            ObjectState::Nothing => Ok(()),
            ObjectState::Multipart { upload_id } => {
                self.objects.abort_multipart_upload(key, upload_id).await
            }
            ObjectState::Stored => self.objects.delete_object(key).await,
        };
        if let Err(error) = object_cleanup {
            tracing::error!(error = ?error, document_id, "cleanup of a failed upload's object failed");
            // Keep the row so the sweeper finds the leftover later.
            return;
        }
        if let Err(error) =
            postgres::delete_pending_document(&self.pool, tenant_id, document_id).await
        {
            tracing::error!(error = ?error, document_id, "cleanup of a failed upload's row failed");
        }
    }
}

async fn join_part(
    parts: &mut JoinSet<anyhow::Result<CompletedPart>>,
) -> Result<CompletedPart, DocumentError> {
    match parts.join_next().await {
        Some(Ok(part)) => Ok(part?),
        Some(Err(join_error)) => Err(DocumentError::Internal(join_error.into())),
        None => Err(DocumentError::Internal(anyhow::anyhow!(
            "no part in flight"
        ))),
    }
}

/// Sniffs the buffered prefix: `Ok(None)` while more bytes are needed (and the stream goes
/// on), the detected type once known, or the reason the content is refused.
fn check_content(
    declared: ContentType,
    prefix: &[u8],
    stream_ended: bool,
) -> Result<Option<ContentType>, DocumentError> {
    match sniff(&prefix[..prefix.len().min(SNIFF_LEN)]) {
        Sniff::Detected(detected) if detected == declared => Ok(Some(detected)),
        Sniff::Detected(detected) => Err(DocumentError::ContentTypeMismatch {
            declared: declared.mime(),
            detected: detected.mime(),
        }),
        Sniff::NeedMore if stream_ended => Err(DocumentError::TooShortToIdentify),
        Sniff::NeedMore => Ok(None),
        Sniff::Unknown => Err(DocumentError::UnsupportedContent),
    }
}

/// Deletes uploads left pending by a crashed process, and their objects.
pub async fn sweep_abandoned_uploads(
    uploads: &Uploads,
    older_than: Duration,
) -> anyhow::Result<usize> {
    let mut tx = uploads.pool.begin().await?;
    let abandoned =
        postgres::claim_abandoned_uploads(&mut tx, older_than.as_secs() as i64, 100).await?;
    for upload in &abandoned {
        if let Some(upload_id) = &upload.upload_id {
            // The upload may already be gone; the object may exist if completion raced.
            let _ = uploads
                .objects
                .abort_multipart_upload(&upload.object_key, upload_id)
                .await;
        }
        uploads.objects.delete_object(&upload.object_key).await?;
        tracing::info!(tenant_id = %upload.tenant_id, document_id = %upload.id, "removed abandoned upload");
    }
    tx.commit().await?;
    Ok(abandoned.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_check_waits_then_decides() {
        assert_eq!(
            check_content(ContentType::Png, &[0x89], false).unwrap(),
            None
        );
        assert!(matches!(
            check_content(ContentType::Png, &[0x89], true),
            Err(DocumentError::TooShortToIdentify)
        ));
        assert!(matches!(
            check_content(ContentType::Png, b"%PDF-1.4", false),
            Err(DocumentError::ContentTypeMismatch { .. })
        ));
        assert!(matches!(
            check_content(ContentType::Pdf, b"GIF89a", false),
            Err(DocumentError::UnsupportedContent)
        ));
        assert_eq!(
            check_content(ContentType::Pdf, b"%PDF-1.4 and much more", false).unwrap(),
            Some(ContentType::Pdf)
        );
    }
}
