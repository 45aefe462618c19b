//! The part of a dispute the lifecycle decides on, its deadlines, and where it is in the
//! process (H9).

use chrono::{DateTime, Utc};

use super::inputs::CaseFacts;
use crate::domain::deadlines;
use crate::domain::enums::{
    CloseReason, CreditStatus, OverdueDeadline, Regulation, Side, Stage, Status,
};
use crate::domain::ledger::LedgerTotals;

/// The part of a dispute the lifecycle decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleState {
    pub case: CaseFacts,
    pub stage: Stage,
    pub status: Status,
    pub credit_status: CreditStatus,
    /// Disputed amount in minor units; a chargeback may narrow or restate it (I6, M3).
    pub amount: i64,
    /// When the response of the side we serve is due; set only while NEEDS_RESPONSE.
    pub due_time: Option<DateTime<Utc>>,
    pub amount_won: i64,
    pub amount_lost: i64,
    pub submission_count: i32,
    pub ledger: LedgerTotals,
    /// Merchant side, after CHARGEBACK_REVERSED: when the pre-arbitration window lapses and
    /// the dispute becomes WON (H1 option a). Not on `Dispute` yet: persist it.
    pub reversal_lapses_at: Option<DateTime<Utc>>,
    /// Issuer side: every deadline recorded as passed (I14), oldest first; those still
    /// `flagged` make the dispute overdue. Persist it.
    pub breaches: Vec<DeadlineBreach>,
    /// Why the tenant closed the dispute (issuer-side CLOSE); `None` otherwise.
    pub close_reason: Option<CloseReason>,
}

/// The lifecycle fields `Dispute` does not carry as such; the store keeps them next to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LifecycleMarks {
    pub reversal_lapses_at: Option<DateTime<Utc>>,
    pub breaches: Vec<DeadlineBreach>,
}

/// I14: an issuer-side deadline that passed. Recorded once per deadline and instant (by the
/// sweeper, flagged; or by the tenant action that came after it, not flagged); the flag
/// clears when the tenant acts or a network event moves the dispute, the record stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadlineBreach {
    pub deadline: OverdueDeadline,
    /// The instant the date ended (its `valid_until`): when it was breached.
    pub due: DateTime<Utc>,
    /// Still shown as the dispute's overdue flag: nobody acted since it was recorded.
    pub flagged: bool,
}

/// Regulation E / Z due instants of an issuer-side dispute (none on the merchant side).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegulatoryDeadlines {
    /// Reg E: provisional credit must be given before this instant.
    pub provisional_credit_due: Option<DateTime<Utc>>,
    /// Reg E or Z: the issuer's decision is due before this instant.
    pub resolution_due: Option<DateTime<Utc>>,
}

impl LifecycleState {
    pub fn marks(&self) -> LifecycleMarks {
        LifecycleMarks {
            reversal_lapses_at: self.reversal_lapses_at,
            breaches: self.breaches.clone(),
        }
    }

    /// I14: a deadline passed and neither the tenant nor the network acted since.
    pub fn overdue(&self) -> bool {
        self.breaches.iter().any(|breach| breach.flagged)
    }

    /// The breaches still flagged, oldest first.
    pub fn flagged_breaches(&self) -> impl Iterator<Item = &DeadlineBreach> {
        self.breaches.iter().filter(|breach| breach.flagged)
    }

    /// Reg E: the provisional credit was given after its due date (I3, I14). A late credit
    /// does not extend the decision date to 45 (90) days.
    pub fn provisional_credit_late(&self) -> bool {
        self.ledger.provisional_credit_given()
            && self
                .breaches
                .iter()
                .any(|breach| breach.deadline == OverdueDeadline::ProvisionalCreditDue)
    }

    pub fn is_final(&self) -> bool {
        self.status.is_final()
    }

    pub fn is_past_due(&self, now: DateTime<Utc>) -> bool {
        self.due_time.is_some_and(|due| due <= now)
    }

