//! A transition under construction: the stage and status it moves to, the money it posts
//! (through the ledger's settlement rules), its events and its history entry.

use chrono::{DateTime, Utc};

use super::outcome::{DisputeEvent, EvidenceEffect, HistoryEntry, ReversalNotice, Transition};
use super::state::{DeadlineBreach, LifecycleState};
use crate::domain::deadlines;
use crate::domain::enums::{
    Actor, BalanceTransactionType, CreditStatus, OverdueDeadline, Regulation, Stage, Status,
};
use crate::domain::ledger::{self, LedgerEntry, MoneyPolicy};

/// A transition under construction.
pub(super) struct Change {
    pub(super) after: LifecycleState,
    entries: Vec<LedgerEntry>,
    pub(super) events: Vec<DisputeEvent>,
    pub(super) evidence: EvidenceEffect,
    notice: Option<ReversalNotice>,
    pub(super) explanation: Vec<String>,
    pub(super) history_amount: Option<i64>,
}

impl Change {
    pub(super) fn from(state: &LifecycleState) -> Change {
        Change {
            after: state.clone(),
            entries: Vec::new(),
            events: Vec::new(),
            evidence: EvidenceEffect::Unchanged,
            notice: None,
            explanation: Vec::new(),
            history_amount: None,
        }
    }

    /// Moves to a point where the other party acts: nothing is due from us.
    pub(super) fn wait(&mut self, stage: Stage) {
        self.after.stage = stage;
        self.after.status = Status::UnderReview;
        self.after.due_time = None;
    }

    pub(super) fn needs_response(&mut self, stage: Stage, due: Option<DateTime<Utc>>) {
        self.after.stage = stage;
        self.after.status = Status::NeedsResponse;
        self.after.due_time = due;
    }

    pub(super) fn event(&mut self, event: DisputeEvent) {
        if !self.events.contains(&event) {
            self.events.push(event);
        }
    }

    pub(super) fn explain(&mut self, text: impl Into<String>) {
        self.explanation.push(text.into());
    }

    /// I14: records the issuer-side deadlines that passed by `now` and were not recorded yet
    /// (see `LifecycleState::pending_deadlines`), each with a line in the history message.
    /// The sweeper records them `flagged` (the dispute turns overdue); a tenant action that
    /// comes after them records them unflagged, since it answers them. Returns how many.
    pub(super) fn record_passed_deadlines(&mut self, now: DateTime<Utc>, flagged: bool) -> usize {
        let passed: Vec<(OverdueDeadline, DateTime<Utc>)> = self
            .after
            .pending_deadlines()
            .into_iter()
            .filter(|&(_, due)| due <= now)
            .collect();
        for &(deadline, due) in &passed {
            self.after.breaches.push(DeadlineBreach {
                deadline,
                due,
                flagged,
            });
            self.explain(describe_breach(
                deadline,
                due,
                self.after.case.applicable_regulation,
            ));
        }
        passed.len()
    }

    pub(super) fn post(&mut self, entries: Vec<LedgerEntry>) {
        for entry in entries {
            self.after.ledger.add_entry(&entry);
            self.entries.push(entry);
        }
    }

    /// Merchant side: brings withdrawn funds and fee to the targets, with their events (H2).
    pub(super) fn settle_merchant(
        &mut self,
        withdrawn: i64,
        fee: i64,
        withdrawal: &str,
        reinstatement: &str,
    ) {
        let entries = ledger::merchant_settlement(
            &self.after.ledger,
            withdrawn,
            fee,
            &self.after.case.currency,
            withdrawal,
            reinstatement,
        );
        for entry in &entries {
            match entry.kind {
                BalanceTransactionType::Withdrawal => self.event(DisputeEvent::FundsWithdrawn),
                BalanceTransactionType::Reinstatement => self.event(DisputeEvent::FundsReinstated),
                _ => {}
            }
        }
        self.post(entries);
    }

    /// M3: the chargeback lands: withdraw the amount plus the dispute fee.
    pub(super) fn withdraw_chargeback(&mut self, policy: &MoneyPolicy) {
        let fee = self.fee_to_charge(policy);
        self.settle_merchant(self.after.amount, fee, "chargeback withdrawal", "");
        self.history_amount.get_or_insert(self.after.amount);
    }

