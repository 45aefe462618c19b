//! document-store: uploads, downloads, ranges, rejections that leave nothing behind, and
//! deletion, in both aws-sdk-s3 checksum modes.

use std::time::Duration;

use disputes_proto::documents_v1 as pb;
use document_store::store::s3::ChecksumMode;
use domain_kit::ids::{DisputeId, DocumentId};
use harness::StackOptions;
use tonic::Code;

use crate::fixtures::*;
use crate::in_both_checksum_modes;

const PART: usize = 5 * MIB;

/// The stack in checksum mode `mode`, uploading parts of `PART` bytes.
fn options(mode: ChecksumMode) -> StackOptions {
    StackOptions {
        checksum_mode: mode,
        part_size_bytes: PART,
        max_upload_bytes: 25 * MIB as u64,
        ..Default::default()
    }
}

in_both_checksum_modes!(
    upload_then_download_is_byte_identical_at_every_size_edge,
    range_downloads_return_exactly_the_range,
    rejected_uploads_leave_nothing_behind,
    client_hanging_up_mid_upload_leaves_nothing_behind,
    delete_removes_row_and_object,
);

async fn upload_then_download_is_byte_identical_at_every_size_edge(mode: ChecksumMode) {
    let stack = stack_with(options(mode)).await;
    let mut client = stack.documents_of("acme").await;
    let jpeg = SMALLEST_JPEG.to_vec();
    let sizes = [PART - 1, PART, PART + 1, 3 * PART + 17];
    let mut files: Vec<(String, Vec<u8>)> = vec![("tiny.jpg".into(), jpeg)];
    files.extend(sizes.iter().map(|s| (format!("{s}.pdf"), pdf_of_size(*s))));

    for (name, bytes) in &files {
        let content_type = if name.ends_with(".jpg") {
            "image/jpeg"
        } else {
            "application/pdf"
        };
        let mut h = header(name, content_type);
        h.expected_sha256 = sha256_hex(bytes);
        let document = upload(&mut client, h, bytes).await.unwrap();
        assert!(document.id.starts_with("doc_"));
        assert_eq!(document.tenant_id, "acme");
        assert_eq!(document.size_bytes, bytes.len() as i64, "{name}");
        assert_eq!(document.sha256, sha256_hex(bytes), "{name}");
        assert_eq!(document.content_type, content_type);
        assert_eq!(document.filename, *name);

        let (meta, downloaded) = download(&mut client, &document.id, 0, 0).await.unwrap();
        assert_eq!(meta.unwrap().id, document.id);
        assert_eq!(downloaded.len(), bytes.len(), "{name}");
        assert!(downloaded == *bytes, "{name}: downloaded bytes differ");

        let fetched = client
            .get_document(pb::GetDocumentRequest {
                id: document.id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .document
            .unwrap();
        assert_eq!(fetched, document);
    }
    // The object keys are built from ids only.
    let mut keys = listed_objects(&stack).await;
    keys.sort();
    assert_eq!(keys.len(), files.len());
    assert!(
        keys.iter()
            .all(|k| k.starts_with("tenants/acme/documents/doc_"))
    );
    stack.stop().await;
}

async fn range_downloads_return_exactly_the_range(mode: ChecksumMode) {
    let stack = stack_with(options(mode)).await;
    let mut client = stack.documents_of("acme").await;
    let bytes = pdf_of_size(PART + 1000);
    let document = upload(&mut client, header("r.pdf", "application/pdf"), &bytes)
        .await
        .unwrap();
    let size = bytes.len() as i64;
    for (offset, length) in [
        (0, 1),
        (0, 10),
        (5, 100),
        (PART as i64 - 3, 10),
        (size - 1, 0),
        (size - 1, 50),
        (1000, 0),
    ] {
        let (_, got) = download(&mut client, &document.id, offset, length)
            .await
            .unwrap();
        let end = if length == 0 {
            size
        } else {
            (offset + length).min(size)
        };
        assert!(
            got == bytes[offset as usize..end as usize],
            "range {offset}+{length}"
        );
    }
    let past_end = download(&mut client, &document.id, size, 0)
        .await
        .unwrap_err();
    assert_eq!(past_end.code(), Code::OutOfRange);
    let negative = download(&mut client, &document.id, -1, -1)
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&negative), vec!["offset", "length"]);
    stack.stop().await;
}

