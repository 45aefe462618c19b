//! Uploads that end before the file does: a raw HTTP/2 client resetting its stream with
//! CANCEL or NO_ERROR, a tonic client dropping its call, and a client deadline passing
//! mid-file leave no row, no object and no multipart upload behind; a declared size that the
//! bytes do not match is refused and stores nothing.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use disputes_proto::documents_v1 as pb;
use harness::Stack;
use prost::Message;
use tokio::net::TcpStream;

use super::{PART, assert_tenant_left_nothing, options, sized_header, tenant_rows, wait_until};
use crate::fixtures::*;

pub(super) const UPLOAD_PATH: &str = "/documents.v1.DocumentService/UploadDocument";

/// One gRPC message on the wire: uncompressed flag, big-endian length, protobuf bytes.
pub(super) fn grpc_frame(message: &pb::UploadDocumentRequest) -> Bytes {
    let body = message.encode_to_vec();
    let mut frame = BytesMut::with_capacity(5 + body.len());
    frame.put_u8(0);
    frame.put_u32(u32::try_from(body.len()).unwrap());
    frame.extend_from_slice(&body);
    frame.freeze()
}

/// Sends `data` on `stream` as the peer's flow control allows.
pub(super) async fn send_within_window(stream: &mut h2::SendStream<Bytes>, mut data: Bytes) {
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
