//! Documents stay present and immutable once they matter: every action or network event that
//! files documents locks them and records their SHA-256 in its history entry, an evidence
//! submission through CreateAction records and locks its own documents besides the
//! evidence's, and a document staged as evidence cannot be deleted until its field is cleared
//! (replacing it releases the old one only). The `point_5_` prefix of test names is issue 11's
//! point 5.

use std::collections::HashSet;

use disputes_proto::disputes_v1 as dpb;
use disputes_proto::documents_v1 as pb;
use dpb::DisputeActionType as Action;
use tonic::Code;
use tonic_types::StatusExt;

use crate::fixtures::*;

const TENANT: &str = "acme";

async fn document(documents: &mut harness::DocumentsClient, id: &str) -> pb::Document {
    documents
        .get_document(pb::GetDocumentRequest { id: id.to_owned() })
        .await
        .unwrap()
        .into_inner()
        .document
        .unwrap()
}

async fn delete(documents: &mut harness::DocumentsClient, id: &str) -> Result<(), tonic::Status> {
    documents
        .delete_document(pb::DeleteDocumentRequest { id: id.to_owned() })
        .await
        .map(|_| ())
}

/// Uploads a small PDF for `dispute_id`; returns it and its SHA-256.
async fn upload_pdf(
    documents: &mut harness::DocumentsClient,
    dispute_id: &str,
    name: &str,
    size: usize,
) -> (pb::Document, String) {
    let mut h = header(name, "application/pdf");
    h.dispute_id = dispute_id.to_owned();
    let bytes = pdf_of_size(size);
    let document = upload(documents, h, &bytes).await.unwrap();
    (document, sha256_hex(&bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_5_chargeback_with_documents_locks_them_and_records_sha256() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of(TENANT).await;
    let mut documents = stack.documents_of(TENANT).await;
    let mut request = issuer_dispute("txn_point_5_chargeback");
    request.date_customer_reported = today();
    let dispute = create(&mut disputes, request).await;
    let (letter, digest) = upload_pdf(&mut documents, &dispute.id, "letter.pdf", 300).await;
    assert!(
        document(&mut documents, &letter.id)
            .await
            .lock_time
            .is_none()
    );

    let charged = apply_action(
        &mut disputes,
        dpb::CreateActionRequest {
            document_ids: vec![letter.id.clone()],
            ..action_request(&dispute.id, Action::Chargeback)
        },
    )
    .await
    .unwrap();

    assert_eq!(charged.stage(), dpb::DisputeStage::Chargeback);
    let entry = charged.action_history.last().unwrap();
    assert_eq!(entry.what, "CHARGEBACK");
    assert_eq!(entry.document_ids, vec![letter.id.clone()]);
    assert!(
        entry
            .message
            .contains(&format!("filed documents: {} sha256={digest}", letter.id)),
        "{}",
        entry.message
    );
    assert!(
        document(&mut documents, &letter.id)
            .await
            .lock_time
            .is_some()
    );
    let refused = delete(&mut documents, &letter.id).await.unwrap_err();
    assert_eq!(error_reason(&refused), "DOCUMENT_LOCKED");
    let rows: i64 = {
        let pool = sqlx::PgPool::connect(&stack.dispute_db_url).await.unwrap();
        let n = sqlx::query_scalar("select count(*) from document_lock_intents")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    };
    assert_eq!(rows, 0, "the lock intent was consumed with the chargeback");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_5_network_event_documents_are_locked_with_sha256_in_history() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of(TENANT).await;
    let mut documents = stack.documents_of(TENANT).await;
    let (evidence, digest) = upload_pdf(&mut documents, "", "network-copy.pdf", 200).await;

    let mut request = network_event(
        dpb::CardNetwork::Visa,
        "VISA-P5-NET",
        "evt-1",
        dpb::NetworkEventType::Chargeback,
    );
    request.new_case = Some(merchant_case(5_000, "ch_point_5_network"));
    request.document_ids = vec![evidence.id.clone()];
    let opened = record(&mut disputes, request).await.unwrap();
    let dispute = opened.dispute.unwrap();
    let entry = dispute.action_history.last().unwrap();
    assert_eq!(entry.document_ids, vec![evidence.id.clone()]);
    assert!(
        entry
            .message
            .contains(&format!("filed documents: {} sha256={digest}", evidence.id)),
        "{}",
        entry.message
    );
    assert!(
        document(&mut documents, &evidence.id)
            .await
            .lock_time
            .is_some()
    );
    let refused = delete(&mut documents, &evidence.id).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
}

/// UpdateDispute staging (or clearing, with "") the receipt field.
async fn stage_receipt(disputes: &mut harness::DisputesClient, dispute_id: &str, receipt: &str) {
    update(
        disputes,
        dpb::UpdateDisputeRequest {
            id: dispute_id.to_owned(),
            evidence: Some(dpb::EvidenceUpdate {
                receipt: Some(receipt.to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_5_deleting_a_staged_document_is_refused_until_its_field_is_cleared() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of(TENANT).await;
    let mut documents = stack.documents_of(TENANT).await;
    let dispute = create(&mut disputes, merchant_dispute("", "ch_point_5_staged")).await;
    let (receipt, _) = upload_pdf(&mut documents, &dispute.id, "receipt.pdf", 100).await;
    stage_receipt(&mut disputes, &dispute.id, &receipt.id).await;

    let refused = delete(&mut documents, &receipt.id).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert_eq!(error_reason(&refused), "DOCUMENT_IN_USE");
    let details = refused.get_error_details();
    let violation = &details.precondition_failure().unwrap().violations[0];
    assert_eq!(violation.r#type, "DOCUMENT_IN_USE");
    assert_eq!(violation.subject, dispute.id);
    assert!(
        violation.description.contains("evidence.receipt"),
        "{}",
        violation.description
    );
    // Held, not locked: staged evidence can still change.
    assert!(
        document(&mut documents, &receipt.id)
            .await
            .lock_time
            .is_none()
    );

    stage_receipt(&mut disputes, &dispute.id, "").await;
    delete(&mut documents, &receipt.id).await.unwrap();
    assert_eq!(
        delete(&mut documents, &receipt.id)
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_5_replacing_a_staged_document_releases_the_old_one_only() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of(TENANT).await;
    let mut documents = stack.documents_of(TENANT).await;
    let dispute = create(&mut disputes, merchant_dispute("", "ch_point_5_replace")).await;
    let (first, _) = upload_pdf(&mut documents, &dispute.id, "first.pdf", 100).await;
    let (second, digest) = upload_pdf(&mut documents, &dispute.id, "second.pdf", 120).await;
    stage_receipt(&mut disputes, &dispute.id, &first.id).await;
    stage_receipt(&mut disputes, &dispute.id, &second.id).await;

    delete(&mut documents, &first.id).await.unwrap();
    let refused = delete(&mut documents, &second.id).await.unwrap_err();
    assert_eq!(error_reason(&refused), "DOCUMENT_IN_USE");

    // Submitting locks the staged document; the history records its digest.
    let submitted = submit(&mut disputes, &dispute.id).await;
    let entry = submitted.action_history.last().unwrap();
    assert!(
        entry
            .message
            .contains(&format!("{} sha256={digest}", second.id)),
        "{}",
        entry.message
    );
    let refused = delete(&mut documents, &second.id).await.unwrap_err();
    assert_eq!(error_reason(&refused), "DOCUMENT_LOCKED");
    let pool = sqlx::PgPool::connect(&stack.dispute_db_url).await.unwrap();
    let intents: i64 = sqlx::query_scalar("select count(*) from document_lock_intents")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert_eq!(intents, 0, "every hold was recorded or released");
}

/// SUBMIT_EVIDENCE through CreateAction with its own `document_ids`: the history entry records
/// the evidence's documents and the action's own, and the action's documents are locked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_action_keeps_and_locks_its_own_documents() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let mut documents = stack.documents_of("acme").await;
    let dispute = create(&mut disputes, merchant_dispute("", "ch_action_docs")).await;
    let mut h = header("receipt.pdf", "application/pdf");
    h.dispute_id = dispute.id.clone();
    let receipt = upload(&mut documents, h.clone(), &pdf_of_size(100))
        .await
        .unwrap();
    h.filename = "letter.pdf".into();
    let letter = upload(&mut documents, h, &pdf_of_size(200)).await.unwrap();
    disputes
        .update_dispute(dpb::UpdateDisputeRequest {
            id: dispute.id.clone(),
            evidence: Some(dpb::EvidenceUpdate {
                receipt: Some(receipt.id.clone()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let submitted = apply_action(
        &mut disputes,
        dpb::CreateActionRequest {
            document_ids: vec![letter.id.clone()],
            ..action_request(&dispute.id, Action::SubmitEvidence)
        },
    )
    .await
    .unwrap();
    let entry = submitted.action_history.last().unwrap();
    let recorded: HashSet<_> = entry.document_ids.iter().cloned().collect();
    let deleted = documents
        .delete_document(pb::DeleteDocumentRequest {
            id: letter.id.clone(),
        })
        .await;
    assert!(
        recorded == HashSet::from([receipt.id.clone(), letter.id.clone()])
            && deleted
                .as_ref()
                .is_err_and(|s| error_reason(s) == "DOCUMENT_LOCKED"),
        "history documents {recorded:?} (want {} and {}); deleting the action's document: {deleted:?}",
        receipt.id,
        letter.id
    );
    stack.stop().await;
}
