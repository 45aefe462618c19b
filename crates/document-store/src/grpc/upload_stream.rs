//! An upload's message stream as the domain sees it: a header, then byte chunks.

use bytes::Bytes;
use disputes_proto::documents_v1 as pb;
use domain_kit::violation::Violation;
use futures::{Stream, StreamExt};
use tonic::Streaming;

use super::convert::upload_header;
use crate::domain::{DocumentError, UploadHeader};

/// A request that is malformed as a stream (no header first, two headers, ...).
fn stream_violation(field: &str, description: &str) -> DocumentError {
    Violation::new(field, description).into()
}

/// Reads and checks the header message that must open the stream.
pub async fn read_header(
    stream: &mut Streaming<pb::UploadDocumentRequest>,
) -> Result<UploadHeader, DocumentError> {
    let first = stream
        .message()
        .await
        .map_err(|_| DocumentError::Cancelled)?
        .ok_or_else(|| stream_violation("header", "the stream must start with a header"))?;
    match first.payload {
        Some(pb::upload_document_request::Payload::Header(header)) => upload_header(&header),
        _ => Err(stream_violation(
            "header",
            "the stream must start with a header",
        )),
    }
}

/// The rest of the stream, after the header, as byte chunks.
pub fn chunks(
    stream: Streaming<pb::UploadDocumentRequest>,
) -> impl Stream<Item = Result<Bytes, DocumentError>> + Send + Unpin + 'static {
    stream.map(|message| match message {
        Ok(pb::UploadDocumentRequest {
            payload: Some(pb::upload_document_request::Payload::Chunk(chunk)),
        }) => Ok(chunk),
        Ok(_) => Err(stream_violation(
            "header",
            "only the first message may carry a header",
        )),
        // The client reset the stream or the connection dropped.
        Err(_) => Err(DocumentError::Cancelled),
    })
}
