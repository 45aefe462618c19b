//! documents.v1.DocumentService over gRPC: read the caller, convert, call one function,
//! map the result.

pub mod convert;
pub mod status;

use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use disputes_proto::documents_v1 as pb;
use disputes_proto::documents_v1::document_service_server::DocumentService;
use futures::{Stream, StreamExt};
use service_kit::auth::{Caller, Scope};
use service_kit::errors::Violation;
use service_kit::ids::{is_valid_id, new_id};
use service_kit::page_token::{
    PageCursor, decode_page_token, effective_page_size, encode_page_token,
};
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::domain::{DocumentError, UploadHeader, byte_range};
use crate::store::postgres::{self, DeleteOutcome};
use crate::upload::Uploads;
use status::stream_violation;

/// Largest chunk sent in one download message.
const DOWNLOAD_CHUNK_BYTES: usize = 256 * 1024;

pub struct DocumentServiceHandler {
    uploads: Uploads,
}

impl DocumentServiceHandler {
    pub fn new(uploads: Uploads) -> Self {
        Self { uploads }
    }
}

fn document_id(field: &str, id: &str) -> Result<(), DocumentError> {
    if is_valid_id("doc", id) {
        Ok(())
    } else {
        Err(DocumentError::Validation(vec![Violation::new(
            field,
            "must be a document id (doc_...)",
        )]))
    }
}

/// Most ids one batch call takes.
const MAX_BATCH_IDS: usize = 100;

/// Checks a batch of document ids: 1 to 100 well-formed ids, duplicates removed.
fn batch_ids(ids: Vec<String>) -> Result<Vec<String>, DocumentError> {
    let mut violations = Vec::new();
    if ids.is_empty() || ids.len() > MAX_BATCH_IDS {
        violations.push(Violation::new(
            "ids",
            format!("must hold 1 to {MAX_BATCH_IDS} ids"),
        ));
    }
    for (i, id) in ids.iter().enumerate() {
        if !is_valid_id("doc", id) {
            violations.push(Violation::new(
                format!("ids[{i}]"),
                "must be a document id (doc_...)",
            ));
        }
    }
    if !violations.is_empty() {
        return Err(DocumentError::Validation(violations));
    }
    let mut unique = Vec::with_capacity(ids.len());
    for id in ids {
        if !unique.contains(&id) {
            unique.push(id);
        }
    }
    Ok(unique)
}

/// Puts documents in the order of `ids`.
fn in_request_order(
    ids: &[String],
    mut documents: Vec<crate::domain::Document>,
) -> Vec<pb::Document> {
    documents.sort_by_key(|d| ids.iter().position(|id| *id == d.id));
    documents.into_iter().map(Into::into).collect()
}

/// Reads the header message, then turns the rest of the stream into byte chunks.
async fn read_header(
    stream: &mut Streaming<pb::UploadDocumentRequest>,
) -> Result<UploadHeader, DocumentError> {
    let first = stream
        .message()
        .await
        .map_err(|_| DocumentError::Cancelled)?
        .ok_or_else(|| stream_violation("header", "the stream must start with a header"))?;
    match first.payload {
        Some(pb::upload_document_request::Payload::Header(header)) => UploadHeader::parse(
            &header.filename,
            &header.content_type,
            &header.dispute_id,
            &header.expected_sha256,
        ),
        _ => Err(stream_violation(
            "header",
            "the stream must start with a header",
        )),
    }
}

