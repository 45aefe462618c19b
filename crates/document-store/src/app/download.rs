//! Downloading a document, whole or a byte range, as a stream of bounded chunks.

use bytes::{Bytes, BytesMut};
use domain_kit::ids::DocumentId;
use futures::Stream;

use super::Documents;
use crate::domain::{Document, DocumentError, byte_range};

/// Largest chunk of a download.
const DOWNLOAD_CHUNK_BYTES: usize = 256 * 1024;

/// A download: the document's metadata and its bytes in chunks of at most 256 KiB. The stream
/// yields at least one chunk (empty if there are no bytes) and ends after an error.
pub struct Download<S> {
    pub document: Document,
    pub chunks: S,
}

impl Documents {
    /// Opens the bytes of an available document of `tenant_id`: all of them, or `length`
    /// bytes from `offset` (0 = to the end).
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
        let stored = self.find(tenant_id, id).await?;
        let range = byte_range(offset, length, stored.document.size_bytes)?;
        let whole = range.first == 0 && range.last + 1 == stored.document.size_bytes as u64;
        let mut body = self
            .objects
            .get_object(&stored.object_key, (!whole).then(|| range.http_header()))
            .await?;
        let chunks = async_stream::stream! {
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
        };
        Ok(Download {
            document: stored.document,
            chunks,
        })
    }
}
