//! The only mapping between disputes.v1 messages and domain values: wire ints become enum
//! inputs, timestamps go through `service_kit::time`, strings are copied. Nothing is checked
//! here; the checks live in `domain::requests`.

use chrono::{DateTime, Utc};
use disputes_proto::disputes_v1 as pb;
use disputes_proto::documents_v1 as documents_pb;
use prost_types::Timestamp;
use service_kit::time::{instant, timestamp};

use crate::app::DisputeView;
use crate::domain::dispute::{IssuerFacts, IssuerFactsDraft};
use crate::domain::evidence::{DisputeDocument, Evidence, EvidenceGuidance, with_evidence_fields};
use crate::domain::requests::{
    CreateActionDraft, CreateDisputeDraft, Decoded, DisputeDraft, ListDisputesDraft,
    NetworkEventDraft, UpdateDisputeDraft,
};
use crate::domain::webhooks::DeliveryStatus;
use crate::domain::*;

/// Maps generated enums (i32 on the wire) to domain enums and back.
macro_rules! enum_mapping {
    ($domain:ident, $proto:ty, { $($d:ident <=> $p:ident),+ $(,)? }) => {
        impl From<$domain> for $proto {
            fn from(value: $domain) -> Self {
                match value { $($domain::$d => <$proto>::$p),+ }
            }
        }

        impl EnumInputFrom for $domain {
            fn from_wire(value: i32) -> EnumInput<$domain> {
                match <$proto>::try_from(value) {
                    Ok(<$proto>::Unspecified) => EnumInput::Unspecified,
                    $(Ok(<$proto>::$p) => EnumInput::Known($domain::$d),)+
                    #[allow(unreachable_patterns)]
                    _ => EnumInput::Unknown(value),
                }
            }
        }
    };
}

/// A wire enum value as a domain enum input.
pub trait EnumInputFrom: Sized {
    fn from_wire(value: i32) -> EnumInput<Self>;
}

fn wire<T: EnumInputFrom>(value: i32) -> Option<EnumInput<T>> {
    Some(T::from_wire(value))
}

