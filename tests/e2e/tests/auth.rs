//! Every RPC refuses a missing or invalid token, checks scopes, and hides one tenant's
//! objects from another (NOT_FOUND, never data).

use disputes_proto::disputes_v1 as dpb;
use disputes_proto::documents_v1 as pb;
use domain_kit::ids::{DisputeId, DocumentId};
use harness::Stack;
use tonic::Code;

use crate::fixtures::*;

/// The status code of a call's outcome.
fn code<T>(outcome: Result<T, tonic::Status>) -> Code {
    outcome.err().map_or(Code::Ok, |status| status.code())
}

/// Calls every RPC of both services with the given token and returns each status code.
async fn call_every_rpc(
    stack: &Stack,
    token: Option<&str>,
    dispute_id: &str,
    document_id: &str,
) -> Vec<(&'static str, Code)> {
    let mut disputes = stack.disputes(token).await;
    let mut documents = stack.documents(token).await;
    vec![
        (
            "CreateDispute",
            code(
                disputes
                    .create_dispute(merchant_dispute("", "ch_auth"))
                    .await,
            ),
        ),
        (
            "GetDispute",
            code(
                disputes
                    .get_dispute(dpb::GetDisputeRequest {
                        id: dispute_id.into(),
                    })
                    .await,
            ),
        ),
        (
            "ListDisputes",
            code(
                disputes
                    .list_disputes(dpb::ListDisputesRequest::default())
                    .await,
            ),
        ),
        (
            "ListDisputeHistory",
            code(
                disputes
                    .list_dispute_history(dpb::ListDisputeHistoryRequest {
                        dispute_id: dispute_id.into(),
                        ..Default::default()
                    })
                    .await,
            ),
        ),
        (
            "UploadDocument",
            code(
                upload(
                    &mut documents,
                    header("a.jpg", "image/jpeg"),
                    &SMALLEST_JPEG,
                )
                .await,
            ),
        ),
        (
            "GetDocument",
            code(
                documents
                    .get_document(pb::GetDocumentRequest {
                        id: document_id.into(),
                    })
                    .await,
            ),
        ),
        (
            "DownloadDocument",
            code(download(&mut documents, document_id, 0, 0).await),
        ),
        (
            "ListDocuments",
            code(
                documents
                    .list_documents(pb::ListDocumentsRequest::default())
                    .await,
            ),
        ),
        (
            "BatchGetDocuments",
            code(
                documents
                    .batch_get_documents(pb::BatchGetDocumentsRequest {
                        ids: vec![document_id.into()],
                    })
                    .await,
            ),
        ),
        (
            "LockDocuments",
            code(
                documents
                    .lock_documents(pb::LockDocumentsRequest {
                        ids: vec![document_id.into()],
                        ..Default::default()
                    })
                    .await,
            ),
        ),
        (
            "DeleteDocument",
            code(
                documents
                    .delete_document(pb::DeleteDocumentRequest {
                        id: document_id.into(),
                    })
                    .await,
            ),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_refuses_missing_or_invalid_tokens_and_checks_scopes() {
    let stack = stack().await;
    let dispute_id = DisputeId::generate().into_string();
    let document_id = DocumentId::generate().into_string();

    let forged = service_kit::auth::mint_token(
        &secrecy::SecretString::from("another-secret-entirely-0123456789abcdef"),
        "x",
        "acme",
        &[
            "disputes:read",
            "disputes:write",
            "documents:read",
            "documents:write",
        ],
        chrono::Duration::hours(1),
    )
    .unwrap();
    let expired = service_kit::auth::mint_token(
        &stack.jwt_secret,
        "x",
        "acme",
        &["disputes:read"],
        chrono::Duration::hours(-2),
    )
    .unwrap();
    for token in [
        None,
        Some("garbage"),
        Some(forged.as_str()),
        Some(expired.as_str()),
    ] {
        for (rpc, code) in call_every_rpc(&stack, token, &dispute_id, &document_id).await {
            assert_eq!(code, Code::Unauthenticated, "{rpc} with {token:?}");
        }
    }

    // A valid token without any scope: PERMISSION_DENIED everywhere.
    let no_scopes = stack.token("acme", &[]);
    for (rpc, code) in call_every_rpc(&stack, Some(&no_scopes), &dispute_id, &document_id).await {
        assert_eq!(code, Code::PermissionDenied, "{rpc} without scopes");
    }
    // Read scopes do not allow writes.
    let read_only = stack.token("acme", &["disputes:read", "documents:read"]);
    let mut disputes = stack.disputes(Some(&read_only)).await;
    let status = disputes
        .create_dispute(merchant_dispute("", "ch_ro"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let mut documents = stack.documents(Some(&read_only)).await;
    let status = upload(
        &mut documents,
        header("a.jpg", "image/jpeg"),
        &SMALLEST_JPEG,
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_never_see_each_others_objects() {
    let stack = stack().await;

    let mut disputes_a = stack.disputes_of("tenant-a").await;
    let dispute = create(
        &mut disputes_a,
        merchant_dispute("shared-request-id", "ch_shared"),
    )
    .await;
    let mut documents_a = stack.documents_of("tenant-a").await;
    let mut h = header("a.pdf", "application/pdf");
    h.dispute_id = dispute.id.clone();
    let document = upload(&mut documents_a, h, &pdf_of_size(64)).await.unwrap();

    // Tenant B: every RPC on A's ids answers NOT_FOUND; listings are empty.
    let token_b = stack.full_token("tenant-b");
    let results = call_every_rpc(&stack, Some(&token_b), &dispute.id, &document.id).await;
    for (rpc, code) in results {
        let expected = match rpc {
            // Listings and batch lookups answer with nothing of A's (checked below and in
            // the documents tests).
            "CreateDispute" | "ListDisputes" | "UploadDocument" | "ListDocuments"
            | "BatchGetDocuments" => Code::Ok,
            _ => Code::NotFound,
        };
        assert_eq!(code, expected, "{rpc} as tenant B");
    }
    let mut disputes_b = stack.disputes_of("tenant-b").await;
    let listed = disputes_b
        .list_disputes(dpb::ListDisputesRequest {
            charge: "ch_shared".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.disputes.is_empty());
    let mut documents_b = stack.documents_of("tenant-b").await;
    let listed = documents_b
        .list_documents(pb::ListDocumentsRequest {
            dispute_id: dispute.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.documents.is_empty());
    // The same request id in another tenant is another key: a new dispute, not a replay.
    let other = create(
        &mut disputes_b,
        merchant_dispute("shared-request-id", "ch_shared"),
    )
    .await;
    assert_ne!(other.id, dispute.id);
    assert_eq!(other.tenant_id, "tenant-b");

    // A still sees its own dispute with its document, and the bytes are intact.
    let got = disputes_a
        .get_dispute(dpb::GetDisputeRequest {
            id: dispute.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.documents.len(), 1);
    assert_eq!(got.documents[0].id, document.id);
    let (_, bytes) = download(&mut documents_a, &document.id, 0, 0)
        .await
        .unwrap();
    assert_eq!(bytes, pdf_of_size(64));
    stack.stop().await;
}
