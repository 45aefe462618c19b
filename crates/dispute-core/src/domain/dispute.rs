//! The dispute and the rules for opening one.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use domain_kit::violation::{Violation, map_entry_field, too_many};

use super::currency::Currency;
use super::deadlines::RegulationEFacts;
use super::enums::*;
use super::error::DisputeError;
use super::evidence::Evidence;
use super::ledger::LedgerTotals;
pub use super::ledger::{BalanceTransaction, MAX_AMOUNT};
pub use super::lifecycle::IssuerFacts;
use super::lifecycle::{
    CaseFacts, DeadlineBreach, LifecycleMarks, LifecycleState, RegulatoryDeadlines, Transition,
};

pub const MAX_REFERENCE_CHARS: usize = 255;
pub const MAX_NETWORK_REASON_CODE_CHARS: usize = 16;
pub const MAX_MEMO_CHARS: usize = 5_000;
pub const MAX_METADATA_KEYS: usize = 50;
pub const MAX_METADATA_KEY_CHARS: usize = 40;
pub const MAX_METADATA_VALUE_CHARS: usize = 500;
pub const MAX_REQUEST_ID_CHARS: usize = 255;
/// How many history entries a dispute carries (the newest); ListDisputeHistory pages
/// through all of them (docs/api.md, "History").
pub const LATEST_HISTORY_ENTRIES: i64 = 20;

/// A dispute as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Dispute {
    pub id: String,
    pub tenant_id: String,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    pub version: i64,
    pub side: Side,
    pub stage: Stage,
    pub status: Status,
    pub amount: i64,
    pub currency: String,
    pub charge: Option<String>,
    pub payment_intent: Option<String>,
    pub transaction_id: Option<String>,
    pub merchant_id: Option<String>,
    pub network: Network,
    pub payment_method_type: PaymentMethodType,
    pub reason: Reason,
    pub network_reason_code: Option<String>,
    pub network_case_id: Option<String>,
    pub memo: Option<String>,
    pub date_customer_reported: Option<NaiveDate>,
    pub applicable_regulation: Regulation,
    pub credit_status: CreditStatus,
    pub evidence: Evidence,
    pub due_time: Option<DateTime<Utc>>,
    pub has_evidence: bool,
    pub submission_count: i32,
    pub is_charge_refundable: bool,
    pub metadata: BTreeMap<String, String>,
    pub livemode: bool,
    pub original_amount: Option<i64>,
    pub amount_won: i64,
    pub amount_lost: i64,
    /// The newest history entries (at most [`LATEST_HISTORY_ENTRIES`]), oldest first. No
    /// rule reads the history: it records what happened.
    pub action_history: Vec<ActionRecord>,
    /// How many entries the whole history has.
    pub action_history_count: i64,
    pub balance_transactions: Vec<BalanceTransaction>,
    /// Why the tenant closed the dispute (issuer-side CLOSE); `None` otherwise.
    pub close_reason: Option<CloseReason>,
    /// Lifecycle bookkeeping: the reversal lapse (not on the API) and the deadlines recorded
    /// as passed (I14; the flagged ones are the API's overdue flag).
    pub marks: LifecycleMarks,
    /// Issuer side: what deadlines and chargeback rights are computed from.
    pub issuer: IssuerFacts,
}

impl Dispute {
    /// The lifecycle's view of the dispute.
    pub fn lifecycle_state(&self) -> LifecycleState {
        LifecycleState::from_dispute(self, self.marks.clone(), self.issuer)
    }

    /// Issuer side: the Reg E / Z provisional-credit and decision due instants (point 7).
    pub fn regulatory_deadlines(&self) -> RegulatoryDeadlines {
        if self.side != Side::Issuer {
            return RegulatoryDeadlines::default();
        }
        self.lifecycle_state().regulatory_deadlines()
    }

    /// I14: the deadlines that passed with nobody acting since (the overdue flag), oldest
    /// first; empty when the dispute is not overdue.
    pub fn overdue_breaches(&self) -> Vec<DeadlineBreach> {
        self.marks
            .breaches
            .iter()
            .filter(|breach| breach.flagged)
            .copied()
            .collect()
    }

