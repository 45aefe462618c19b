//! Fault injection (issue 10 §7): both services run as child processes on a private
//! PostgreSQL server and the in-process S3 server, each dependency reached through a TCP
//! fault proxy. While four workers create disputes, take actions, record network events and
//! upload documents (every call with a client deadline), the scenario injects faults one
//! after another: resets, black-holes and delays in front of PostgreSQL, S3 and
//! dispute-core's link to document-store, PostgreSQL stopped (fast and immediate) and
//! started again, and `kill -9` of each service followed by a restart. After each fault it
//! waits for new calls to succeed again.
//!
//! Then it checks the invariants: every acknowledged write is present exactly once (API and
//! SQL), every upload is complete with a matching SHA-256 or absent, no incomplete multipart
//! upload remains, no call outlived its deadline, and the services recovered from every
//! dependency fault without a restart. Uploads that a killed process (or a failure whose
//! cleanup could not reach a dependency) left pending belong to the abandoned-upload
//! cleaner, which waits an hour in production: the check runs that cleaner first, so
//! "absent" means "absent once the cleaner ran", and a multipart upload or object the
//! cleaner cannot find fails it. It prints the counts.
//!
//! The services run as child processes of this test binary (see `harness::process`), so
//! `kill -9` is a real crash: no drain, no cleanup.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use disputes_proto::disputes_v1 as dpb;
use disputes_proto::disputes_v1::dispute_service_client::DisputeServiceClient;
use disputes_proto::documents_v1 as pb;
use disputes_proto::documents_v1::document_service_client::DocumentServiceClient;
use harness::fault_proxy::{FaultMode, FaultProxy};
use harness::private_postgres::{PrivatePostgres, StopMode, free_port};
use harness::process::{SERVICE_PROCESS_ENV, ServiceCommand, ServiceProcess};
use harness::{Bearer, DisputesClient, DocumentsClient};
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::Code;

use crate::fixtures::{merchant_case, merchant_dispute, network_event, sha256_hex};

/// The ignored test the service child processes run (see `harness::process`).
const ENTRY_TEST: &str = "faults::service_process";
const TENANT: &str = "faults";
const JWT_SECRET: &str = "faults-jwt-secret-that-is-long-enough-0123456789";
const BUCKET: &str = "dispute-documents";
const PART_SIZE: usize = 5 * 1024 * 1024;
/// Client deadline of every unary call, and of every upload.
const UNARY_DEADLINE: Duration = Duration::from_secs(3);
const UPLOAD_DEADLINE: Duration = Duration::from_secs(8);
/// A call still running this long after its deadline has hung.
const HANG_MARGIN: Duration = Duration::from_secs(2);
/// After a fault ends (the dependency is back, or the killed service restarted), new calls
/// must succeed within this.
const RECOVERY_LIMIT: Duration = Duration::from_secs(10);
const WORKERS: usize = 4;
/// Attempts of one logical write (same request id / event id) before it counts as refused.
const ATTEMPTS: usize = 3;
/// Whether an INTERNAL answer is a violation: issue 10 §4 answers every dependency failure
/// UNAVAILABLE (never INTERNAL).
const REQUIRE_NO_INTERNAL: bool = true;

/// Runs a service in this process when started by `harness::process::ServiceProcess`; does
/// nothing otherwise. Same steps as the services' `main.rs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "entry point of the service child processes of the fault scenario"]
async fn service_process() {
    let Ok(service) = std::env::var(SERVICE_PROCESS_ENV) else {
        return;
    };
    let shutdown = CancellationToken::new();
    service_kit::server::cancel_on_signal(shutdown.clone());
    let telemetry = service_kit::telemetry::init(
        service_kit::telemetry::TelemetryOptions::for_service(&service),
    )
    .unwrap();
    let result = match service.as_str() {
        "dispute-core" => {
            let config = dispute_core::Config::try_parse_from(["dispute-core"]).unwrap();
            let listener = tokio::net::TcpListener::bind(config.listen_addr)
                .await
                .unwrap();
            dispute_core::run(config, listener, shutdown).await
        }
        "document-store" => {
            let config = document_store::Config::try_parse_from(["document-store"]).unwrap();
            let listener = tokio::net::TcpListener::bind(config.listen_addr)
                .await
                .unwrap();
            document_store::run(config, listener, shutdown).await
        }
        other => panic!("unknown service {other}"),
    };
    telemetry.shutdown();
    result.unwrap();
}

// ---------------------------------------------------------------------------------------------
// The platform under test

/// Everything the scenario runs, each dependency behind its own proxy.
struct Platform {
    postgres: PrivatePostgres,
    s3: harness::S3Server,
    /// dispute-core → PostgreSQL, document-store → PostgreSQL, document-store → S3,
    /// dispute-core → document-store.
    core_db: FaultProxy,
    docs_db: FaultProxy,
    docs_s3: FaultProxy,
    core_docs: FaultProxy,
    core: ServiceProcess,
    docs: ServiceProcess,
    dispute_db_url: String,
    document_db_url: String,
    token: String,
    // Dropped last: S3 files and service logs.
    work: tempfile::TempDir,
}

/// A URL of `database` on the server at `addr`.
fn database_url(addr: SocketAddr, database: &str) -> String {
    format!("postgres://postgres@{addr}/{database}")
}

