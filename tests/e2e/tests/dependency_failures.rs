//! A failing dependency gives a clear, retryable answer: with PostgreSQL or S3 unreachable
//! (behind a switchable proxy), or a lock held past `lock_timeout`, calls answer UNAVAILABLE
//! with RetryInfo and an ErrorInfo reason (never INTERNAL), readiness health turns
//! NOT_SERVING while liveness stays SERVING, and once the dependency is back health returns
//! to SERVING and calls succeed without a restart. S3 answers lost on the way (an abort or a
//! CreateMultipartUpload run late) leave no multipart upload open.

use std::net::SocketAddr;
use std::time::Duration;

use disputes_proto::disputes_v1 as dpb;
use disputes_proto::documents_v1 as pb;
use harness::StackOptions;
use harness::tonic_health_client::health_check_service;
use sqlx::{Connection, PgConnection};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tonic::Code;
use tonic_types::StatusExt;

use crate::fixtures::{
    act, create, download, error_reason, get_dispute, header, merchant_dispute, pdf_of_size,
    pending_document_ids, stack_with, upload, upload_cleaner,
};

const DISPUTES: &str = "disputes.v1.DisputeService";
const DOCUMENTS: &str = "documents.v1.DocumentService";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Forward bytes both ways.
    Pass,
    /// Close every connection, open or new (the dependency is down: connection refused or
    /// reset).
    Refuse,
    /// Accept connections and never answer; open ones stall (a network black hole).
    BlackHole,
}

/// A TCP proxy whose behaviour the test switches between passing, refusing and
/// black-holing. Connections opened or stalled during an outage are closed when it ends, so
/// clients reconnect cleanly.
struct SwitchableProxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
}

impl SwitchableProxy {
    async fn start(target: SocketAddr) -> SwitchableProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, _) = watch::channel(Mode::Pass);
        let modes = mode.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                tokio::spawn(proxy_connection(inbound, target, modes.subscribe()));
            }
        });
        SwitchableProxy { addr, mode }
    }

    fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

async fn proxy_connection(
    mut inbound: TcpStream,
    target: SocketAddr,
    mut mode: watch::Receiver<Mode>,
) {
    let current = *mode.borrow_and_update();
    match current {
        Mode::Refuse => {}
        Mode::BlackHole => {
            // Hold the socket silently until the outage ends.
            let _ = mode.wait_for(|m| *m != Mode::BlackHole).await;
        }
        Mode::Pass => {
            let Ok(mut outbound) = TcpStream::connect(target).await else {
                return;
            };
            let outage = tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
                changed = mode.wait_for(|m| *m != Mode::Pass) => changed.map(|m| *m),
            };
            if outage.is_ok_and(|m| m == Mode::BlackHole) {
                // Stall: keep both sockets open, forward nothing.
                let _ = mode.wait_for(|m| *m != Mode::BlackHole).await;
            }
        }
    }
}