    /// Merchant side: a final status with its money (M7, M8, M13, M14, H1, H3, H6).
    pub(super) fn merchant_outcome(
        &mut self,
        status: Status,
        won: i64,
        lost: i64,
        policy: &MoneyPolicy,
    ) {
        let totals = self.after.ledger;
        let (withdrawn, fee) = match status {
            Status::Won if policy.refund_fee_on_win => (lost, 0),
            Status::Won => (lost, totals.fee_charged()),
            Status::Lost => (lost, self.fee_to_charge(policy)),
            _ => (0, 0),
        };
        self.settle_merchant(
            withdrawn,
            fee,
            "chargeback withdrawal: dispute lost",
            "funds reinstated: dispute won",
        );
        self.finalize(status, won, lost);
    }

    /// The dispute fee a withdrawal or loss carries: the one already charged, else the
    /// policy's for the dispute's currency (none configured: no fee, and the history says so).
    fn fee_to_charge(&mut self, policy: &MoneyPolicy) -> i64 {
        match self.after.ledger.fee_charged() {
            0 => {
                let currency = &self.after.case.currency;
                match policy.dispute_fees.fee(currency) {
                    Some(fee) => fee,
                    None => {
                        let why = format!("no dispute fee is configured for {currency}");
                        self.explain(why);
                        0
                    }
                }
            }
            charged => charged,
        }
    }

    /// M12, I12: the dispute enters arbitration; our side is charged the network's
    /// arbitration fee for the currency, once (none configured: no fee, the history says so).
    pub(super) fn charge_arbitration_fee(&mut self, policy: &MoneyPolicy) {
        let currency = self.after.case.currency.clone();
        let Some(fee) = policy.arbitration_fees.fee(&currency) else {
            self.explain(format!("no arbitration fee is configured for {currency}"));
            return;
        };
        if self.after.ledger.arbitration_fee_charged() > 0 {
            return;
        }
        if let Some(entry) = ledger::arbitration_fee_settlement(&self.after.ledger, fee, &currency)
        {
            self.explain(entry.description.clone());
            self.post(vec![entry]);
        }
    }

    /// The network decided the case for us: the losing party bears the arbitration fee, so
    /// ours comes back (M13, I13).
    pub(super) fn refund_arbitration_fee(&mut self) {
        let currency = self.after.case.currency.clone();
        if let Some(entry) = ledger::arbitration_fee_settlement(&self.after.ledger, 0, &currency) {
            self.explain(entry.description.clone());
            self.post(vec![entry]);
        }
    }

    /// Issuer side: a final status; the cardholder ends up holding `won` (I4, I5, I9, I13).
    pub(super) fn issuer_outcome(
        &mut self,
        status: Status,
        won: i64,
        lost: i64,
        final_credit: FinalCredit,
        now: DateTime<Utc>,
    ) {
        let credit_was_given = self.after.ledger.provisional_credit_given();
        let (kind, description) = final_credit.entry();
        let mut entries = ledger::issuer_settlement(&self.after.ledger, won, kind, description);
        for entry in &mut entries {
            if entry.kind == BalanceTransactionType::ProvisionalCreditReversal {
                self.note_reversal(entry, now);
            }
        }
        self.post(entries);
        self.after.credit_status = if won > 0 {
            CreditStatus::Final
        } else if credit_was_given {
            CreditStatus::Reversed
        } else {
            CreditStatus::None
        };
        self.finalize(status, won, lost);
    }

    /// Issuer side: decided against the cardholder (DENY, I5; ACCEPT_REPRESENTMENT, I9). Nothing
    /// is won, so no final credit; a provisional credit is reversed.
    pub(super) fn issuer_loses(&mut self, now: DateTime<Utc>) {
        let amount = self.after.amount;
        self.issuer_outcome(Status::Lost, 0, amount, FinalCredit::IssuerFunded, now);
    }

