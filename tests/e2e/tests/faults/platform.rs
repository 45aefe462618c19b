//! The platform under test: both services as child processes, each dependency behind
//! its own fault proxy.

use std::net::SocketAddr;
use std::time::Duration;

use disputes_proto::disputes_v1::dispute_service_client::DisputeServiceClient;
use disputes_proto::documents_v1::document_service_client::DocumentServiceClient;
use harness::fault_proxy::FaultProxy;
use harness::private_postgres::{PrivatePostgres, free_port};
use harness::process::{ServiceCommand, ServiceProcess};
use harness::{Bearer, DisputesClient, DocumentsClient};
use secrecy::SecretString;

use super::schedule::Link;
use super::{BUCKET, ENTRY_TEST, JWT_SECRET, PART_SIZE, TENANT};

/// Everything the scenario runs, each dependency behind its own proxy.
pub struct Platform {
    pub postgres: PrivatePostgres,
    pub s3: harness::S3Server,
    /// dispute-core → PostgreSQL, document-store → PostgreSQL, document-store → S3,
    /// dispute-core → document-store.
    pub core_db: FaultProxy,
    pub docs_db: FaultProxy,
    pub docs_s3: FaultProxy,
    pub core_docs: FaultProxy,
    pub core: ServiceProcess,
    pub docs: ServiceProcess,
    pub dispute_db_url: String,
    pub document_db_url: String,
    pub token: String,
    // Dropped last: S3 files and service logs.
    pub work: tempfile::TempDir,
}

/// A URL of `database` on the server at `addr`.
fn database_url(addr: SocketAddr, database: &str) -> String {
    format!("postgres://postgres@{addr}/{database}")
}

impl Platform {
    pub async fn start() -> Platform {
        let work = tempfile::tempdir().unwrap();
        let postgres = PrivatePostgres::start().await.unwrap();
        let dispute_db_url = harness::ensure_database(&postgres.admin_url(), "disputes")
            .await
            .unwrap();
        let document_db_url = harness::ensure_database(&postgres.admin_url(), "documents")
            .await
            .unwrap();
        let s3 = harness::S3Server::start(&work.path().join("s3"), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let s3_addr: SocketAddr = s3.endpoint.trim_start_matches("http://").parse().unwrap();

        let core_db = FaultProxy::start(postgres.addr()).await.unwrap();
        let docs_db = FaultProxy::start(postgres.addr()).await.unwrap();
        let docs_s3 = FaultProxy::start(s3_addr).await.unwrap();
        let docs_addr = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
        let core_addr = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
        let core_docs = FaultProxy::start(docs_addr).await.unwrap();

        let log_filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
        let docs = ServiceProcess::start(
            ServiceCommand::test_entry(harness::process::Service::DocumentStore, ENTRY_TEST)
                .listen_addr(docs_addr)
                .database_url(database_url(docs_db.addr, "documents"))
                .s3(format!("http://{}", docs_s3.addr), BUCKET)
                .env("DOCUMENT_STORE_PART_SIZE_BYTES", PART_SIZE.to_string())
                .env("DOCUMENT_STORE_DRAIN_TIMEOUT_SECS", "1")
                .jwt_secret(JWT_SECRET)
                .log_filter(&log_filter),
            work.path().join("document-store.log"),
        )
        .await
        .unwrap();
        let core = ServiceProcess::start(
            ServiceCommand::test_entry(harness::process::Service::DisputeCore, ENTRY_TEST)
                .listen_addr(core_addr)
                .database_url(database_url(core_db.addr, "disputes"))
                .document_store_url(format!("http://{}", core_docs.addr))
                .env("DISPUTE_CORE_SWEEP_INTERVAL_SECS", "1")
                .env("DISPUTE_CORE_DRAIN_TIMEOUT_SECS", "1")
                .jwt_secret(JWT_SECRET)
                .log_filter(log_filter),
            work.path().join("dispute-core.log"),
        )
        .await
        .unwrap();

        let token =
            harness::full_scope_token(&SecretString::from(JWT_SECRET), "e2e-faults", TENANT);
        Platform {
            postgres,
            s3,
            core_db,
            docs_db,
            docs_s3,
            core_docs,
            core,
            docs,
            dispute_db_url,
            document_db_url,
            token,
            work,
        }
    }

    /// Clients over lazily (re)connecting channels: a restarted service is reached again.
    pub fn clients(&self) -> Clients {
        let channel = |addr: SocketAddr| {
            tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect_timeout(Duration::from_secs(1))
                .initial_stream_window_size(Some(8 * 1024 * 1024))
                .initial_connection_window_size(Some(16 * 1024 * 1024))
                .connect_lazy()
        };
        let bearer = Bearer::new(Some(&self.token)).unwrap();
        Clients {
            disputes: DisputeServiceClient::with_interceptor(
                channel(self.core.addr),
                bearer.clone(),
            ),
            documents: DocumentServiceClient::with_interceptor(channel(self.docs.addr), bearer)
                .max_decoding_message_size(8 * 1024 * 1024),
        }
    }

    pub fn proxy(&self, link: Link) -> &FaultProxy {
        match link {
            Link::CoreDb => &self.core_db,
            Link::DocsDb => &self.docs_db,
            Link::DocsS3 => &self.docs_s3,
            Link::CoreDocs => &self.core_docs,
        }
    }
}

#[derive(Clone)]
pub struct Clients {
    pub disputes: DisputesClient,
    pub documents: DocumentsClient,
}
