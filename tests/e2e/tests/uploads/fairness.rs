//! One tenant cannot take a replica's uploads or downloads from the others: a tenant at its
//! share of upload slots is refused while another tenant uploads, an upload trickling below
//! the minimum data rate is ended and stores nothing, and downloads are capped per tenant and
//! per replica, their slots given back when the client goes or stops taking data.

use std::time::Duration;

use disputes_proto::documents_v1 as pb;
use disputes_proto::documents_v1::document_service_client::DocumentServiceClient;
use harness::{Bearer, DocumentsClient, Stack, StackOptions};
use tonic_types::StatusExt;

use super::cancel::{UPLOAD_PATH, grpc_frame, send_within_window};
use super::limits::{chunk_message, header_message, open_upload};
use super::{assert_tenant_left_nothing, options, tenant_rows, wait_until};
use crate::fixtures::*;

/// The stack's options with document-store's fairness flags from `fairness`.
fn fair_options(fairness: document_store::config::Fairness) -> StackOptions {
    let defaults = options();
    StackOptions {
        document_store_resilience: document_store::config::Resilience {
            fairness,
            ..defaults.document_store_resilience.clone()
        },
        ..defaults
    }
}

/// The fairness flags with the minimum upload rate off, so held uploads are not cut.
fn no_rate_floor() -> document_store::config::Fairness {
    document_store::config::Fairness {
        min_upload_rate_bytes_per_sec: 0,
        ..Default::default()
    }
}

