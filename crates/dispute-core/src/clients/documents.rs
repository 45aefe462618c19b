//! The client to document-store. Calls carry the caller's bearer token (document-store
//! scopes them to the same tenant) and the current trace context.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use disputes_proto::documents_v1 as pb;
use disputes_proto::documents_v1::document_service_client::DocumentServiceClient;
use domain_kit::ids::DisputeId;
use hyper_util::rt::TokioIo;
use secrecy::SecretString;
use service_kit::auth::{Caller, Scope, TokenVerifier, mint_token, missing_scope_of};
use service_kit::propagation::GrpcClientTrace;
use service_kit::time::instant;
use tokio::net::TcpStream;
use tonic::Code;
use tonic::codegen::Service;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::domain::DisputeError;
use crate::domain::evidence::DisputeDocument;

/// Per-call deadline for document-store.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Safety bound on the documents GetDispute reads for one dispute.
const MAX_DOCUMENT_PAGES: usize = 20;

#[derive(Clone)]
pub struct DocumentsClient {
    /// Each call is a client span whose context document-store joins.
    client: DocumentServiceClient<GrpcClientTrace<Channel>>,
    /// How background jobs call for a tenant without a caller (the repair worker releasing
    /// a lock): tokens minted with the shared key. `None`: they cannot.
    service: Option<ServiceIdentity>,
}

#[derive(Clone)]
struct ServiceIdentity {
    secret: SecretString,
    verifier: TokenVerifier,
}

/// Subject of the tokens dispute-core mints for its background jobs.
const SERVICE_SUBJECT: &str = "dispute-core";

impl DocumentsClient {
    /// Connects lazily: dispute-core starts even while document-store is still starting.
    pub fn connect_lazy(url: &str) -> anyhow::Result<Self> {
        Self::connect_lazy_with_tls(url, None)
    }

    /// [`DocumentsClient::connect_lazy`]; an `https://` URL is reached over TLS trusting the
    /// system roots plus `ca_file` (PEM) when given.
    pub fn connect_lazy_with_tls(
        url: &str,
        ca_file: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        let mut endpoint = Endpoint::from_shared(url.to_owned())?;
        if endpoint.uri().scheme_str() == Some("https") {
            endpoint = endpoint
                .tls_config(service_kit::tls::client_config(ca_file)?)
                .context("TLS to document-store")?;
        }
        // Our own connector: tonic's `tcp_nodelay` only reaches its built-in one, and the
        // socket option is then tested on the socket production opens. tonic puts TLS on
        // top of it for https.
        let channel = endpoint
            .connect_timeout(Duration::from_secs(2))
            .connect_with_connector_lazy(DocumentStoreConnector);
        Ok(Self {
            client: DocumentServiceClient::new(GrpcClientTrace::new(channel)),
            service: None,
        })
    }

    /// Lets background jobs call for a tenant with short-lived tokens signed by `secret`
    /// (the HS256 key shared with document-store).
    pub fn with_service_identity(mut self, secret: &SecretString) -> anyhow::Result<Self> {
        self.service = Some(ServiceIdentity {
            secret: secret.clone(),
            verifier: TokenVerifier::new(secret)?,
        });
        Ok(self)
    }

    /// A caller acting for `tenant_id` with `documents:write`, for background jobs.
    pub async fn service_caller(&self, tenant_id: &str) -> Result<Caller, DisputeError> {
        let service = self.service.as_ref().ok_or_else(|| {
            DisputeError::Internal(anyhow::anyhow!(
                "no service identity to call document-store"
            ))
        })?;
        let token = mint_token(
            &service.secret,
            SERVICE_SUBJECT,
            tenant_id,
            &[Scope::DocumentsWrite.as_str()],
            chrono::Duration::minutes(5),
        )
        .map_err(|e| DisputeError::Internal(anyhow::Error::new(e).context("mint service token")))?;
        service
            .verifier
            .verify_header(Some(&format!("Bearer {token}")))
            .await
            .map_err(|status| {
                DisputeError::Internal(anyhow::anyhow!(
                    "service token refused: {}",
                    status.message()
                ))
            })
    }

