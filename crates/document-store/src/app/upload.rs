//! The upload pipeline: chunks stream into S3 parts while they are hashed and sniffed.
//! Memory stays bounded by `part_size * (max_parts_in_flight + 1)` per upload whatever the
//! file or chunk size, and by `max_concurrent_uploads` uploads per replica (fewer per
//! tenant, see [`FairnessSettings`](super::FairnessSettings)). A client sending below the
//! minimum data rate is cut off like an idle one. Any failure, cap
//! breach or cancellation removes everything the upload created: the multipart upload, the
//! object and the metadata row (the row stays for the abandoned-upload cleaner when a
//! CreateMultipartUpload went unanswered, see [`Written`]).
//!
//! End of stream does not prove the file is complete: hyper ends a request body cleanly
//! when the client resets its stream (CANCEL or NO_ERROR). What does prove the caller is
//! still there is the caller's own future, which hyper drops on a reset. So the upload runs
//! in a task of its own, and the caller's future holds a drop guard on `caller_gone` until
//! it has the result in hand: the task aborts while streaming if the caller goes, checks
//! again before the row becomes visible, and removes the document if the caller vanished
//! before taking the result.

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use aws_sdk_s3::types::CompletedPart;
use bytes::{Bytes, BytesMut};
use domain_kit::ids::DocumentId;
use futures::Stream;
use service_kit::dependency::unavailable_dependency;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Documents;
pub use super::receiving::ReceivedBytes;
use super::receiving::Receiving;
use super::slots::Slot;
use crate::domain::content::SNIFF_LEN;
use crate::domain::{
    ContentType, Document, DocumentError, RateWindow, Refusal, UploadHeader, check_content,
    object_key,
};
use crate::store::postgres::{self, PendingDocument, StoredContent};

/// What a client refused for capacity is told to wait before retrying.
const UPLOAD_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Attempts at CreateMultipartUpload ([`Documents::start_multipart_upload`]).
const CREATE_MULTIPART_ATTEMPTS: u32 = 3;

/// How long a failed upload waits for its part requests still in flight before aborting
/// the multipart upload.
const PARTS_SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// What an upload has sent to S3 so far: cleanup needs all of it.
struct Written {
    object: ObjectState,
    parts_in_flight: JoinSet<anyhow::Result<CompletedPart>>,
    /// A CreateMultipartUpload failed without a clear answer (connection reset, timeout):
    /// the server may still open that upload on the key after we looked, so the key is swept
    /// again at the end and, if the upload fails, its row is left for the abandoned-upload
    /// cleaner, which aborts whatever is open on the key.
    create_outcome_unknown: bool,
}

/// What became of the object while the upload ran, for cleanup.
enum ObjectState {
    Nothing,
    /// CreateMultipartUpload was sent: uploads may be open on the key whose ids we never saw.
    CreatingMultipart,
    Multipart {
        upload_id: String,
    },
    Stored,
}

/// An admitted upload: holds one of the replica's upload slots (and of its tenant's share)
/// until the upload, cleanup included, is over, and carries the upload's overall deadline.
pub struct UploadAdmission {
    _slot: Slot,
    started: Instant,
    deadline: Instant,
    received: Option<ReceivedBytes>,
}

impl UploadAdmission {
    /// Measures the upload's data rate on `received` (bytes as the transport delivers them)
    /// instead of on whole chunks.
    pub fn measuring(self, received: ReceivedBytes) -> Self {
        Self {
            received: Some(received),
            ..self
        }
    }
}

/// What the upload task needs to know about its caller.
struct Caller {
    /// Cancelled when the caller's future is dropped (client reset, hang-up, deadline).
    gone: CancellationToken,
    /// Where the result goes.
    result: oneshot::Sender<Result<Document, DocumentError>>,
    /// Completes (Ok) once the caller holds the result, or fails if it was dropped first.
    received: oneshot::Receiver<()>,
}

