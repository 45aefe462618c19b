//! Uploads that end before the file does (issue 10 §1): a raw HTTP/2 client resetting its
//! stream with CANCEL or NO_ERROR, and a tonic client dropping its call, leave no row, no
//! object and no multipart upload behind; a declared size that the bytes do not match is
//! refused and stores nothing.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use disputes_proto::documents_v1 as pb;
use harness::{Stack, StackOptions};
use prost::Message;
use tokio::net::TcpStream;

use crate::fixtures::*;

const PART: usize = 5 * MIB;
const UPLOAD_PATH: &str = "/documents.v1.DocumentService/UploadDocument";

fn options() -> StackOptions {
    StackOptions {
        part_size_bytes: PART,
        max_upload_bytes: 25 * MIB as u64,
        ..Default::default()
    }
}

/// Rows of `tenant` in document-store's database, in any state.
async fn tenant_rows(stack: &Stack, tenant: &str) -> i64 {
    let pool = sqlx::PgPool::connect(&stack.document_db_url).await.unwrap();
    let count = sqlx::query_scalar("select count(*) from documents where tenant_id = $1")
        .bind(tenant)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    count
}

/// Objects the S3 server lists under `tenant`'s prefix.
async fn tenant_objects(stack: &Stack, tenant: &str) -> Vec<String> {
    let client = stack
        .s3
        .client(document_store::store::s3::ChecksumMode::WhenRequired);
    let listed = client
        .list_objects_v2()
        .bucket(&stack.bucket)
        .prefix(format!("tenants/{tenant}/"))
        .send()
        .await
        .unwrap();
    listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

/// Polls (up to 10 s: cleanup runs after the caller is gone) until `tenant` has no row, no
/// listed object, and the S3 server's folder holds nothing beyond `baseline`. s3s-fs does
/// not implement ListMultipartUploads; its folder holds every part and every open
/// multipart upload's record, so comparing the folder covers incomplete uploads.
async fn assert_tenant_left_nothing(stack: &Stack, tenant: &str, baseline: &[std::path::PathBuf]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let rows = tenant_rows(stack, tenant).await;
        let objects = tenant_objects(stack, tenant).await;
        let files = stack.s3.files();
        if rows == 0 && objects.is_empty() && files == baseline {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "leftovers of {tenant}: {rows} row(s), objects {objects:?}, files {files:?} (baseline {baseline:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (up to 10 s) until `check` holds.
async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One gRPC message on the wire: uncompressed flag, big-endian length, protobuf bytes.
fn grpc_frame(message: &pb::UploadDocumentRequest) -> Bytes {
    let body = message.encode_to_vec();
    let mut frame = BytesMut::with_capacity(5 + body.len());
    frame.put_u8(0);
    frame.put_u32(u32::try_from(body.len()).unwrap());
    frame.extend_from_slice(&body);
    frame.freeze()
}

/// Sends `data` on `stream` as the peer's flow control allows.
async fn send_within_window(stream: &mut h2::SendStream<Bytes>, mut data: Bytes) {
    while !data.is_empty() {
        stream.reserve_capacity(data.len());
        let granted = std::future::poll_fn(|cx| stream.poll_capacity(cx))
            .await
            .expect("stream open")
            .expect("capacity");
        let piece = data.split_to(granted.min(data.len()));
        stream.send_data(piece, false).unwrap();
    }
}

/// A raw HTTP/2 client sends the header and the first `sent` bytes of `bytes` as an upload
/// of `tenant`, waits until the server has them (and, for `multipart`, until parts reached
/// S3), then resets the stream with `reason`. Returns the h2 client, to keep the
/// connection open while the caller checks what the server kept.
async fn raw_upload_then_reset(
    stack: &Stack,
    tenant: &str,
    bytes: &[u8],
    sent: usize,
    multipart: bool,
    reason: h2::Reason,
) -> h2::client::SendRequest<Bytes> {
    let baseline = stack.s3.files();
    let tcp = TcpStream::connect(stack.document_store_addr).await.unwrap();
    let (client, mut connection) = h2::client::Builder::new()
        .initial_window_size(8 * MIB as u32)
        .initial_connection_window_size(16 * MIB as u32)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    let mut ping_pong = connection.ping_pong().expect("ping_pong taken once");
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
            format!("Bearer {}", stack.full_token(tenant)),
        )
        .body(())
        .unwrap();
    let (response, mut stream) = client.send_request(request, false).unwrap();
    for message in upload_messages(
        header("cut.pdf", "application/pdf"),
        &bytes[..sent],
        256 * 1024,
    ) {
        send_within_window(&mut stream, grpc_frame(&message)).await;
    }
    // The server has the header once its pending row exists; a PING answered after the
    // data was written means the server's HTTP/2 layer has read every byte before it.
    wait_until("pending row", || async {
        tenant_rows(stack, tenant).await == 1
    })
    .await;
    if multipart {
        wait_until("parts on S3", || async { stack.s3.files() != baseline }).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    ping_pong.ping(h2::Ping::opaque()).await.unwrap();

    stream.send_reset(reason);
    // Whatever the server answers, the reset call did not store a document.
    if let Ok(response) = response.await {
        assert_ne!(
            response.headers().get("grpc-status").map(|v| v.as_bytes()),
            Some(&b"0"[..]),
            "a reset upload must not succeed"
        );
    }
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_reset_with_cancel_mid_file_stores_nothing() {
    let stack = stack_with(options()).await;
    let baseline = stack.s3.files();
    // 2 MiB of a 3 MiB PDF: below one part, so a single PUT would store it.
    let bytes = pdf_of_size(3 * MIB);
    let _client =
        raw_upload_then_reset(&stack, "acme", &bytes, 2 * MIB, false, h2::Reason::CANCEL).await;
    assert_tenant_left_nothing(&stack, "acme", &baseline).await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_reset_with_no_error_mid_file_stores_nothing() {
    let stack = stack_with(options()).await;
    let baseline = stack.s3.files();
    // Single-object size, then past two parts so a multipart upload is open at the reset.
    let small = pdf_of_size(3 * MIB);
    let _small =
        raw_upload_then_reset(&stack, "acme", &small, 2 * MIB, false, h2::Reason::NO_ERROR).await;
    assert_tenant_left_nothing(&stack, "acme", &baseline).await;
    let large = pdf_of_size(3 * PART);
    let _large = raw_upload_then_reset(
        &stack,
        "globex",
        &large,
        2 * PART + MIB,
        true,
        h2::Reason::NO_ERROR,
    )
    .await;
    assert_tenant_left_nothing(&stack, "globex", &baseline).await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_client_dropping_its_call_mid_file_stores_nothing() {
    let stack = stack_with(options()).await;
    let baseline = stack.s3.files();
    // 7 MiB of a 12 MiB file, as in the issue: one part is on S3 when the call goes away.
    let bytes = pdf_of_size(12 * MIB);
    let messages = upload_messages(header("dropped.pdf", "application/pdf"), &bytes, MIB);
    let mut client = stack.documents_of("acme").await;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let call = tokio::spawn(async move {
        client
            .upload_document(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    for message in messages.into_iter().take(1 + 7) {
        tx.send(message).await.unwrap();
    }
    wait_until("parts on S3", || async { stack.s3.files() != baseline }).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Dropping the call future drops its request body: tonic resets the stream (CANCEL).
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    assert_tenant_left_nothing(&stack, "acme", &baseline).await;
    drop(tx);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_deadline_passing_mid_file_stores_nothing() {
    let stack = stack_with(options()).await;
    let baseline = stack.s3.files();
    let bytes = pdf_of_size(12 * MIB);
    let messages = upload_messages(header("late.pdf", "application/pdf"), &bytes, MIB);
    let mut client = stack.documents_of("acme").await;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    // Sent as `grpc-timeout`: the server drops the call when it passes.
    request.set_timeout(Duration::from_secs(2));
    let call = tokio::spawn(async move { client.upload_document(request).await });
    for message in messages.into_iter().take(1 + 7) {
        tx.send(message).await.unwrap();
    }
    // The rest never comes; the deadline passes with a multipart upload open.
    let status = call.await.unwrap().unwrap_err();
    assert!(
        matches!(
            status.code(),
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
        ),
        "{status:?}"
    );
    assert_tenant_left_nothing(&stack, "acme", &baseline).await;
    drop(tx);
    stack.stop().await;
}

fn sized_header(declared: usize) -> pb::DocumentHeader {
    pb::DocumentHeader {
        expected_size_bytes: declared as u64,
        ..header("sized.pdf", "application/pdf")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_size_mismatch_is_refused_and_stores_nothing() {
    let stack = stack_with(options()).await;
    let baseline = stack.s3.files();
    let mut client = stack.documents_of("acme").await;
    // (declared, sent): too few and too many bytes, single object and multipart.
    for (declared, sent) in [
        (1000, 999),
        (100, 101),
        (3 * PART, 3 * PART - 1),
        (2 * PART, 3 * PART),
        (PART + 1, PART),
    ] {
        let status = upload(&mut client, sized_header(declared), &pdf_of_size(sent))
            .await
            .unwrap_err();
        assert_eq!(
            violated_fields(&status),
            vec!["header.expected_size_bytes"],
            "declared {declared}, sent {sent}"
        );
        assert_eq!(error_reason(&status), "SIZE_MISMATCH");
    }
    // More than the cap is refused up front, before any byte is stored.
    let status = upload(&mut client, sized_header(25 * MIB + 1), &pdf_of_size(1000))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), vec!["header.expected_size_bytes"]);
    assert_eq!(error_reason(&status), "INVALID_ARGUMENT");
    assert_tenant_left_nothing(&stack, "acme", &baseline).await;

    // A matching size is stored and downloads byte-identical.
    for size in [100, PART, 2 * PART + 1] {
        let bytes = pdf_of_size(size);
        let document = upload(&mut client, sized_header(size), &bytes)
            .await
            .unwrap();
        assert_eq!(document.size_bytes, size as i64);
        let (_, downloaded) = download(&mut client, &document.id, 0, 0).await.unwrap();
        assert!(downloaded == bytes, "{size} bytes: downloaded bytes differ");
    }
    stack.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Bounded memory (issue 10 §2): admission limit, header timeout, overall deadline, tiny chunks.

/// An upload of `tenant` whose messages the test feeds one by one.
struct OpenUpload {
    tx: tokio::sync::mpsc::Sender<pb::UploadDocumentRequest>,
    call:
        tokio::task::JoinHandle<Result<tonic::Response<pb::UploadDocumentResponse>, tonic::Status>>,
}

async fn open_upload(stack: &Stack, tenant: &str) -> OpenUpload {
    let mut client = stack.documents_of(tenant).await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let call = tokio::spawn(async move {
        client
            .upload_document(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    OpenUpload { tx, call }
}

fn chunk_message(bytes: &[u8]) -> pb::UploadDocumentRequest {
    pb::UploadDocumentRequest {
        payload: Some(pb::upload_document_request::Payload::Chunk(
            Bytes::copy_from_slice(bytes),
        )),
    }
}

fn header_message(header: pb::DocumentHeader) -> pb::UploadDocumentRequest {
    pb::UploadDocumentRequest {
        payload: Some(pb::upload_document_request::Payload::Header(header)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_beyond_the_admission_limit_are_refused_with_retry_info() {
    use tonic_types::StatusExt;

    let stack = stack_with(StackOptions {
        max_concurrent_uploads: 1,
        ..options()
    })
    .await;
    let baseline = stack.s3.files();
    let bytes = pdf_of_size(3000);
    // One upload holds the only slot: header and a first chunk sent, the rest held back.
    let held = open_upload(&stack, "acme").await;
    held.tx
        .send(header_message(header("held.pdf", "application/pdf")))
        .await
        .unwrap();
    held.tx.send(chunk_message(&bytes[..1000])).await.unwrap();
    wait_until("the held upload's row", || async {
        tenant_rows(&stack, "acme").await == 1
    })
    .await;

    // A second one is refused at once, whatever it sends.
    let mut client = stack.documents_of("globex").await;
    let status = upload(
        &mut client,
        header("second.pdf", "application/pdf"),
        &pdf_of_size(PART + 1),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert_eq!(error_reason(&status), "UPLOAD_CAPACITY");
    let retry = status
        .get_error_details()
        .retry_info()
        .cloned()
        .expect("RetryInfo");
    assert_eq!(retry.retry_delay, Some(Duration::from_secs(1)));
    assert_tenant_left_nothing(&stack, "globex", &baseline).await;

    // The held upload still completes, and its slot is then free for the next one.
    held.tx.send(chunk_message(&bytes[1000..])).await.unwrap();
    drop(held.tx);
    let document = held
        .call
        .await
        .unwrap()
        .unwrap()
        .into_inner()
        .document
        .unwrap();
    assert_eq!(document.size_bytes, 3000);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let next = loop {
        match upload(
            &mut client,
            header("next.jpg", "image/jpeg"),
            &SMALLEST_JPEG,
        )
        .await
        {
            Err(status)
                if status.code() == tonic::Code::ResourceExhausted
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => break other,
        }
    };
    assert_eq!(next.unwrap().size_bytes, 3);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_without_a_header_in_time_is_cut_off() {
    let stack = stack_with(StackOptions {
        upload_header_timeout_secs: 1,
        ..options()
    })
    .await;
    let baseline = stack.s3.files();
    let silent = open_upload(&stack, "acme").await;
    let status = silent.call.await.unwrap().unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert_eq!(error_reason(&status), "UPLOAD_HEADER_TIMEOUT");
    drop(silent.tx);
    assert_tenant_left_nothing(&stack, "acme", &baseline).await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_is_cut_off_at_the_upload_deadline() {
    let stack = stack_with(StackOptions {
        upload_deadline_secs: 2,
        chunk_idle_timeout_secs: 60,
        ..options()
    })
    .await;
    let baseline = stack.s3.files();
    let slow = open_upload(&stack, "acme").await;
    // A client that never goes idle but never finishes: a chunk every 100 ms.
    let tx = slow.tx.clone();
    let trickle = tokio::spawn(async move {
        tx.send(header_message(header("slow.pdf", "application/pdf")))
            .await
            .unwrap();
        let bytes = pdf_of_size(1000);
        for chunk in bytes.chunks(10).cycle() {
            if tx.send(chunk_message(chunk)).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let status = slow.call.await.unwrap().unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert_eq!(error_reason(&status), "UPLOAD_DEADLINE");
    drop(slow.tx);
    trickle.abort();
    assert_tenant_left_nothing(&stack, "acme", &baseline).await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_byte_chunks_upload_correctly() {
    let stack = stack_with(options()).await;
    let mut client = stack.documents_of("acme").await;
    let bytes = pdf_of_size(20_000);
    let mut h = sized_header(bytes.len());
    h.expected_sha256 = sha256_hex(&bytes);
    let messages = upload_messages(h, &bytes, 1);
    assert_eq!(messages.len(), 1 + bytes.len());
    let document = client
        .upload_document(tokio_stream::iter(messages))
        .await
        .unwrap()
        .into_inner()
        .document
        .unwrap();
    assert_eq!(document.size_bytes, bytes.len() as i64);
    assert_eq!(document.sha256, sha256_hex(&bytes));
    let (_, downloaded) = download(&mut client, &document.id, 0, 0).await.unwrap();
    assert!(downloaded == bytes, "downloaded bytes differ");
    stack.stop().await;
}