    pub fn regulatory_deadlines(&self) -> RegulatoryDeadlines {
        let Some(reported) = self.case.date_customer_reported else {
            return RegulatoryDeadlines::default();
        };
        match self.case.applicable_regulation {
            Regulation::RegulationE => {
                let due =
                    deadlines::regulation_e_deadlines(reported, self.case.issuer.regulation_e);
                RegulatoryDeadlines {
                    provisional_credit_due: Some(deadlines::end_of_day(due.provisional_credit_due)),
                    resolution_due: Some(deadlines::end_of_day(due.resolution_due(
                        self.ledger.provisional_credit_given() && !self.provisional_credit_late(),
                    ))),
                }
            }
            Regulation::RegulationZ => {
                let due = deadlines::regulation_z_deadlines(
                    reported,
                    self.case.issuer.billing_cycle_closing_day,
                );
                RegulatoryDeadlines {
                    provisional_credit_due: None,
                    resolution_due: Some(deadlines::end_of_day(due.resolution_due)),
                }
            }
            Regulation::None => RegulatoryDeadlines::default(),
        }
    }

    /// Issuer side: the end of the chargeback filing window (I1).
    pub fn chargeback_filing_due(&self) -> Option<DateTime<Utc>> {
        self.case
            .issuer
            .transaction_date
            .or(self.case.date_customer_reported)
            .map(deadlines::issuer_chargeback_filing_due)
    }

    /// I14: the issuer-side deadlines that apply now and whose passing is not recorded yet,
    /// with the instant each one passes: the Reg E provisional-credit due date (while no
    /// credit is given), the Reg E / Z decision date, and the window of the last network
    /// action (while NEEDS_RESPONSE). None on the merchant side or once final.
    pub fn pending_deadlines(&self) -> Vec<(OverdueDeadline, DateTime<Utc>)> {
        if self.case.side != Side::Issuer || self.is_final() {
            return Vec::new();
        }
        let regulatory = self.regulatory_deadlines();
        let credit_due = regulatory
            .provisional_credit_due
            .filter(|_| !self.ledger.provisional_credit_given());
        let response_due = self
            .due_time
            .filter(|_| self.status == Status::NeedsResponse);
        [
            (OverdueDeadline::ProvisionalCreditDue, credit_due),
            (OverdueDeadline::DecisionDue, regulatory.resolution_due),
            (OverdueDeadline::ResponseDue, response_due),
        ]
        .into_iter()
        .filter_map(|(deadline, due)| due.map(|due| (deadline, due)))
        .filter(|&(deadline, due)| {
            !self
                .breaches
                .iter()
                .any(|breach| breach.deadline == deadline && breach.due == due)
        })
        .collect()
    }

    /// When the sweeper must call `decide(.., Trigger::DeadlinePassed, ..)`; `None` when no
    /// deadline can act on the dispute (final, issuer side with every deadline recorded, or
    /// a dispute with no right to respond, H3).
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        if self.is_final() {
            return None;
        }
        match self.case.side {
            Side::Merchant => match self.status {
                Status::NeedsResponse => self.due_time,
                _ => self.reversal_lapses_at,
            },
            Side::Issuer => self
                .pending_deadlines()
                .into_iter()
                .map(|(_, due)| due)
                .min(),
        }
    }

    /// Where the dispute is in the process (H9), see [`progress`].
    pub fn progress(&self) -> (u8, u8) {
        progress(self.case.side, self.stage, self.status)
    }
}

/// Rank of a stage in the process: INQUIRY 0 … ARBITRATION 4.
pub fn stage_rank(stage: Stage) -> u8 {
    match stage {
        Stage::Inquiry => 0,
        Stage::Chargeback => 1,
        Stage::Representment => 2,
        Stage::PreArbitration => 3,
        Stage::Arbitration => 4,
    }
}

/// H9: the order in which a dispute passes its (stage, status) points, as (stage rank, status
/// rank). Within a stage the side that must act first comes first: the merchant answers
/// (NEEDS_RESPONSE 0) then waits (UNDER_REVIEW 1); on the issuer side pre-arbitration is filed
/// (UNDER_REVIEW 0) and then answered (NEEDS_RESPONSE 1). A final status ranks 2 in its stage.
/// Network events never move a dispute to a lower point, except NETWORK_REJECTED (I7).
pub fn progress(side: Side, stage: Stage, status: Status) -> (u8, u8) {
    let status_rank = match (side, stage, status) {
        (_, _, status) if status.is_final() => 2,
        (Side::Issuer, Stage::PreArbitration, Status::UnderReview) => 0,
        (Side::Issuer, Stage::PreArbitration, _) => 1,
        (_, _, Status::NeedsResponse) => 0,
        _ => 1,
    };
    (stage_rank(stage), status_rank)
}