enum_mapping!(Side, pb::DisputeSide, { Merchant <=> Merchant, Issuer <=> Issuer });
enum_mapping!(Stage, pb::DisputeStage, {
    Inquiry <=> Inquiry, Chargeback <=> Chargeback, Representment <=> Representment,
    PreArbitration <=> PreArbitration, Arbitration <=> Arbitration,
});
enum_mapping!(Status, pb::DisputeStatus, {
    NeedsResponse <=> NeedsResponse, UnderReview <=> UnderReview, Won <=> Won, Lost <=> Lost,
    Closed <=> Closed,
});
enum_mapping!(Network, pb::CardNetwork, {
    Visa <=> Visa, Mastercard <=> Mastercard, Amex <=> Amex, Discover <=> Discover, Jcb <=> Jcb,
    Unionpay <=> Unionpay, Diners <=> Diners, Other <=> Other,
});
enum_mapping!(DeliveryStatus, pb::WebhookDeliveryStatus, {
    Pending <=> Pending, Succeeded <=> Succeeded, Failed <=> Failed,
});
enum_mapping!(PaymentMethodType, pb::PaymentMethodType, { Card <=> Card, BankAccount <=> BankAccount });
enum_mapping!(Reason, pb::DisputeReason, {
    BankCannotProcess <=> BankCannotProcess, CheckReturned <=> CheckReturned,
    CreditNotProcessed <=> CreditNotProcessed, CustomerInitiated <=> CustomerInitiated,
    DebitNotAuthorized <=> DebitNotAuthorized, Duplicate <=> Duplicate, Fraudulent <=> Fraudulent,
    General <=> General, IncorrectAccountDetails <=> IncorrectAccountDetails,
    InsufficientFunds <=> InsufficientFunds, ProductNotReceived <=> ProductNotReceived,
    ProductUnacceptable <=> ProductUnacceptable, SubscriptionCanceled <=> SubscriptionCanceled,
    Unrecognized <=> Unrecognized,
});
enum_mapping!(Regulation, pb::ApplicableRegulation, {
    RegulationE <=> RegulationE, RegulationZ <=> RegulationZ, None <=> None,
});
enum_mapping!(CreditStatus, pb::CreditStatus, {
    None <=> None, Provisional <=> Provisional, Final <=> Final, Reversed <=> Reversed,
});
enum_mapping!(ActionType, pb::DisputeActionType, {
    Accept <=> Accept, SubmitEvidence <=> SubmitEvidence, ProvisionalCredit <=> ProvisionalCredit,
    WriteOff <=> WriteOff, Deny <=> Deny, Chargeback <=> Chargeback,
    AcceptRepresentment <=> AcceptRepresentment, PreArbitration <=> PreArbitration,
    Arbitration <=> Arbitration, Close <=> Close,
});
enum_mapping!(NetworkEventKind, pb::NetworkEventType, {
    RetrievalRequest <=> RetrievalRequest, ChargebackNotified <=> ChargebackNotified,
    Chargeback <=> Chargeback, InquiryClosed <=> InquiryClosed,
    ChargebackReversed <=> ChargebackReversed, SecondChargeback <=> SecondChargeback,
    Representment <=> Representment, PreArbitration <=> PreArbitration,
    PreArbitrationResponse <=> PreArbitrationResponse, Arbitration <=> Arbitration,
    NetworkRejected <=> NetworkRejected, Won <=> Won, Lost <=> Lost,
});
enum_mapping!(OverdueDeadline, pb::OverdueDeadline, {
    ProvisionalCreditDue <=> ProvisionalCreditDue, DecisionDue <=> DecisionDue,
    ResponseDue <=> ResponseDue,
});
enum_mapping!(CloseReason, pb::CloseReason, { CardholderWithdrew <=> CardholderWithdrew });
enum_mapping!(Actor, pb::Actor, { Tenant <=> Tenant, Network <=> Network, System <=> System });
enum_mapping!(BalanceTransactionType, pb::BalanceTransactionType, {
    Withdrawal <=> Withdrawal, DisputeFee <=> DisputeFee, Reinstatement <=> Reinstatement,
    ProvisionalCredit <=> ProvisionalCredit,
    ProvisionalCreditReversal <=> ProvisionalCreditReversal, WriteOff <=> WriteOff,
    ArbitrationFee <=> ArbitrationFee,
});
enum_mapping!(FeeType, pb::FeeType, {
    DisputeFee <=> DisputeFee, ArbitrationFee <=> ArbitrationFee,
});
enum_mapping!(BalanceTransactionStatus, pb::BalanceTransactionStatus, {
    Pending <=> Pending, Available <=> Available,
});

/// Evidence fields by wire field, built from the domain's one list of field names.
macro_rules! wire_evidence {
    ($($name:ident: $kind:ident),+ $(,)?) => {
        /// The evidence fields an UpdateDispute sets, by name, in wire order.
        fn evidence_changes(update: &pb::EvidenceUpdate) -> Vec<(&'static str, String)> {
            let mut changes = Vec::new();
            $(if let Some(value) = &update.$name {
                changes.push((stringify!($name), value.clone()));
            })+
            changes
        }

        fn evidence_to_proto(evidence: &Evidence) -> pb::Evidence {
            pb::Evidence {
                $($name: evidence.get(stringify!($name)).cloned().unwrap_or_default(),)+
            }
        }
    };
}
with_evidence_fields!(wire_evidence);

