//! Bounded memory and time of uploads: uploads beyond the admission limit are refused at once
//! with RetryInfo, an upload without its header in time or past the upload deadline is cut off
//! and stores nothing, and one-byte chunks (the most messages per byte) still upload
//! correctly.

use std::time::Duration;

use bytes::Bytes;
use disputes_proto::documents_v1 as pb;
use harness::{Stack, StackOptions};

use super::{PART, assert_tenant_left_nothing, options, sized_header, tenant_rows, wait_until};
use crate::fixtures::*;

/// An upload of `tenant` whose messages the test feeds one by one.
pub(super) struct OpenUpload {
    pub(super) tx: tokio::sync::mpsc::Sender<pb::UploadDocumentRequest>,
    pub(super) call:
        tokio::task::JoinHandle<Result<tonic::Response<pb::UploadDocumentResponse>, tonic::Status>>,
}

pub(super) async fn open_upload(stack: &Stack, tenant: &str) -> OpenUpload {
    let mut client = stack.documents_of(tenant).await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let call = tokio::spawn(async move {
        client
            .upload_document(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    OpenUpload { tx, call }
}

pub(super) fn chunk_message(bytes: &[u8]) -> pb::UploadDocumentRequest {
    pb::UploadDocumentRequest {
        payload: Some(pb::upload_document_request::Payload::Chunk(
            Bytes::copy_from_slice(bytes),
        )),
    }
}

pub(super) fn header_message(header: pb::DocumentHeader) -> pb::UploadDocumentRequest {
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
