//! The one home of request validation. A request arrives as a draft (wire values mapped by
//! grpc/convert.rs, nothing checked); the functions here turn it into a validated input or
//! name every bad field at once (a string holding NUL is named for that, see `refuse_nul`). Rules about a dispute itself stay with it
//! (`NewDispute::parse`, `validate_metadata`, `validate_request_id` in `dispute`), rules about
//! evidence with the evidence (`evidence::check_changes`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use domain_kit::ids::{DisputeId, DocumentId, EventId};
use domain_kit::page_token::PageRequest;
use domain_kit::violation::{Violation, merge_nul, nul_violations};
use sha2::{Digest, Sha256};

use super::dispute::{
    MAX_MEMO_CHARS, MAX_NETWORK_REASON_CODE_CHARS, MAX_REFERENCE_CHARS, validate_metadata,
    validate_request_id,
};
use super::{
    ActionType, CloseReason, DisputeError, DisputeEvent, DisputeFilter, EnumInput, Network,
    NetworkEvent, NetworkEventKind, NewDispute, NewDisputeDraft, Side, Stage, Status, TenantAction,
    evidence,
};

/// String fields of a request, by the name a violation gives them.
type Texts<'a> = Vec<(String, &'a str)>;

/// Refuses a request whose strings hold NUL (`\0`; PostgreSQL text cannot store it): `nul`
/// names those fields (every request below lists all its strings), reported together with
/// the other violations `checked` found.
fn refuse_nul<T>(nul: Vec<Violation>, checked: Result<T, DisputeError>) -> Result<T, DisputeError> {
    if nul.is_empty() {
        return checked;
    }
    let others = match checked {
        Err(DisputeError::Validation(others)) => others,
        _ => Vec::new(),
    };
    Err(DisputeError::Validation(merge_nul(nul, others)))
}

/// The strings of a new dispute, named `{prefix}field`.
fn new_dispute_texts<'a>(prefix: &str, draft: &'a NewDisputeDraft, texts: &mut Texts<'a>) {
    for (field, value) in [
        ("currency", &draft.currency),
        ("charge", &draft.charge),
        ("payment_intent", &draft.payment_intent),
        ("transaction_id", &draft.transaction_id),
        ("merchant_id", &draft.merchant_id),
        ("network_reason_code", &draft.network_reason_code),
        ("network_case_id", &draft.network_case_id),
        ("memo", &draft.memo),
        ("date_customer_reported", &draft.date_customer_reported),
    ] {
        texts.push((format!("{prefix}{field}"), value));
    }
    if let Some(facts) = &draft.issuer_facts {
        texts.push((
            format!("{prefix}issuer_facts.transaction_date"),
            &facts.transaction_date,
        ));
    }
    metadata_texts(prefix, &draft.metadata, texts);
}

/// Metadata keys and values, named like `validate_metadata` names them.
fn metadata_texts<'a>(prefix: &str, metadata: &'a BTreeMap<String, String>, texts: &mut Texts<'a>) {
    for (key, value) in metadata {
        let field = format!("{prefix}metadata[{key:?}]");
        texts.push((field.clone(), key));
        texts.push((field, value));
    }
}

/// Document ids, named `field[i]`.
fn document_id_texts<'a>(field: &str, ids: &'a [String], texts: &mut Texts<'a>) {
    texts.extend(
        ids.iter()
            .enumerate()
            .map(|(i, id)| (format!("{field}[{i}]"), id.as_str())),
    );
}

/// A value decoded from the wire; `Err` names the field that held a malformed one (e.g. a
/// timestamp out of range).
pub type Decoded<T> = Result<T, Violation>;

/// How far ahead of our clock a network event's `occur_time` may be (the network's clock
/// may run a little ahead); later is INVALID_ARGUMENT.
pub const MAX_OCCUR_TIME_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// At most this many document ids in one list.
pub const MAX_DOCUMENT_IDS: usize = 100;

