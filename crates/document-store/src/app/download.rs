//! Downloading a document, whole or a byte range, as a stream of bounded chunks.
//!
//! Each download holds one of the replica's download slots (capped per replica and per
//! tenant) for as long as it reads the object. The object is read by a task of its own that
//! hands chunks over one at a time: it ends, giving its slot back, when the stream is done,
//! when the client goes (hyper drops the response stream), or when the client takes no chunk
//! for the stall timeout. In that last case the stream ends with
//! [`DocumentError::DownloadStalled`] after the chunk already handed over.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use domain_kit::ids::DocumentId;
use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::Documents;
use super::slots::Slot;
use crate::domain::{Document, DocumentError, Refusal, byte_range};

/// Largest chunk of a download.
const DOWNLOAD_CHUNK_BYTES: usize = 256 * 1024;
/// What a client refused for capacity is told to wait before retrying.
const DOWNLOAD_RETRY_AFTER: Duration = Duration::from_secs(1);

/// A download: the document's metadata and its bytes in chunks of at most 256 KiB. The stream
/// yields at least one chunk (empty if there are no bytes) and ends after an error.
pub struct Download<S> {
    pub document: Document,
    pub chunks: S,
}

impl Documents {
    /// Opens the bytes of an available document of `tenant_id`: all of them, or `length`
    /// bytes from `offset` (0 = to the end). Refused at once, before any lookup, when the
    /// tenant or the replica has its cap of downloads open.
    pub async fn download(
        &self,
        tenant_id: &str,
        id: &DocumentId,
        offset: i64,
        length: i64,
    ) -> Result<
        Download<impl Stream<Item = Result<Bytes, DocumentError>> + Send + 'static>,
        DocumentError,
    > {
        let slot = self.admit_download(tenant_id)?;
        let stored = self.find(tenant_id, id).await?;
        let range = byte_range(offset, length, stored.document.size_bytes)?;
        let whole = range.first == 0 && range.last + 1 == stored.document.size_bytes as u64;
        let body = self
            .objects
            .get_object(&stored.object_key, (!whole).then(|| range.http_header()))
            .await?;
        // One chunk waits in the channel: the reader is at most one chunk ahead of hyper.
        let (chunks_tx, mut chunks_rx) = mpsc::channel(1);
        let (stalled_tx, stalled_rx) = oneshot::channel();
        // Reading the object stays inside the call's span.
        tokio::spawn(
            feed_download(
                rechunk(body),
                chunks_tx,
                stalled_tx,
                self.fairness.download_stall_timeout,
                slot,
            )
            .instrument(tracing::Span::current()),
        );
        let chunks = async_stream::stream! {
            while let Some(chunk) = chunks_rx.recv().await {
                yield chunk;
            }
            // The reader gave up on a client that took nothing: say so rather than end as
            // if the file were complete.
            if let Ok(stalled) = stalled_rx.await {
                yield Err(stalled);
            }
        };
        Ok(Download {
            document: stored.document,
            chunks,
        })
    }

    fn admit_download(&self, tenant_id: &str) -> Result<Slot, DocumentError> {
        self.download_slots
            .try_acquire(tenant_id)
            .map_err(|refusal| {
                let limits = self.fairness.downloads;
                match refusal {
                    Refusal::Tenant => DocumentError::TenantDownloadCapacity {
                        limit: limits.per_tenant,
                        retry_after: DOWNLOAD_RETRY_AFTER,
                    },
                    Refusal::Process => DocumentError::DownloadCapacity {
                        limit: limits.per_process,
                        retry_after: DOWNLOAD_RETRY_AFTER,
                    },
                }
            })
    }
}

/// The reader task of one download: hands `chunks` over until the end, the client going, or
/// the client taking nothing for `stall_timeout`; holds `_slot` until then.
async fn feed_download<S>(
    chunks: S,
    chunks_tx: mpsc::Sender<Result<Bytes, DocumentError>>,
    stalled_tx: oneshot::Sender<DocumentError>,
    stall_timeout: Duration,
    _slot: Slot,
) where
    S: Stream<Item = Result<Bytes, DocumentError>>,
{
    let mut chunks = std::pin::pin!(chunks);
    loop {
        let next = tokio::select! {
            // The response stream was dropped: the client went away.
            _ = chunks_tx.closed() => return,
            next = chunks.next() => next,
        };
        let Some(chunk) = next else { return };
        let last = chunk.is_err();
        match chunks_tx.send_timeout(chunk, stall_timeout).await {
            Ok(()) if !last => {}
            Ok(()) => return,
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                let _ = stalled_tx.send(DocumentError::DownloadStalled {
                    timeout: stall_timeout,
                });
                return;
            }
            Err(mpsc::error::SendTimeoutError::Closed(_)) => return,
        }
    }
}

/// The object's body in chunks of exactly [`DOWNLOAD_CHUNK_BYTES`] (the last one shorter),
/// at least one chunk (empty if there are no bytes), ending after an error.
fn rechunk(
    mut body: aws_sdk_s3::primitives::ByteStream,
) -> impl Stream<Item = Result<Bytes, DocumentError>> + Send + 'static {
    async_stream::stream! {
        let mut pending = BytesMut::new();
        let mut sent_any = false;
        loop {
            match body.next().await {
                Some(Ok(bytes)) => {
                    pending.extend_from_slice(&bytes);
                    while pending.len() >= DOWNLOAD_CHUNK_BYTES {
                        sent_any = true;
                        yield Ok(pending.split_to(DOWNLOAD_CHUNK_BYTES).freeze());
                    }
                }
                Some(Err(error)) => {
                    yield Err(DocumentError::Internal(anyhow::Error::new(error).context("read object body")));
                    return;
                }
                None => break,
            }
        }
        if !pending.is_empty() || !sent_any {
            yield Ok(pending.freeze());
        }
    }
}