async fn rejected_uploads_leave_nothing_behind(mode: ChecksumMode) {
    let stack = stack_with(StackOptions {
        // Over two parts, so the cap is hit after a multipart upload has begun.
        max_upload_bytes: (2 * PART + 10) as u64,
        ..options(mode)
    })
    .await;
    let mut client = stack.documents_of("acme").await;
    let baseline = stack.s3.files();

    // Empty, and too short to identify.
    for bytes in [&[][..], &[0xFF][..], &[0xFF, 0xD8][..]] {
        let status = upload(&mut client, header("x.jpg", "image/jpeg"), bytes)
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&status), vec!["chunk"]);
        assert_eq!(error_reason(&status), "CONTENT_NOT_IDENTIFIABLE");
    }
    // Declared PNG, bytes are a PDF (several parts long, so the mismatch is found early and
    // nothing is uploaded).
    let pdf = pdf_of_size(PART + 10);
    let status = upload(&mut client, header("x.png", "image/png"), &pdf)
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), vec!["header.content_type"]);
    assert_eq!(error_reason(&status), "CONTENT_TYPE_MISMATCH");
    // Not an accepted type at all.
    let status = upload(&mut client, header("x.gif", "image/png"), b"GIF89a.......")
        .await
        .unwrap_err();
    assert_eq!(error_reason(&status), "UNSUPPORTED_CONTENT");
    // Over the cap after two parts went to S3.
    let big = pdf_of_size(2 * PART + 11);
    let status = upload(&mut client, header("big.pdf", "application/pdf"), &big)
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), vec!["chunk"]);
    assert_eq!(error_reason(&status), "DOCUMENT_TOO_LARGE");
    // SHA-256 mismatch, single object and multipart.
    for bytes in [pdf_of_size(100), pdf_of_size(2 * PART)] {
        let mut h = header("s.pdf", "application/pdf");
        h.expected_sha256 = sha256_hex(b"something else");
        let status = upload(&mut client, h, &bytes).await.unwrap_err();
        assert_eq!(violated_fields(&status), vec!["header.expected_sha256"]);
        assert_eq!(error_reason(&status), "SHA256_MISMATCH");
    }
    // Bad header fields are all named.
    let bad = pb::DocumentHeader {
        filename: "../../etc/passwd".into(),
        content_type: "text/html".into(),
        dispute_id: "not-a-dispute".into(),
        expected_sha256: "xyz".into(),
        expected_size_bytes: 0,
    };
    let status = upload(&mut client, bad, &pdf_of_size(10))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        vec![
            "header.filename",
            "header.content_type",
            "header.dispute_id",
            "header.expected_sha256"
        ]
    );
    // A stream without a header first.
    let status = client
        .upload_document(tokio_stream::iter(vec![pb::UploadDocumentRequest {
            payload: Some(pb::upload_document_request::Payload::Chunk(
                bytes::Bytes::from_static(b"%PDF-1.4"),
            )),
        }]))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), vec!["header"]);

    assert_nothing_left(&stack, &baseline).await;
    stack.stop().await;
}