impl Documents {
    /// Takes one of this replica's upload slots for `tenant_id`, or refuses at once with
    /// [`DocumentError::TenantUploadCapacity`] (the tenant has its share in flight) or
    /// [`DocumentError::UploadCapacity`] (the replica is full): called before anything of
    /// the stream is read, so a refused upload buffers nothing.
    pub fn admit_upload(&self, tenant_id: &str) -> Result<UploadAdmission, DocumentError> {
        let slot = self
            .upload_slots
            .try_acquire(tenant_id)
            .map_err(|refusal| {
                let limits = self.fairness.uploads;
                let error = match refusal {
                    Refusal::Tenant => DocumentError::TenantUploadCapacity {
                        limit: limits.per_tenant,
                        retry_after: UPLOAD_RETRY_AFTER,
                    },
                    Refusal::Process => DocumentError::UploadCapacity {
                        limit: limits.per_process,
                        retry_after: UPLOAD_RETRY_AFTER,
                    },
                };
                self.upload_metrics
                    .rejected(error.upload_rejection_reason(), None);
                error
            })?;
        Ok(UploadAdmission {
            _slot: slot,
            started: Instant::now(),
            deadline: Instant::now() + self.settings.upload_deadline,
            received: None,
        })
    }

    /// Waits for the header (`read`, the transport reading the first message) for at most
    /// the header timeout, and checks it against this replica's limits.
    pub async fn receive_upload_header<F>(
        &self,
        admission: &UploadAdmission,
        read: F,
    ) -> Result<UploadHeader, DocumentError>
    where
        F: Future<Output = Result<UploadHeader, DocumentError>>,
    {
        let timeout_at = admission
            .deadline
            .min(Instant::now() + self.settings.header_timeout);
        let header: Result<UploadHeader, DocumentError> = async {
            let header = tokio::time::timeout_at(timeout_at, read)
                .await
                .map_err(|_| DocumentError::HeaderTimeout {
                    secs: self.settings.header_timeout.as_secs(),
                })??;
            header.check_size_limit(self.settings.max_bytes)?;
            Ok(header)
        }
        .await;
        if let Err(error) = &header {
            self.upload_metrics.rejected(
                error.upload_rejection_reason(),
                Some(admission.started.elapsed()),
            );
        }
        header
    }