impl Platform {
    async fn start() -> Platform {
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
    fn clients(&self) -> Clients {
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

    fn proxy(&self, link: Link) -> &FaultProxy {
        match link {
            Link::CoreDb => &self.core_db,
            Link::DocsDb => &self.docs_db,
            Link::DocsS3 => &self.docs_s3,
            Link::CoreDocs => &self.core_docs,
        }
    }
}

#[derive(Clone)]
struct Clients {
    disputes: DisputesClient,
    documents: DocumentsClient,
}

// ---------------------------------------------------------------------------------------------
// Faults

#[derive(Debug, Clone, Copy)]
enum Link {
    CoreDb,
    DocsDb,
    DocsS3,
    CoreDocs,
}

#[derive(Debug, Clone, Copy)]
enum Service {
    Core,
    Docs,
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// The proxy of a link in a fault mode for a while, then back to pass.
    Link(Link, FaultMode, Duration),
    /// The private PostgreSQL stopped, down for a while, then started again.
    PostgresDown(StopMode, Duration),
    /// `kill -9` of a service, then a restart on the same port.
    Kill(Service),
}

const fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// The fault schedule: 24 faults, one at a time.
fn schedule() -> Vec<Fault> {
    use FaultMode::{BlackHole, Delay, Reset};
    use Link::{CoreDb, CoreDocs, DocsDb, DocsS3};
    vec![
        Fault::Link(CoreDb, Reset, ms(300)),
        Fault::Link(DocsS3, Reset, ms(300)),
        Fault::Link(DocsDb, BlackHole, ms(1000)),
        Fault::Link(CoreDocs, Reset, ms(300)),
        Fault::Link(DocsS3, BlackHole, ms(1000)),
        Fault::Link(CoreDb, Delay(ms(30)), ms(1500)),
        Fault::PostgresDown(StopMode::Fast, ms(1000)),
        Fault::Kill(Service::Core),
        Fault::Link(DocsS3, Delay(ms(10)), ms(1500)),
        Fault::Link(DocsDb, Reset, ms(300)),
        Fault::Link(CoreDocs, BlackHole, ms(1000)),
        Fault::Kill(Service::Docs),
        Fault::Link(CoreDb, BlackHole, ms(1000)),
        Fault::PostgresDown(StopMode::Immediate, ms(1000)),
        Fault::Link(DocsS3, Reset, ms(300)),
        Fault::Link(DocsDb, Delay(ms(30)), ms(1500)),
        Fault::Link(CoreDocs, Delay(ms(50)), ms(1500)),
        Fault::Kill(Service::Core),
        Fault::Link(CoreDb, Reset, ms(300)),
        Fault::Link(DocsS3, BlackHole, ms(1000)),
        Fault::Kill(Service::Docs),
        Fault::Link(DocsDb, BlackHole, ms(1000)),
        Fault::PostgresDown(StopMode::Immediate, ms(1000)),
        Fault::Link(CoreDocs, Reset, ms(300)),
    ]
}

/// Injects `fault` and ends it (the dependency back, or the service restarted).
async fn inject(platform: &mut Platform, fault: Fault, ledger: &Ledger) {
    match fault {
        Fault::Link(link, mode, duration) => {
            let proxy = platform.proxy(link);
            proxy.set_mode(mode);
            tokio::time::sleep(duration).await;
            proxy.set_mode(FaultMode::Pass);
        }
        Fault::PostgresDown(mode, duration) => {
            platform.postgres.stop(mode).await.unwrap();
            tokio::time::sleep(duration).await;
            platform.postgres.start_again().await.unwrap();
        }
        Fault::Kill(service) => {
            let process = match service {
                Service::Core => &mut platform.core,
                Service::Docs => &mut platform.docs,
            };
            process.kill9().await.unwrap();
            if let Service::Docs = service {
                // Uploads this incarnation left pending are the abandoned-upload cleaner's.
                ledger.lock().unwrap().last_docs_kill = Some(chrono::Utc::now());
            }
            tokio::time::sleep(ms(200)).await;
            process.start_again().await.unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What the clients saw

type Ledger = Mutex<Record>;

#[derive(Default)]
struct Record {
    calls: u64,
    acknowledged: u64,
    /// Refusals by gRPC code (and `HUNG` for calls cut off past deadline + margin).
    refused: BTreeMap<String, u64>,
    /// The same by call and code.
    refused_by_call: BTreeMap<String, u64>,
    /// A sample message per refused code, to tell the causes apart in the report.
    samples: BTreeMap<String, String>,
    hung: Vec<String>,
    slowest: Duration,
    creates: Vec<CreateWrite>,
    accepts: Vec<AcceptWrite>,
    events: Vec<EventWrite>,
    uploads: Vec<UploadWrite>,
    submissions: Vec<SubmissionWrite>,
    last_docs_kill: Option<chrono::DateTime<chrono::Utc>>,
}

struct CreateWrite {
    charge: String,
    /// The dispute id when a call was acknowledged.
    acked: Option<String>,
}

struct AcceptWrite {
    dispute_id: String,
    acked: bool,
}

struct EventWrite {
    case_id: String,
    event_id: String,
    acked: Option<String>,
}

struct SubmissionWrite {
    dispute_id: String,
    document_id: String,
    acked: bool,
}

struct UploadWrite {
    filename: String,
    sha256: String,
    size: usize,
    acked: Option<String>,
}

/// Runs one call with its outer hang guard and records how it ended.
async fn call<T>(
    ledger: &Ledger,
    what: &str,
    deadline: Duration,
    future: impl Future<Output = Result<T, tonic::Status>>,
) -> Result<T, Code> {
    let started = Instant::now();
    let outcome = tokio::time::timeout(deadline + HANG_MARGIN, future).await;
    let elapsed = started.elapsed();
    let mut record = ledger.lock().unwrap();
    record.calls += 1;
    record.slowest = record.slowest.max(elapsed);
    match outcome {
        Err(_) => {
            *record.refused.entry("HUNG".to_owned()).or_default() += 1;
            record
                .hung
                .push(format!("{what}: no answer {elapsed:?} after it started"));
            Err(Code::DeadlineExceeded)
        }
        Ok(Ok(value)) => {
            record.acknowledged += 1;
            Ok(value)
        }
        Ok(Err(status)) => {
            let code = format!("{:?}", status.code());
            *record.refused.entry(code.clone()).or_default() += 1;
            *record
                .refused_by_call
                .entry(format!("{what} {code}"))
                .or_default() += 1;
            record
                .samples
                .entry(code)
                .or_insert_with(|| format!("{what}: {}", status.message()));
            Err(status.code())
        }
    }
}

/// Codes after which the same request (same request id or event id) is sent again.
fn worth_retrying(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::Internal
            | Code::Aborted
            | Code::ResourceExhausted
    )
}

fn with_deadline<T>(message: T, deadline: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(deadline);
    request
}

/// Sends a unary call (a fresh request each time) until it is acknowledged, refused for
/// good or out of attempts; the answer if it was acknowledged.
async fn with_retries<T, Fut>(
    ledger: &Ledger,
    what: &str,
    mut send: impl FnMut() -> Fut,
) -> Option<T>
where
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    for attempt in 1..=ATTEMPTS {
        match call(ledger, what, UNARY_DEADLINE, send()).await {
            Ok(response) => return Some(response.into_inner()),
            Err(code) if worth_retrying(code) => backoff(attempt).await,
            Err(_) => return None,
        }
    }
    None
}

async fn backoff(attempt: usize) {
    tokio::time::sleep(ms(150 * attempt as u64)).await;
}

/// CreateDispute with one request id, retried; records the write.
async fn create_dispute(clients: &mut Clients, ledger: &Ledger, key: &str) -> Option<String> {
    let charge = format!("ch_{key}");
    let request = dpb::CreateDisputeRequest {
        request_id: format!("create-{key}"),
        ..merchant_dispute("", &charge)
    };
    let response = with_retries(ledger, "CreateDispute", || {
        let mut disputes = clients.disputes.clone();
        let request = with_deadline(request.clone(), UNARY_DEADLINE);
        async move { disputes.create_dispute(request).await }
    })
    .await;
    let acked = response.and_then(|r| r.dispute).map(|d| d.id);
    ledger.lock().unwrap().creates.push(CreateWrite {
        charge,
        acked: acked.clone(),
    });
    acked
}

/// GetDispute (which asks document-store for the documents), then ACCEPT with one request id,
/// retried; records the write.
async fn accept_dispute(clients: &mut Clients, ledger: &Ledger, dispute_id: &str) {
    let _ = call(
        ledger,
        "GetDispute",
        UNARY_DEADLINE,
        clients.disputes.get_dispute(with_deadline(
            dpb::GetDisputeRequest {
                id: dispute_id.to_owned(),
            },
            UNARY_DEADLINE,
        )),
    )
    .await;
    let request = dpb::CreateActionRequest {
        dispute_id: dispute_id.to_owned(),
        request_id: format!("accept-{dispute_id}"),
        action: dpb::DisputeActionType::Accept.into(),
        message: "not worth fighting".to_owned(),
        ..Default::default()
    };
    let response = with_retries(ledger, "CreateAction", || {
        let mut disputes = clients.disputes.clone();
        let request = with_deadline(request.clone(), UNARY_DEADLINE);
        async move { disputes.create_action(request).await }
    })
    .await;
    let acked = response.is_some();
    ledger.lock().unwrap().accepts.push(AcceptWrite {
        dispute_id: dispute_id.to_owned(),
        acked,
    });
}

/// A CHARGEBACK opening a new network case, redelivered with the same event id; records it.
async fn record_event(clients: &mut Clients, ledger: &Ledger, key: &str) {
    let case_id = format!("case-{key}");
    let event_id = format!("evt-{key}-chargeback");
    let request = dpb::RecordNetworkEventRequest {
        amount: 9_900,
        new_case: Some(merchant_case(9_900, &format!("ch_case_{key}"))),
        ..network_event(
            dpb::CardNetwork::Visa,
            &case_id,
            &event_id,
            dpb::NetworkEventType::Chargeback,
        )
    };
    let response = with_retries(ledger, "RecordNetworkEvent", || {
        let mut disputes = clients.disputes.clone();
        let request = with_deadline(request.clone(), UNARY_DEADLINE);
        async move { disputes.record_network_event(request).await }
    })
    .await;
    let acked = response.and_then(|r| r.dispute).map(|d| d.id);
    ledger.lock().unwrap().events.push(EventWrite {
        case_id,
        event_id,
        acked,
    });
}

/// A PDF of `size` bytes whose content depends on `seed`.
fn pdf(size: usize, seed: u64) -> Vec<u8> {
    let mut bytes = b"%PDF-1.7\n".to_vec();
    let mut state = seed | 1;
    while bytes.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(size);
    bytes
}

/// How an upload is sent.
#[derive(Debug, Clone)]
struct UploadShape {
    size: usize,
    /// Header states the SHA-256 and size.
    state_digest: bool,
    /// Sent 64 KiB every 50 ms with a 700 ms deadline: the client's deadline always passes
    /// mid-file, so the call is cancelled with part of the file sent.
    trickle: bool,
    dispute_id: Option<String>,
}

/// Chunks of a trickled upload, the pause between them and its deadline (shorter than the
/// whole stream takes).
const TRICKLE_CHUNK: usize = 64 * 1024;
const TRICKLE_PAUSE: Duration = ms(50);
const TRICKLE_DEADLINE: Duration = ms(700);

/// One upload (never retried: uploads take no request id); records it.
async fn upload(
    clients: &mut Clients,
    ledger: &Ledger,
    key: &str,
    seed: u64,
    shape: UploadShape,
) -> Option<String> {
    let UploadShape {
        size,
        state_digest,
        trickle,
        dispute_id,
    } = shape;
    let bytes = pdf(size, seed);
    let sha256 = sha256_hex(&bytes);
    let filename = format!("fault-{key}.pdf");
    let header = pb::DocumentHeader {
        filename: filename.clone(),
        content_type: "application/pdf".to_owned(),
        expected_sha256: if state_digest {
            sha256.clone()
        } else {
            String::new()
        },
        expected_size_bytes: if state_digest { size as u64 } else { 0 },
        dispute_id: dispute_id.unwrap_or_default(),
    };
    let mut messages = vec![pb::UploadDocumentRequest {
        payload: Some(pb::upload_document_request::Payload::Header(header)),
    }];
    let chunk_size = if trickle { TRICKLE_CHUNK } else { 256 * 1024 };
    for chunk in bytes.chunks(chunk_size) {
        messages.push(pb::UploadDocumentRequest {
            payload: Some(pb::upload_document_request::Payload::Chunk(
                bytes::Bytes::copy_from_slice(chunk),
            )),
        });
    }
    let outcome = if trickle {
        use futures::StreamExt;
        let stream = futures::stream::iter(messages).then(|message| async move {
            tokio::time::sleep(TRICKLE_PAUSE).await;
            message
        });
        call(
            ledger,
            "UploadDocument (trickled)",
            TRICKLE_DEADLINE,
            clients
                .documents
                .upload_document(with_deadline(stream, TRICKLE_DEADLINE)),
        )
        .await
    } else {
        call(
            ledger,
            "UploadDocument",
            UPLOAD_DEADLINE,
            clients
                .documents
                .upload_document(with_deadline(tokio_stream::iter(messages), UPLOAD_DEADLINE)),
        )
        .await
    };
    let acked = outcome
        .ok()
        .and_then(|response| response.into_inner().document.map(|d| d.id));
    ledger.lock().unwrap().uploads.push(UploadWrite {
        filename,
        sha256,
        size,
        acked: acked.clone(),
    });
    acked
}

/// Uploads a document for the dispute, then submits it as evidence (UpdateDispute
/// submit=true, one request id, retried); records the submission.
async fn submit_dispute(clients: &mut Clients, ledger: &Ledger, dispute_id: &str, seed: u64) {
    let shape = UploadShape {
        size: 20 * 1024,
        state_digest: true,
        trickle: false,
        dispute_id: Some(dispute_id.to_owned()),
    };
    let Some(document_id) = upload(
        clients,
        ledger,
        &format!("evidence-{dispute_id}"),
        seed,
        shape,
    )
    .await
    else {
        return;
    };
    let request = dpb::UpdateDisputeRequest {
        id: dispute_id.to_owned(),
        request_id: format!("submit-{dispute_id}"),
        evidence: Some(dpb::EvidenceUpdate {
            shipping_documentation: Some(document_id.clone()),
            shipping_tracking_number: Some("1Z999AA10123456784".to_owned()),
            ..Default::default()
        }),
        submit: true,
        ..Default::default()
    };
    let response = with_retries(ledger, "UpdateDispute (submit)", || {
        let mut disputes = clients.disputes.clone();
        let request = with_deadline(request.clone(), UNARY_DEADLINE);
        async move { disputes.update_dispute(request).await }
    })
    .await;
    let acked = response.is_some();
    ledger.lock().unwrap().submissions.push(SubmissionWrite {
        dispute_id: dispute_id.to_owned(),
        document_id,
        acked,
    });
}

/// One load worker: creates, then GetDispute + ACCEPT or evidence submission, network events
/// and uploads (small, multipart, trickled past the deadline), in turn, until `stop`.
async fn worker(worker: usize, mut clients: Clients, ledger: Arc<Ledger>, stop: CancellationToken) {
    let mut to_accept: Vec<String> = Vec::new();
    let mut n: u64 = 0;
    while !stop.is_cancelled() {
        n += 1;
        let key = format!("w{worker}-{n}");
        match n % 4 {
            1 => {
                if let Some(id) = create_dispute(&mut clients, &ledger, &key).await {
                    to_accept.push(id);
                }
            }
            2 => match to_accept.pop() {
                Some(id) if (n / 4).is_multiple_of(2) => {
                    accept_dispute(&mut clients, &ledger, &id).await
                }
                Some(id) => submit_dispute(&mut clients, &ledger, &id, seed(worker, n)).await,
                None => {
                    create_dispute(&mut clients, &ledger, &key).await;
                }
            },
            3 => record_event(&mut clients, &ledger, &key).await,
            _ => {
                // Small (one PUT), multipart (two parts) and trickled in turn; every other
                // round of three states the digest.
                let round = n / 4;
                let jitter = n as usize % 1000;
                let shape = UploadShape {
                    size: match round % 3 {
                        0 => 40 * 1024 + jitter,
                        1 => PART_SIZE + 512 * 1024 + jitter,
                        _ => 24 * TRICKLE_CHUNK + jitter,
                    },
                    state_digest: (round / 3) % 2 == 1,
                    trickle: round % 3 == 2,
                    dispute_id: None,
                };
                upload(&mut clients, &ledger, &key, seed(worker, n), shape).await;
            }
        }
    }
}

fn seed(worker: usize, n: u64) -> u64 {
    (worker as u64) << 32 | n
}

/// Waits until a create and a small upload both succeed; the time that took.
async fn recovery(clients: &mut Clients, ledger: &Ledger, probe: &str) -> Option<Duration> {
    let started = Instant::now();
    let mut attempt: u64 = 0;
    let mut created = false;
    let mut uploaded = false;
    while started.elapsed() < RECOVERY_LIMIT {
        attempt += 1;
        let key = format!("{probe}-{attempt}");
        if !created {
            created = create_dispute(clients, ledger, &key).await.is_some();
        }
        if !uploaded {
            let shape = UploadShape {
                size: 4 * 1024,
                state_digest: true,
                trickle: false,
                dispute_id: None,
            };
            uploaded = upload(clients, ledger, &key, attempt, shape)
                .await
                .is_some();
        }
        if created && uploaded {
            return Some(started.elapsed());
        }
        tokio::time::sleep(ms(100)).await;
    }
    None
}

// ---------------------------------------------------------------------------------------------
// The scenario

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_dependency_faults_and_crashes() {
    harness::init_test_telemetry(None);
    let mut platform = Platform::start().await;
    let ledger = Arc::new(Ledger::default());
    let stop = CancellationToken::new();
    let mut clients = platform.clients();

    let workers: Vec<_> = (0..WORKERS)
        .map(|w| tokio::spawn(worker(w, platform.clients(), ledger.clone(), stop.clone())))
        .collect();
    // Some traffic before the first fault.
    tokio::time::sleep(ms(500)).await;

    let mut recoveries: Vec<(String, Option<Duration>)> = Vec::new();
    let faults = schedule();
    for (i, fault) in faults.iter().enumerate() {
        inject(&mut platform, *fault, &ledger).await;
        let recovered = recovery(&mut clients, &ledger, &format!("probe{i}")).await;
        recoveries.push((format!("{fault:?}"), recovered));
    }
    stop.cancel();
    for worker in workers {
        worker.await.unwrap();
    }
    let last = recovery(&mut clients, &ledger, "final").await;
    recoveries.push(("after the load".to_owned(), last));

    let writes = {
        let record = ledger.lock().unwrap();
        let acked = |n: usize, total: usize| format!("{n}/{total}");
        [
            (
                "creates",
                acked(
                    record.creates.iter().filter(|w| w.acked.is_some()).count(),
                    record.creates.len(),
                ),
            ),
            (
                "accepts",
                acked(
                    record.accepts.iter().filter(|w| w.acked).count(),
                    record.accepts.len(),
                ),
            ),
            (
                "submissions",
                acked(
                    record.submissions.iter().filter(|w| w.acked).count(),
                    record.submissions.len(),
                ),
            ),
            (
                "network events",
                acked(
                    record.events.iter().filter(|w| w.acked.is_some()).count(),
                    record.events.len(),
                ),
            ),
            (
                "uploads",
                acked(
                    record.uploads.iter().filter(|w| w.acked.is_some()).count(),
                    record.uploads.len(),
                ),
            ),
        ]
    };
    settle(&platform, &ledger).await;
    let mut report = Report::default();
    verify(&platform, &mut clients, &ledger, &mut report).await;
    for (fault, recovered) in &recoveries {
        match recovered {
            Some(took) => report.recovery = report.recovery.max(*took),
            None => report.violations.push(format!(
                "no recovery within {RECOVERY_LIMIT:?} after {fault}"
            )),
        }
    }
    let record = ledger.lock().unwrap();
    for hung in &record.hung {
        report.violations.push(format!("hung call: {hung}"));
    }
    if REQUIRE_NO_INTERNAL {
        for (call, count) in &record.refused_by_call {
            if call.ends_with(" Internal") {
                report.violations.push(format!(
                    "{count} × {call} (dependency failures must be UNAVAILABLE)"
                ));
            }
        }
    }

    // The figures.
    let links = [
        ("dispute-core → postgres", &platform.core_db),
        ("document-store → postgres", &platform.docs_db),
        ("document-store → s3", &platform.docs_s3),
        ("dispute-core → document-store", &platform.core_docs),
    ];
    println!("fault scenario figures");
    println!("  faults injected: {} (scheduled)", faults.len());
    for (name, proxy) in links {
        println!("    {name}: {:?}", proxy.counts());
    }
    println!(
        "  service starts: dispute-core {}, document-store {}",
        platform.core.starts, platform.docs.starts
    );
    println!(
        "  calls: {} made, {} acknowledged, slowest {:?} (deadlines {UNARY_DEADLINE:?} / {UPLOAD_DEADLINE:?})",
        record.calls, record.acknowledged, record.slowest
    );
    println!("  refused by code: {:?}", record.refused);
    println!("    by call: {:?}", record.refused_by_call);
    for (code, sample) in &record.samples {
        println!("    e.g. {code}: {sample}");
    }
    println!("  logical writes (acknowledged/attempted): {writes:?}");
    println!("  writes verified: {}", report.verified);
    println!(
        "  unacknowledged writes found applied (allowed, once): {}",
        report.applied_unacknowledged
    );
    println!(
        "  uploads left pending for the abandoned-upload cleaner: {} by kill -9, {} by a failed upload",
        report.left_by_crash, report.left_by_failure
    );
    println!(
        "  unacknowledged submissions whose documents stayed locked without a submission: {}",
        report.locked_without_submission
    );
    println!("  slowest recovery: {:?}", report.recovery);
    println!("  violations: {}", report.violations.len());
    for violation in &report.violations {
        println!("    {violation}");
    }
    drop(record);
    if !report.violations.is_empty() {
        // Keep the services' logs for the post-mortem.
        let kept = std::env::temp_dir().join(format!("faults-logs-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&kept);
        for log in ["dispute-core.log", "document-store.log"] {
            let _ = std::fs::copy(platform.work.path().join(log), kept.join(log));
        }
        panic!(
            "{} invariant violations (see above); service logs kept in {}",
            report.violations.len(),
            kept.display()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The invariants

/// Gives uploads the clients gave up on a moment to end on the server (abort or commit):
/// waits up to 5 s until no upload started since the last kill of document-store is pending.
async fn settle(platform: &Platform, ledger: &Ledger) {
    let since = ledger
        .lock()
        .unwrap()
        .last_docs_kill
        .unwrap_or(chrono::DateTime::UNIX_EPOCH);
    let pool = sqlx::PgPool::connect(&platform.document_db_url)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let running: i64 = sqlx::query_scalar(
            "select count(*) from documents where state = 'pending' and created_at > $1",
        )
        .bind(since)
        .fetch_one(&pool)
        .await
        .unwrap();
        if running == 0 {
            break;
        }
        tokio::time::sleep(ms(100)).await;
    }
    pool.close().await;
}

#[derive(Default)]
struct Report {
    verified: u64,
    applied_unacknowledged: u64,
    left_by_crash: u64,
    left_by_failure: u64,
    locked_without_submission: u64,
    recovery: Duration,
    violations: Vec<String>,
}

async fn verify(platform: &Platform, clients: &mut Clients, ledger: &Ledger, report: &mut Report) {
    let disputes_db = sqlx::PgPool::connect(&platform.dispute_db_url)
        .await
        .unwrap();
    let documents_db = sqlx::PgPool::connect(&platform.document_db_url)
        .await
        .unwrap();
    let (creates, accepts, events, uploads, submissions, last_docs_kill) = {
        let mut record = ledger.lock().unwrap();
        (
            std::mem::take(&mut record.creates),
            std::mem::take(&mut record.accepts),
            std::mem::take(&mut record.events),
            std::mem::take(&mut record.uploads),
            std::mem::take(&mut record.submissions),
            record.last_docs_kill,
        )
    };

    // Disputes: one row per charge when acknowledged (with the acknowledged id), at most one
    // otherwise; acknowledged ones readable through the API.
    for write in &creates {
        let ids: Vec<String> =
            sqlx::query_scalar("select id from disputes where tenant_id = $1 and charge = $2")
                .bind(TENANT)
                .bind(&write.charge)
                .fetch_all(&disputes_db)
                .await
                .unwrap();
        match &write.acked {
            Some(id) => {
                if ids != [id.clone()] {
                    report.violations.push(format!(
                        "acknowledged dispute {id} (charge {}): rows {ids:?}",
                        write.charge
                    ));
                } else if let Err(e) = clients
                    .disputes
                    .get_dispute(dpb::GetDisputeRequest { id: id.clone() })
                    .await
                {
                    report
                        .violations
                        .push(format!("acknowledged dispute {id}: GetDispute {e:?}"));
                } else {
                    report.verified += 1;
                }
            }
            None => match ids.len() {
                0 => {}
                1 => report.applied_unacknowledged += 1,
                _ => report.violations.push(format!(
                    "unacknowledged create (charge {}) stored {} times",
                    write.charge,
                    ids.len()
                )),
            },
        }
    }

    // ACCEPT: exactly one history entry and status LOST when acknowledged; never two.
    for write in &accepts {
        let entries: i64 = sqlx::query_scalar(
            "select count(*) from dispute_actions where tenant_id = $1 and dispute_id = $2 and what = 'ACCEPT'",
        )
        .bind(TENANT)
        .bind(&write.dispute_id)
        .fetch_one(&disputes_db)
        .await
        .unwrap();
        if write.acked {
            let status = clients
                .disputes
                .get_dispute(dpb::GetDisputeRequest {
                    id: write.dispute_id.clone(),
                })
                .await
                .map(|r| r.into_inner().dispute.map(|d| d.status()));
            if entries != 1 || !matches!(status, Ok(Some(dpb::DisputeStatus::Lost))) {
                report.violations.push(format!(
                    "acknowledged ACCEPT of {}: {entries} history entries, status {status:?}",
                    write.dispute_id
                ));
            } else {
                report.verified += 1;
            }
        } else if entries == 1 {
            report.applied_unacknowledged += 1;
        } else if entries > 1 {
            report.violations.push(format!(
                "unacknowledged ACCEPT of {} applied {entries} times",
                write.dispute_id
            ));
        }
    }

    // Submissions: once in the history, UNDER_REVIEW, and the document locked in
    // document-store, when acknowledged; never twice; never submitted without the lock.
    for write in &submissions {
        let entries: i64 = sqlx::query_scalar(
            "select count(*) from dispute_actions where tenant_id = $1 and dispute_id = $2 and what = 'SUBMIT_EVIDENCE'",
        )
        .bind(TENANT)
        .bind(&write.dispute_id)
        .fetch_one(&disputes_db)
        .await
        .unwrap();
        let locked: Option<bool> = sqlx::query_scalar(
            "select lock_time is not null from documents where tenant_id = $1 and id = $2",
        )
        .bind(TENANT)
        .bind(&write.document_id)
        .fetch_optional(&documents_db)
        .await
        .unwrap();
        let locked = locked.unwrap_or(false);
        if write.acked {
            let status = clients
                .disputes
                .get_dispute(dpb::GetDisputeRequest {
                    id: write.dispute_id.clone(),
                })
                .await
                .map(|r| r.into_inner().dispute.map(|d| d.status()));
            if entries != 1
                || !locked
                || !matches!(status, Ok(Some(dpb::DisputeStatus::UnderReview)))
            {
                report.violations.push(format!(
                    "acknowledged submission of {}: {entries} history entries, document {} locked {locked}, status {status:?}",
                    write.dispute_id, write.document_id
                ));
            } else {
                report.verified += 1;
            }
        } else {
            match (entries, locked) {
                (0, false) => {}
                (1, true) => report.applied_unacknowledged += 1,
                (0, true) => report.locked_without_submission += 1,
                _ => report.violations.push(format!(
                    "unacknowledged submission of {}: {entries} history entries, document {} locked {locked}",
                    write.dispute_id, write.document_id
                )),
            }
        }
    }

    // Network events: one recorded event and one dispute per case.
    for write in &events {
        let recorded: i64 = sqlx::query_scalar(
            "select count(*) from network_events where tenant_id = $1 and network_case_id = $2 and event_id = $3",
        )
        .bind(TENANT)
        .bind(&write.case_id)
        .bind(&write.event_id)
        .fetch_one(&disputes_db)
        .await
        .unwrap();
        let ids: Vec<String> = sqlx::query_scalar(
            "select id from disputes where tenant_id = $1 and network_case_id = $2",
        )
        .bind(TENANT)
        .bind(&write.case_id)
        .fetch_all(&disputes_db)
        .await
        .unwrap();
        match &write.acked {
            Some(id) => {
                if recorded != 1 || ids != [id.clone()] {
                    report.violations.push(format!(
                        "acknowledged event {} of {}: {recorded} recorded, disputes {ids:?} (acknowledged {id})",
                        write.event_id, write.case_id
                    ));
                } else {
                    report.verified += 1;
                }
            }
            None => {
                if recorded > 1 || ids.len() > 1 || (recorded == 1) != (ids.len() == 1) {
                    report.violations.push(format!(
                        "unacknowledged event {} of {}: {recorded} recorded, disputes {ids:?}",
                        write.event_id, write.case_id
                    ));
                } else if recorded == 1 {
                    report.applied_unacknowledged += 1;
                }
            }
        }
    }

    // Uploads left pending (a figure: whose process was killed, or that failed while their
    // cleanup could not reach a dependency), then the abandoned-upload cleaner as it would
    // run once their age passed: every leftover must be one it can remove.
    let pending: Vec<DocumentRow> = sqlx::query_as(
        "select id, state, sha256, size_bytes, object_key, created_at
         from documents where state = 'pending'",
    )
    .fetch_all(&documents_db)
    .await
    .unwrap();
    for row in &pending {
        if last_docs_kill.is_some_and(|kill| row.created_at <= kill) {
            report.left_by_crash += 1;
        } else {
            report.left_by_failure += 1;
        }
    }
    let cleaner = document_store::app::Documents::new(
        documents_db.clone(),
        document_store::store::s3::ObjectStore::new(
            platform
                .s3
                .client(document_store::store::s3::ChecksumMode::WhenRequired),
            BUCKET.to_owned(),
        ),
        document_store::app::UploadSettings {
            max_bytes: 25 * 1024 * 1024,
            part_size: PART_SIZE,
            max_parts_in_flight: 2,
            chunk_idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            upload_deadline: Duration::from_secs(600),
            max_concurrent_uploads: 8,
        },
    );
    loop {
        match cleaner.sweep_abandoned_uploads(Duration::ZERO).await {
            Ok(run) if run.failed > 0 => {
                report.violations.push(format!(
                    "the abandoned-upload cleaner failed on {} uploads after recovery",
                    run.failed
                ));
                break;
            }
            Ok(run) if !run.more => break,
            Ok(_) => {}
            Err(e) => {
                report
                    .violations
                    .push(format!("the abandoned-upload cleaner failed: {e:#}"));
                break;
            }
        }
    }

    // Uploads: complete with the right SHA-256, or absent.
    let mut live_object_keys = BTreeSet::new();
    for write in &uploads {
        let rows: Vec<DocumentRow> = sqlx::query_as(
            "select id, state, sha256, size_bytes, object_key, created_at
             from documents where tenant_id = $1 and filename = $2",
        )
        .bind(TENANT)
        .bind(&write.filename)
        .fetch_all(&documents_db)
        .await
        .unwrap();
        for row in &rows {
            live_object_keys.insert(row.object_key.clone());
            if row.state != "available" {
                report.violations.push(format!(
                    "upload {} ({}) still {} after the cleaner",
                    write.filename, row.id, row.state
                ));
            }
        }
        let available: Vec<&DocumentRow> = rows.iter().filter(|r| r.state == "available").collect();
        if available.len() > 1 {
            report.violations.push(format!(
                "upload {} stored {} times",
                write.filename,
                available.len()
            ));
            continue;
        }
        let Some(row) = available.first() else {
            if let Some(id) = &write.acked {
                report.violations.push(format!(
                    "acknowledged upload {} ({id}) has no available row",
                    write.filename
                ));
            }
            continue;
        };
        if write.acked.as_ref().is_some_and(|id| *id != row.id) {
            report.violations.push(format!(
                "acknowledged upload {} is {:?} but the row is {}",
                write.filename, write.acked, row.id
            ));
            continue;
        }
        let downloaded = download_sha256(clients, &row.id).await;
        let matches = row.sha256.as_deref() == Some(write.sha256.as_str())
            && row.size_bytes == Some(write.size as i64)
            && downloaded.as_deref() == Ok(write.sha256.as_str());
        if !matches {
            report.violations.push(format!(
                "upload {} ({}, {}): stored {:?} bytes sha256 {:?}, download {:?}; sent {} bytes sha256 {}",
                write.filename,
                row.id,
                if write.acked.is_some() { "acknowledged" } else { "unacknowledged" },
                row.size_bytes,
                row.sha256,
                downloaded,
                write.size,
                write.sha256
            ));
        } else if write.acked.is_some() {
            report.verified += 1;
        } else {
            report.applied_unacknowledged += 1;
        }
    }

    // The S3 server: no incomplete multipart upload and no object without a row.
    let (incomplete, objects) = s3_leftovers(&platform.s3.root);
    for upload_id in &incomplete {
        // Without its key record the upload is invisible to ListMultipartUploads: the
        // server stopped half-way through creating it.
        let keyed = std::fs::read_dir(&platform.s3.root)
            .into_iter()
            .flatten()
            .flatten()
            .any(|entry| {
                entry
                    .file_name()
                    .to_string_lossy()
                    .ends_with(&format!(".upload-{upload_id}.metadata.json"))
            });
        let key = if keyed { "with" } else { "without" };
        report.violations.push(format!(
            "incomplete multipart upload {upload_id} on the S3 server ({key} its key record)"
        ));
    }
    for key in &objects {
        if !live_object_keys.contains(key) {
            report
                .violations
                .push(format!("object {key} without a document row"));
        }
    }
    disputes_db.close().await;
    documents_db.close().await;
}

#[derive(sqlx::FromRow)]
struct DocumentRow {
    id: String,
    state: String,
    sha256: Option<String>,
    size_bytes: Option<i64>,
    object_key: String,
    created_at: chrono::DateTime<chrono::Utc>,
}

/// Downloads a document and hashes what arrived.
async fn download_sha256(clients: &mut Clients, id: &str) -> Result<String, String> {
    let mut stream = clients
        .documents
        .download_document(pb::DownloadDocumentRequest {
            id: id.to_owned(),
            offset: 0,
            length: 0,
        })
        .await
        .map_err(|e| format!("{e:?}"))?
        .into_inner();
    let mut hasher = Sha256::new();
    while let Some(message) = stream.message().await.map_err(|e| format!("{e:?}"))? {
        hasher.update(&message.chunk);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Incomplete multipart upload ids (s3s-fs keeps `.upload-<id>.json` until completion or
/// abort) and object keys in the bucket, read from the S3 server's folder.
fn s3_leftovers(root: &Path) -> (BTreeSet<String>, BTreeSet<String>) {
    let incomplete = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_str()?.to_owned();
            let id = name.strip_prefix(".upload-")?.strip_suffix(".json")?;
            Some(id.to_owned())
        })
        .collect();
    fn walk(dir: &Path, bucket: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path: PathBuf = entry.path();
            if path.is_dir() {
                walk(&path, bucket, out);
            } else if let Ok(key) = path.strip_prefix(bucket)
                && let Some(key) = key.to_str()
            {
                out.insert(key.to_owned());
            }
        }
    }
    let mut objects = BTreeSet::new();
    let bucket = root.join(BUCKET);
    walk(&bucket, &bucket, &mut objects);
    (incomplete, objects)
}