impl From<DisputeView> for pb::Dispute {
    fn from(view: DisputeView) -> Self {
        let d = view.dispute;
        let regulatory = d.regulatory_deadlines();
        let overdue_deadlines: Vec<pb::DeadlineBreach> = d
            .overdue_breaches()
            .into_iter()
            .map(|breach| pb::DeadlineBreach {
                deadline: pb::OverdueDeadline::from(breach.deadline).into(),
                breach_time: Some(timestamp(breach.due)),
            })
            .collect();
        let available_actions = view
            .available_actions
            .into_iter()
            .map(|a| pb::AvailableAction {
                action: pb::DisputeActionType::from(a.action).into(),
                valid_until: a.valid_until.map(timestamp),
            })
            .collect();
        pb::Dispute {
            evidence: Some(evidence_to_proto(&d.evidence)),
            evidence_details: Some(pb::EvidenceDetails {
                due_by: d.due_time.map(timestamp),
                has_evidence: d.has_evidence,
                past_due: view.past_due,
                submission_count: d.submission_count,
            }),
            id: d.id,
            tenant_id: d.tenant_id,
            create_time: Some(timestamp(d.create_time)),
            update_time: Some(timestamp(d.update_time)),
            version: d.version,
            side: pb::DisputeSide::from(d.side).into(),
            stage: pb::DisputeStage::from(d.stage).into(),
            status: pb::DisputeStatus::from(d.status).into(),
            amount: d.amount,
            currency: d.currency,
            charge: d.charge.unwrap_or_default(),
            payment_intent: d.payment_intent.unwrap_or_default(),
            transaction_id: d.transaction_id.unwrap_or_default(),
            merchant_id: d.merchant_id.unwrap_or_default(),
            network: pb::CardNetwork::from(d.network).into(),
            payment_method_type: pb::PaymentMethodType::from(d.payment_method_type).into(),
            reason: pb::DisputeReason::from(d.reason).into(),
            network_reason_code: d.network_reason_code.unwrap_or_default(),
            network_case_id: d.network_case_id.unwrap_or_default(),
            memo: d.memo.unwrap_or_default(),
            date_customer_reported: d
                .date_customer_reported
                .map(|date| date.format("%Y-%m-%d").to_string())
                .unwrap_or_default(),
            applicable_regulation: pb::ApplicableRegulation::from(d.applicable_regulation).into(),
            credit_status: pb::CreditStatus::from(d.credit_status).into(),
            available_actions,
            action_history: d.action_history.into_iter().map(Into::into).collect(),
            balance_transactions: d.balance_transactions.into_iter().map(Into::into).collect(),
            is_charge_refundable: d.is_charge_refundable,
            metadata: d.metadata,
            livemode: d.livemode,
            original_amount: d.original_amount.unwrap_or_default(),
            amount_won: d.amount_won,
            amount_lost: d.amount_lost,
            issuer_facts: (d.side == Side::Issuer).then(|| issuer_facts_to_proto(&d.issuer)),
            provisional_credit_due_by: regulatory.provisional_credit_due.map(timestamp),
            decision_due_by: regulatory.resolution_due.map(timestamp),
            overdue: !overdue_deadlines.is_empty(),
            overdue_deadlines,
            close_reason: d
                .close_reason
                .map_or(pb::CloseReason::Unspecified, pb::CloseReason::from)
                .into(),
            action_history_count: saturating_i32(d.action_history_count),
        }
    }
}

/// A count as the API's int32 (a history never reaches 2^31 entries).
pub fn saturating_i32(count: i64) -> i32 {
    i32::try_from(count).unwrap_or(i32::MAX)
}

fn issuer_facts_to_proto(facts: &IssuerFacts) -> pb::IssuerFacts {
    pb::IssuerFacts {
        transaction_date: facts
            .transaction_date
            .map(|date| date.format("%Y-%m-%d").to_string())
            .unwrap_or_default(),
        new_account: facts.regulation_e.new_account,
        pos_or_foreign: facts.regulation_e.pos_or_foreign,
        billing_cycle_closing_day: facts.billing_cycle_closing_day.unwrap_or(0) as i32,
        three_ds_authenticated: facts.three_ds_authenticated,
        digital_wallet_token: facts.digital_wallet_token,
        transaction_posted: Some(facts.transaction_posted),
    }
}

impl From<ActionRecord> for pb::ActionRecord {
    fn from(a: ActionRecord) -> Self {
        pb::ActionRecord {
            id: a.id,
            actor: pb::Actor::from(a.actor).into(),
            what: a.what,
            create_time: Some(timestamp(a.create_time)),
            message: a.message,
            document_ids: a.document_ids,
            stage: pb::DisputeStage::from(a.stage).into(),
            status: pb::DisputeStatus::from(a.status).into(),
            amount: a.amount,
        }
    }
}