    /// Streams `chunks` into storage as a new document of `tenant_id`. The upload runs in a
    /// task of its own so that cleanup finishes even when the caller's future is dropped;
    /// shutdown waits for these tasks ([`Documents::abort_uploads`]). The document is
    /// committed only if this future is still there to take the result.
    #[tracing::instrument(
        name = "documents.upload",
        skip_all,
        fields(tenant_id = %tenant_id, document_id = tracing::field::Empty)
    )]
    pub async fn upload<S>(
        &self,
        admission: UploadAdmission,
        tenant_id: String,
        header: UploadHeader,
        chunks: S,
    ) -> Result<Document, DocumentError>
    where
        S: Stream<Item = Result<Bytes, DocumentError>> + Send + Unpin + 'static,
    {
        let started = admission.started;
        let document_id = DocumentId::generate();
        tracing::Span::current().record("document_id", document_id.as_str());
        let gone = CancellationToken::new();
        // Dropped with this future (hyper drops it when the client resets the stream):
        // tells the task its caller is gone, until disarmed once the result is in hand.
        let hang_up = gone.clone().drop_guard();
        let (result_tx, result_rx) = oneshot::channel();
        let (received_tx, received_rx) = oneshot::channel();
        let caller = Caller {
            gone,
            result: result_tx,
            received: received_rx,
        };
        let documents = self.clone();
        self.tasks.spawn(
            async move {
                documents
                    .run_upload(admission, &tenant_id, document_id, header, chunks, caller)
                    .await;
            }
            .instrument(tracing::Span::current()),
        );
        let result = result_rx.await.map_err(|_| {
            DocumentError::Internal(anyhow::anyhow!("the upload task ended without a result"))
        })?;
        hang_up.disarm();
        let _ = received_tx.send(());
        match &result {
            Ok(document) => self.upload_metrics.stored(
                u64::try_from(document.size_bytes).unwrap_or(0),
                started.elapsed(),
            ),
            Err(error) => self
                .upload_metrics
                .rejected(error.upload_rejection_reason(), Some(started.elapsed())),
        }
        result
    }

    /// The upload task: stores the upload, hands the result to the caller, and removes the
    /// document again if the caller is not there to take it.
    async fn run_upload<S>(
        &self,
        admission: UploadAdmission,
        tenant_id: &str,
        document_id: DocumentId,
        header: UploadHeader,
        chunks: S,
        caller: Caller,
    ) where
        S: Stream<Item = Result<Bytes, DocumentError>> + Unpin,
    {
        let result = self
            .store_upload(
                tenant_id,
                document_id.as_str(),
                header,
                chunks,
                &admission,
                &caller.gone,
            )
            .await;
        let committed = result.is_ok();
        let handed_over = caller.result.send(result).is_ok() && caller.received.await.is_ok();
        if committed && !handed_over {
            // Nobody ever saw this id: the caller went between the commit and the answer.
            tracing::info!(
                document_id = document_id.as_str(),
                "caller gone before taking the upload's result; removing the document"
            );
            if let Err(error) = self.delete(tenant_id, &document_id).await {
                tracing::error!(error = ?error, document_id = document_id.as_str(), "removing an upload whose caller was gone failed");
            }
        }
        drop(admission);
    }

    /// Streams `chunks` into storage as document `document_id` of `tenant_id`.
    async fn store_upload<S>(
        &self,
        tenant_id: &str,
        document_id: &str,
        header: UploadHeader,
        chunks: S,
        admission: &UploadAdmission,
        caller_gone: &CancellationToken,
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

        let mut written = Written {
            object: ObjectState::Nothing,
            parts_in_flight: JoinSet::new(),
            create_outcome_unknown: false,
        };
        let receiving = Receiving {
            chunks,
            deadline: admission.deadline,
            caller_gone,
            rate: RateWindow::new(self.fairness.upload_rate),
            waited: Duration::ZERO,
            received: admission.received.clone(),
            counted: 0,
        };
        let result = self
            .stream_to_storage(
                tenant_id,
                document_id,
                &key,
                &header,
                receiving,
                &mut written,
            )
            .await;
        match result {
            Ok(document) => Ok(document),
            Err(error) => {
                // A part request already on the wire can still be written by the S3 server
                // after AbortMultipartUpload and leave a stray part behind: let them end first.
                let Written {
                    object,
                    mut parts_in_flight,
                    create_outcome_unknown,
                } = written;
                let settle = async { while parts_in_flight.join_next().await.is_some() {} };
                if tokio::time::timeout(PARTS_SETTLE_TIMEOUT, settle)
                    .await
                    .is_err()
                {
                    parts_in_flight.abort_all();
                }
                self.clean_up_failed_upload(
                    tenant_id,
                    document_id,
                    &key,
                    object,
                    create_outcome_unknown,
                )
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
        mut receiving: Receiving<'_, S>,
        written: &mut Written,
    ) -> Result<Document, DocumentError>
    where
        S: Stream<Item = Result<Bytes, DocumentError>> + Unpin,
    {
        let object = &mut written.object;
        let parts_in_flight = &mut written.parts_in_flight;
        let create_outcome_unknown = &mut written.create_outcome_unknown;
        let settings = self.settings;
        let mut hasher = Sha256::new();
        let mut buffer = PartBuffer::new(settings.part_size);
        let mut prefix: Vec<u8> = Vec::with_capacity(SNIFF_LEN);
        let mut total: u64 = 0;
        let mut detected: Option<ContentType> = None;
        let mut completed_parts = Vec::new();
        let mut next_part_number = 1;

        while let Some(chunk) = receiving.next_chunk(self, settings).await? {
            total += chunk.len() as u64;
            header.check_size_so_far(total)?;
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
            // Copied into the part buffer, so the chunk's own allocation (for a tiny chunk,
            // a whole decode buffer) is released right here.
            buffer.push(&chunk);
            drop(chunk);

            while let Some(part) = buffer.take_full_part() {
                let upload_id = match object {
                    ObjectState::Multipart { upload_id } => upload_id.clone(),
                    _ => {
                        *object = ObjectState::CreatingMultipart;
                        let upload_id = self
                            .start_multipart_upload(key, create_outcome_unknown)
                            .await?;
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
                    completed_parts.push(join_part(parts_in_flight).await?);
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

        header.check_final_size(total)?;
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
                    completed_parts.push(join_part(parts_in_flight).await?);
                }
                self.objects
                    .complete_multipart_upload(key, &upload_id, completed_parts, total)
                    .await?;
                *object = ObjectState::Stored;
                if *create_outcome_unknown {
                    // Ours is complete, so whatever is still open on the key is a stray
                    // from the attempt whose answer was lost.
                    if let Err(error) = self.objects.abort_open_multipart_uploads(key).await {
                        tracing::error!(error = ?error, document_id, "aborting a stray multipart upload on the key failed");
                    }
                }
            }
            _ => {
                // Mark first: a put that fails after the server stored the bytes must still
                // be cleaned up.
                *object = ObjectState::Stored;
                self.objects.put_object(key, buffer.take_rest()).await?;
            }
        }

        // The last point where nothing is visible yet: a caller gone by now (reset after a
        // clean end of stream, deadline passed during completion) gets nothing stored.
        if receiving.caller_gone.is_cancelled() {
            return Err(DocumentError::Cancelled);
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
    /// CreateMultipartUpload, retried here rather than by the SDK: before each retry every
    /// upload open on the key is aborted, so an attempt whose answer was lost leaves nothing
    /// behind. If that cleanup fails the upload fails, and its cleanup tries again. An
    /// attempt that failed without a clear answer sets `outcome_unknown`: its request may
    /// still reach the server after the abort (see [`Written`]).
    async fn start_multipart_upload(
        &self,
        key: &str,
        outcome_unknown: &mut bool,
    ) -> anyhow::Result<String> {
        let mut attempt = 1;
        loop {
            match self.objects.create_multipart_upload_once(key).await {
                Ok(upload_id) => return Ok(upload_id),
                Err(error) => {
                    let transient = unavailable_dependency(&error).is_some();
                    *outcome_unknown |= transient;
                    if !transient || attempt >= CREATE_MULTIPART_ATTEMPTS {
                        return Err(error);
                    }
                    tracing::warn!(error = ?error, attempt, "create multipart upload failed; retrying");
                    self.objects.abort_open_multipart_uploads(key).await?;
                    attempt += 1;
                }
            }
        }
    }

    async fn clean_up_failed_upload(
        &self,
        tenant_id: &str,
        document_id: &str,
        key: &str,
        object: ObjectState,
        create_outcome_unknown: bool,
    ) {
        let object_cleanup = match &object {
            ObjectState::Nothing => Ok(()),
            // Every upload open on the key: ours, and any a CreateMultipartUpload without an
            // answer opened. (After a completed upload its key was swept already.)
            ObjectState::CreatingMultipart => self.objects.abort_open_multipart_uploads(key).await,
            ObjectState::Multipart { .. } if create_outcome_unknown => {
                self.objects.abort_open_multipart_uploads(key).await
            }
            ObjectState::Multipart { upload_id } => {
                self.objects.abort_multipart_upload(key, upload_id).await
            }
            ObjectState::Stored => {
                // The step that failed may have been marking the row available: its commit
                // can succeed while the answer is lost. The object then belongs to an
                // available document and must stay; if the row cannot be read, both are
                // left for the abandoned-upload cleaner.
                match postgres::document_state(&self.pool, tenant_id, document_id).await {
                    Ok(Some(state)) if state != "pending" => {
                        tracing::warn!(
                            document_id,
                            state,
                            "upload failed after its row was committed; keeping the document"
                        );
                        return;
                    }
                    Ok(_) => self.objects.delete_object(key).await,
                    Err(error) => {
                        tracing::error!(error = ?error, document_id, "cannot read a failed upload's row; left for the cleaner");
                        return;
                    }
                }
            }
        };
        if let Err(error) = object_cleanup {
            tracing::error!(error = ?error, document_id, "cleanup of a failed upload's object failed");
            // Keep the row so the sweeper finds the leftover later.
            return;
        }
        if create_outcome_unknown {
            // Aborting now is not enough: the lost CreateMultipartUpload can still open an
            // upload after it. The row stays (pending, invisible to clients) until the
            // abandoned-upload cleaner aborts everything open on the key.
            tracing::info!(
                document_id,
                "failed upload left for the abandoned-upload cleaner: a CreateMultipartUpload without an answer may still open an upload"
            );
            return;
        }
        if let Err(error) =
            postgres::delete_pending_document(&self.pool, tenant_id, document_id).await
        {
            tracing::error!(error = ?error, document_id, "cleanup of a failed upload's row failed");
        }
    }
}

/// Coalesces chunks into parts of exactly `part_size` bytes. Every chunk is copied into a
/// buffer allocated once at part size, so neither the number nor the size of chunks changes
/// memory: a 1-byte chunk kept as its own `Bytes` would pin a whole decode buffer. At most
/// one full part waits here (until a further byte shows it is not the last one), and the
/// buffer being filled is allocated only when its first byte arrives, so an upload never
/// holds more than one part here besides those in flight.
struct PartBuffer {
    part_size: usize,
    /// Full parts not yet taken.
    full: VecDeque<Bytes>,
    /// The part being filled (no allocation while empty).
    filling: BytesMut,
}

impl PartBuffer {
    fn new(part_size: usize) -> Self {
        Self {
            part_size,
            full: VecDeque::new(),
            filling: BytesMut::new(),
        }
    }

    fn push(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            if self.filling.capacity() == 0 {
                self.filling = BytesMut::with_capacity(self.part_size);
            }
            let room = self.part_size - self.filling.len();
            let (now, rest) = chunk.split_at(room.min(chunk.len()));
            self.filling.extend_from_slice(now);
            chunk = rest;
            if self.filling.len() == self.part_size {
                self.full
                    .push_back(std::mem::take(&mut self.filling).freeze());
            }
        }
    }

    /// A full part, once more bytes follow it, so the last part is never empty.
    fn take_full_part(&mut self) -> Option<Bytes> {
        let more_follow = self.full.len() > 1 || !self.filling.is_empty();
        if more_follow {
            self.full.pop_front()
        } else {
            None
        }
    }

    /// Everything buffered (the last part, or the whole of a small file), once every full
    /// part but the last was taken.
    fn take_rest(&mut self) -> Bytes {
        match self.full.pop_front() {
            Some(part) => part,
            None => std::mem::take(&mut self.filling).freeze(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_cut_exactly_and_keep_byte_order() {
        let data: Vec<u8> = (0..100u8).collect();
        let mut buffer = PartBuffer::new(30);
        let mut parts = Vec::new();
        for chunk in data.chunks(7) {
            buffer.push(chunk);
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
        buffer.push(b"0123456789");
        assert!(buffer.take_full_part().is_none());
        assert_eq!(buffer.take_rest(), Bytes::from_static(b"0123456789"));
        buffer.push(b"");
        assert!(buffer.take_rest().is_empty());
    }

    #[test]
    fn one_byte_chunks_fill_one_allocation_per_part() {
        let data: Vec<u8> = (0..=255u8).cycle().take(25).collect();
        let mut buffer = PartBuffer::new(10);
        let mut parts = Vec::new();
        for byte in &data {
            buffer.push(std::slice::from_ref(byte));
            assert!(buffer.filling.capacity() <= 10, "never grows past a part");
            while let Some(part) = buffer.take_full_part() {
                parts.push(part);
            }
        }
        parts.push(buffer.take_rest());
        assert_eq!(
            parts.iter().map(Bytes::len).collect::<Vec<_>>(),
            vec![10, 10, 5]
        );
        assert_eq!(parts.concat(), data);
    }

    #[test]
    fn a_chunk_larger_than_two_parts_is_cut_too() {
        let data: Vec<u8> = (0..=255u8).cycle().take(35).collect();
        let mut buffer = PartBuffer::new(10);
        buffer.push(&data);
        let mut parts = Vec::new();
        while let Some(part) = buffer.take_full_part() {
            parts.push(part);
        }
        parts.push(buffer.take_rest());
        assert_eq!(
            parts.iter().map(Bytes::len).collect::<Vec<_>>(),
            vec![10, 10, 10, 5]
        );
        assert_eq!(parts.concat(), data);
    }
}