async fn client_hanging_up_mid_upload_leaves_nothing_behind(mode: ChecksumMode) {
    let stack = stack_with(options(mode)).await;
    let baseline = stack.s3.files();
    let bytes = pdf_of_size(3 * PART);
    let messages = upload_messages(header("gone.pdf", "application/pdf"), &bytes, MIB);

    // Send the header and two parts' worth of chunks through a proxy, then cut the TCP
    // connection: the client is gone without a clean end of stream.
    let proxy = harness::CuttableProxy::start(stack.document_store_addr)
        .await
        .unwrap();
    let token = stack.full_token("acme");
    let mut client = harness::documents_client(proxy.addr, Some(&token))
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let call = tokio::spawn(async move {
        client
            .upload_document(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    for message in messages.into_iter().take(1 + 2 * PART / MIB + 1) {
        tx.send(message).await.unwrap();
    }
    // Let the server start the multipart upload and ship the first parts.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stack.s3.files() == baseline && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_ne!(stack.s3.files(), baseline, "parts should have reached S3");
    proxy.cut();
    let outcome = call.await.unwrap();
    assert!(outcome.is_err(), "the cut call cannot succeed");
    drop(tx);

    assert_nothing_left(&stack, &baseline).await;
    stack.stop().await;
}

async fn delete_removes_row_and_object(mode: ChecksumMode) {
    let stack = stack_with(options(mode)).await;
    let mut client = stack.documents_of("acme").await;
    let baseline = stack.s3.files();
    let document = upload(
        &mut client,
        header("d.pdf", "application/pdf"),
        &pdf_of_size(PART + 1),
    )
    .await
    .unwrap();
    client
        .delete_document(pb::DeleteDocumentRequest {
            id: document.id.clone(),
        })
        .await
        .unwrap();
    for status in [
        client
            .get_document(pb::GetDocumentRequest {
                id: document.id.clone(),
            })
            .await
            .unwrap_err(),
        download(&mut client, &document.id, 0, 0).await.unwrap_err(),
        client
            .delete_document(pb::DeleteDocumentRequest {
                id: document.id.clone(),
            })
            .await
            .unwrap_err(),
    ] {
        assert_eq!(status.code(), Code::NotFound);
    }
    assert_nothing_left(&stack, &baseline).await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_documents_pages_by_dispute() {
    let stack = stack_with(options(ChecksumMode::WhenRequired)).await;
    let mut client = stack.documents_of("acme").await;
    let dispute_id = DisputeId::generate().into_string();
    let mut uploaded = Vec::new();
    for i in 0..5 {
        let mut h = header(&format!("{i}.jpg"), "image/jpeg");
        h.dispute_id = dispute_id.clone();
        uploaded.push(upload(&mut client, h, &SMALLEST_JPEG).await.unwrap().id);
    }
    upload(
        &mut client,
        header("other.jpg", "image/jpeg"),
        &SMALLEST_JPEG,
    )
    .await
    .unwrap();

    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_documents(pb::ListDocumentsRequest {
                dispute_id: dispute_id.clone(),
                page_size: 2,
                page_token: page_token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.documents.len() <= 2);
        seen.extend(page.documents.into_iter().map(|d| d.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    uploaded.reverse();
    assert_eq!(seen, uploaded, "newest first, each once");

    let all = client
        .list_documents(pb::ListDocumentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.documents.len(), 6);

    // A token used with other filters is refused.
    let first = client
        .list_documents(pb::ListDocumentsRequest {
            dispute_id: dispute_id.clone(),
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let status = client
        .list_documents(pb::ListDocumentsRequest {
            dispute_id: String::new(),
            page_size: 1,
            page_token: first.next_page_token,
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), vec!["page_token"]);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_documents_cannot_be_deleted_and_batches_are_tenant_scoped() {
    let stack = stack_with(options(ChecksumMode::WhenRequired)).await;
    let mut client = stack.documents_of("acme").await;
    let first = upload(
        &mut client,
        header("a.pdf", "application/pdf"),
        &pdf_of_size(40),
    )
    .await
    .unwrap();
    let second = upload(&mut client, header("b.jpg", "image/jpeg"), &SMALLEST_JPEG)
        .await
        .unwrap();
    let unknown = DocumentId::generate().into_string();

    // Batch lookups report what exists for the caller, in request order.
    let batch = client
        .batch_get_documents(pb::BatchGetDocumentsRequest {
            ids: vec![second.id.clone(), unknown.clone(), first.id.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    let found: Vec<&str> = batch.documents.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(found, vec![second.id.as_str(), first.id.as_str()]);
    assert_eq!(batch.missing_ids, vec![unknown.clone()]);

    // Locking is all or nothing.
    let status = client
        .lock_documents(pb::LockDocumentsRequest {
            ids: vec![first.id.clone(), unknown.clone()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    client
        .delete_document(pb::DeleteDocumentRequest {
            id: second.id.clone(),
        })
        .await
        .unwrap();

    let locked = client
        .lock_documents(pb::LockDocumentsRequest {
            ids: vec![first.id.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let lock_time = locked.documents[0].lock_time.unwrap();
    assert_eq!(locked.documents[0].sha256, first.sha256);
    // Locking again keeps the first lock time.
    let again = client
        .lock_documents(pb::LockDocumentsRequest {
            ids: vec![first.id.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.documents[0].lock_time, Some(lock_time));
    let status = client
        .delete_document(pb::DeleteDocumentRequest {
            id: first.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&status), "DOCUMENT_LOCKED");
    let (_, bytes) = download(&mut client, &first.id, 0, 0).await.unwrap();
    assert_eq!(bytes, pdf_of_size(40));

    // Another tenant learns nothing and locks nothing.
    let mut other_client = stack.documents_of("other").await;
    let batch = other_client
        .batch_get_documents(pb::BatchGetDocumentsRequest {
            ids: vec![first.id.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(batch.documents.is_empty());
    assert_eq!(batch.missing_ids, vec![first.id.clone()]);
    let status = other_client
        .lock_documents(pb::LockDocumentsRequest {
            ids: vec![first.id.clone()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    // Bad batches name the bad entries.
    let status = client
        .batch_get_documents(pb::BatchGetDocumentsRequest {
            ids: vec!["nope".into(), first.id.clone()],
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), vec!["ids[0]"]);
    let status = client
        .lock_documents(pb::LockDocumentsRequest {
            ids: vec![],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), vec!["ids"]);
    stack.stop().await;
}