impl From<BalanceTransaction> for pb::BalanceTransaction {
    fn from(t: BalanceTransaction) -> Self {
        let (fee, net) = (t.fee(), t.net());
        let fee_details = t
            .fee_details
            .into_iter()
            .map(|detail| pb::FeeDetail {
                amount: detail.amount,
                currency: t.currency.clone(),
                description: detail.description,
                r#type: pb::FeeType::from(detail.kind).into(),
            })
            .collect();
        pb::BalanceTransaction {
            id: t.id,
            r#type: pb::BalanceTransactionType::from(t.kind).into(),
            amount: t.amount,
            currency: t.currency,
            create_time: Some(timestamp(t.create_time)),
            description: t.description,
            fee,
            fee_details,
            net,
            status: pb::BalanceTransactionStatus::from(t.status).into(),
            reporting_category: t.reporting_category,
            available_on: Some(timestamp(t.available_on)),
        }
    }
}

impl From<DisputeDocument> for documents_pb::Document {
    fn from(d: DisputeDocument) -> Self {
        documents_pb::Document {
            id: d.id,
            tenant_id: d.tenant_id,
            dispute_id: d.dispute_id,
            filename: d.filename,
            content_type: d.content_type,
            size_bytes: d.size_bytes,
            sha256: d.sha256,
            create_time: d.create_time.map(timestamp),
            lock_time: d.lock_time.map(timestamp),
        }
    }
}

/// GetEvidenceRequirements' answer.
pub fn evidence_requirements_response(
    guidance: EvidenceGuidance,
    due_time: Option<DateTime<Utc>>,
) -> pb::GetEvidenceRequirementsResponse {
    let names = |fields: Vec<&'static str>| fields.into_iter().map(str::to_owned).collect();
    let count = |chars: usize| i32::try_from(chars).unwrap_or(i32::MAX);
    pb::GetEvidenceRequirementsResponse {
        required_fields: names(guidance.requirements.required),
        recommended_fields: names(guidance.requirements.recommended),
        missing_required_fields: names(guidance.missing_required),
        missing_recommended_fields: names(guidance.missing_recommended),
        text_characters_used: count(guidance.text_chars_used),
        text_characters_remaining: count(guidance.text_chars_remaining),
        due_by: due_time.map(timestamp),
    }
}

/// A timestamp field as decoded, or the violation naming it.
fn decoded(field: &str, ts: &Option<Timestamp>) -> Option<Decoded<DateTime<Utc>>> {
    ts.as_ref().map(|ts| instant(field, ts))
}

/// A new dispute as it arrived (CreateDispute, or RecordNetworkEvent's `new_case`).
pub fn dispute_draft(request: &pb::CreateDisputeRequest) -> DisputeDraft {
    let fields = NewDisputeDraft {
        side: wire(request.side),
        stage: wire(request.stage),
        amount: request.amount,
        currency: request.currency.clone(),
        charge: request.charge.clone(),
        payment_intent: request.payment_intent.clone(),
        transaction_id: request.transaction_id.clone(),
        merchant_id: request.merchant_id.clone(),
        network: wire(request.network),
        payment_method_type: wire(request.payment_method_type),
        reason: wire(request.reason),
        network_reason_code: request.network_reason_code.clone(),
        network_case_id: request.network_case_id.clone(),
        memo: request.memo.clone(),
        date_customer_reported: request.date_customer_reported.clone(),
        applicable_regulation: wire(request.applicable_regulation),
        metadata: request.metadata.clone(),
        livemode: request.livemode,
        original_amount: request.original_amount,
        is_charge_refundable: request.is_charge_refundable,
        due_time: None,
        issuer_facts: request.issuer_facts.as_ref().map(|f| IssuerFactsDraft {
            transaction_date: f.transaction_date.clone(),
            new_account: f.new_account,
            pos_or_foreign: f.pos_or_foreign,
            billing_cycle_closing_day: f.billing_cycle_closing_day,
            three_ds_authenticated: f.three_ds_authenticated,
            digital_wallet_token: f.digital_wallet_token,
            transaction_posted: f.transaction_posted,
        }),
    };
    DisputeDraft {
        fields,
        due_time: decoded("due_by", &request.due_by),
    }
}

pub fn create_dispute_draft(request: &pb::CreateDisputeRequest) -> CreateDisputeDraft {
    CreateDisputeDraft {
        dispute: dispute_draft(request),
        request_id: request.request_id.clone(),
    }
}

