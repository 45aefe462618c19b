//! What the lifecycle reads: the facts of a case, the triggers that ask it to move, and how a
//! dispute comes to exist.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::deadlines::RegulationEFacts;
use crate::domain::enums::{
    ActionType, Actor, CloseReason, Network, Reason, Regulation, Side, Stage, Status,
};

/// What a network (or the PSP or processor in front of it) can tell us about a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetworkEventKind {
    RetrievalRequest,
    ChargebackNotified,
    Chargeback,
    InquiryClosed,
    ChargebackReversed,
    SecondChargeback,
    Representment,
    PreArbitration,
    PreArbitrationResponse,
    Arbitration,
    NetworkRejected,
    Won,
    Lost,
}

impl NetworkEventKind {
    pub const ALL: &'static [NetworkEventKind] = &[
        NetworkEventKind::RetrievalRequest,
        NetworkEventKind::ChargebackNotified,
        NetworkEventKind::Chargeback,
        NetworkEventKind::InquiryClosed,
        NetworkEventKind::ChargebackReversed,
        NetworkEventKind::SecondChargeback,
        NetworkEventKind::Representment,
        NetworkEventKind::PreArbitration,
        NetworkEventKind::PreArbitrationResponse,
        NetworkEventKind::Arbitration,
        NetworkEventKind::NetworkRejected,
        NetworkEventKind::Won,
        NetworkEventKind::Lost,
    ];

    /// The upper-case name of RecordNetworkEvent (docs/api.md, "RecordNetworkEvent"), also
    /// used in history entries (`network:CHARGEBACK`).
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkEventKind::RetrievalRequest => "RETRIEVAL_REQUEST",
            NetworkEventKind::ChargebackNotified => "CHARGEBACK_NOTIFIED",
            NetworkEventKind::Chargeback => "CHARGEBACK",
            NetworkEventKind::InquiryClosed => "INQUIRY_CLOSED",
            NetworkEventKind::ChargebackReversed => "CHARGEBACK_REVERSED",
            NetworkEventKind::SecondChargeback => "SECOND_CHARGEBACK",
            NetworkEventKind::Representment => "REPRESENTMENT",
            NetworkEventKind::PreArbitration => "PRE_ARBITRATION",
            NetworkEventKind::PreArbitrationResponse => "PRE_ARBITRATION_RESPONSE",
            NetworkEventKind::Arbitration => "ARBITRATION",
            NetworkEventKind::NetworkRejected => "NETWORK_REJECTED",
            NetworkEventKind::Won => "WON",
            NetworkEventKind::Lost => "LOST",
        }
    }

    pub fn parse(text: &str) -> Option<NetworkEventKind> {
        NetworkEventKind::ALL
            .iter()
            .copied()
            .find(|kind| kind.as_str() == text)
    }

    /// The final status an outcome event announces.
    pub(super) fn outcome(self) -> Option<Status> {
        match self {
            NetworkEventKind::Won => Some(Status::Won),
            NetworkEventKind::Lost => Some(Status::Lost),
            _ => None,
        }
    }
}

impl fmt::Display for NetworkEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One network event, already deduplicated on (network, case id, event id) by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkEvent {
    pub kind: NetworkEventKind,
    /// When the network wants our answer; `None` means the network's usual window.
    pub due_time: Option<DateTime<Utc>>,
    /// Merchant-side CHARGEBACK: the amount charged back, when it differs from the dispute's
    /// (it becomes the disputed amount; at most `original_amount`).
    pub amount: Option<i64>,
    /// False when the event arrives with no right to respond (Stripe `due_by = 0`, Adyen
    /// `defendable = false`): H3. A `due_time` already past means the same.
    pub response_allowed: bool,
    /// WON / LOST: the split of the amount (H6). One of them is enough; neither means all of
    /// it went the announced way.
    pub amount_won: Option<i64>,
    pub amount_lost: Option<i64>,
    pub message: String,
    /// Documents that came with the event (e.g. the merchant's representment, I8).
    pub document_ids: Vec<String>,
    /// When the network says the event happened: the network windows the event opens count
    /// from it. `None`: when it reached us. Never later than `now` (see `window_start`).
    pub occur_time: Option<DateTime<Utc>>,
    /// The reason code the event carries; it replaces the dispute's, and the reason-code
    /// rules (H8) read it for this event already.
    pub network_reason_code: Option<String>,
}

