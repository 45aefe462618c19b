//! The only mapping between disputes.v1 messages and domain values.

use chrono::{DateTime, Utc};
use disputes_proto::disputes_v1 as pb;
use prost_types::Timestamp;
use service_kit::errors::Violation;

use crate::domain::evidence::Evidence;
use crate::domain::*;

pub fn timestamp(time: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

/// A protobuf timestamp as an instant, or a violation naming `field`.
pub fn instant(field: &str, ts: &Timestamp) -> Result<DateTime<Utc>, Violation> {
    u32::try_from(ts.nanos)
        .ok()
        .and_then(|nanos| DateTime::from_timestamp(ts.seconds, nanos))
        .ok_or_else(|| Violation::new(field, "is not a valid timestamp"))
}

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
enum_mapping!(Actor, pb::Actor, { Tenant <=> Tenant, Network <=> Network, System <=> System });
enum_mapping!(BalanceTransactionType, pb::BalanceTransactionType, {
    Withdrawal <=> Withdrawal, DisputeFee <=> DisputeFee, Reinstatement <=> Reinstatement,
    ProvisionalCredit <=> ProvisionalCredit,
    ProvisionalCreditReversal <=> ProvisionalCreditReversal, WriteOff <=> WriteOff,
});

/// Evidence fields by name, in both directions, and the changes of an EvidenceUpdate.
macro_rules! evidence_fields {
    ($($field:ident),+ $(,)?) => {
        /// Evidence changes of an UpdateDispute request, by name (present fields only).
        fn evidence_changes(update: &pb::EvidenceUpdate) -> Vec<(&'static str, String)> {
            let mut changes = Vec::new();
            $(if let Some(value) = &update.$field {
                changes.push((stringify!($field), value.clone()));
            })+
            changes
        }

        fn evidence_to_proto(evidence: &Evidence) -> pb::Evidence {
            pb::Evidence {
                $($field: evidence.get(stringify!($field)).cloned().unwrap_or_default(),)+
            }
        }

        /// Non-empty fields of a proto Evidence, by name.
        #[allow(dead_code)]
        pub fn evidence_from_proto(evidence: &pb::Evidence) -> Vec<(&'static str, &str)> {
            let mut fields = Vec::new();
            $(if !evidence.$field.is_empty() {
                fields.push((stringify!($field), evidence.$field.as_str()));
            })+
            fields
        }
    };
}

/// The changes an UpdateDispute asks for, plus violations only the transport sees.
pub fn dispute_changes(
    request: &pb::UpdateDisputeRequest,
) -> (crate::app::DisputeChanges, Vec<Violation>) {
    let mut violations = Vec::new();
    let evidence = request
        .evidence
        .as_ref()
        .map(evidence_changes)
        .unwrap_or_default();
    for (field, value) in &evidence {
        if value
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
        {
            violations.push(Violation::new(
                format!("evidence.{field}"),
                "must not contain control characters",
            ));
        }
    }
    // What can be judged without the stored dispute, so one answer names every bad field:
    // document ids, the text budget of the new values alone, and the metadata changes.
    for (field, value) in &evidence {
        if crate::domain::evidence::is_document_field(field)
            && !value.is_empty()
            && !service_kit::ids::is_valid_id("doc", value)
        {
            violations.push(Violation::new(
                format!("evidence.{field}"),
                "must be a document id (doc_...)",
            ));
        }
    }
    let new_text: usize = evidence
        .iter()
        .filter(|(field, _)| !crate::domain::evidence::is_document_field(field))
        .map(|(_, value)| value.chars().count())
        .sum();
    if new_text > crate::domain::evidence::MAX_EVIDENCE_TEXT_CHARS {
        violations.push(Violation::new(
            "evidence",
            format!(
                "text fields hold {new_text} characters together; the limit is {}",
                crate::domain::evidence::MAX_EVIDENCE_TEXT_CHARS
            ),
        ));
    }
    violations.extend(crate::domain::dispute::validate_metadata(&request.metadata));
    if evidence.is_empty()
        && request.metadata.is_empty()
        && !request.clear_metadata
        && !request.submit
    {
        violations.push(Violation::new(
            "evidence",
            "nothing to change: set evidence, metadata, clear_metadata or submit",
        ));
    }
    (
        crate::app::DisputeChanges {
            evidence,
            metadata: request.metadata.clone(),
            clear_metadata: request.clear_metadata,
            submit: request.submit,
            violations: Vec::new(),
        },
        violations,
    )
}

evidence_fields!(
    access_activity_log,
    billing_address,
    cancellation_policy,
    cancellation_policy_disclosure,
    cancellation_rebuttal,
    customer_communication,
    customer_email_address,
    customer_name,
    customer_purchase_ip,
    customer_signature,
    duplicate_charge_documentation,
    duplicate_charge_explanation,
    duplicate_charge_id,
    product_description,
    receipt,
    refund_policy,
    refund_policy_disclosure,
    refund_refusal_explanation,
    service_date,
    service_documentation,
    shipping_address,
    shipping_carrier,
    shipping_date,
    shipping_documentation,
    shipping_tracking_number,
    uncategorized_file,
    uncategorized_text,
);

impl From<Dispute> for pb::Dispute {
    fn from(d: Dispute) -> Self {
        let now = Utc::now();
        let past_due = d.is_past_due(now);
        let available_actions = lifecycle::available_actions(&d.lifecycle_state(), now)
            .into_iter()
            .map(|a| pb::AvailableAction {
                action: pb::DisputeActionType::from(a.action).into(),
                valid_until: a.valid_until.map(timestamp),
            })
            .collect();
        pb::Dispute {
            evidence: Some(evidence_to_proto(&d.evidence)),
            evidence_details: Some(pb::EvidenceDetails {
                due_time: d.due_time.map(timestamp),
                has_evidence: d.has_evidence,
                past_due,
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
        }
    }
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
        pb::BalanceTransaction {
            id: t.id,
            r#type: pb::BalanceTransactionType::from(t.kind).into(),
            amount: t.amount,
            currency: t.currency,
            create_time: Some(timestamp(t.create_time)),
            description: t.description,
        }
    }
}

/// A CreateDispute request as a draft for domain validation, plus the violations only the
/// transport can see (malformed timestamps).
pub fn new_dispute_draft(request: &pb::CreateDisputeRequest) -> (NewDisputeDraft, Vec<Violation>) {
    let mut violations = Vec::new();
    let due_time = request
        .due_time
        .as_ref()
        .and_then(|ts| instant("due_time", ts).map_err(|v| violations.push(v)).ok());
    let draft = NewDisputeDraft {
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
        due_time,
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
    (draft, violations)
}

/// ListDisputes filters, or the violations of every bad one.
pub fn dispute_filter(request: &pb::ListDisputesRequest) -> Result<DisputeFilter, Vec<Violation>> {
    let mut violations = Vec::new();
    let text = |value: &str| (!value.is_empty()).then(|| value.to_owned());
    fn optional_enum<T: EnumInputFrom>(
        field: &str,
        value: i32,
        violations: &mut Vec<Violation>,
    ) -> Option<T> {
        match T::from_wire(value) {
            EnumInput::Unspecified => None,
            EnumInput::Known(v) => Some(v),
            EnumInput::Unknown(n) => {
                violations.push(Violation::new(field, format!("unknown value {n}")));
                None
            }
        }
    }
    let mut time = |field: &str, ts: &Option<Timestamp>| {
        ts.as_ref()
            .and_then(|ts| instant(field, ts).map_err(|v| violations.push(v)).ok())
    };
    let created_after = time("created_after", &request.created_after);
    let created_before = time("created_before", &request.created_before);
    let due_before = time("due_before", &request.due_before);
    for (field, value) in [
        ("charge", &request.charge),
        ("payment_intent", &request.payment_intent),
        ("transaction_id", &request.transaction_id),
    ] {
        if value.chars().count() > MAX_REFERENCE_CHARS {
            violations.push(Violation::new(
                field,
                format!("must be at most {MAX_REFERENCE_CHARS} characters"),
            ));
        }
    }
    if request.page_size < 0 {
        violations.push(Violation::new("page_size", "must not be negative"));
    }
    let filter = DisputeFilter {
        charge: text(&request.charge),
        payment_intent: text(&request.payment_intent),
        transaction_id: text(&request.transaction_id),
        status: optional_enum("status", request.status, &mut violations),
        stage: optional_enum("stage", request.stage, &mut violations),
        side: optional_enum("side", request.side, &mut violations),
        created_after,
        created_before,
        due_before,
    };
    if let (Some(after), Some(before)) = (filter.created_after, filter.created_before)
        && after >= before
    {
        violations.push(Violation::new(
            "created_before",
            "must be later than created_after",
        ));
    }
    if violations.is_empty() {
        Ok(filter)
    } else {
        Err(violations)
    }
}

use crate::domain::dispute::{IssuerFacts, IssuerFactsDraft};
use crate::domain::dispute::{MAX_MEMO_CHARS, MAX_REFERENCE_CHARS};
use crate::domain::lifecycle;

/// Checks a list of document ids, naming each bad entry.
fn document_ids(field: &str, ids: &[String], violations: &mut Vec<Violation>) {
    if ids.len() > 100 {
        violations.push(Violation::new(field, "must hold at most 100 ids"));
    }
    for (i, id) in ids.iter().enumerate() {
        if !service_kit::ids::is_valid_id("doc", id) {
            violations.push(Violation::new(
                format!("{field}[{i}]"),
                "must be a document id (doc_...)",
            ));
        }
    }
}

/// A required enum field, or a violation naming it.
fn required_enum<T: EnumInputFrom>(
    field: &str,
    value: i32,
    violations: &mut Vec<Violation>,
) -> Option<T> {
    match T::from_wire(value) {
        EnumInput::Known(value) => Some(value),
        EnumInput::Unspecified => {
            violations.push(Violation::new(field, "is required"));
            None
        }
        EnumInput::Unknown(n) => {
            violations.push(Violation::new(field, format!("unknown value {n}")));
            None
        }
    }
}

/// A positive amount or 0 for "the disputed amount".
fn optional_amount(field: &str, amount: i64, violations: &mut Vec<Violation>) -> Option<i64> {
    match amount {
        0 => None,
        n if n < 0 => {
            violations.push(Violation::new(field, "must not be negative"));
            None
        }
        n => Some(n),
    }
}

/// A CreateAction request as a tenant action, or the violations of every bad field.
pub fn tenant_action(request: &pb::CreateActionRequest) -> Result<TenantAction, Vec<Violation>> {
    let mut violations = Vec::new();
    let action: Option<ActionType> = required_enum("action", request.action, &mut violations);
    let amount = optional_amount("amount", request.amount, &mut violations);
    if request.message.chars().count() > MAX_MEMO_CHARS {
        violations.push(Violation::new(
            "message",
            format!("must be at most {MAX_MEMO_CHARS} characters"),
        ));
    }
    document_ids("document_ids", &request.document_ids, &mut violations);
    match action {
        Some(action) if violations.is_empty() => Ok(TenantAction {
            action,
            amount,
            message: request.message.clone(),
            document_ids: request.document_ids.clone(),
        }),
        _ => Err(violations),
    }
}

/// A RecordNetworkEvent request's event, or the violations of every bad field. The new
/// case (if any) is converted separately.
pub fn network_event(
    request: &pb::RecordNetworkEventRequest,
) -> Result<(Network, NetworkEvent), Vec<Violation>> {
    let mut violations = Vec::new();
    let network: Option<Network> = required_enum("network", request.network, &mut violations);
    let kind: Option<NetworkEventKind> = required_enum("type", request.r#type, &mut violations);
    for (field, value) in [
        ("network_case_id", &request.network_case_id),
        ("event_id", &request.event_id),
    ] {
        if value.trim().is_empty() {
            violations.push(Violation::new(field, "is required"));
        } else if value.chars().count() > MAX_REFERENCE_CHARS || value.chars().any(char::is_control)
        {
            violations.push(Violation::new(
                field,
                format!("must be at most {MAX_REFERENCE_CHARS} printable characters"),
            ));
        }
    }
    let due_time = request
        .due_time
        .as_ref()
        .and_then(|ts| instant("due_time", ts).map_err(|v| violations.push(v)).ok());
    let amount = optional_amount("amount", request.amount, &mut violations);
    let amount_won = optional_amount("amount_won", request.amount_won, &mut violations);
    let amount_lost = optional_amount("amount_lost", request.amount_lost, &mut violations);
    if request.message.chars().count() > MAX_MEMO_CHARS {
        violations.push(Violation::new(
            "message",
            format!("must be at most {MAX_MEMO_CHARS} characters"),
        ));
    }
    document_ids("document_ids", &request.document_ids, &mut violations);
    match (network, kind) {
        (Some(network), Some(kind)) if violations.is_empty() => Ok((
            network,
            NetworkEvent {
                kind,
                due_time,
                amount,
                response_allowed: request.response_allowed.unwrap_or(true),
                amount_won,
                amount_lost,
                message: request.message.clone(),
                document_ids: request.document_ids.clone(),
            },
        )),
        _ => Err(violations),
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
    fn evidence_round_trips_by_name() {
        let proto = pb::Evidence {
            customer_name: "Jane".into(),
            receipt: "doc_01jd3s9v8m6q0n2c5x7r4t1k9e".into(),
            ..Default::default()
        };
        let fields = evidence_from_proto(&proto);
        assert_eq!(
            fields,
            vec![
                ("customer_name", "Jane"),
                ("receipt", "doc_01jd3s9v8m6q0n2c5x7r4t1k9e")
            ]
        );
        let evidence: Evidence = fields
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(evidence_to_proto(&evidence), proto);
    }

    #[test]
    fn list_filters_report_bad_fields() {
        let request = pb::ListDisputesRequest {
            status: 99,
            created_after: Some(Timestamp {
                seconds: 10,
                nanos: 0,
            }),
            created_before: Some(Timestamp {
                seconds: 5,
                nanos: 0,
            }),
            due_before: Some(Timestamp {
                seconds: 0,
                nanos: -1,
            }),
            page_size: -1,
            ..Default::default()
        };
        let mut fields: Vec<String> = dispute_filter(&request)
            .unwrap_err()
            .into_iter()
            .map(|v| v.field)
            .collect();
        fields.sort();
        assert_eq!(
            fields,
            vec!["created_before", "due_before", "page_size", "status"]
        );
    }
}