pub fn update_dispute_draft(request: &pb::UpdateDisputeRequest) -> UpdateDisputeDraft {
    UpdateDisputeDraft {
        id: request.id.clone(),
        request_id: request.request_id.clone(),
        evidence: request
            .evidence
            .as_ref()
            .map(evidence_changes)
            .unwrap_or_default(),
        metadata: request.metadata.clone(),
        clear_metadata: request.clear_metadata,
        submit: request.submit,
        expected_version: request.expected_version,
    }
}

pub fn create_action_draft(request: &pb::CreateActionRequest) -> CreateActionDraft {
    CreateActionDraft {
        dispute_id: request.dispute_id.clone(),
        request_id: request.request_id.clone(),
        action: ActionType::from_wire(request.action),
        amount: request.amount,
        message: request.message.clone(),
        document_ids: request.document_ids.clone(),
        expected_version: request.expected_version,
        network_case_id: request.network_case_id.clone(),
        network_reference: request.network_reference.clone(),
        close_reason: wire(request.close_reason),
    }
}

pub fn network_event_draft(request: &pb::RecordNetworkEventRequest) -> NetworkEventDraft {
    NetworkEventDraft {
        network: Network::from_wire(request.network),
        network_case_id: request.network_case_id.clone(),
        event_id: request.event_id.clone(),
        kind: NetworkEventKind::from_wire(request.r#type),
        due_time: decoded("due_by", &request.due_by),
        occur_time: decoded("occur_time", &request.occur_time),
        network_reason_code: request.network_reason_code.clone(),
        amount: request.amount,
        amount_won: request.amount_won,
        amount_lost: request.amount_lost,
        response_allowed: request.response_allowed,
        message: request.message.clone(),
        document_ids: request.document_ids.clone(),
        new_case: request.new_case.as_ref().map(dispute_draft),
    }
}

pub fn list_disputes_draft(request: &pb::ListDisputesRequest) -> ListDisputesDraft {
    ListDisputesDraft {
        charge: request.charge.clone(),
        payment_intent: request.payment_intent.clone(),
        transaction_id: request.transaction_id.clone(),
        status: wire(request.status),
        stage: wire(request.stage),
        side: wire(request.side),
        created_after: decoded("created_after", &request.created_after),
        created_before: decoded("created_before", &request.created_before),
        due_before: decoded("due_before", &request.due_before),
        page_size: request.page_size,
        page_token: request.page_token.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_enums_map_both_ways() {
        for stage in Stage::ALL {
            let wire_value: i32 = pb::DisputeStage::from(*stage).into();
            assert_eq!(Stage::from_wire(wire_value), EnumInput::Known(*stage));
        }
        assert_eq!(Stage::from_wire(0), EnumInput::Unspecified);
        assert_eq!(Stage::from_wire(77), EnumInput::Unknown(77));
    }

    #[test]
    fn evidence_maps_by_name_both_ways() {
        let update = pb::EvidenceUpdate {
            customer_name: Some("Jane".into()),
            receipt: Some("doc_01jd3s9v8m6q0n2c5x7r4t1k9e".into()),
            uncategorized_text: Some(String::new()),
            ..Default::default()
        };
        let changes = evidence_changes(&update);
        assert_eq!(
            changes,
            vec![
                ("customer_name", "Jane".to_owned()),
                ("receipt", "doc_01jd3s9v8m6q0n2c5x7r4t1k9e".to_owned()),
                ("uncategorized_text", String::new()),
            ]
        );
        let evidence: Evidence = changes
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(
            evidence_to_proto(&evidence),
            pb::Evidence {
                customer_name: "Jane".into(),
                receipt: "doc_01jd3s9v8m6q0n2c5x7r4t1k9e".into(),
                ..Default::default()
            }
        );
    }

    #[test]
    fn malformed_timestamps_are_named() {
        let request = pb::ListDisputesRequest {
            due_before: Some(Timestamp {
                seconds: 0,
                nanos: -1,
            }),
            ..Default::default()
        };
        let draft = list_disputes_draft(&request);
        assert!(draft.created_after.is_none());
        let violation = draft.due_before.and_then(Result::err).map(|v| v.field);
        assert_eq!(violation.as_deref(), Some("due_before"));
    }
}