    pub fn is_past_due(&self, now: DateTime<Utc>) -> bool {
        self.due_time.is_some_and(|due| due <= now)
    }
}

impl LifecycleState {
    /// The lifecycle's view of a stored dispute, with the marks and issuer facts the store
    /// keeps next to it. Defined here so that the lifecycle's state does not depend on
    /// `Dispute`.
    pub fn from_dispute(
        dispute: &Dispute,
        marks: LifecycleMarks,
        issuer: IssuerFacts,
    ) -> LifecycleState {
        LifecycleState {
            case: CaseFacts {
                side: dispute.side,
                network: dispute.network,
                reason: dispute.reason,
                network_reason_code: dispute.network_reason_code.clone(),
                currency: dispute.currency.clone(),
                original_amount: dispute.original_amount,
                applicable_regulation: dispute.applicable_regulation,
                date_customer_reported: dispute.date_customer_reported,
                issuer,
            },
            stage: dispute.stage,
            status: dispute.status,
            credit_status: dispute.credit_status,
            amount: dispute.amount,
            due_time: dispute.due_time,
            amount_won: dispute.amount_won,
            amount_lost: dispute.amount_lost,
            submission_count: dispute.submission_count,
            ledger: LedgerTotals::from_balance_transactions(&dispute.balance_transactions),
            reversal_lapses_at: marks.reversal_lapses_at,
            breaches: marks.breaches,
            close_reason: dispute.close_reason,
        }
    }
}

impl Transition {
    /// Copies the decided fields onto the stored dispute (ledger rows and history entries
    /// need ids and times, so the application appends them itself).
    pub fn apply_to_dispute(&self, dispute: &mut Dispute) {
        let state = &self.state;
        dispute.stage = state.stage;
        dispute.status = state.status;
        dispute.credit_status = state.credit_status;
        dispute.amount = state.amount;
        dispute.due_time = state.due_time;
        dispute.amount_won = state.amount_won;
        dispute.amount_lost = state.amount_lost;
        dispute.submission_count = state.submission_count;
        dispute.close_reason = state.close_reason;
        dispute.marks = state.marks();
    }
}

/// One entry of the action history.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionRecord {
    pub id: String,
    pub actor: Actor,
    pub what: String,
    pub create_time: DateTime<Utc>,
    pub message: String,
    pub document_ids: Vec<String>,
    pub stage: Stage,
    pub status: Status,
    pub amount: i64,
}

/// An enum field as it arrived: not set, a known value, or a number we do not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnumInput<T> {
    Unspecified,
    Known(T),
    Unknown(i32),
}

/// A CreateDispute request before validation.
#[derive(Debug, Clone, Default)]
pub struct NewDisputeDraft {
    pub side: Option<EnumInput<Side>>,
    pub stage: Option<EnumInput<Stage>>,
    pub amount: i64,
    pub currency: String,
    pub charge: String,
    pub payment_intent: String,
    pub transaction_id: String,
    pub merchant_id: String,
    pub network: Option<EnumInput<Network>>,
    pub payment_method_type: Option<EnumInput<PaymentMethodType>>,
    pub reason: Option<EnumInput<Reason>>,
    pub network_reason_code: String,
    pub network_case_id: String,
    pub memo: String,
    pub date_customer_reported: String,
    pub applicable_regulation: Option<EnumInput<Regulation>>,
    pub metadata: BTreeMap<String, String>,
    pub livemode: bool,
    pub original_amount: i64,
    pub is_charge_refundable: bool,
    pub due_time: Option<DateTime<Utc>>,
    pub issuer_facts: Option<IssuerFactsDraft>,
}

/// Issuer facts as they arrived.
#[derive(Debug, Clone, Default)]
pub struct IssuerFactsDraft {
    pub transaction_date: String,
    pub new_account: bool,
    pub pos_or_foreign: bool,
    pub billing_cycle_closing_day: i32,
    pub three_ds_authenticated: bool,
    pub digital_wallet_token: bool,
    pub transaction_posted: Option<bool>,
}

