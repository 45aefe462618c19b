//! The issuer side's flow end to end, as Synctera runs it: provisional credit (Reg E) once, the
//! chargeback filed with the network, the merchant's representment with a document, and its
//! acceptance: lost, with the provisional credit reversed. Rule ids (I…) are those of
//! docs/lifecycle.md.

use disputes_proto::disputes_v1 as dpb;
use dpb::BalanceTransactionType as Txn;
use dpb::DisputeActionType as Action;
use dpb::NetworkEventType as Net;

use crate::fixtures::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synctera_issuer_flow() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let mut documents = stack.documents_of("acme").await;
    let case = "MC-SYN-1";
    let mut request = issuer_dispute("txn_synctera");
    request.date_customer_reported = today();
    request.network_case_id = case.into();
    request.original_amount = 10_000;
    let dispute = create(&mut disputes, request).await;
    assert_eq!(dispute.side(), dpb::DisputeSide::Issuer);
    assert_eq!(dispute.stage(), dpb::DisputeStage::Inquiry);
    assert_eq!(dispute.status(), dpb::DisputeStatus::NeedsResponse);
    assert_eq!(dispute.credit_status(), dpb::CreditStatus::None);
    assert_eq!(
        dispute.applicable_regulation(),
        dpb::ApplicableRegulation::RegulationE
    );
    assert_eq!(
        available(&dispute),
        vec![
            Action::ProvisionalCredit,
            Action::WriteOff,
            Action::Deny,
            Action::Chargeback,
            Action::Close
        ]
    );
    assert!(
        dispute
            .available_actions
            .iter()
            .all(|a| a.valid_until.is_some()),
        "every issuer action shows its deadline: {:?}",
        dispute.available_actions
    );
    assert!(ledger(&dispute).is_empty());

    // Provisional credit (Reg E), once.
    let credited = act(&mut disputes, &dispute.id, Action::ProvisionalCredit)
        .await
        .unwrap();
    assert_eq!(credited.credit_status(), dpb::CreditStatus::Provisional);
    assert_eq!(
        (credited.stage(), credited.status()),
        (
            dpb::DisputeStage::Inquiry,
            dpb::DisputeStatus::NeedsResponse
        )
    );
    assert_eq!(ledger(&credited), vec![(Txn::ProvisionalCredit, 4_200)]);
    assert!(!available(&credited).contains(&Action::ProvisionalCredit));

    // Chargeback filed with the network.
    let charged = apply_action(
        &mut disputes,
        dpb::CreateActionRequest {
            message: "Some things about chargeback".into(),
            ..action_request(&dispute.id, Action::Chargeback)
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (charged.stage(), charged.status()),
        (
            dpb::DisputeStage::Chargeback,
            dpb::DisputeStatus::UnderReview
        )
    );
    let entry = charged.action_history.last().unwrap();
    assert_eq!(
        (entry.actor(), entry.what.as_str()),
        (dpb::Actor::Tenant, "CHARGEBACK")
    );
    assert_eq!(entry.amount, 4_200);

    // The merchant represents with a document (I8).
    let mut h = header("merchant-rebuttal.pdf", "application/pdf");
    h.dispute_id = dispute.id.clone();
    let rebuttal = upload(&mut documents, h, &pdf_of_size(3000)).await.unwrap();
    let mut event = network_event(
        dpb::CardNetwork::Mastercard,
        case,
        "mc-rep-1",
        Net::Representment,
    );
    event.document_ids = vec![rebuttal.id.clone()];
    event.message = "merchant provided proof of delivery".into();
    let represented = record(&mut disputes, event).await.unwrap();
    assert!(represented.applied && !represented.created);
    let represented = represented.dispute.unwrap();
    assert_eq!(
        (represented.stage(), represented.status()),
        (
            dpb::DisputeStage::Representment,
            dpb::DisputeStatus::NeedsResponse
        )
    );
    let entry = represented.action_history.last().unwrap();
    assert_eq!(
        (entry.actor(), entry.what.as_str()),
        (dpb::Actor::Network, "network:REPRESENTMENT")
    );
    assert_eq!(entry.document_ids, vec![rebuttal.id.clone()]);
    assert_eq!(
        available(&represented),
        vec![
            Action::WriteOff,
            Action::AcceptRepresentment,
            Action::PreArbitration,
            Action::Close
        ]
    );

    // Accept the representment: lost, the provisional credit is reversed (I9, I5).
    let lost = act(&mut disputes, &dispute.id, Action::AcceptRepresentment)
        .await
        .unwrap();
    assert_eq!(
        (lost.stage(), lost.status()),
        (dpb::DisputeStage::Representment, dpb::DisputeStatus::Lost)
    );
    assert_eq!(lost.credit_status(), dpb::CreditStatus::Reversed);
    assert_eq!((lost.amount_won, lost.amount_lost), (0, 4_200));
    assert_eq!(
        ledger(&lost),
        vec![
            (Txn::ProvisionalCredit, 4_200),
            (Txn::ProvisionalCreditReversal, -4_200)
        ]
    );
    assert_eq!(net(&lost), 0, "the cardholder keeps nothing");
    assert!(available(&lost).is_empty());
    let honored = dispute_core::domain::deadlines::regulation_e_reversal_honored_until(
        chrono::Utc::now().date_naive(),
    )
    .to_string();
    let entry = lost.action_history.last().unwrap();
    assert_eq!(
        (entry.actor(), entry.what.as_str()),
        (dpb::Actor::Tenant, "ACCEPT_REPRESENTMENT")
    );
    assert!(
        entry
            .message
            .contains(&format!("honored through {honored}")),
        "{}",
        entry.message
    );
    let reversal = lost.balance_transactions.last().unwrap();
    assert!(
        reversal.description.contains(&honored),
        "{}",
        reversal.description
    );
    assert_eq!(
        history(&lost)
            .iter()
            .map(|(_, what)| what.as_str())
            .collect::<Vec<_>>(),
        vec![
            "created",
            "PROVISIONAL_CREDIT",
            "CHARGEBACK",
            "network:REPRESENTMENT",
            "ACCEPT_REPRESENTMENT"
        ]
    );
    stack.stop().await;
}
