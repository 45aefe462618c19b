//! The upload pipeline: chunks stream into S3 parts while they are hashed and sniffed.
//! Memory stays bounded by `part_size * (max_parts_in_flight + 1)` whatever the file
//! size. Any failure, cap breach or cancellation removes everything the upload created:
//! the multipart upload, the object and the metadata row.

use std::collections::VecDeque;

use aws_sdk_s3::types::CompletedPart;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use service_kit::ids::DocumentId;
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::Documents;
use crate::domain::content::SNIFF_LEN;
use crate::domain::{
    ContentType, Document, DocumentError, UploadHeader, check_content, object_key,
};
use crate::store::postgres::{self, PendingDocument, StoredContent};

/// What became of the object while the upload ran, for cleanup.
enum ObjectState {
    Nothing,
    Multipart { upload_id: String },
    Stored,
}

impl Documents {
    /// Streams `chunks` into storage as a new document of `tenant_id`. The upload runs in a
    /// task of its own, detached from the caller: if the client hangs up, hyper drops the
    /// caller's future, and the task still sees the broken stream and removes what the
    /// upload created. Shutdown waits for these tasks ([`Documents::abort_uploads`]).
    pub async fn upload<S>(
        &self,
        tenant_id: String,
        header: UploadHeader,
        chunks: S,
    ) -> Result<Document, DocumentError>
    where
        S: Stream<Item = Result<Bytes, DocumentError>> + Send + Unpin + 'static,
    {
        let document_id = DocumentId::generate();
        tracing::Span::current().record("document_id", document_id.as_str());
        let documents = self.clone();
        let task = self.tasks.spawn(
            async move {
                documents
                    .store_upload(&tenant_id, document_id.as_str(), header, chunks)
                    .await
            }
            .instrument(tracing::Span::current()),
        );
        task.await.map_err(|e| DocumentError::Internal(e.into()))?
    }

    /// Streams `chunks` into storage as document `document_id` of `tenant_id`.
    async fn store_upload<S>(
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
                dispute_id: header.dispute_id.as_ref().map(|id| id.as_str()),
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
        let mut buffer = PartBuffer::new(settings.part_size);
        let mut prefix: Vec<u8> = Vec::with_capacity(SNIFF_LEN);
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
            if detected.is_none() {
                let wanted = SNIFF_LEN.saturating_sub(prefix.len()).min(chunk.len());
                prefix.extend_from_slice(&chunk[..wanted]);
                detected = check_content(header.declared, &prefix, false)?;
            }
            buffer.push(chunk);

            while let Some(part) = buffer.take_full_part() {
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
            None => check_content(header.declared, &prefix, true)?
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
                let last = buffer.take_rest();
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
                self.objects.put_object(key, buffer.take_rest()).await?;
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

/// Collects chunks and cuts them into parts of exactly `part_size` bytes. Each byte is
/// copied once, into a buffer allocated at its final size: growing one buffer instead would
/// double its allocation past the part size and copy on every doubling.
struct PartBuffer {
    part_size: usize,
    chunks: VecDeque<Bytes>,
    len: usize,
}

impl PartBuffer {
    fn new(part_size: usize) -> Self {
        Self {
            part_size,
            chunks: VecDeque::new(),
            len: 0,
        }
    }

    fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.len += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// A full part, once more than one part is buffered, so the last part is never empty.
    fn take_full_part(&mut self) -> Option<Bytes> {
        (self.len > self.part_size).then(|| self.take(self.part_size))
    }

    /// Everything buffered (the last part, or the whole of a small file).
    fn take_rest(&mut self) -> Bytes {
        if self.chunks.len() == 1 {
            self.len = 0;
            return self.chunks.pop_front().unwrap_or_default();
        }
        self.take(self.len)
    }

    fn take(&mut self, n: usize) -> Bytes {
        let mut out = BytesMut::with_capacity(n);
        while out.len() < n {
            let Some(mut front) = self.chunks.pop_front() else {
                break;
            };
            let needed = n - out.len();
            if front.len() > needed {
                out.extend_from_slice(&front.split_to(needed));
                self.chunks.push_front(front);
            } else {
                out.extend_from_slice(&front);
            }
        }
        self.len -= out.len();
        out.freeze()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_cut_exactly_and_keep_byte_order() {
        let data: Vec<u8> = (0..100u8).collect();
        let mut buffer = PartBuffer::new(30);
        let mut parts = Vec::new();
        for chunk in data.chunks(7) {
            buffer.push(Bytes::copy_from_slice(chunk));
            while let Some(part) = buffer.take_full_part() {
                parts.push(part);
            }
        }
        assert_eq!(
            parts.iter().map(Bytes::len).collect::<Vec<_>>(),
            vec![30, 30, 30]
        );
        let last = buffer.take_rest();
        assert_eq!(last.len(), 10);
        let joined: Vec<u8> = parts
            .iter()
            .chain(std::iter::once(&last))
            .flatten()
            .copied()
            .collect();
        assert_eq!(joined, data);
    }

    #[test]
    fn exactly_one_part_stays_buffered_as_the_last() {
        let mut buffer = PartBuffer::new(10);
        buffer.push(Bytes::from_static(b"0123456789"));
        assert!(buffer.take_full_part().is_none());
        assert_eq!(buffer.take_rest(), Bytes::from_static(b"0123456789"));
        buffer.push(Bytes::from_static(b""));
        assert!(buffer.take_rest().is_empty());
    }
}
