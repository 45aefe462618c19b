//! What a `request_id` remembers: a business refusal (ACTION_NOT_AVAILABLE, NOT_FOUND) is
//! replayed for it, details included, even once the action has become available, and a
//! different request under it is IDEMPOTENCY_KEY_REUSED; a version conflict or a validation
//! error is not remembered, so the same `request_id` goes through later. The `point_9_`
//! prefix of the test names is issue 11's point 9.

use disputes_proto::disputes_v1 as dpb;
use disputes_proto::disputes_v1::DisputeActionType as Action;
use disputes_proto::disputes_v1::NetworkEventType as Net;
use tonic::Code;

use crate::fixtures::*;

/// An issuer dispute with a chargeback filed on network case `case`.
async fn issuer_chargeback(disputes: &mut harness::DisputesClient, case: &str) -> dpb::Dispute {
    let mut request = issuer_dispute(&format!("txn_{case}"));
    request.date_customer_reported = today();
    request.network_case_id = case.into();
    let dispute = create(disputes, request).await;
    act(disputes, &dispute.id, Action::Chargeback)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_9_idempotency_remembers_business_refusals() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let case = "MC-P9-1";
    let charged = issuer_chargeback(&mut disputes, case).await;
    let accept = dpb::CreateActionRequest {
        request_id: "p9-accept".into(),
        ..action_request(&charged.id, Action::AcceptRepresentment)
    };

    // No representment yet: refused by a lifecycle rule.
    let first = apply_action(&mut disputes, accept.clone())
        .await
        .unwrap_err();
    assert_eq!(first.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&first), "ACTION_NOT_AVAILABLE");
    // The refusal changed nothing.
    let unchanged = get_dispute(&mut disputes, &charged.id).await;
    assert_eq!(unchanged.version, charged.version);

    // The network represents: ACCEPT_REPRESENTMENT is now available...
    let represented = record(
        &mut disputes,
        network_event(
            dpb::CardNetwork::Mastercard,
            case,
            "rep-1",
            Net::Representment,
        ),
    )
    .await
    .unwrap()
    .dispute
    .unwrap();
    assert!(available(&represented).contains(&Action::AcceptRepresentment));

    // ...but the retry with the same request_id gets the same refusal, details included,
    // and changes nothing.
    let retry = apply_action(&mut disputes, accept.clone())
        .await
        .unwrap_err();
    assert_eq!(retry.code(), first.code());
    assert_eq!(retry.message(), first.message());
    assert_eq!(retry.details(), first.details());
    assert_eq!(precondition_type(&retry), "ACTION_NOT_AVAILABLE");
    assert_eq!(error_reason(&retry), "ACTION_NOT_AVAILABLE");
    let after = get_dispute(&mut disputes, &charged.id).await;
    assert_eq!(after.version, represented.version);
    assert_eq!(after.stage(), dpb::DisputeStage::Representment);

    // The same request with another request_id is decided afresh.
    let accepted = apply_action(
        &mut disputes,
        dpb::CreateActionRequest {
            request_id: "p9-accept-2".into(),
            ..accept.clone()
        },
    )
    .await
    .unwrap();
    assert_eq!(accepted.status(), dpb::DisputeStatus::Lost);
    // A different request under the refused request_id is still a reused key.
    let reused = apply_action(
        &mut disputes,
        dpb::CreateActionRequest {
            request_id: "p9-accept".into(),
            ..action_request(&charged.id, Action::WriteOff)
        },
    )
    .await
    .unwrap_err();
    assert_eq!(error_reason(&reused), "IDEMPOTENCY_KEY_REUSED");

    // NOT_FOUND is remembered too.
    let missing = dpb::CreateActionRequest {
        request_id: "p9-missing".into(),
        ..action_request(
            &domain_kit::ids::DisputeId::generate().into_string(),
            Action::Accept,
        )
    };
    let first = apply_action(&mut disputes, missing.clone())
        .await
        .unwrap_err();
    assert_eq!(first.code(), Code::NotFound);
    let retry = apply_action(&mut disputes, missing).await.unwrap_err();
    assert_eq!(
        (retry.code(), retry.message(), retry.details()),
        (first.code(), first.message(), first.details())
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_9_version_conflicts_and_validation_errors_are_not_remembered() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let dispute = create(&mut disputes, merchant_dispute("", "ch_p9_versions")).await;
    let metadata = |request_id: &str, version: Option<i64>| dpb::UpdateDisputeRequest {
        id: dispute.id.clone(),
        request_id: request_id.into(),
        expected_version: version,
        metadata: [("note".to_owned(), request_id.to_owned())].into(),
        ..Default::default()
    };

    // ABORTED: the caller saw a version the dispute does not have yet.
    let ahead = metadata("p9-ahead", Some(dispute.version + 1));
    let status = disputes.update_dispute(ahead.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    // Once the dispute reaches that version, the same request with the same request_id
    // goes through: the conflict was not remembered.
    update(&mut disputes, metadata("p9-bump", None)).await;
    let updated = update(&mut disputes, ahead.clone()).await;
    assert_eq!(
        updated.metadata.get("note").map(String::as_str),
        Some("p9-ahead")
    );
    // And from now on the success is what the request_id replays.
    let replayed = update(&mut disputes, ahead).await;
    assert_eq!(replayed.version, updated.version);

    // INVALID_ARGUMENT is not remembered either: the request_id stays free, so a different,
    // valid request under it goes through (not IDEMPOTENCY_KEY_REUSED).
    let mut invalid = metadata("p9-invalid", None);
    invalid.metadata = [("".to_owned(), "x".to_owned())].into();
    let status = disputes.update_dispute(invalid).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let valid = update(&mut disputes, metadata("p9-invalid", None)).await;
    assert_eq!(
        valid.metadata.get("note").map(String::as_str),
        Some("p9-invalid")
    );
    stack.stop().await;
}
