//! dispute-core's background credential (issue 22 §2): a token that names no tenant and
//! grants only `documents:lock`, acting for the tenant a call names in `x-act-for-tenant`.
//! document-store accepts it for LockDocuments and UnlockDocuments of that tenant and
//! refuses it for everything else; dispute-core refuses it altogether.

use disputes_proto::disputes_v1 as dpb;
use disputes_proto::documents_v1 as pb;
use service_kit::auth::ACT_FOR_TENANT_HEADER;
use tonic::Code;

use crate::fixtures::*;

const TENANT: &str = "acme";

/// `message` as a request acting for `tenant` (no header when `None`).
fn acting_for<T>(tenant: Option<&str>, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(tenant) = tenant {
        request
            .metadata_mut()
            .insert(ACT_FOR_TENANT_HEADER, tenant.parse().expect("header"));
    }
    request
}

fn assert_denied<T: std::fmt::Debug>(result: Result<T, tonic::Status>, what: &str) {
    let status = result.expect_err(what);
    assert_eq!(status.code(), Code::PermissionDenied, "{what}: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_credential_may_only_lock_and_unlock_for_the_tenant_it_names() {
    let stack = stack().await;
    let mut owner = stack.documents_of(TENANT).await;
    let document = upload(
        &mut owner,
        header("receipt.pdf", "application/pdf"),
        &pdf_of_size(200),
    )
    .await
    .expect("upload")
    .id;
    let token = background_token(&stack);
    let mut background = stack.documents(Some(&token)).await;
    let ids = vec![document.clone()];

    // Lock and unlock, for the tenant it names.
    let locked = background
        .lock_documents(acting_for(
            Some(TENANT),
            pb::LockDocumentsRequest {
                ids: ids.clone(),
                lock_id: "lck_background".into(),
            },
        ))
        .await
        .expect("lock with the background credential")
        .into_inner();
    assert_eq!(locked.documents.len(), 1);
    assert_eq!(locked.documents[0].tenant_id, TENANT);
    let seen = owner
        .get_document(pb::GetDocumentRequest {
            id: document.clone(),
        })
        .await
        .expect("get")
        .into_inner()
        .document
        .expect("document");
    assert!(seen.lock_time.is_some(), "the lock holds");
    background
        .unlock_documents(acting_for(
            Some(TENANT),
            pb::UnlockDocumentsRequest {
                ids: ids.clone(),
                lock_id: "lck_background".into(),
            },
        ))
        .await
        .expect("unlock with the background credential");

    // Every other RPC is refused, even for the tenant it names.
    assert_denied(
        background
            .get_document(acting_for(
                Some(TENANT),
                pb::GetDocumentRequest {
                    id: document.clone(),
                },
            ))
            .await,
        "GetDocument",
    );
    assert_denied(
        background
            .list_documents(acting_for(
                Some(TENANT),
                pb::ListDocumentsRequest::default(),
            ))
            .await,
        "ListDocuments",
    );
    assert_denied(
        background
            .batch_get_documents(acting_for(
                Some(TENANT),
                pb::BatchGetDocumentsRequest { ids: ids.clone() },
            ))
            .await,
        "BatchGetDocuments",
    );
    assert_denied(
        background
            .delete_document(acting_for(
                Some(TENANT),
                pb::DeleteDocumentRequest {
                    id: document.clone(),
                },
            ))
            .await,
        "DeleteDocument",
    );
    assert_denied(
        background
            .download_document(acting_for(
                Some(TENANT),
                pb::DownloadDocumentRequest {
                    id: document.clone(),
                    offset: 0,
                    length: 0,
                },
            ))
            .await,
        "DownloadDocument",
    );
    let messages = upload_messages(header("x.pdf", "application/pdf"), &pdf_of_size(100), MIB);
    assert_denied(
        background
            .upload_document(acting_for(Some(TENANT), tokio_stream::iter(messages)))
            .await,
        "UploadDocument",
    );

    // Without a tenant to act for, or with an invalid one, the token is no caller at all.
    for tenant in [None, Some("bad tenant!")] {
        let status = background
            .lock_documents(acting_for(
                tenant,
                pb::LockDocumentsRequest {
                    ids: ids.clone(),
                    lock_id: "lck_background".into(),
                },
            ))
            .await
            .expect_err("no tenant named");
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{tenant:?}: {status:?}"
        );
    }

    // Acting for another tenant reaches only that tenant's documents.
    let status = background
        .lock_documents(acting_for(
            Some("globex"),
            pb::LockDocumentsRequest {
                ids: ids.clone(),
                lock_id: "lck_background".into(),
            },
        ))
        .await
        .expect_err("acme's document is not globex's");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");

    // dispute-core does not take it: its verifier delegates nothing.
    let mut disputes = stack.disputes(Some(&token)).await;
    let status = disputes
        .list_disputes(acting_for(
            Some(TENANT),
            dpb::ListDisputesRequest::default(),
        ))
        .await
        .expect_err("dispute-core refuses the background credential");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // A tenant's token ignores the header: it acts for its own tenant only.
    let globex_doc = upload(
        &mut stack.documents_of("globex").await,
        header("other.pdf", "application/pdf"),
        &pdf_of_size(100),
    )
    .await
    .expect("upload")
    .id;
    let status = owner
        .get_document(acting_for(
            Some("globex"),
            pb::GetDocumentRequest { id: globex_doc },
        ))
        .await
        .expect_err("the header does not widen a tenant's token");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");

    stack.stop().await;
}