    fn request<T>(caller: &Caller, message: T) -> Result<tonic::Request<T>, DisputeError> {
        let mut request = tonic::Request::new(message);
        let authorization = MetadataValue::try_from(caller.authorization_header())
            .map_err(|e| DisputeError::Internal(anyhow::Error::new(e).context("bearer header")))?;
        request
            .metadata_mut()
            .insert("authorization", authorization);
        request.set_timeout(CALL_TIMEOUT);
        Ok(request)
    }

    /// Every document of a dispute, newest first.
    pub async fn list_dispute_documents(
        &self,
        caller: &Caller,
        dispute_id: &DisputeId,
    ) -> Result<Vec<DisputeDocument>, DisputeError> {
        let mut client = self.client.clone();
        let mut documents = Vec::new();
        let mut page_token = String::new();
        for _ in 0..MAX_DOCUMENT_PAGES {
            let request = Self::request(
                caller,
                pb::ListDocumentsRequest {
                    dispute_id: dispute_id.to_string(),
                    page_size: 100,
                    page_token,
                },
            )?;
            let page = client
                .list_documents(request)
                .await
                .map_err(|status| map_status(status, Forwarded::List))?
                .into_inner();
            for document in page.documents {
                documents.push(dispute_document(document)?);
            }
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        Ok(documents)
    }

    /// The ids among `ids` that are not documents of the caller's tenant.
    pub async fn missing_documents(
        &self,
        caller: &Caller,
        ids: &[String],
    ) -> Result<Vec<String>, DisputeError> {
        let mut client = self.client.clone();
        let request = Self::request(caller, pb::BatchGetDocumentsRequest { ids: ids.to_vec() })?;
        let response = client
            .batch_get_documents(request)
            .await
            .map_err(|status| map_status(status, Forwarded::Check))?
            .into_inner();
        Ok(response.missing_ids)
    }

    /// Locks documents submitted as evidence under `lock_id` (so the lock can be released
    /// if the submission does not happen); returns them with their SHA-256 digests.
    pub async fn lock_documents(
        &self,
        caller: &Caller,
        ids: &[String],
        lock_id: &str,
    ) -> Result<Vec<DisputeDocument>, DisputeError> {
        let mut client = self.client.clone();
        let request = Self::request(
            caller,
            pb::LockDocumentsRequest {
                ids: ids.to_vec(),
                lock_id: lock_id.to_owned(),
            },
        )?;
        match client.lock_documents(request).await {
            Ok(response) => response
                .into_inner()
                .documents
                .into_iter()
                .map(dispute_document)
                .collect(),
            Err(status) if status.code() == Code::NotFound => {
                Err(DisputeError::FailedPrecondition {
                    reason: "EVIDENCE_DOCUMENT_MISSING",
                    message: format!(
                        "a document named in the evidence no longer exists: {}",
                        status.message()
                    ),
                })
            }
            Err(status) => Err(map_status(status, Forwarded::Lock)),
        }
    }

    /// Releases the lock `lock_id` holds on `ids` (idempotent).
    pub async fn unlock_documents(
        &self,
        caller: &Caller,
        ids: &[String],
        lock_id: &str,
    ) -> Result<(), DisputeError> {
        let mut client = self.client.clone();
        let request = Self::request(
            caller,
            pb::UnlockDocumentsRequest {
                ids: ids.to_vec(),
                lock_id: lock_id.to_owned(),
            },
        )?;
        client
            .unlock_documents(request)
            .await
            .map_err(|status| map_status(status, Forwarded::Unlock))?;
        Ok(())
    }
}

/// Opens one TCP connection to document-store, with TCP_NODELAY set: a call leaves in
/// several writes (HTTP/2 headers, then data), and with Nagle's algorithm the second waits
/// for document-store's delayed ACK, about 40 ms per call at low load (issue 13).
pub async fn connect_document_store(host: &str, port: u16) -> io::Result<TcpStream> {
    let stream = TcpStream::connect((host, port)).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The connector of the channel to document-store: [`connect_document_store`] to the
/// URL's host and port (plain HTTP/2; the port defaults to 80).
#[derive(Debug, Clone, Copy, Default)]
pub struct DocumentStoreConnector;

impl Service<Uri> for DocumentStoreConnector {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<TcpStream>>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(async move {
            let host = uri.host().ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("no host in the document-store URL {uri}"),
                )
            })?;
            // An IPv6 literal comes bracketed.
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let port = uri.port_u16().unwrap_or(80);
            connect_document_store(host, port).await.map(TokioIo::new)
        })
    }
}