/// A validated new dispute.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDispute {
    pub side: Side,
    pub stage: Stage,
    pub status: Status,
    pub amount: i64,
    pub currency: Currency,
    pub charge: Option<String>,
    pub payment_intent: Option<String>,
    pub transaction_id: Option<String>,
    pub merchant_id: Option<String>,
    pub network: Network,
    pub payment_method_type: PaymentMethodType,
    pub reason: Reason,
    pub network_reason_code: Option<String>,
    pub network_case_id: Option<String>,
    pub memo: Option<String>,
    pub date_customer_reported: Option<NaiveDate>,
    pub applicable_regulation: Regulation,
    pub metadata: BTreeMap<String, String>,
    pub livemode: bool,
    pub original_amount: Option<i64>,
    pub is_charge_refundable: bool,
    pub due_time: Option<DateTime<Utc>>,
    pub issuer: IssuerFacts,
}

/// Collects every violation of a request before answering.
#[derive(Default)]
struct Violations(Vec<Violation>);

impl Violations {
    fn add(&mut self, field: &str, description: impl Into<String>) {
        self.0.push(Violation::new(field, description));
    }

    /// A known enum value, or a violation (`required` decides whether unset is one).
    fn enum_value<T: Copy>(
        &mut self,
        field: &str,
        input: Option<EnumInput<T>>,
        default: Option<T>,
    ) -> Option<T> {
        match input.unwrap_or(EnumInput::Unspecified) {
            EnumInput::Known(value) => Some(value),
            EnumInput::Unknown(number) => {
                self.add(field, format!("unknown value {number}"));
                None
            }
            EnumInput::Unspecified => {
                if default.is_none() {
                    self.add(field, "is required");
                }
                default
            }
        }
    }

    /// An optional reference string of at most `max` characters.
    fn optional_text(&mut self, field: &str, value: &str, max: usize) -> Option<String> {
        if value.chars().count() > max {
            self.add(field, format!("must be at most {max} characters"));
            return None;
        }
        if value.chars().any(char::is_control) && field != "memo" {
            self.add(field, "must not contain control characters");
            return None;
        }
        let trimmed = value.trim();
        (!trimmed.is_empty()).then(|| trimmed.to_owned())
    }
}

impl Violations {
    /// Issuer facts; the transaction happens before it is reported, never in the future.
    fn issuer_facts(
        &mut self,
        facts: &IssuerFactsDraft,
        reported: Option<NaiveDate>,
        now: DateTime<Utc>,
    ) -> IssuerFacts {
        let field = "issuer_facts.transaction_date";
        let transaction_date = if facts.transaction_date.is_empty() {
            None
        } else {
            match NaiveDate::parse_from_str(&facts.transaction_date, "%Y-%m-%d") {
                Ok(date) if date > now.date_naive() => {
                    self.add(field, "must not be in the future");
                    None
                }
                Ok(date) if reported.is_some_and(|reported| date > reported) => {
                    self.add(field, "must not be after date_customer_reported");
                    None
                }
                Ok(date) => Some(date),
                Err(_) => {
                    self.add(field, "must be a date as YYYY-MM-DD");
                    None
                }
            }
        };
        let billing_cycle_closing_day = match facts.billing_cycle_closing_day {
            0 => None,
            day @ 1..=31 => Some(day as u32),
            _ => {
                self.add(
                    "issuer_facts.billing_cycle_closing_day",
                    "must be 1 to 31, or 0 when unknown",
                );
                None
            }
        };
        IssuerFacts {
            transaction_date,
            regulation_e: RegulationEFacts {
                new_account: facts.new_account,
                pos_or_foreign: facts.pos_or_foreign,
            },
            billing_cycle_closing_day,
            three_ds_authenticated: facts.three_ds_authenticated,
            digital_wallet_token: facts.digital_wallet_token,
            transaction_posted: facts.transaction_posted.unwrap_or(true),
        }
    }
}

/// The day a customer reported a dispute: a date (`2024-05-28`) or an RFC 3339 timestamp
/// (`2024-05-28T12:25:00Z`, seed 002), whose UTC calendar day counts (like every window).
fn reported_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .or_else(|| {
            DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|at| at.with_timezone(&Utc).date_naive())
        })
}