/// Polls the health of `service` on `addr` until it is `serving` (SERVING or not).
async fn wait_for_health(addr: SocketAddr, service: &str, serving: bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if health_check_service(addr, service)
            .await
            .is_ok_and(|s| s == serving)
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "health of {service} on {addr} did not become serving={serving}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// UNAVAILABLE with the ErrorInfo `reason`, a RetryInfo delay and no internal detail.
fn assert_retryable_unavailable(status: &tonic::Status, reason: &str) {
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(error_reason(status), reason, "{status:?}");
    let retry_delay = status
        .get_error_details()
        .retry_info()
        .and_then(|r| r.retry_delay);
    assert!(
        retry_delay.is_some_and(|d| !d.is_zero()),
        "UNAVAILABLE carries a RetryInfo delay: {status:?}"
    );
    for internal in [
        "sqlx",
        "pool",
        "io error",
        "connection",
        "dispatch",
        "timed out",
    ] {
        assert!(
            !status.message().to_lowercase().contains(internal),
            "the message leaks an internal detail ({internal}): {}",
            status.message()
        );
    }
}

/// A free port on 127.0.0.1 (for a server the proxy must know before it starts).
async fn free_local_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test]
async fn a_lock_held_past_lock_timeout_answers_unavailable_with_retry_info() {
    let mut options = StackOptions::default();
    options.dispute_core_resilience.db_lock_timeout_ms = 200;
    let stack = stack_with(options).await;
    let mut client = stack.disputes_of("acct_lock_timeout").await;
    let dispute = create(&mut client, merchant_dispute("req-lock", "ch_lock")).await;

    let mut lock = PgConnection::connect(&stack.dispute_db_url).await.unwrap();
    sqlx::query("begin").execute(&mut lock).await.unwrap();
    sqlx::query("select id from disputes where id = $1 for update")
        .bind(&dispute.id)
        .fetch_one(&mut lock)
        .await
        .unwrap();
    let status = act(&mut client, &dispute.id, dpb::DisputeActionType::Accept)
        .await
        .unwrap_err();
    assert_retryable_unavailable(&status, "DATABASE_UNAVAILABLE");
    lock.close().await.unwrap();

    // The retry the client was told to make succeeds.
    let accepted = act(&mut client, &dispute.id, dpb::DisputeActionType::Accept)
        .await
        .unwrap();
    assert_eq!(accepted.status(), dpb::DisputeStatus::Lost);
    stack.stop().await;
}

#[tokio::test]
async fn an_unreachable_database_answers_unavailable_and_recovers_without_restart() {
    let postgres: SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let proxy = SwitchableProxy::start(postgres).await;
    let mut options = StackOptions {
        database_addr: Some(proxy.addr),
        ..StackOptions::default()
    };
    for resilience in [
        &mut options.dispute_core_resilience.db_acquire_timeout_ms,
        &mut options
            .document_store_resilience
            .common
            .db_acquire_timeout_ms,
    ] {
        *resilience = 500;
    }
    options.dispute_core_resilience.health_probe_timeout_ms = 300;
    options
        .document_store_resilience
        .common
        .health_probe_timeout_ms = 300;
    let stack = stack_with(options).await;
    let mut disputes = stack.disputes_of("acct_db_down").await;
    let mut documents = stack.documents_of("acct_db_down").await;
    let dispute = create(&mut disputes, merchant_dispute("req-db-1", "ch_db_1")).await;
    wait_for_health(stack.dispute_core_addr, DISPUTES, true).await;

    proxy.set(Mode::Refuse);
    let status = disputes
        .get_dispute(dpb::GetDisputeRequest {
            id: dispute.id.clone(),
        })
        .await
        .unwrap_err();
    assert_retryable_unavailable(&status, "DATABASE_UNAVAILABLE");
    let status = disputes
        .create_dispute(merchant_dispute("req-db-2", "ch_db_2"))
        .await
        .unwrap_err();
    assert_retryable_unavailable(&status, "DATABASE_UNAVAILABLE");
    let status = documents
        .list_documents(pb::ListDocumentsRequest::default())
        .await
        .unwrap_err();
    assert_retryable_unavailable(&status, "DATABASE_UNAVAILABLE");
    // Readiness follows the database; liveness does not.
    wait_for_health(stack.dispute_core_addr, DISPUTES, false).await;
    wait_for_health(stack.document_store_addr, DOCUMENTS, false).await;
    assert!(
        health_check_service(stack.dispute_core_addr, "")
            .await
            .unwrap()
    );
    assert!(
        health_check_service(stack.document_store_addr, "")
            .await
            .unwrap()
    );

    // A black hole (connections accepted, nothing answered) also ends in UNAVAILABLE,
    // within the pool's acquire timeout, not a hang.
    proxy.set(Mode::BlackHole);
    let status = disputes
        .get_dispute(dpb::GetDisputeRequest {
            id: dispute.id.clone(),
        })
        .await
        .unwrap_err();
    assert_retryable_unavailable(&status, "DATABASE_UNAVAILABLE");

    proxy.set(Mode::Pass);
    wait_for_health(stack.dispute_core_addr, DISPUTES, true).await;
    wait_for_health(stack.document_store_addr, DOCUMENTS, true).await;
    assert_eq!(get_dispute(&mut disputes, &dispute.id).await.id, dispute.id);
    let second = create(&mut disputes, merchant_dispute("req-db-2", "ch_db_2")).await;
    assert_ne!(second.id, dispute.id);
    documents
        .list_documents(pb::ListDocumentsRequest::default())
        .await
        .unwrap();
    stack.stop().await;
}