fn retry_delay(status: &tonic::Status) -> Option<Duration> {
    status
        .get_error_details()
        .retry_info()
        .and_then(|info| info.retry_delay)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_at_its_upload_share_is_refused_while_another_tenant_uploads() {
    let stack = stack_with(StackOptions {
        max_concurrent_uploads: 8,
        ..fair_options(document_store::config::Fairness {
            max_uploads_per_tenant: Some(2),
            ..no_rate_floor()
        })
    })
    .await;
    let bytes = pdf_of_size(3000);
    // Tenant A holds its two slots: header and a first chunk sent, the rest held back.
    let mut held = Vec::new();
    for n in 0..2 {
        let upload = open_upload(&stack, "acme").await;
        upload
            .tx
            .send(header_message(header(
                &format!("held-{n}.pdf"),
                "application/pdf",
            )))
            .await
            .unwrap();
        upload.tx.send(chunk_message(&bytes[..1000])).await.unwrap();
        held.push(upload);
    }
    wait_until("both held uploads' rows", || async {
        tenant_rows(&stack, "acme").await == 2
    })
    .await;

    // A's next upload is refused at once, naming the tenant's cap.
    let mut acme = stack.documents_of("acme").await;
    let status = upload(&mut acme, header("third.pdf", "application/pdf"), &bytes)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert_eq!(error_reason(&status), "TENANT_UPLOAD_CAPACITY");
    assert_eq!(retry_delay(&status), Some(Duration::from_secs(1)));
    assert!(status.message().contains("2 uploads"), "{status:?}");

    // Tenant B uploads meanwhile, on the slots A cannot take.
    let mut globex = stack.documents_of("globex").await;
    let mut stored_for_b = 0;
    for n in 0..3 {
        let document = upload(
            &mut globex,
            header(&format!("b-{n}.pdf"), "application/pdf"),
            &bytes,
        )
        .await
        .unwrap();
        assert_eq!(document.size_bytes, 3000);
        stored_for_b += 1;
    }
    println!(
        "upload share 2 of 8: tenant A holds 2, its 3rd refused (TENANT_UPLOAD_CAPACITY); tenant B stored {stored_for_b} meanwhile"
    );

    // A's held uploads complete, and its slot is free again afterwards.
    for upload in held {
        upload.tx.send(chunk_message(&bytes[1000..])).await.unwrap();
        drop(upload.tx);
        let document = upload
            .call
            .await
            .unwrap()
            .unwrap()
            .into_inner()
            .document
            .unwrap();
        assert_eq!(document.size_bytes, 3000);
    }
    let again = upload(&mut acme, header("again.pdf", "application/pdf"), &bytes)
        .await
        .unwrap();
    assert_eq!(again.size_bytes, 3000);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_below_the_minimum_rate_is_ended_and_stores_nothing() {
    let stack = stack_with(fair_options(document_store::config::Fairness {
        min_upload_rate_bytes_per_sec: 16 * 1024,
        upload_rate_window_ms: 1_000,
        upload_rate_grace_ms: 1_000,
        ..Default::default()
    }))
    .await;

    // A fast upload is untouched by the floor.
    let mut client = stack.documents_of("acme").await;
    let fast_bytes = pdf_of_size(2 * MIB);
    let fast = client
        .upload_document(tokio_stream::iter(upload_messages(
            header("fast.pdf", "application/pdf"),
            &fast_bytes,
            64 * 1024,
        )))
        .await
        .unwrap()
        .into_inner()
        .document
        .unwrap();
    assert_eq!(fast.size_bytes, fast_bytes.len() as i64);
    let baseline = stack.s3.files();

    // 100 bytes every 100 ms: 1,000 bytes/s, never idle long enough for the idle timeout.
    let slow = open_upload(&stack, "globex").await;
    let started = tokio::time::Instant::now();
    let tx = slow.tx.clone();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sent_by_trickle = sent.clone();
    let trickle = tokio::spawn(async move {
        tx.send(header_message(header("slow.pdf", "application/pdf")))
            .await
            .unwrap();
        let bytes = pdf_of_size(100_000);
        for chunk in bytes.chunks(100) {
            if tx.send(chunk_message(chunk)).await.is_err() {
                return;
            }
            sent_by_trickle.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    wait_until("the slow upload's row", || async {
        tenant_rows(&stack, "globex").await == 1
    })
    .await;
    let pool = sqlx::PgPool::connect(&stack.document_db_url).await.unwrap();
    let slow_id: String = sqlx::query_scalar("select id from documents where tenant_id = 'globex'")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;

    let status = slow.call.await.unwrap().unwrap_err();
    let ended_after = started.elapsed();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert_eq!(error_reason(&status), "UPLOAD_TOO_SLOW");
    assert!(
        status
            .message()
            .contains("below the required 16384 bytes/s"),
        "{status:?}"
    );
    drop(slow.tx);
    trickle.abort();
    let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
    // Ended once the grace period is over, long before the idle timeout or the deadline.
    assert!(ended_after < Duration::from_secs(30), "{ended_after:?}");

    // Nothing of it is stored or visible.
    assert_tenant_left_nothing(&stack, "globex", &baseline).await;
    let mut globex = stack.documents_of("globex").await;
    let missing = globex
        .get_document(pb::GetDocumentRequest { id: slow_id })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound, "{missing:?}");
    let listed = globex
        .list_documents(pb::ListDocumentsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .documents;
    assert!(listed.is_empty(), "{listed:?}");
    println!(
        "trickling upload ({sent} bytes sent at ~1000 bytes/s) ended after {} ms: {}",
        ended_after.as_millis(),
        status.message()
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_chunk_arriving_slowly_but_above_the_floor_is_not_cut() {
    use bytes::Bytes;
    use prost::Message;

    let stack = stack_with(fair_options(document_store::config::Fairness {
        min_upload_rate_bytes_per_sec: 16 * 1024,
        upload_rate_window_ms: 1_000,
        upload_rate_grace_ms: 1_000,
        ..Default::default()
    }))
    .await;
    // One 256 KiB chunk message sent 8 KiB every 100 ms (about 80 KiB/s): no message
    // completes for about 3 s, yet the bytes flow at five times the floor.
    let bytes = pdf_of_size(256 * 1024);
    let tcp = tokio::net::TcpStream::connect(stack.document_store_addr)
        .await
        .unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.unwrap();
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("http://{}{UPLOAD_PATH}", stack.document_store_addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header(
            "authorization",
            format!("Bearer {}", stack.full_token("acme")),
        )
        .body(())
        .unwrap();
    let (response, mut stream) = client.send_request(request, false).unwrap();
    let started = tokio::time::Instant::now();
    send_within_window(
        &mut stream,
        grpc_frame(&header_message(header("big-chunk.pdf", "application/pdf"))),
    )
    .await;
    let mut chunk = grpc_frame(&chunk_message(&bytes));
    while !chunk.is_empty() {
        let piece = chunk.split_to(chunk.len().min(8 * 1024));
        send_within_window(&mut stream, piece).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stream.send_data(Bytes::new(), true).unwrap();
    let sending = started.elapsed();

    let response = response.await.unwrap();
    let mut body = response.into_body();
    let mut answer = Vec::new();
    while let Some(data) = body.data().await {
        let data = data.unwrap();
        let _ = body.flow_control().release_capacity(data.len());
        answer.extend_from_slice(&data);
    }
    let trailers = body.trailers().await.unwrap().unwrap_or_default();
    assert_eq!(
        trailers.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"0"[..]),
        "{trailers:?}"
    );
    let document = pb::UploadDocumentResponse::decode(&answer[5..])
        .unwrap()
        .document
        .unwrap();
    assert_eq!(document.size_bytes, bytes.len() as i64);
    assert!(sending > Duration::from_secs(2), "{sending:?}");
    println!(
        "one 256 KiB chunk sent over {} ms (window 1 s, floor 16 KiB/s): stored",
        sending.as_millis()
    );
    stack.stop().await;
}

/// A DocumentService client of `tenant` on its own connection with 64 KiB windows, so a
/// download it does not read stops the server after a few chunks. (Its connection window
/// is then used up too: further reads go through another connection.)
async fn narrow_client(stack: &Stack, tenant: &str) -> DocumentsClient {
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", stack.document_store_addr))
            .unwrap()
            .initial_stream_window_size(Some(64 * 1024))
            .initial_connection_window_size(Some(64 * 1024))
            .connect()
            .await
            .unwrap();
    DocumentServiceClient::with_interceptor(
        channel,
        Bearer::new(Some(&stack.full_token(tenant))).unwrap(),
    )
}

/// Opens a download of `id` and reads nothing of it.
async fn open_download(
    client: &mut DocumentsClient,
    id: &str,
) -> Result<tonic::Streaming<pb::DownloadDocumentResponse>, tonic::Status> {
    client
        .download_document(pb::DownloadDocumentRequest {
            id: id.to_owned(),
            offset: 0,
            length: 0,
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Uploads a 2 MiB file for `tenant` (larger than every buffer between the server's reader
/// and a narrow client that reads nothing).
async fn big_document(stack: &Stack, tenant: &str) -> (String, Vec<u8>) {
    let mut client = stack.documents_of(tenant).await;
    let bytes = pdf_of_size(2 * MIB);
    let document = upload(&mut client, header("big.pdf", "application/pdf"), &bytes)
        .await
        .unwrap();
    (document.id, bytes)
}

/// Reads the rest of `stream`: the bytes, and the status it ended with.
async fn read_to_end(
    mut stream: tonic::Streaming<pb::DownloadDocumentResponse>,
) -> (Vec<u8>, Result<(), tonic::Status>) {
    let mut bytes = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(message)) => bytes.extend_from_slice(&message.chunk),
            Ok(None) => return (bytes, Ok(())),
            Err(status) => return (bytes, Err(status)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_caps_refuse_the_next_stream_and_free_a_slot_when_its_client_goes() {
    let stack = stack_with(fair_options(document_store::config::Fairness {
        max_concurrent_downloads: 3,
        max_downloads_per_tenant: Some(2),
        ..Default::default()
    }))
    .await;
    let (acme_doc, acme_bytes) = big_document(&stack, "acme").await;
    let (globex_doc, _) = big_document(&stack, "globex").await;
    let (initech_doc, _) = big_document(&stack, "initech").await;

    let mut acme = narrow_client(&stack, "acme").await;
    let first = open_download(&mut acme, &acme_doc).await.unwrap();
    let second = open_download(&mut acme, &acme_doc).await.unwrap();
    let refused = open_download(&mut acme, &acme_doc).await.unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert_eq!(error_reason(&refused), "TENANT_DOWNLOAD_CAPACITY");
    assert_eq!(retry_delay(&refused), Some(Duration::from_secs(1)));

    // Another tenant takes the replica's last slot; a third finds the replica full.
    let mut globex = narrow_client(&stack, "globex").await;
    let third = open_download(&mut globex, &globex_doc).await.unwrap();
    let mut initech = narrow_client(&stack, "initech").await;
    let full = open_download(&mut initech, &initech_doc).await.unwrap_err();
    assert_eq!(full.code(), tonic::Code::ResourceExhausted, "{full:?}");
    assert_eq!(error_reason(&full), "DOWNLOAD_CAPACITY");
    assert_eq!(retry_delay(&full), Some(Duration::from_secs(1)));

    // A client going away (its stream reset) gives its slot back.
    let mut acme = stack.documents_of("acme").await;
    drop(first);
    let mut attempts = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let reopened = loop {
        attempts += 1;
        match open_download(&mut acme, &acme_doc).await {
            Err(status)
                if status.code() == tonic::Code::ResourceExhausted
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => break other.unwrap(),
        }
    };
    let (bytes, end) = read_to_end(reopened).await;
    end.unwrap();
    assert!(bytes == acme_bytes, "downloaded bytes differ");
    println!(
        "download caps 2 per tenant / 3 per replica: tenant A's 3rd refused (TENANT_DOWNLOAD_CAPACITY), a 4th stream refused (DOWNLOAD_CAPACITY); a dropped stream's slot reused after {attempts} attempt(s)"
    );
    drop((second, third));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_whose_client_takes_nothing_is_ended_and_frees_its_slot() {
    let stack = stack_with(fair_options(document_store::config::Fairness {
        max_downloads_per_tenant: Some(1),
        download_stall_timeout_ms: 2_000,
        ..Default::default()
    }))
    .await;
    let (id, bytes) = big_document(&stack, "acme").await;
    let mut narrow = narrow_client(&stack, "acme").await;
    let mut acme = stack.documents_of("acme").await;
    let stalled = open_download(&mut narrow, &id).await.unwrap();
    let opened = tokio::time::Instant::now();

    // The only slot is given back once the reader has waited out the stall timeout.
    let mut refusals = 0;
    let deadline = opened + Duration::from_secs(10);
    let next = loop {
        match open_download(&mut acme, &id).await {
            Err(status)
                if status.code() == tonic::Code::ResourceExhausted
                    && tokio::time::Instant::now() < deadline =>
            {
                assert_eq!(error_reason(&status), "TENANT_DOWNLOAD_CAPACITY");
                refusals += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => break other.unwrap(),
        }
    };
    let freed_after = opened.elapsed();
    assert!(refusals >= 1, "the slot was held at first");
    let (downloaded, end) = read_to_end(next).await;
    end.unwrap();
    assert!(downloaded == bytes, "downloaded bytes differ");

    // The stalled stream, read at last, says it was cut rather than ending as complete.
    let (partial, end) = read_to_end(stalled).await;
    let status = end.unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert_eq!(error_reason(&status), "DOWNLOAD_STALLED");
    assert!(partial.len() < bytes.len(), "{} bytes", partial.len());
    println!(
        "stalled download: slot freed after {} ms ({refusals} refusals meanwhile); the stalled stream delivered {} of {} bytes, then {}",
        freed_after.as_millis(),
        partial.len(),
        bytes.len(),
        status.message()
    );
    stack.stop().await;
}