/// A document as document-store sent it.
fn dispute_document(document: pb::Document) -> Result<DisputeDocument, DisputeError> {
    let time = |field: &str, ts: Option<prost_types::Timestamp>| {
        ts.map(|ts| instant(field, &ts))
            .transpose()
            .map_err(|violation| {
                DisputeError::Internal(anyhow::anyhow!(
                    "document-store sent {}: {}",
                    violation.field,
                    violation.description
                ))
            })
    };
    Ok(DisputeDocument {
        create_time: time("create_time", document.create_time)?,
        lock_time: time("lock_time", document.lock_time)?,
        id: document.id,
        tenant_id: document.tenant_id,
        dispute_id: document.dispute_id,
        filename: document.filename,
        content_type: document.content_type,
        size_bytes: document.size_bytes,
        sha256: document.sha256,
    })
}

/// The document-store call dispute-core forwards on the caller's behalf.
#[derive(Debug, Clone, Copy)]
enum Forwarded {
    List,
    Check,
    Lock,
    Unlock,
}

impl Forwarded {
    /// The scope the call needs, named when document-store's refusal names none of ours.
    fn scope(self) -> Scope {
        match self {
            Forwarded::List | Forwarded::Check => Scope::DocumentsRead,
            Forwarded::Lock | Forwarded::Unlock => Scope::DocumentsWrite,
        }
    }

    fn purpose(self) -> &'static str {
        match self {
            Forwarded::List => "read the dispute's documents",
            Forwarded::Check => "check the referenced documents",
            Forwarded::Lock => "lock the evidence documents",
            Forwarded::Unlock => "release the evidence documents",
        }
    }
}

fn map_status(status: tonic::Status, call: Forwarded) -> DisputeError {
    match status.code() {
        // document-store names the missing scope in its ErrorInfo metadata.
        Code::PermissionDenied => DisputeError::MissingScope {
            scope: missing_scope_of(&status).unwrap_or(call.scope()).as_str(),
            purpose: call.purpose(),
        },
        // Down, slow, or shedding load (RESOURCE_EXHAUSTED): retryable for our client too.
        // UNKNOWN is what tonic's client reports for a connection reset mid-call ("transport
        // error"); document-store itself never answers it.
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::ResourceExhausted
        | Code::Unknown => {
            tracing::warn!(code = ?status.code(), message = status.message(), "document-store call failed");
            DisputeError::DocumentsUnavailable
        }
        _ => DisputeError::Internal(anyhow::anyhow!(
            "document-store answered {:?}: {}",
            status.code(),
            status.message()
        )),
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;
    use tonic::codegen::Service;
    use tonic::transport::Uri;

    use super::DocumentStoreConnector;

    /// Issue 13: the socket the channel to document-store connects has TCP_NODELAY
    /// (the option on the socket, not a timing).
    #[tokio::test]
    async fn connections_to_document_store_have_tcp_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let uri: Uri = format!("http://{addr}").parse().expect("uri");
        let connected = DocumentStoreConnector.call(uri).await.expect("connect");
        let (_accepted, peer) = listener.accept().await.expect("accept");
        assert_eq!(peer, connected.inner().local_addr().expect("local addr"));
        assert!(
            connected.inner().nodelay().expect("read TCP_NODELAY"),
            "the connection to document-store lacks TCP_NODELAY"
        );
    }
}