#[tokio::test]
async fn an_unreachable_object_store_answers_unavailable_and_recovers_without_restart() {
    let s3_addr = free_local_addr().await;
    let proxy = SwitchableProxy::start(s3_addr).await;
    let mut options = StackOptions {
        s3_addr: Some(s3_addr),
        document_store_s3_endpoint: Some(format!("http://{}", proxy.addr)),
        ..StackOptions::default()
    };
    let resilience = &mut options.document_store_resilience;
    resilience.s3_connect_timeout_ms = 300;
    resilience.s3_attempt_timeout_ms = 500;
    resilience.s3_operation_timeout_ms = 1_000;
    resilience.s3_max_attempts = 1;
    resilience.common.health_probe_timeout_ms = 300;
    let stack = stack_with(options).await;
    let mut documents = stack.documents_of("acct_s3_down").await;
    let bytes = pdf_of_size(64 * 1024);
    let document = upload(
        &mut documents,
        header("evidence.pdf", "application/pdf"),
        &bytes,
    )
    .await
    .unwrap();
    wait_for_health(stack.document_store_addr, DOCUMENTS, true).await;

    for outage in [Mode::Refuse, Mode::BlackHole] {
        proxy.set(outage);
        let status = download(&mut documents, &document.id, 0, 0)
            .await
            .unwrap_err();
        assert_retryable_unavailable(&status, "STORAGE_UNAVAILABLE");
        let status = upload(
            &mut documents,
            header("second.pdf", "application/pdf"),
            &bytes,
        )
        .await
        .unwrap_err();
        assert_retryable_unavailable(&status, "STORAGE_UNAVAILABLE");
        wait_for_health(stack.document_store_addr, DOCUMENTS, false).await;
        assert!(
            health_check_service(stack.document_store_addr, "")
                .await
                .unwrap()
        );
        // Metadata does not need S3: it is still served.
        documents
            .get_document(pb::GetDocumentRequest {
                id: document.id.clone(),
            })
            .await
            .unwrap();

        proxy.set(Mode::Pass);
        wait_for_health(stack.document_store_addr, DOCUMENTS, true).await;
        let (_, downloaded) = download(&mut documents, &document.id, 0, 0).await.unwrap();
        assert_eq!(downloaded, bytes);
    }
    let listed = documents
        .list_documents(pb::ListDocumentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.documents.len(),
        1,
        "a failed upload stored nothing visible"
    );
    stack.stop().await;
}

/// An AbortMultipartUpload whose answer was lost is retried (by the SDK, or by the next
/// cleanup) and finds the upload gone: that is success, not an error. It was seen as
/// UploadDocument INTERNAL in the fault scenario when a CreateMultipartUpload retry first
/// aborted what was open on the key.
#[tokio::test]
async fn aborting_an_upload_already_aborted_succeeds_and_an_open_one_is_still_aborted() {
    let stack = crate::fixtures::stack().await;
    let objects = stack.object_store();
    let key = "acct_abort/doc_twice";
    let upload_id = objects.create_multipart_upload_once(key).await.unwrap();
    let other_id = objects.create_multipart_upload_once(key).await.unwrap();
    assert_eq!(objects.list_multipart_uploads(key).await.unwrap().len(), 2);

    objects
        .abort_multipart_upload(key, &upload_id)
        .await
        .unwrap();
    // The retry after a lost answer: the server no longer knows the upload.
    objects
        .abort_multipart_upload(key, &upload_id)
        .await
        .unwrap();
    assert_eq!(
        objects.list_multipart_uploads(key).await.unwrap(),
        vec![other_id.clone()],
        "only the aborted upload is gone"
    );
    // Aborting every open upload on the key, twice (a retried cleanup), leaves none.
    objects.abort_open_multipart_uploads(key).await.unwrap();
    objects
        .abort_multipart_upload(key, &other_id)
        .await
        .unwrap();
    assert!(
        objects
            .list_multipart_uploads(key)
            .await
            .unwrap()
            .is_empty()
    );
    stack.stop().await;
}

