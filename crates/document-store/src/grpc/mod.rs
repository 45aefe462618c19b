//! documents.v1.DocumentService over gRPC: authorize the caller, convert the request, call
//! one use case of [`Documents`], convert the result. Errors become a `Status` in one place
//! (`status.rs`).

pub mod convert;
pub mod received;
pub mod status;
pub mod upload_stream;

use std::pin::Pin;

use disputes_proto::documents_v1 as pb;
use disputes_proto::documents_v1::document_service_server::DocumentService;
use futures::{Stream, StreamExt};
use service_kit::auth::{Caller, Scope};
use tonic::{Request, Response, Status, Streaming};

use crate::app::Documents;
use crate::app::upload::ReceivedBytes;

pub struct DocumentServiceHandler {
    documents: Documents,
}

impl DocumentServiceHandler {
    pub fn new(documents: Documents) -> Self {
        Self { documents }
    }
}

/// The caller, if its token grants `scope`.
fn authorize<T>(request: &Request<T>, scope: Scope) -> Result<Caller, Status> {
    let caller = Caller::of(request)?;
    caller.require(scope)?;
    Ok(caller)
}

/// The caller of LockDocuments or UnlockDocuments: a tenant's token with
/// `documents:write`, or dispute-core's background credential, which grants only
/// `documents:lock` and acts for the tenant the call names (so it can release the locks
/// of submissions that did not happen, and nothing else).
fn authorize_locking<T>(request: &Request<T>) -> Result<Caller, Status> {
    let caller = Caller::of(request)?;
    if caller.has(Scope::DocumentsLock) {
        return Ok(caller);
    }
    caller.require(Scope::DocumentsWrite)?;
    Ok(caller)
}

type DownloadStream =
    Pin<Box<dyn Stream<Item = Result<pb::DownloadDocumentResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DocumentService for DocumentServiceHandler {
    async fn upload_document(
        &self,
        request: Request<Streaming<pb::UploadDocumentRequest>>,
    ) -> Result<Response<pb::UploadDocumentResponse>, Status> {
        let caller = authorize(&request, Scope::DocumentsWrite)?;
        // Admission first: a refused upload has not read (or buffered) any of its stream.
        let mut admission = self.documents.admit_upload(&caller.tenant_id)?;
        if let Some(received) = request.extensions().get::<ReceivedBytes>() {
            admission = admission.measuring(received.clone());
        }
        let mut stream = request.into_inner();
        let header = self
            .documents
            .receive_upload_header(&admission, upload_stream::read_header(&mut stream))
            .await?;
        let document = self
            .documents
            .upload(
                admission,
                caller.tenant_id,
                header,
                upload_stream::chunks(stream),
            )
            .await?;
        Ok(Response::new(pb::UploadDocumentResponse {
            document: Some(document.into()),
        }))
    }

    async fn get_document(
        &self,
        request: Request<pb::GetDocumentRequest>,
    ) -> Result<Response<pb::GetDocumentResponse>, Status> {
        let caller = authorize(&request, Scope::DocumentsRead)?;
        let id = convert::requested_id(&request.get_ref().id)?;
        let document = self.documents.get(&caller.tenant_id, &id).await?;
        Ok(Response::new(pb::GetDocumentResponse {
            document: Some(document.into()),
        }))
    }

    type DownloadDocumentStream = DownloadStream;

    async fn download_document(
        &self,
        request: Request<pb::DownloadDocumentRequest>,
    ) -> Result<Response<Self::DownloadDocumentStream>, Status> {
        let caller = authorize(&request, Scope::DocumentsRead)?;
        let request = request.into_inner();
        let id = convert::requested_id(&request.id)?;
        let download = self
            .documents
            .download(&caller.tenant_id, &id, request.offset, request.length)
            .await?;
        // The metadata rides on the first message only.
        let mut document = Some(pb::Document::from(download.document));
        let messages = download.chunks.map(move |chunk| {
            Ok(pb::DownloadDocumentResponse {
                document: document.take(),
                chunk: chunk?,
            })
        });
        Ok(Response::new(Box::pin(messages)))
    }

    async fn list_documents(
        &self,
        request: Request<pb::ListDocumentsRequest>,
    ) -> Result<Response<pb::ListDocumentsResponse>, Status> {
        let caller = authorize(&request, Scope::DocumentsRead)?;
        let query = convert::list_query(request.get_ref())?;
        let page = self.documents.list(&caller.tenant_id, &query).await?;
        Ok(Response::new(pb::ListDocumentsResponse {
            documents: convert::documents(page.documents),
            next_page_token: page.next_page_token,
        }))
    }

    async fn delete_document(
        &self,
        request: Request<pb::DeleteDocumentRequest>,
    ) -> Result<Response<pb::DeleteDocumentResponse>, Status> {
        let caller = authorize(&request, Scope::DocumentsWrite)?;
        let id = convert::requested_id(&request.get_ref().id)?;
        self.documents.delete(&caller.tenant_id, &id).await?;
        Ok(Response::new(pb::DeleteDocumentResponse {}))
    }

    async fn batch_get_documents(
        &self,
        request: Request<pb::BatchGetDocumentsRequest>,
    ) -> Result<Response<pb::BatchGetDocumentsResponse>, Status> {
        let caller = authorize(&request, Scope::DocumentsRead)?;
        let ids = convert::requested_ids(&request.get_ref().ids)?;
        let batch = self.documents.batch_get(&caller.tenant_id, &ids).await?;
        Ok(Response::new(pb::BatchGetDocumentsResponse {
            documents: convert::documents(batch.documents),
            missing_ids: batch.missing_ids.into_iter().map(String::from).collect(),
        }))
    }

    async fn lock_documents(
        &self,
        request: Request<pb::LockDocumentsRequest>,
    ) -> Result<Response<pb::LockDocumentsResponse>, Status> {
        let caller = authorize_locking(&request)?;
        let ids = convert::requested_ids(&request.get_ref().ids)?;
        let holder = convert::lock_holder(&request.get_ref().lock_id, false)?;
        let locked = self
            .documents
            .lock(&caller.tenant_id, &ids, &holder)
            .await?;
        Ok(Response::new(pb::LockDocumentsResponse {
            documents: convert::documents(locked),
        }))
    }

    async fn unlock_documents(
        &self,
        request: Request<pb::UnlockDocumentsRequest>,
    ) -> Result<Response<pb::UnlockDocumentsResponse>, Status> {
        let caller = authorize_locking(&request)?;
        let ids = convert::requested_ids(&request.get_ref().ids)?;
        let holder = convert::lock_holder(&request.get_ref().lock_id, true)?;
        self.documents
            .unlock(&caller.tenant_id, &ids, &holder)
            .await?;
        Ok(Response::new(pb::UnlockDocumentsResponse {}))
    }
}