    /// I5: a reversed provisional credit under Reg E carries its honoring date.
    fn note_reversal(&mut self, entry: &mut LedgerEntry, now: DateTime<Utc>) {
        let amount = -entry.amount;
        if self.after.case.applicable_regulation != Regulation::RegulationE {
            self.explain(format!("provisional credit of {amount} reversed"));
            return;
        }
        let debited_on = now.date_naive();
        let honored_until = deadlines::regulation_e_reversal_honored_until(debited_on);
        entry.description = format!(
            "provisional credit reversed; checks and preauthorized transfers honored through \
             {honored_until} (Regulation E 1005.11(d)(2))"
        );
        self.explain(format!(
            "provisional credit of {amount} reversed on {debited_on}; Regulation E: checks and \
             preauthorized transfers honored through {honored_until}"
        ));
        self.notice = Some(ReversalNotice {
            amount,
            debited_on,
            honored_until,
        });
    }

    fn finalize(&mut self, status: Status, won: i64, lost: i64) {
        self.after.status = status;
        self.after.due_time = None;
        self.after.amount_won = won;
        self.after.amount_lost = lost;
        self.after.reversal_lapses_at = None;
        self.history_amount = Some(if status == Status::Won { won } else { lost });
        self.event(match status {
            Status::Won => DisputeEvent::Won,
            Status::Lost => DisputeEvent::Lost,
            _ => DisputeEvent::Closed,
        });
    }

    pub(super) fn finish(
        mut self,
        actor: Actor,
        what: String,
        caller_message: &str,
        document_ids: Vec<String>,
    ) -> Transition {
        if actor != Actor::System && self.after.overdue() {
            // I14: acting (the tenant, or the network moving the dispute) clears the flag;
            // the breaches stay recorded, and in the history
            for breach in &mut self.after.breaches {
                breach.flagged = false;
            }
            self.explain("the overdue flag is cleared (I14)");
        }
        if self.events.is_empty() {
            self.events.push(DisputeEvent::Updated);
        }
        let explanation = self.explanation.join("; ");
        let message = match (caller_message.trim(), explanation.is_empty()) {
            ("", _) => explanation,
            (caller, true) => caller.to_owned(),
            (caller, false) => format!("{caller} ({explanation})"),
        };
        Transition {
            history: HistoryEntry {
                actor,
                what,
                message,
                amount: self.history_amount.unwrap_or(0),
                document_ids,
            },
            state: self.after,
            ledger_entries: self.entries,
            events: self.events,
            evidence: self.evidence,
            provisional_credit_reversal: self.notice,
        }
    }
}

/// Issuer side: who funds credit the cardholder gets beyond an outstanding provisional credit.
#[derive(Clone, Copy)]
pub(super) enum FinalCredit {
    /// WRITE_OFF: the issuer absorbs it (I4).
    IssuerFunded,
    /// REINSTATEMENT: recovered from the merchant through the network (I13).
    RecoveredThroughNetwork,
}

impl FinalCredit {
    fn entry(self) -> (BalanceTransactionType, &'static str) {
        match self {
            FinalCredit::IssuerFunded => (
                BalanceTransactionType::WriteOff,
                "written off: final credit funded by the issuer",
            ),
            FinalCredit::RecoveredThroughNetwork => (
                BalanceTransactionType::Reinstatement,
                "final credit: funds recovered through the network",
            ),
        }
    }
}

/// The history line of a deadline that passed (I14).
pub(super) fn describe_breach(
    deadline: OverdueDeadline,
    due: DateTime<Utc>,
    regulation: Regulation,
) -> String {
    let regulation = match regulation {
        Regulation::RegulationE => "Regulation E",
        Regulation::RegulationZ => "Regulation Z",
        Regulation::None => "the regulation",
    };
    match deadline {
        OverdueDeadline::ProvisionalCreditDue => format!(
            "{regulation}: the provisional credit was due by {due} and not given (it stays \
             possible, marked late)"
        ),
        OverdueDeadline::DecisionDue => {
            format!("{regulation}: the decision was due by {due}")
        }
        OverdueDeadline::ResponseDue => {
            format!("the network action window closed at {due}")
        }
    }
}