/// Checks an optional request id (idempotency key).
pub fn validate_request_id(request_id: &str) -> Result<Option<String>, Violation> {
    if request_id.is_empty() {
        return Ok(None);
    }
    if request_id.len() > MAX_REQUEST_ID_CHARS || !request_id.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(Violation::new(
            "request_id",
            format!("must be 1 to {MAX_REQUEST_ID_CHARS} printable ASCII characters"),
        ));
    }
    Ok(Some(request_id.to_owned()))
}

/// Checks metadata against Stripe's limits. Over [`MAX_METADATA_KEYS`] keys is one
/// violation, and the entries are not looked at.
pub fn validate_metadata(metadata: &BTreeMap<String, String>) -> Vec<Violation> {
    let mut violations = Vec::new();
    if metadata.len() > MAX_METADATA_KEYS {
        violations.push(too_many("metadata", MAX_METADATA_KEYS, metadata.len()));
        return violations;
    }
    for (key, value) in metadata {
        let field = map_entry_field("metadata", key);
        if key.is_empty() || key.chars().count() > MAX_METADATA_KEY_CHARS {
            violations.push(Violation::new(
                &field,
                format!("key must be 1 to {MAX_METADATA_KEY_CHARS} characters"),
            ));
        } else if key.chars().any(|c| c.is_control() || c == '[' || c == ']') {
            violations.push(Violation::new(
                &field,
                "key must not contain control characters or square brackets",
            ));
        }
        if value.chars().count() > MAX_METADATA_VALUE_CHARS {
            violations.push(Violation::new(
                &field,
                format!("value must be at most {MAX_METADATA_VALUE_CHARS} characters"),
            ));
        }
    }
    violations
}