fn chunks(
    stream: Streaming<pb::UploadDocumentRequest>,
) -> impl Stream<Item = Result<Bytes, DocumentError>> + Unpin {
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

type DownloadStream =
    Pin<Box<dyn Stream<Item = Result<pb::DownloadDocumentResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DocumentService for DocumentServiceHandler {
    async fn upload_document(
        &self,
        request: Request<Streaming<pb::UploadDocumentRequest>>,
    ) -> Result<Response<pb::UploadDocumentResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::DocumentsWrite)?;
        let mut stream = request.into_inner();
        let header = read_header(&mut stream).await?;
        let uploads = self.uploads.clone();
        let document_id = new_id("doc");
        tracing::Span::current().record("document_id", document_id.as_str());
        // Run in a task of its own: if the client hangs up, hyper drops this future, and
        // the task still sees the broken stream and removes what the upload created.
        let task = self.uploads.tasks.spawn(
            async move {
                uploads
                    .upload(&caller.tenant_id, &document_id, header, chunks(stream))
                    .await
            }
            .instrument(tracing::Span::current()),
        );
        let document = task
            .await
            .map_err(|e| DocumentError::Internal(e.into()))??;
        Ok(Response::new(pb::UploadDocumentResponse {
            document: Some(document.into()),
        }))
    }

    async fn get_document(
        &self,
        request: Request<pb::GetDocumentRequest>,
    ) -> Result<Response<pb::GetDocumentResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::DocumentsRead)?;
        let id = request.into_inner().id;
        document_id("id", &id)?;
        let stored = postgres::find_available_document(&self.uploads.pool, &caller.tenant_id, &id)
            .await
            .map_err(DocumentError::from)?
            .ok_or(DocumentError::NotFound { id })?;
        Ok(Response::new(pb::GetDocumentResponse {
            document: Some(stored.document.into()),
        }))
    }

    type DownloadDocumentStream = DownloadStream;

    async fn download_document(
        &self,
        request: Request<pb::DownloadDocumentRequest>,
    ) -> Result<Response<Self::DownloadDocumentStream>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::DocumentsRead)?;
        let request = request.into_inner();
        document_id("id", &request.id)?;
        let stored =
            postgres::find_available_document(&self.uploads.pool, &caller.tenant_id, &request.id)
                .await
                .map_err(DocumentError::from)?
                .ok_or(DocumentError::NotFound {
                    id: request.id.clone(),
                })?;
        let range = byte_range(request.offset, request.length, stored.document.size_bytes)?;
        let whole = range.first == 0 && range.last + 1 == stored.document.size_bytes as u64;
        let mut body = self
            .uploads
            .objects
            .get_object(&stored.object_key, (!whole).then(|| range.http_header()))
            .await
            .map_err(DocumentError::from)?;
        let mut document = Some(pb::Document::from(stored.document));
        let stream = async_stream::stream! {
            let mut pending = BytesMut::new();
            loop {
                match body.next().await {
                    Some(Ok(bytes)) => {
                        pending.extend_from_slice(&bytes);
                        while pending.len() >= DOWNLOAD_CHUNK_BYTES {
                            let chunk = pending.split_to(DOWNLOAD_CHUNK_BYTES).freeze();
                            yield Ok(pb::DownloadDocumentResponse { document: document.take(), chunk });
                        }
                    }
                    Some(Err(error)) => {
                        yield Err(Status::from(DocumentError::Internal(anyhow::Error::new(error).context("read object body"))));
                        return;
                    }
                    None => break,
                }
            }
            if !pending.is_empty() || document.is_some() {
                yield Ok(pb::DownloadDocumentResponse { document: document.take(), chunk: pending.freeze() });
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_documents(
        &self,
        request: Request<pb::ListDocumentsRequest>,
    ) -> Result<Response<pb::ListDocumentsResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::DocumentsRead)?;
        let request = request.into_inner();
        let mut violations = Vec::new();
        if !request.dispute_id.is_empty() && !is_valid_id("dsp", &request.dispute_id) {
            violations.push(Violation::new(
                "dispute_id",
                "must be a dispute id (dsp_...)",
            ));
        }
        if request.page_size < 0 {
            violations.push(Violation::new("page_size", "must not be negative"));
        }
        let fingerprint = format!("dispute={}", request.dispute_id);
        let cursor = decode_page_token(&request.page_token, &fingerprint).unwrap_or_else(|e| {
            violations.push(Violation::new("page_token", e.to_string()));
            None
        });
        if !violations.is_empty() {
            return Err(DocumentError::Validation(violations).into());
        }
        let page_size = effective_page_size(request.page_size);
        let dispute_id = (!request.dispute_id.is_empty()).then_some(request.dispute_id.as_str());
        let mut documents = postgres::list_available_documents(
            &self.uploads.pool,
            &caller.tenant_id,
            dispute_id,
            cursor.as_ref(),
            page_size + 1,
        )
        .await
        .map_err(DocumentError::from)?;
        let next_page_token = if documents.len() as i64 > page_size {
            documents.truncate(page_size as usize);
            documents
                .last()
                .map(|last| {
                    encode_page_token(
                        &PageCursor {
                            create_time: last.create_time,
                            id: last.id.clone(),
                        },
                        &fingerprint,
                    )
                })
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListDocumentsResponse {
            documents: documents.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }

    async fn delete_document(
        &self,
        request: Request<pb::DeleteDocumentRequest>,
    ) -> Result<Response<pb::DeleteDocumentResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::DocumentsWrite)?;
        let id = request.into_inner().id;
        document_id("id", &id)?;
        let mut tx = self
            .uploads
            .pool
            .begin()
            .await
            .map_err(|e| DocumentError::Internal(e.into()))?;
        match postgres::delete_unlocked_document(&mut tx, &caller.tenant_id, &id)
            .await
            .map_err(DocumentError::from)?
        {
            DeleteOutcome::NotFound => return Err(DocumentError::NotFound { id }.into()),
            DeleteOutcome::Locked => return Err(DocumentError::Locked { id }.into()),
            DeleteOutcome::Deleted { object_key } => {
                // The row goes only if the bytes went: a failed delete keeps both.
                self.uploads
                    .objects
                    .delete_object(&object_key)
                    .await
                    .map_err(DocumentError::from)?;
            }
        }
        tx.commit()
            .await
            .map_err(|e| DocumentError::Internal(e.into()))?;
        Ok(Response::new(pb::DeleteDocumentResponse {}))
    }

    async fn batch_get_documents(
        &self,
        request: Request<pb::BatchGetDocumentsRequest>,
    ) -> Result<Response<pb::BatchGetDocumentsResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::DocumentsRead)?;
        let ids = batch_ids(request.into_inner().ids)?;
        let found = postgres::find_available_documents(&self.uploads.pool, &caller.tenant_id, &ids)
            .await
            .map_err(DocumentError::from)?;
        let missing_ids = ids
            .iter()
            .filter(|id| !found.iter().any(|d| d.id == **id))
            .cloned()
            .collect();
        Ok(Response::new(pb::BatchGetDocumentsResponse {
            documents: in_request_order(&ids, found),
            missing_ids,
        }))
    }

    async fn lock_documents(
        &self,
        request: Request<pb::LockDocumentsRequest>,
    ) -> Result<Response<pb::LockDocumentsResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::DocumentsWrite)?;
        let ids = batch_ids(request.into_inner().ids)?;
        let mut tx = self
            .uploads
            .pool
            .begin()
            .await
            .map_err(|e| DocumentError::Internal(e.into()))?;
        let locked = postgres::lock_documents(&mut tx, &caller.tenant_id, &ids)
            .await
            .map_err(DocumentError::from)?;
        // All or nothing: an unknown id leaves every document as it was.
        if let Some(missing) = ids.iter().find(|id| !locked.iter().any(|d| d.id == **id)) {
            return Err(DocumentError::NotFound {
                id: missing.clone(),
            }
            .into());
        }
        tx.commit()
            .await
            .map_err(|e| DocumentError::Internal(e.into()))?;
        Ok(Response::new(pb::LockDocumentsResponse {
            documents: in_request_order(&ids, locked),
        }))
    }
}