/// A stack whose document-store reaches S3 through a server that answers the first
/// CreateMultipartUpload 500 and runs it late, just before the retry (see
/// `S3Server::start_with_late_creates`); both servers share one folder.
async fn stack_with_late_creates() -> (harness::Stack, harness::S3Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s3");
    let late = harness::S3Server::start_with_late_creates(&root, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let stack = stack_with(StackOptions {
        s3_root: Some(root),
        document_store_s3_endpoint: Some(late.endpoint.clone()),
        ..StackOptions::default()
    })
    .await;
    (stack, late, dir)
}

/// Multipart uploads still open on the S3 server (their `.upload-<id>.json` records).
fn open_multipart_uploads(stack: &harness::Stack) -> Vec<String> {
    stack
        .s3
        .files()
        .into_iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| n.starts_with(".upload-") && n.ends_with(".json"))
        .collect()
}

/// A CreateMultipartUpload whose answer was lost can open its upload after the retry's
/// cleanup looked: the upload still succeeds, and the late upload is aborted once ours is
/// complete instead of staying open (and billed) for good.
#[tokio::test]
async fn a_create_multipart_upload_run_late_leaves_no_upload_open() {
    let (stack, late, _dir) = stack_with_late_creates().await;
    let pool = sqlx::PgPool::connect(&stack.document_db_url).await.unwrap();
    let mut documents = stack.documents_of("acct_late_create").await;
    let bytes = pdf_of_size(6 * 1024 * 1024 + 1);

    let document = upload(&mut documents, header("big.pdf", "application/pdf"), &bytes)
        .await
        .unwrap();

    let (_, downloaded) = download(&mut documents, &document.id, 0, 0).await.unwrap();
    assert!(
        downloaded == bytes,
        "the stored bytes are the uploaded ones"
    );
    assert_eq!(open_multipart_uploads(&stack), Vec::<String>::new());
    assert_eq!(pending_document_ids(&pool).await, Vec::<String>::new());
    stack.stop().await;
    late.stop().await;
}

/// The same late CreateMultipartUpload under an upload that then fails: what is open on the
/// key is aborted, and the row stays pending (invisible) for the abandoned-upload cleaner,
/// since the late request could still open an upload after that abort; the cleaner then
/// removes everything.
#[tokio::test]
async fn a_failed_upload_with_a_late_create_is_left_to_the_cleaner() {
    let (stack, late, _dir) = stack_with_late_creates().await;
    let pool = sqlx::PgPool::connect(&stack.document_db_url).await.unwrap();
    let mut documents = stack.documents_of("acct_late_create").await;
    let bytes = pdf_of_size(6 * 1024 * 1024 + 1);
    let mut wrong_hash = header("big.pdf", "application/pdf");
    wrong_hash.expected_sha256 = "0".repeat(64);

    let status = upload(&mut documents, wrong_hash, &bytes)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(open_multipart_uploads(&stack), Vec::<String>::new());
    assert_eq!(pending_document_ids(&pool).await.len(), 1);

    let cleaner = upload_cleaner(&stack, pool.clone());
    let run = cleaner
        .sweep_abandoned_uploads(Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(run.failed, 0);
    assert_eq!(pending_document_ids(&pool).await, Vec::<String>::new());
    let left: Vec<_> = stack
        .s3
        .files()
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains(".internal"))
        .collect();
    assert!(left.is_empty(), "nothing of the upload is left: {left:?}");
    documents
        .list_documents(pb::ListDocumentsRequest::default())
        .await
        .map(|r| assert!(r.into_inner().documents.is_empty()))
        .unwrap();
    stack.stop().await;
    late.stop().await;
}