/// Hex SHA-256: what "the same request" (idempotency) and "the same filters" (page tokens)
/// mean.
pub fn fingerprint(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A dispute id, or INVALID_ARGUMENT naming `field`.
pub fn dispute_id(field: &str, value: &str) -> Result<DisputeId, DisputeError> {
    let nul = nul_violations([(field, value)]);
    refuse_nul(nul, Ok(()))?;
    DisputeId::parse(field, value).map_err(|violation| DisputeError::Validation(vec![violation]))
}

/// A new dispute as it arrived: the draft, and its due time, which may not have decoded.
#[derive(Debug, Clone, Default)]
pub struct DisputeDraft {
    /// Every field but the due time (left `None`; see `due_time`).
    pub fields: NewDisputeDraft,
    pub due_time: Option<Decoded<DateTime<Utc>>>,
}

/// CreateDispute as it arrived.
#[derive(Debug, Clone, Default)]
pub struct CreateDisputeDraft {
    pub dispute: DisputeDraft,
    pub request_id: String,
}

/// A valid CreateDispute.
#[derive(Debug, Clone)]
pub struct CreateDispute {
    pub dispute: NewDispute,
    pub request_id: Option<String>,
}

/// Checks a CreateDispute; `now` decides what "future" means for dates and deadlines.
pub fn create_dispute(
    draft: CreateDisputeDraft,
    now: DateTime<Utc>,
) -> Result<CreateDispute, DisputeError> {
    let mut texts = vec![("request_id".to_owned(), draft.request_id.as_str())];
    new_dispute_texts("", &draft.dispute.fields, &mut texts);
    let nul = nul_violations(texts);
    refuse_nul(nul, checked_create_dispute(draft, now))
}

fn checked_create_dispute(
    draft: CreateDisputeDraft,
    now: DateTime<Utc>,
) -> Result<CreateDispute, DisputeError> {
    let mut violations = Vec::new();
    let due_time = decoded(draft.dispute.due_time, &mut violations);
    let request_id = request_id(&draft.request_id, &mut violations);
    let dispute = new_dispute(draft.dispute.fields, due_time, now, violations)?;
    Ok(CreateDispute {
        dispute,
        request_id,
    })
}

/// `NewDispute::parse`, reporting `violations` found before together with its own.
fn new_dispute(
    mut fields: NewDisputeDraft,
    due_time: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    mut violations: Vec<Violation>,
) -> Result<NewDispute, DisputeError> {
    fields.due_time = due_time;
    match NewDispute::parse(fields, now) {
        Ok(new) if violations.is_empty() => Ok(new),
        Ok(_) => Err(DisputeError::Validation(violations)),
        Err(DisputeError::Validation(more)) => {
            violations.extend(more);
            Err(DisputeError::Validation(violations))
        }
        Err(other) => Err(other),
    }
}

/// UpdateDispute as it arrived.
#[derive(Debug, Clone, Default)]
pub struct UpdateDisputeDraft {
    pub id: String,
    pub request_id: String,
    /// Evidence fields the request sets, by name; an empty value clears the field.
    pub evidence: Vec<(&'static str, String)>,
    pub metadata: BTreeMap<String, String>,
    pub clear_metadata: bool,
    pub submit: bool,
    pub expected_version: Option<i64>,
}

/// What UpdateDispute changes.
#[derive(Debug, Clone, Default)]
pub struct DisputeChanges {
    /// Evidence fields to set; an empty value clears the field.
    pub evidence: Vec<(&'static str, String)>,
    /// Metadata to set; an empty value unsets the key.
    pub metadata: BTreeMap<String, String>,
    /// Remove every metadata key first.
    pub clear_metadata: bool,
    /// Also submit the evidence (SUBMIT_EVIDENCE).
    pub submit: bool,
}

/// An UpdateDispute for a well-formed dispute id.
#[derive(Debug, Clone)]
pub struct UpdateDispute {
    pub id: DisputeId,
    pub request_id: Option<String>,
    pub expected_version: Option<i64>,
    pub changes: DisputeChanges,
    /// Bad fields found here. They are reported together with the checks of the documents
    /// the evidence names (which need document-store), so one answer names every bad field.
    pub violations: Vec<Violation>,
}

/// Checks an UpdateDispute as far as it can be judged without the stored dispute. A bad id
/// fails at once; other problems travel in [`UpdateDispute::violations`].
pub fn update_dispute(draft: UpdateDisputeDraft) -> Result<UpdateDispute, DisputeError> {
    let mut texts = vec![
        ("id".to_owned(), draft.id.as_str()),
        ("request_id".to_owned(), draft.request_id.as_str()),
    ];
    texts.extend(
        draft
            .evidence
            .iter()
            .map(|(name, value)| (format!("evidence.{name}"), value.as_str())),
    );
    metadata_texts("", &draft.metadata, &mut texts);
    let nul = nul_violations(texts);
    match checked_update_dispute(draft) {
        Ok(update) if !nul.is_empty() => {
            Err(DisputeError::Validation(merge_nul(nul, update.violations)))
        }
        checked => refuse_nul(nul, checked),
    }
}

fn checked_update_dispute(draft: UpdateDisputeDraft) -> Result<UpdateDispute, DisputeError> {
    let mut violations = Vec::new();
    let id = DisputeId::parse("id", &draft.id).map_err(|v| violations.push(v));
    let request_id = request_id(&draft.request_id, &mut violations);
    violations.extend(evidence::check_changes(&draft.evidence));
    violations.extend(validate_metadata(&draft.metadata));
    if draft.evidence.is_empty()
        && draft.metadata.is_empty()
        && !draft.clear_metadata
        && !draft.submit
    {
        violations.push(Violation::new(
            "evidence",
            "nothing to change: set evidence, metadata, clear_metadata or submit",
        ));
    }
    let Ok(id) = id else {
        return Err(DisputeError::Validation(violations));
    };
    Ok(UpdateDispute {
        id,
        request_id,
        expected_version: draft.expected_version,
        changes: DisputeChanges {
            evidence: draft.evidence,
            metadata: draft.metadata,
            clear_metadata: draft.clear_metadata,
            submit: draft.submit,
        },
        violations,
    })
}

/// CreateAction as it arrived.
#[derive(Debug, Clone)]
pub struct CreateActionDraft {
    pub dispute_id: String,
    pub request_id: String,
    pub action: EnumInput<ActionType>,
    /// 0 means "the disputed amount".
    pub amount: i64,
    pub message: String,
    pub document_ids: Vec<String>,
    pub expected_version: Option<i64>,
    /// CHARGEBACK, PRE_ARBITRATION, ARBITRATION: the network's case id; empty when not given.
    pub network_case_id: String,
    /// CHARGEBACK, PRE_ARBITRATION, ARBITRATION: the network's reference of the filing.
    pub network_reference: String,
    /// CLOSE (issuer side): why the dispute ends; unset for every other action.
    pub close_reason: Option<EnumInput<CloseReason>>,
}

/// A valid CreateAction.
#[derive(Debug, Clone)]
pub struct CreateAction {
    pub dispute_id: DisputeId,
    pub request_id: Option<String>,
    pub expected_version: Option<i64>,
    pub action: TenantAction,
    /// What the network answered when the case was filed (CHARGEBACK, PRE_ARBITRATION,
    /// ARBITRATION only).
    pub filing: NetworkFiling,
}

/// The network's identifiers of a filing the issuer made (issue 11, point 3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkFiling {
    /// Stored on the dispute: later network events for this case reach it.
    pub case_id: Option<String>,
    /// Kept in the action history.
    pub reference: Option<String>,
}

impl NetworkFiling {
    /// The text the action history keeps, if there is anything to keep.
    pub fn note(&self) -> Option<String> {
        let parts: Vec<String> = [
            self.case_id.as_ref().map(|id| format!("network case {id}")),
            self.reference
                .as_ref()
                .map(|reference| format!("network reference {reference}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// Actions that file something with the network and so may carry its identifiers.
fn files_with_network(action: ActionType) -> bool {
    matches!(
        action,
        ActionType::Chargeback | ActionType::PreArbitration | ActionType::Arbitration
    )
}

/// An optional network identifier: at most [`MAX_REFERENCE_CHARS`] printable characters.
fn network_identifier(field: &str, value: &str, violations: &mut Vec<Violation>) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    if value.trim().is_empty()
        || value.chars().count() > MAX_REFERENCE_CHARS
        || value.chars().any(char::is_control)
    {
        violations.push(Violation::new(
            field,
            format!("must be at most {MAX_REFERENCE_CHARS} printable characters"),
        ));
        return None;
    }
    Some(value.to_owned())
}

/// Checks a CreateAction.
pub fn create_action(draft: CreateActionDraft) -> Result<CreateAction, DisputeError> {
    let mut texts = vec![
        ("dispute_id".to_owned(), draft.dispute_id.as_str()),
        ("request_id".to_owned(), draft.request_id.as_str()),
        ("message".to_owned(), draft.message.as_str()),
    ];
    document_id_texts("document_ids", &draft.document_ids, &mut texts);
    let nul = nul_violations(texts);
    refuse_nul(nul, checked_create_action(draft))
}

fn checked_create_action(draft: CreateActionDraft) -> Result<CreateAction, DisputeError> {
    let mut violations = Vec::new();
    let dispute_id =
        DisputeId::parse("dispute_id", &draft.dispute_id).map_err(|v| violations.push(v));
    let request_id = request_id(&draft.request_id, &mut violations);
    let action = required("action", draft.action, &mut violations);
    let amount = optional_amount("amount", draft.amount, &mut violations);
    memo_text("message", &draft.message, &mut violations);
    document_ids("document_ids", &draft.document_ids, &mut violations);
    let filing = NetworkFiling {
        case_id: network_identifier("network_case_id", &draft.network_case_id, &mut violations),
        reference: network_identifier(
            "network_reference",
            &draft.network_reference,
            &mut violations,
        ),
    };
    let close_reason = optional("close_reason", draft.close_reason, &mut violations);
    if let Some(action) = action.filter(|&action| action != ActionType::Close)
        && close_reason.is_some()
    {
        violations.push(Violation::new(
            "close_reason",
            format!(
                "only CLOSE takes a close reason, not {}",
                action.as_str().to_uppercase()
            ),
        ));
    }
    if let Some(action) = action.filter(|&action| !files_with_network(action)) {
        for (field, given) in [
            ("network_case_id", &draft.network_case_id),
            ("network_reference", &draft.network_reference),
        ] {
            if !given.is_empty() {
                violations.push(Violation::new(
                    field,
                    format!(
                        "only CHARGEBACK, PRE_ARBITRATION and ARBITRATION file with the network; \
                         {} takes no network identifiers",
                        action.as_str().to_uppercase()
                    ),
                ));
            }
        }
    }
    match (dispute_id, action) {
        (Ok(dispute_id), Some(action)) if violations.is_empty() => Ok(CreateAction {
            dispute_id,
            request_id,
            expected_version: draft.expected_version,
            action: TenantAction {
                action,
                amount,
                message: draft.message,
                document_ids: draft.document_ids,
                close_reason,
            },
            filing,
        }),
        _ => Err(DisputeError::Validation(violations)),
    }
}

/// RecordNetworkEvent as it arrived.
#[derive(Debug, Clone)]
pub struct NetworkEventDraft {
    pub network: EnumInput<Network>,
    pub network_case_id: String,
    pub event_id: String,
    pub kind: EnumInput<NetworkEventKind>,
    pub due_time: Option<Decoded<DateTime<Utc>>>,
    /// When the network says the event happened; unset means now.
    pub occur_time: Option<Decoded<DateTime<Utc>>>,
    /// The reason code the event carries; empty when none.
    pub network_reason_code: String,
    pub amount: i64,
    pub amount_won: i64,
    pub amount_lost: i64,
    /// Unset means a response is allowed.
    pub response_allowed: Option<bool>,
    pub message: String,
    pub document_ids: Vec<String>,
    /// The dispute to open when the case is new to us.
    pub new_case: Option<DisputeDraft>,
}

/// A valid RecordNetworkEvent.
#[derive(Debug, Clone)]
pub struct RecordNetworkEvent {
    pub network: Network,
    pub network_case_id: String,
    pub event_id: String,
    pub event: NetworkEvent,
    /// The dispute to open when the case is new.
    pub new_case: Option<NewDispute>,
}

/// Checks a RecordNetworkEvent and its new case (whose fields are named `new_case.…`).
pub fn record_network_event(
    draft: NetworkEventDraft,
    now: DateTime<Utc>,
) -> Result<RecordNetworkEvent, DisputeError> {
    let mut texts = vec![
        ("network_case_id".to_owned(), draft.network_case_id.as_str()),
        ("event_id".to_owned(), draft.event_id.as_str()),
        ("message".to_owned(), draft.message.as_str()),
    ];
    document_id_texts("document_ids", &draft.document_ids, &mut texts);
    if let Some(case) = &draft.new_case {
        new_dispute_texts("new_case.", &case.fields, &mut texts);
    }
    let nul = nul_violations(texts);
    refuse_nul(nul, checked_record_network_event(draft, now))
}

fn checked_record_network_event(
    draft: NetworkEventDraft,
    now: DateTime<Utc>,
) -> Result<RecordNetworkEvent, DisputeError> {
    let mut violations = Vec::new();
    let network = required("network", draft.network, &mut violations);
    let kind = required("type", draft.kind, &mut violations);
    for (field, value) in [
        ("network_case_id", &draft.network_case_id),
        ("event_id", &draft.event_id),
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
    let due_time = decoded(draft.due_time, &mut violations);
    let occur_time = decoded(draft.occur_time, &mut violations);
    if occur_time.is_some_and(|occurred| occurred > now + MAX_OCCUR_TIME_SKEW) {
        violations.push(Violation::new(
            "occur_time",
            format!(
                "must not be in the future (at most {} minutes of clock skew are allowed)",
                MAX_OCCUR_TIME_SKEW.num_minutes()
            ),
        ));
    }
    let network_reason_code = match draft.network_reason_code.as_str() {
        "" => None,
        code if code.trim().is_empty()
            || code.chars().count() > MAX_NETWORK_REASON_CODE_CHARS
            || code.chars().any(char::is_control) =>
        {
            violations.push(Violation::new(
                "network_reason_code",
                format!("must be at most {MAX_NETWORK_REASON_CODE_CHARS} printable characters"),
            ));
            None
        }
        code => Some(code.to_owned()),
    };
    let amount = optional_amount("amount", draft.amount, &mut violations);
    let amount_won = optional_amount("amount_won", draft.amount_won, &mut violations);
    let amount_lost = optional_amount("amount_lost", draft.amount_lost, &mut violations);
    memo_text("message", &draft.message, &mut violations);
    document_ids("document_ids", &draft.document_ids, &mut violations);
    let new_case = match draft.new_case {
        None => None,
        Some(mut case) => {
            // The case's network and id come from the event itself.
            case.fields.network = Some(draft.network);
            case.fields.network_case_id = draft.network_case_id.clone();
            let mut found = Vec::new();
            let due_time = decoded(case.due_time, &mut found);
            match new_dispute(case.fields, due_time, now, found) {
                Ok(new) => Some(new),
                Err(DisputeError::Validation(found)) => {
                    violations.extend(found.into_iter().map(|mut v| {
                        v.field = format!("new_case.{}", v.field);
                        v
                    }));
                    None
                }
                Err(other) => return Err(other),
            }
        }
    };
    match (network, kind) {
        (Some(network), Some(kind)) if violations.is_empty() => Ok(RecordNetworkEvent {
            network,
            network_case_id: draft.network_case_id,
            event_id: draft.event_id,
            event: NetworkEvent {
                kind,
                due_time,
                amount,
                response_allowed: draft.response_allowed.unwrap_or(true),
                amount_won,
                amount_lost,
                message: draft.message,
                document_ids: draft.document_ids,
                occur_time,
                network_reason_code,
            },
            new_case,
        }),
        _ => Err(DisputeError::Validation(violations)),
    }
}

/// ListDisputes as it arrived.
#[derive(Debug, Clone, Default)]
pub struct ListDisputesDraft {
    pub charge: String,
    pub payment_intent: String,
    pub transaction_id: String,
    pub status: Option<EnumInput<Status>>,
    pub stage: Option<EnumInput<Stage>>,
    pub side: Option<EnumInput<Side>>,
    pub created_after: Option<Decoded<DateTime<Utc>>>,
    pub created_before: Option<Decoded<DateTime<Utc>>>,
    pub due_before: Option<Decoded<DateTime<Utc>>>,
    pub page_size: i32,
    pub page_token: String,
}

/// A valid ListDisputes: its filters and the page asked for.
#[derive(Debug, Clone)]
pub struct ListDisputes {
    pub filter: DisputeFilter,
    pub page: PageRequest,
}

/// Checks ListDisputes filters and paging.
pub fn list_disputes(draft: ListDisputesDraft) -> Result<ListDisputes, DisputeError> {
    let nul = nul_violations([
        ("charge", draft.charge.as_str()),
        ("payment_intent", draft.payment_intent.as_str()),
        ("transaction_id", draft.transaction_id.as_str()),
        ("page_token", draft.page_token.as_str()),
    ]);
    refuse_nul(nul, checked_list_disputes(draft))
}

fn checked_list_disputes(draft: ListDisputesDraft) -> Result<ListDisputes, DisputeError> {
    let mut violations = Vec::new();
    let created_after = decoded(draft.created_after, &mut violations);
    let created_before = decoded(draft.created_before, &mut violations);
    let due_before = decoded(draft.due_before, &mut violations);
    for (field, value) in [
        ("charge", &draft.charge),
        ("payment_intent", &draft.payment_intent),
        ("transaction_id", &draft.transaction_id),
    ] {
        if value.chars().count() > MAX_REFERENCE_CHARS {
            violations.push(Violation::new(
                field,
                format!("must be at most {MAX_REFERENCE_CHARS} characters"),
            ));
        }
    }
    let text = |value: String| (!value.is_empty()).then_some(value);
    let filter = DisputeFilter {
        charge: text(draft.charge),
        payment_intent: text(draft.payment_intent),
        transaction_id: text(draft.transaction_id),
        status: optional("status", draft.status, &mut violations),
        stage: optional("stage", draft.stage, &mut violations),
        side: optional("side", draft.side, &mut violations),
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
    let page = PageRequest::parse(
        draft.page_size,
        &draft.page_token,
        fingerprint(filter.canonical().as_bytes()),
        &mut violations,
    );
    if violations.is_empty() {
        Ok(ListDisputes { filter, page })
    } else {
        Err(DisputeError::Validation(violations))
    }
}

/// A valid ListDisputeHistory: the dispute and the page asked for.
#[derive(Debug, Clone)]
pub struct ListDisputeHistory {
    pub dispute_id: DisputeId,
    pub page: PageRequest,
}

/// Checks ListDisputeHistory: a dispute id and paging; a page token is valid only for the
/// dispute it was issued for.
pub fn list_dispute_history(
    dispute_id: &str,
    page_size: i32,
    page_token: &str,
) -> Result<ListDisputeHistory, DisputeError> {
    let nul = nul_violations([("dispute_id", dispute_id), ("page_token", page_token)]);
    refuse_nul(
        nul,
        checked_list_dispute_history(dispute_id, page_size, page_token),
    )
}

fn checked_list_dispute_history(
    dispute_id: &str,
    page_size: i32,
    page_token: &str,
) -> Result<ListDisputeHistory, DisputeError> {
    let mut violations = Vec::new();
    let id = DisputeId::parse("dispute_id", dispute_id)
        .map_err(|violation| violations.push(violation))
        .ok();
    let page = PageRequest::parse(
        page_size,
        page_token,
        fingerprint(format!("history of {dispute_id}").as_bytes()),
        &mut violations,
    );
    match id {
        Some(dispute_id) if violations.is_empty() => Ok(ListDisputeHistory { dispute_id, page }),
        _ => Err(DisputeError::Validation(violations)),
    }
}

/// The filters of ListEvents and StreamEvents as they arrived.
#[derive(Debug, Clone, Default)]
pub struct EventFilterDraft {
    pub types: Vec<String>,
    pub dispute_id: String,
    pub created_after: Option<Decoded<DateTime<Utc>>>,
    pub created_before: Option<Decoded<DateTime<Utc>>>,
}

/// Which events a reader wants; every filter set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Empty means every type.
    pub types: Vec<DisputeEvent>,
    pub dispute_id: Option<DisputeId>,
    /// Inclusive.
    pub created_after: Option<DateTime<Utc>>,
    /// Exclusive.
    pub created_before: Option<DateTime<Utc>>,
}

impl EventFilter {
    /// The type names to match, empty for all.
    pub fn type_names(&self) -> Vec<String> {
        self.types.iter().map(|t| t.as_str().to_owned()).collect()
    }

    /// Whether an event of `event_type` about `dispute_id`, created at `create_time`, passes.
    pub fn matches(&self, event_type: &str, dispute_id: &str, create_time: DateTime<Utc>) -> bool {
        (self.types.is_empty() || self.types.iter().any(|t| t.as_str() == event_type))
            && self
                .dispute_id
                .as_ref()
                .is_none_or(|id| id.as_str() == dispute_id)
            && self.created_after.is_none_or(|after| create_time >= after)
            && self
                .created_before
                .is_none_or(|before| create_time < before)
    }

    /// A stable text of the filters (the page-token fingerprint).
    fn canonical(&self) -> String {
        format!(
            "events types={:?};dispute={:?};after={:?};before={:?}",
            self.type_names(),
            self.dispute_id.as_ref().map(DisputeId::as_str),
            self.created_after.map(|t| t.timestamp_micros()),
            self.created_before.map(|t| t.timestamp_micros()),
        )
    }
}

/// ListEvents as it arrived.
#[derive(Debug, Clone, Default)]
pub struct ListEventsDraft {
    pub filter: EventFilterDraft,
    pub page_size: i32,
    pub page_token: String,
}

/// A valid ListEvents: filters and the page asked for (the cursor's id is the last event
/// of the previous page).
#[derive(Debug, Clone)]
pub struct ListEvents {
    pub filter: EventFilter,
    pub page: PageRequest,
}

/// Where a stream of events starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamStart {
    /// After the newest event committed when the stream starts.
    Now,
    /// With the oldest stored event.
    Beginning,
    /// Right after this event (the last one a previous stream delivered).
    After(EventId),
}

/// StreamEvents as it arrived.
#[derive(Debug, Clone, Default)]
pub struct StreamEventsDraft {
    pub types: Vec<String>,
    pub dispute_id: String,
    pub after_event_id: String,
    pub from_beginning: bool,
}

/// A valid StreamEvents.
#[derive(Debug, Clone)]
pub struct StreamEvents {
    pub filter: EventFilter,
    pub start: StreamStart,
}

/// An event id, or INVALID_ARGUMENT naming `field`.
pub fn event_id(field: &str, value: &str) -> Result<EventId, DisputeError> {
    let nul = nul_violations([(field, value)]);
    refuse_nul(nul, Ok(()))?;
    EventId::parse(field, value).map_err(|violation| DisputeError::Validation(vec![violation]))
}

/// Checks ListEvents: known types, a `dsp_` id, a time range in order and paging.
pub fn list_events(draft: ListEventsDraft) -> Result<ListEvents, DisputeError> {
    let mut nul = event_filter_nul(&draft.filter.types, &draft.filter.dispute_id);
    nul.extend(nul_violations([("page_token", draft.page_token.as_str())]));
    refuse_nul(nul, checked_list_events(draft))
}

fn checked_list_events(draft: ListEventsDraft) -> Result<ListEvents, DisputeError> {
    let mut violations = Vec::new();
    let filter = event_filter(draft.filter, &mut violations);
    let page = PageRequest::parse(
        draft.page_size,
        &draft.page_token,
        fingerprint(filter.canonical().as_bytes()),
        &mut violations,
    );
    if violations.is_empty() {
        Ok(ListEvents { filter, page })
    } else {
        Err(DisputeError::Validation(violations))
    }
}

/// Checks StreamEvents: filters as ListEvents, and an `evt_` id to continue after.
pub fn stream_events(draft: StreamEventsDraft) -> Result<StreamEvents, DisputeError> {
    let mut nul = event_filter_nul(&draft.types, &draft.dispute_id);
    nul.extend(nul_violations([(
        "after_event_id",
        draft.after_event_id.as_str(),
    )]));
    refuse_nul(nul, checked_stream_events(draft))
}

fn checked_stream_events(draft: StreamEventsDraft) -> Result<StreamEvents, DisputeError> {
    let mut violations = Vec::new();
    let filter = event_filter(
        EventFilterDraft {
            types: draft.types,
            dispute_id: draft.dispute_id,
            created_after: None,
            created_before: None,
        },
        &mut violations,
    );
    let start = if draft.after_event_id.is_empty() {
        if draft.from_beginning {
            StreamStart::Beginning
        } else {
            StreamStart::Now
        }
    } else {
        match EventId::parse("after_event_id", &draft.after_event_id) {
            Ok(id) if !draft.from_beginning => StreamStart::After(id),
            Ok(_) => {
                violations.push(Violation::new(
                    "from_beginning",
                    "must not be set together with after_event_id",
                ));
                StreamStart::Now
            }
            Err(violation) => {
                violations.push(violation);
                StreamStart::Now
            }
        }
    };
    if violations.is_empty() {
        Ok(StreamEvents { filter, start })
    } else {
        Err(DisputeError::Validation(violations))
    }
}

fn event_filter_nul<'a>(types: &'a [String], dispute_id: &'a str) -> Vec<Violation> {
    let mut texts: Texts<'a> = types
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("types[{i}]"), t.as_str()))
        .collect();
    texts.push(("dispute_id".to_owned(), dispute_id));
    nul_violations(texts)
}

fn event_filter(draft: EventFilterDraft, violations: &mut Vec<Violation>) -> EventFilter {
    let mut types = Vec::new();
    for (i, name) in draft.types.iter().enumerate() {
        match DisputeEvent::from_name(name) {
            Some(event) if !types.contains(&event) => types.push(event),
            Some(_) => {}
            None => violations.push(Violation::new(
                format!("types[{i}]"),
                "must be an event type listed in docs/api.md (e.g. dispute.created)",
            )),
        }
    }
    // A stable order, so that the same set of types always gives the same page tokens.
    types.sort_by_key(|t| t.as_str());
    let dispute_id = if draft.dispute_id.is_empty() {
        None
    } else {
        DisputeId::parse("dispute_id", &draft.dispute_id)
            .map_err(|violation| violations.push(violation))
            .ok()
    };
    let created_after = decoded(draft.created_after, violations);
    let created_before = decoded(draft.created_before, violations);
    if let (Some(after), Some(before)) = (created_after, created_before)
        && after >= before
    {
        violations.push(Violation::new(
            "created_before",
            "must be later than created_after",
        ));
    }
    EventFilter {
        types,
        dispute_id,
        created_after,
        created_before,
    }
}

/// The value, or `None` after adding the violation of a value that did not decode.
fn decoded<T>(value: Option<Decoded<T>>, violations: &mut Vec<Violation>) -> Option<T> {
    value?.map_err(|violation| violations.push(violation)).ok()
}

/// An optional request id (idempotency key).
fn request_id(value: &str, violations: &mut Vec<Violation>) -> Option<String> {
    validate_request_id(value)
        .map_err(|violation| violations.push(violation))
        .ok()
        .flatten()
}

/// A required enum field.
fn required<T>(field: &str, input: EnumInput<T>, violations: &mut Vec<Violation>) -> Option<T> {
    match input {
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

/// An optional enum filter: unset means "any".
fn optional<T>(
    field: &str,
    input: Option<EnumInput<T>>,
    violations: &mut Vec<Violation>,
) -> Option<T> {
    match input? {
        EnumInput::Unspecified => None,
        EnumInput::Known(value) => Some(value),
        EnumInput::Unknown(n) => {
            violations.push(Violation::new(field, format!("unknown value {n}")));
            None
        }
    }
}

/// A positive amount, or 0 for "the disputed amount".
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

/// A free-text message of at most [`MAX_MEMO_CHARS`] characters.
fn memo_text(field: &str, value: &str, violations: &mut Vec<Violation>) {
    if value.chars().count() > MAX_MEMO_CHARS {
        violations.push(Violation::new(
            field,
            format!("must be at most {MAX_MEMO_CHARS} characters"),
        ));
    }
}

/// A list of document ids, naming each bad entry.
fn document_ids(field: &str, ids: &[String], violations: &mut Vec<Violation>) {
    if ids.len() > MAX_DOCUMENT_IDS {
        violations.push(Violation::new(
            field,
            format!("must hold at most {MAX_DOCUMENT_IDS} ids"),
        ));
    }
    for (i, id) in ids.iter().enumerate() {
        if let Err(violation) = DocumentId::parse(&format!("{field}[{i}]"), id) {
            violations.push(violation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(result: Result<impl std::fmt::Debug, DisputeError>) -> Vec<String> {
        match result {
            Err(DisputeError::Validation(violations)) => {
                violations.into_iter().map(|v| v.field).collect()
            }
            other => panic!("expected violations, got {other:?}"),
        }
    }

    fn bad_time(field: &str) -> Option<Decoded<DateTime<Utc>>> {
        Some(Err(Violation::new(field, "is not a valid timestamp")))
    }

    fn at(seconds: i64) -> Option<Decoded<DateTime<Utc>>> {
        Some(Ok(DateTime::from_timestamp(seconds, 0).unwrap()))
    }

    #[test]
    fn list_filters_report_bad_fields() {
        let draft = ListDisputesDraft {
            status: Some(EnumInput::Unknown(99)),
            created_after: at(10),
            created_before: at(5),
            due_before: bad_time("due_before"),
            page_size: -1,
            ..Default::default()
        };
        let mut fields = fields(list_disputes(draft));
        fields.sort();
        assert_eq!(
            fields,
            vec!["created_before", "due_before", "page_size", "status"]
        );
    }

    #[test]
    fn history_page_tokens_belong_to_their_dispute() {
        let one = DisputeId::generate().into_string();
        let other = DisputeId::generate().into_string();
        let first = list_dispute_history(&one, 0, "").unwrap();
        assert_eq!((first.page.size, first.page.after.clone()), (20, None));
        let (_, token) = first.page.cut((1..=21).collect(), |n: &i64| {
            domain_kit::page_token::PageCursor {
                create_time: DateTime::from_timestamp(*n, 0).unwrap(),
                id: format!("act_{n}"),
            }
        });
        let next = list_dispute_history(&one, 0, &token).unwrap();
        assert_eq!(next.page.after.map(|c| c.id), Some("act_20".to_owned()));
        assert_eq!(
            fields(list_dispute_history(&other, 0, &token)),
            vec!["page_token"]
        );
        assert_eq!(
            fields(list_dispute_history("dsp\0", -1, "")),
            vec!["dispute_id", "page_size"]
        );
    }

    #[test]
    fn event_filters_name_unknown_types_and_tokens_follow_the_set_of_types() {
        let draft = |types: &[&str]| ListEventsDraft {
            filter: EventFilterDraft {
                types: types.iter().map(|t| (*t).to_owned()).collect(),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            fields(list_events(draft(&["dispute.won", "dispute.nope", "x\0"]))),
            vec!["types[2]", "types[1]"]
        );
        // The same set of types in another order (or repeated) is the same filter.
        let a = list_events(draft(&["dispute.won", "dispute.lost"])).unwrap();
        let b = list_events(draft(&["dispute.lost", "dispute.won", "dispute.lost"])).unwrap();
        assert_eq!(a.filter, b.filter);
        assert_eq!(a.filter.types, vec![DisputeEvent::Lost, DisputeEvent::Won]);
        let stream = stream_events(StreamEventsDraft {
            after_event_id: "evt_01jd3s9v8m6q0n2c5x7r4t1k9e".into(),
            from_beginning: true,
            ..Default::default()
        });
        assert_eq!(fields(stream), vec!["from_beginning"]);
        assert_eq!(
            stream_events(StreamEventsDraft::default()).unwrap().start,
            StreamStart::Now
        );
    }

    #[test]
    fn an_update_with_a_bad_id_fails_at_once() {
        let draft = UpdateDisputeDraft {
            id: "dispute-1".into(),
            request_id: "has spaces".into(),
            evidence: vec![("customer_name", "bell\u{7}".into())],
            ..Default::default()
        };
        assert_eq!(
            fields(update_dispute(draft)),
            vec!["id", "request_id", "evidence.customer_name"]
        );
    }

    #[test]
    fn an_update_keeps_its_violations_for_the_document_checks() {
        let draft = UpdateDisputeDraft {
            id: DisputeId::generate().into_string(),
            evidence: vec![("receipt", "policy.pdf".into())],
            ..Default::default()
        };
        let update = update_dispute(draft).unwrap();
        let found: Vec<&str> = update.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(found, vec!["evidence.receipt"]);
        assert_eq!(
            update.violations[0].description,
            "must be a document id (doc_...)"
        );
    }

    #[test]
    fn actions_name_every_bad_field() {
        let draft = CreateActionDraft {
            dispute_id: "nope".into(),
            request_id: "\u{1}".into(),
            action: EnumInput::Unknown(99),
            amount: -5,
            message: "m".repeat(MAX_MEMO_CHARS + 1),
            document_ids: vec!["doc-1".into(), DocumentId::generate().into_string()],
            expected_version: None,
            network_case_id: "c\u{0}".into(),
            network_reference: String::new(),
            close_reason: Some(EnumInput::Unknown(7)),
        };
        assert_eq!(
            fields(create_action(draft)),
            vec![
                "dispute_id",
                "request_id",
                "action",
                "amount",
                "message",
                "document_ids[0]",
                "network_case_id",
                "close_reason"
            ]
        );
    }

    #[test]
    fn only_close_takes_a_close_reason() {
        let draft = |action, reason| CreateActionDraft {
            dispute_id: DisputeId::generate().into_string(),
            request_id: String::new(),
            action: EnumInput::Known(action),
            amount: 0,
            message: String::new(),
            document_ids: Vec::new(),
            expected_version: None,
            network_case_id: String::new(),
            network_reference: String::new(),
            close_reason: Some(reason),
        };
        let withdrawn = EnumInput::Known(CloseReason::CardholderWithdrew);
        let close = create_action(draft(ActionType::Close, withdrawn)).unwrap();
        assert_eq!(
            close.action.close_reason,
            Some(CloseReason::CardholderWithdrew)
        );
        let unset = create_action(draft(ActionType::Close, EnumInput::Unspecified)).unwrap();
        assert_eq!(unset.action.close_reason, None);
        assert_eq!(
            fields(create_action(draft(ActionType::Deny, withdrawn))),
            vec!["close_reason"]
        );
    }

    #[test]
    fn only_filings_carry_network_identifiers() {
        let draft = |action, case_id: &str| CreateActionDraft {
            dispute_id: DisputeId::generate().into_string(),
            request_id: String::new(),
            action: EnumInput::Known(action),
            amount: 0,
            message: String::new(),
            document_ids: Vec::new(),
            expected_version: None,
            network_case_id: case_id.into(),
            network_reference: "ARN-1".into(),
            close_reason: None,
        };
        let filed = create_action(draft(ActionType::Chargeback, "VISA-9")).unwrap();
        assert_eq!(filed.filing.case_id.as_deref(), Some("VISA-9"));
        assert_eq!(
            filed.filing.note().as_deref(),
            Some("network case VISA-9, network reference ARN-1")
        );
        assert_eq!(
            fields(create_action(draft(ActionType::Deny, "VISA-9"))),
            vec!["network_case_id", "network_reference"]
        );
    }

    #[test]
    fn a_new_case_is_named_with_its_prefix_and_takes_the_events_case() {
        let draft = NetworkEventDraft {
            network: EnumInput::Known(Network::Visa),
            network_case_id: "VISA-1".into(),
            event_id: "e1".into(),
            kind: EnumInput::Known(NetworkEventKind::Chargeback),
            due_time: None,
            occur_time: None,
            network_reason_code: String::new(),
            amount: 0,
            amount_won: 0,
            amount_lost: 0,
            response_allowed: None,
            message: String::new(),
            document_ids: Vec::new(),
            new_case: Some(DisputeDraft {
                fields: NewDisputeDraft {
                    side: Some(EnumInput::Known(Side::Merchant)),
                    amount: 1_000,
                    currency: "usd".into(),
                    reason: Some(EnumInput::Known(crate::domain::Reason::Fraudulent)),
                    ..Default::default()
                },
                due_time: None,
            }),
        };
        let now = Utc::now();
        let event = record_network_event(draft.clone(), now).unwrap();
        let case = event.new_case.unwrap();
        assert_eq!(case.network, Network::Visa);
        assert_eq!(case.network_case_id.as_deref(), Some("VISA-1"));
        assert!(event.event.response_allowed);

        let mut bad = draft;
        if let Some(case) = bad.new_case.as_mut() {
            case.due_time = bad_time("due_by");
        }
        assert_eq!(
            fields(record_network_event(bad, now)),
            vec!["new_case.due_by"]
        );
    }

    #[test]
    fn an_event_occurs_at_most_a_little_ahead_and_carries_a_short_reason_code() {
        let now = Utc::now();
        let draft = |ahead: chrono::Duration, code: &str| NetworkEventDraft {
            network: EnumInput::Known(Network::Mastercard),
            network_case_id: "MC-1".into(),
            event_id: "e1".into(),
            kind: EnumInput::Known(NetworkEventKind::Representment),
            due_time: None,
            occur_time: Some(Ok(now + ahead)),
            network_reason_code: code.into(),
            amount: 0,
            amount_won: 0,
            amount_lost: 0,
            response_allowed: None,
            message: String::new(),
            document_ids: Vec::new(),
            new_case: None,
        };
        let skewed = record_network_event(draft(chrono::Duration::minutes(4), "4853"), now)
            .unwrap()
            .event;
        assert_eq!(skewed.occur_time, Some(now + chrono::Duration::minutes(4)));
        assert_eq!(skewed.window_start(now), now, "skew ahead counts as now");
        assert_eq!(skewed.network_reason_code.as_deref(), Some("4853"));
        let past = chrono::Duration::days(-40);
        assert_eq!(
            record_network_event(draft(past, ""), now)
                .unwrap()
                .event
                .window_start(now),
            now + past
        );
        assert_eq!(
            fields(record_network_event(
                draft(chrono::Duration::minutes(6), &"9".repeat(17)),
                now
            )),
            vec!["occur_time", "network_reason_code"]
        );
    }

    #[test]
    fn fingerprints_are_hex_sha256() {
        assert_eq!(
            fingerprint(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