impl NewDispute {
    /// Validates a draft, reporting every bad field at once. `now` decides what "future"
    /// means for dates and deadlines.
    pub fn parse(draft: NewDisputeDraft, now: DateTime<Utc>) -> Result<NewDispute, DisputeError> {
        let mut v = Violations::default();
        let side = v.enum_value("side", draft.side, None);
        let stage = v.enum_value("stage", draft.stage, Some(Stage::Inquiry));
        let network = v.enum_value("network", draft.network, None);
        let payment_method_type = v.enum_value(
            "payment_method_type",
            draft.payment_method_type,
            Some(PaymentMethodType::Card),
        );
        let reason = v.enum_value("reason", draft.reason, None);
        let applicable_regulation = v.enum_value(
            "applicable_regulation",
            draft.applicable_regulation,
            Some(Regulation::None),
        );

        match (side, stage) {
            (Some(Side::Issuer), Some(stage)) if stage != Stage::Inquiry => {
                v.add("stage", "an issuer-side dispute opens in INQUIRY");
            }
            (Some(Side::Merchant), Some(stage))
                if !matches!(stage, Stage::Inquiry | Stage::Chargeback) =>
            {
                v.add("stage", "a dispute opens in INQUIRY or CHARGEBACK");
            }
            _ => {}
        }
        if side == Some(Side::Merchant)
            && matches!(
                applicable_regulation,
                Some(Regulation::RegulationE | Regulation::RegulationZ)
            )
        {
            v.add(
                "applicable_regulation",
                "Regulation E and Z apply to the issuer side only",
            );
        }

        if draft.amount <= 0 {
            v.add("amount", "must be greater than 0 (minor units)");
        } else if draft.amount > MAX_AMOUNT {
            v.add("amount", format!("must be at most {MAX_AMOUNT}"));
        }
        let currency = Currency::parse(&draft.currency);
        if currency.is_none() {
            v.add("currency", "must be an ISO 4217 currency code, e.g. USD");
        }
        let original_amount = match draft.original_amount {
            0 => None,
            n if n < 0 => {
                v.add("original_amount", "must not be negative");
                None
            }
            n if n < draft.amount => {
                v.add("original_amount", "must be at least the disputed amount");
                None
            }
            n => Some(n),
        };

        let charge = v.optional_text("charge", &draft.charge, MAX_REFERENCE_CHARS);
        let payment_intent =
            v.optional_text("payment_intent", &draft.payment_intent, MAX_REFERENCE_CHARS);
        let transaction_id =
            v.optional_text("transaction_id", &draft.transaction_id, MAX_REFERENCE_CHARS);
        let merchant_id = v.optional_text("merchant_id", &draft.merchant_id, MAX_REFERENCE_CHARS);
        let network_reason_code = v.optional_text(
            "network_reason_code",
            &draft.network_reason_code,
            MAX_NETWORK_REASON_CODE_CHARS,
        );
        let network_case_id = v.optional_text(
            "network_case_id",
            &draft.network_case_id,
            MAX_REFERENCE_CHARS,
        );
        let memo = v.optional_text("memo", &draft.memo, MAX_MEMO_CHARS);

        let date_customer_reported = if draft.date_customer_reported.is_empty() {
            if side == Some(Side::Issuer) {
                v.add(
                    "date_customer_reported",
                    "is required on the issuer side (YYYY-MM-DD)",
                );
            }
            None
        } else {
            match reported_date(&draft.date_customer_reported) {
                Some(date) if date > now.date_naive() => {
                    v.add("date_customer_reported", "must not be in the future");
                    None
                }
                Some(date) => Some(date),
                None => {
                    v.add(
                        "date_customer_reported",
                        "must be a date as YYYY-MM-DD or an RFC 3339 timestamp",
                    );
                    None
                }
            }
        };
        if let Some(due) = draft.due_time
            && due <= now
        {
            v.add("due_by", "must be in the future");
        }
        v.0.extend(validate_metadata(&draft.metadata));
        let issuer = match (&draft.issuer_facts, side) {
            (None, _) => IssuerFacts::default(),
            (Some(_), Some(Side::Merchant)) => {
                v.add("issuer_facts", "apply to the issuer side only");
                IssuerFacts::default()
            }
            (Some(facts), _) => v.issuer_facts(facts, date_customer_reported, now),
        };

        match (
            side,
            stage,
            network,
            payment_method_type,
            reason,
            applicable_regulation,
            currency,
        ) {
            (
                Some(side),
                Some(stage),
                Some(network),
                Some(payment_method_type),
                Some(reason),
                Some(applicable_regulation),
                Some(currency),
            ) if v.0.is_empty() => Ok(NewDispute {
                side,
                stage,
                status: Status::NeedsResponse,
                amount: draft.amount,
                currency,
                charge,
                payment_intent,
                transaction_id,
                merchant_id,
                network,
                payment_method_type,
                reason,
                network_reason_code,
                network_case_id,
                memo,
                date_customer_reported,
                applicable_regulation,
                metadata: draft.metadata,
                livemode: draft.livemode,
                original_amount,
                is_charge_refundable: draft.is_charge_refundable,
                due_time: draft.due_time,
                issuer,
            }),
            _ => Err(DisputeError::Validation(v.0)),
        }
    }
}

/// Filters of ListDisputes; all combine with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DisputeFilter {
    pub charge: Option<String>,
    pub payment_intent: Option<String>,
    pub transaction_id: Option<String>,
    pub status: Option<Status>,
    pub stage: Option<Stage>,
    pub side: Option<Side>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub due_before: Option<DateTime<Utc>>,
}

impl DisputeFilter {
    /// A stable text form of the filters, fingerprinted into page tokens.
    pub fn canonical(&self) -> String {
        format!(
            "charge={:?};pi={:?};txn={:?};status={:?};stage={:?};side={:?};after={:?};before={:?};due={:?}",
            self.charge,
            self.payment_intent,
            self.transaction_id,
            self.status.map(Status::as_str),
            self.stage.map(Stage::as_str),
            self.side.map(Side::as_str),
            self.created_after.map(|t| t.timestamp_micros()),
            self.created_before.map(|t| t.timestamp_micros()),
            self.due_before.map(|t| t.timestamp_micros()),
        )
    }
}

#[cfg(test)]
#[path = "dispute_tests.rs"]
mod tests;