impl NetworkEvent {
    pub fn new(kind: NetworkEventKind) -> NetworkEvent {
        NetworkEvent {
            kind,
            due_time: None,
            amount: None,
            response_allowed: true,
            amount_won: None,
            amount_lost: None,
            message: String::new(),
            document_ids: Vec::new(),
            occur_time: None,
            network_reason_code: None,
        }
    }

    /// Where the windows the event opens start: when it occurred, or `now` when the network
    /// did not say (a small clock skew ahead of us counts as now).
    pub fn window_start(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.occur_time.map_or(now, |occurred| occurred.min(now))
    }
}

/// A `CreateAction` (or `UpdateDispute(submit = true)`, which is SUBMIT_EVIDENCE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantAction {
    pub action: ActionType,
    /// PROVISIONAL_CREDIT, WRITE_OFF and CHARGEBACK may cover part of the amount (H6, I6);
    /// other actions take none.
    pub amount: Option<i64>,
    pub message: String,
    pub document_ids: Vec<String>,
    /// CLOSE on the issuer side: why the dispute ends without a decision (required there);
    /// no other action takes one.
    pub close_reason: Option<CloseReason>,
}

impl TenantAction {
    pub fn new(action: ActionType) -> TenantAction {
        TenantAction {
            action,
            amount: None,
            message: String::new(),
            document_ids: Vec::new(),
            close_reason: None,
        }
    }
}

/// What asks the lifecycle to move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    Tenant(TenantAction),
    Network(NetworkEvent),
    /// The sweeper, once `LifecycleState::next_deadline` has passed (M14, I14, H1).
    DeadlinePassed,
}

impl Trigger {
    pub fn actor(&self) -> Actor {
        match self {
            Trigger::Tenant(_) => Actor::Tenant,
            Trigger::Network(_) => Actor::Network,
            Trigger::DeadlinePassed => Actor::System,
        }
    }
}

/// How a dispute comes to exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opening {
    /// CreateDispute: merchant side in INQUIRY or CHARGEBACK, issuer side in INQUIRY (I1).
    /// `due_time` overrides the computed first deadline.
    Tenant {
        stage: Stage,
        due_time: Option<DateTime<Utc>>,
    },
    /// RecordNetworkEvent for a case we do not know yet (M1, M2, M3; merchant side only).
    Network(NetworkEvent),
}

/// Issuer-side facts that decide deadlines and chargeback rights. `Dispute` does not hold
/// them (yet); the defaults are the common case: a posted transaction of an established
/// account, no 3-D Secure, no wallet token, a billing cycle closing on the report's day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssuerFacts {
    /// Start of the 120-day chargeback window; the report date when unknown.
    pub transaction_date: Option<NaiveDate>,
    pub regulation_e: RegulationEFacts,
    /// Reg Z: day of month the billing cycle closes (see `deadlines::regulation_z_deadlines`).
    pub billing_cycle_closing_day: Option<u32>,
    /// Fraud chargeback rights end with 3-D Secure or a wallet token (I2).
    pub three_ds_authenticated: bool,
    pub digital_wallet_token: bool,
    /// A transaction that has not posted cannot be charged back yet (I2).
    pub transaction_posted: bool,
}

impl Default for IssuerFacts {
    fn default() -> Self {
        IssuerFacts {
            transaction_date: None,
            regulation_e: RegulationEFacts::default(),
            billing_cycle_closing_day: None,
            three_ds_authenticated: false,
            digital_wallet_token: false,
            transaction_posted: true,
        }
    }
}

/// What the lifecycle reads about a dispute and never changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseFacts {
    pub side: Side,
    pub network: Network,
    pub reason: Reason,
    pub network_reason_code: Option<String>,
    /// ISO 4217, upper case.
    pub currency: String,
    pub original_amount: Option<i64>,
    pub applicable_regulation: Regulation,
    pub date_customer_reported: Option<NaiveDate>,
    pub issuer: IssuerFacts,
}
