//! UpdateDispute (evidence staging and metadata, Stripe-compatible) and
//! GetEvidenceRequirements.

use std::time::Duration;

use disputes_proto::disputes_v1 as dpb;
use domain_kit::ids::DocumentId;
use tonic::Code;

use crate::fixtures::*;

fn update_request(id: &str) -> dpb::UpdateDisputeRequest {
    dpb::UpdateDisputeRequest {
        id: id.to_owned(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staged_evidence_and_metadata_follow_stripes_rules() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let mut documents = stack.documents_of("acme").await;
    let mut request = merchant_dispute("", "ch_ev");
    request.metadata.insert("order".into(), "A-17".into());
    request.metadata.insert("channel".into(), "web".into());
    let dispute = create(&mut disputes, request).await;
    let mut h = header("receipt.pdf", "application/pdf");
    h.dispute_id = dispute.id.clone();
    let receipt = upload(&mut documents, h, &pdf_of_size(100)).await.unwrap();

    // Stage evidence (submit=false is the default).
    let mut request = update_request(&dispute.id);
    request.expected_version = Some(dispute.version);
    request.evidence = Some(dpb::EvidenceUpdate {
        customer_name: Some("Jane Doe".into()),
        shipping_tracking_number: Some("1Z999".into()),
        receipt: Some(receipt.id.clone()),
        ..Default::default()
    });
    let staged = update(&mut disputes, request).await;
    assert_eq!(staged.version, dispute.version + 1);
    assert_eq!(staged.status, dpb::DisputeStatus::NeedsResponse as i32);
    let evidence = staged.evidence.clone().unwrap();
    assert_eq!(evidence.customer_name, "Jane Doe");
    assert_eq!(evidence.receipt, receipt.id);
    let details = staged.evidence_details.unwrap();
    assert!(details.has_evidence);
    assert_eq!(details.submission_count, 0);
    assert_eq!(
        staged.action_history.last().unwrap().what,
        "evidence_staged"
    );

    // An empty string clears one field; unset fields stay.
    let mut request = update_request(&dispute.id);
    request.evidence = Some(dpb::EvidenceUpdate {
        customer_name: Some(String::new()),
        ..Default::default()
    });
    let cleared = update(&mut disputes, request).await;
    let evidence = cleared.evidence.unwrap();
    assert_eq!(evidence.customer_name, "");
    assert_eq!(evidence.shipping_tracking_number, "1Z999");

    // Metadata: an empty value unsets one key; clear_metadata removes all.
    let mut request = update_request(&dispute.id);
    request.metadata.insert("order".into(), String::new());
    request.metadata.insert("agent".into(), "bob".into());
    let meta = update(&mut disputes, request).await;
    assert_eq!(meta.metadata.get("order"), None);
    assert_eq!(
        meta.metadata.get("channel").map(String::as_str),
        Some("web")
    );
    assert_eq!(meta.metadata.get("agent").map(String::as_str), Some("bob"));
    let mut request = update_request(&dispute.id);
    request.clear_metadata = true;
    let none = update(&mut disputes, request).await;
    assert!(none.metadata.is_empty());

    // Over the 150,000-character budget: INVALID_ARGUMENT naming the limit; nothing changes.
    let mut request = update_request(&dispute.id);
    request.evidence = Some(dpb::EvidenceUpdate {
        uncategorized_text: Some("x".repeat(149_990)),
        product_description: Some("y".repeat(20)),
        ..Default::default()
    });
    let status = disputes.update_dispute(request).await.unwrap_err();
    assert_eq!(violated_fields(&status), vec!["evidence"]);
    let details = tonic_types::StatusExt::get_error_details(&status);
    let description = &details.bad_request().unwrap().field_violations[0].description;
    assert!(description.contains("150000"), "{description}");

    // A stale version is ABORTED and changes nothing.
    let mut request = update_request(&dispute.id);
    request.expected_version = Some(dispute.version);
    request.metadata.insert("k".into(), "v".into());
    let status = disputes.update_dispute(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    let current = get_dispute(&mut disputes, &dispute.id).await;
    assert!(current.metadata.is_empty());
    assert_eq!(current.version, none.version);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_documents_must_exist_in_the_callers_tenant() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let dispute = create(&mut disputes, merchant_dispute("", "ch_docs")).await;
    let mut other_documents = stack.documents_of("other").await;
    let foreign = upload(
        &mut other_documents,
        header("f.pdf", "application/pdf"),
        &pdf_of_size(20),
    )
    .await
    .unwrap();
    let mut request = update_request(&dispute.id);
    request.evidence = Some(dpb::EvidenceUpdate {
        receipt: Some(foreign.id.clone()),
        shipping_documentation: Some(DocumentId::generate().into_string()),
        customer_signature: Some("not-a-doc".into()),
        ..Default::default()
    });
    let status = disputes.update_dispute(request).await.unwrap_err();
    let fields = sorted_violated_fields(&status);
    assert_eq!(
        fields,
        vec![
            "evidence.customer_signature",
            "evidence.receipt",
            "evidence.shipping_documentation"
        ]
    );
    // Another tenant's dispute is NOT_FOUND.
    let mut other_disputes = stack.disputes_of("other").await;
    let mut request = update_request(&dispute.id);
    request.metadata.insert("k".into(), "v".into());
    let status = other_disputes.update_dispute(request).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    // An empty update names what could be set.
    let status = disputes
        .update_dispute(update_request(&dispute.id))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), vec!["evidence"]);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_is_frozen_past_the_deadline() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let mut request = merchant_dispute("", "ch_late");
    request.due_by = Some(in_millis(1500));
    let dispute = create(&mut disputes, request).await;
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let mut request = update_request(&dispute.id);
    request.evidence = Some(dpb::EvidenceUpdate {
        customer_name: Some("Too Late".into()),
        ..Default::default()
    });
    let status = disputes.update_dispute(request).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&status), "EVIDENCE_CLOSED");
    // Metadata is not evidence: it can still change.
    let mut request = update_request(&dispute.id);
    request.metadata.insert("note".into(), "late".into());
    disputes.update_dispute(request).await.unwrap();
    // M14 (docs/lifecycle.md): the sweeper (every second in tests) turns the missed deadline
    // into a loss, once.
    let lost = wait_for_status(
        &mut disputes,
        &dispute.id,
        dpb::DisputeStatus::Lost,
        Duration::from_secs(5),
    )
    .await;
    let system: Vec<_> = lost
        .action_history
        .iter()
        .filter(|a| a.actor == dpb::Actor::System as i32)
        .collect();
    assert_eq!(system.len(), 1, "the deadline applies once");
    assert!(lost.available_actions.is_empty());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requirements_list_missing_fields_and_the_text_budget() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let mut request = merchant_dispute("", "ch_req");
    request.reason = dpb::DisputeReason::Duplicate.into();
    let dispute = create(&mut disputes, request).await;
    let mut request = update_request(&dispute.id);
    request.evidence = Some(dpb::EvidenceUpdate {
        duplicate_charge_id: Some("ch_original".into()),
        ..Default::default()
    });
    disputes.update_dispute(request).await.unwrap();
    let reqs = disputes
        .get_evidence_requirements(dpb::GetEvidenceRequirementsRequest {
            dispute_id: dispute.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        reqs.required_fields
            .contains(&"duplicate_charge_explanation".to_owned())
    );
    assert_eq!(
        reqs.missing_required_fields,
        vec!["duplicate_charge_explanation".to_owned()]
    );
    assert_eq!(reqs.text_characters_used, "ch_original".len() as i32);
    assert_eq!(
        reqs.text_characters_remaining,
        150_000 - "ch_original".len() as i32
    );
    let status = disputes
        .get_evidence_requirements(dpb::GetEvidenceRequirementsRequest {
            dispute_id: "bad".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), vec!["dispute_id"]);
    stack.stop().await;
}
