//! Writing what the lifecycle decided: a new dispute or a transition, with its ledger
//! entries, history entry and events, all inside the caller's transaction.

use anyhow::Context;
use chrono::{DateTime, Utc};
use domain_kit::ids::{ActionId, DisputeId};
use sqlx::PgConnection;

use super::{App, DisputeView};
use crate::domain::dispute::LATEST_HISTORY_ENTRIES;
use crate::domain::ledger;
use crate::domain::lifecycle::{CaseFacts, Transition};
use crate::domain::{Dispute, DisputeError, NewDispute, Side};
use crate::store::disputed_totals::{self, ReferenceColumn};
use crate::store::disputes::{self, StateUpdate};
use crate::store::events;
use crate::store::history::{self, AppendedAction, NewActionRecord};
use crate::store::ledger as ledger_store;
use crate::store::ledger::NewBalanceTransaction;

/// NOT_FOUND for a dispute the caller's tenant does not have.
pub(super) fn dispute_not_found(id: &str) -> DisputeError {
    DisputeError::NotFound {
        kind: "dispute",
        id: id.to_owned(),
    }
}

/// Loads a dispute and locks it until the transaction ends.
pub(super) async fn load_for_update(
    tx: &mut PgConnection,
    tenant_id: &str,
    id: &str,
) -> Result<Dispute, DisputeError> {
    disputes::find_dispute_for_update(tx, tenant_id, id)
        .await?
        .ok_or_else(|| dispute_not_found(id))
}

/// Reads a dispute this transaction has locked or written.
pub(super) async fn reload(
    tx: &mut PgConnection,
    tenant_id: &str,
    id: &str,
) -> Result<Dispute, DisputeError> {
    Ok(disputes::find_dispute(tx, tenant_id, id)
        .await?
        .context("dispute vanished inside its transaction")?)
}

/// A dispute's claim on its charge or transaction.
pub(super) struct Claim<'a> {
    pub charge: Option<&'a str>,
    pub transaction_id: Option<&'a str>,
    pub original_amount: Option<i64>,
    pub amount: i64,
    /// Only disputes in this currency count against each other (H7 per currency).
    pub currency: &'a str,
    /// The dispute itself when its amount changes (it does not count against itself).
    pub dispute_id: Option<&'a str>,
}

impl<'a> Claim<'a> {
    pub(super) fn of_new(new: &'a NewDispute) -> Claim<'a> {
        Claim {
            charge: new.charge.as_deref(),
            transaction_id: new.transaction_id.as_deref(),
            original_amount: new.original_amount,
            amount: new.amount,
            currency: new.currency.as_str(),
            dispute_id: None,
        }
    }
}

/// Several disputes may exist for one charge or transaction, but together they never claim
/// more than its original amount when that is known (docs/lifecycle.md, H7).
pub(super) async fn check_disputed_total(
    tx: &mut PgConnection,
    tenant_id: &str,
    claim: &Claim<'_>,
) -> Result<(), DisputeError> {
    let references = [
        (ReferenceColumn::Charge, claim.charge),
        (ReferenceColumn::TransactionId, claim.transaction_id),
    ];
    for (column, reference) in references {
        let Some(reference) = reference else { continue };
        let others = disputed_totals::lock_and_sum_disputed(
            tx,
            tenant_id,
            column,
            reference,
            claim.currency,
            claim.dispute_id,
        )
        .await?;
        let original = claim.original_amount.or(others.original_amount);
        ledger::check_within_original_amount(original, others.amount, claim.amount)?;
    }
    Ok(())
}

/// The facts of a new dispute the lifecycle reads.
pub(super) fn case_facts(new: &NewDispute) -> CaseFacts {
    CaseFacts {
        side: new.side,
        network: new.network,
        reason: new.reason,
        network_reason_code: new.network_reason_code.clone(),
        currency: new.currency.as_str().to_owned(),
        original_amount: new.original_amount,
        applicable_regulation: new.applicable_regulation,
        date_customer_reported: new.date_customer_reported,
        issuer: new.issuer,
    }
}

impl App {
    /// Inserts a dispute as `open_dispute` decided it, with its ledger, history and events.
    pub(super) async fn insert_opened_dispute(
        &self,
        tx: &mut PgConnection,
        tenant_id: &str,
        new: &NewDispute,
        opened: &Transition,
        now: DateTime<Utc>,
    ) -> Result<Dispute, DisputeError> {
        let id = DisputeId::generate();
        let inserted = disputes::insert_opened_dispute(
            tx,
            tenant_id,
            id.as_str(),
            new,
            &(&opened.state).into(),
        )
        .await?;
        self.append_effects(tx, inserted, opened, now).await
    }

    /// Writes a transition decided for `before` (locked): state, ledger, history and events.
    pub(super) async fn persist_transition(
        &self,
        tx: &mut PgConnection,
        before: &Dispute,
        transition: &Transition,
        now: DateTime<Utc>,
    ) -> Result<Dispute, DisputeError> {
        let state = &transition.state;
        if state.amount != before.amount {
            // A chargeback may restate the amount (M3, I6): it must still fit the original.
            let claim = Claim {
                charge: before.charge.as_deref(),
                transaction_id: before.transaction_id.as_deref(),
                original_amount: before.original_amount,
                amount: state.amount,
                currency: &before.currency,
                dispute_id: Some(&before.id),
            };
            check_disputed_total(tx, &before.tenant_id, &claim).await?;
        }
        let updated = disputes::update_dispute_state(
            tx,
            &before.tenant_id,
            &before.id,
            &StateUpdate {
                lifecycle: state.into(),
                submission_count: state.submission_count,
                evidence: &before.evidence,
                metadata: &before.metadata,
            },
        )
        .await?;
        self.append_effects(tx, with_children_of(updated, before), transition, now)
            .await
    }

    /// Appends a transition's ledger entries, then its history entry and events, to
    /// `dispute` (as written in this transaction, with its history and ledger so far).
    async fn append_effects(
        &self,
        tx: &mut PgConnection,
        mut dispute: Dispute,
        transition: &Transition,
        now: DateTime<Utc>,
    ) -> Result<Dispute, DisputeError> {
        let state = &transition.state;
        let issuer_side = state.case.side == Side::Issuer;
        let tenant_id = dispute.tenant_id.clone();
        let dispute_id = dispute.id.clone();
        for entry in &transition.ledger_entries {
            let row = NewBalanceTransaction {
                entry,
                currency: &state.case.currency,
                reporting_category: ledger::reporting_category(issuer_side, entry.kind),
                available_on: ledger::available_on(now, self.policy.settlement_days),
            };
            let stored =
                ledger_store::insert_balance_transaction(tx, &tenant_id, &dispute_id, &row).await?;
            dispute.balance_transactions.push(stored);
        }
        // The order a read gives (oldest first, then by id).
        dispute
            .balance_transactions
            .sort_by(|a, b| (a.create_time, &a.id).cmp(&(b.create_time, &b.id)));
        let history = &transition.history;
        let action_id = ActionId::generate();
        let record = NewActionRecord {
            id: action_id.as_str(),
            dispute_id: &dispute_id,
            actor: history.actor,
            what: &history.what,
            message: &history.message,
            document_ids: &history.document_ids,
            stage: state.stage,
            status: state.status,
            amount: history.amount,
        };
        let event_types: Vec<&str> = transition.events.iter().map(|e| e.as_str()).collect();
        self.append_history_and_events(tx, dispute, &record, &event_types, now)
            .await
    }

    /// Appends a history entry to `dispute` (as written in this transaction, with its history
    /// and ledger so far), then records `event_types` holding the dispute as it is afterwards
    /// (seen at `now`) with only that entry, and returns the dispute (with its latest
    /// entries, as GetDispute shows it). Nothing is read back: the dispute is locked (or
    /// new), so no other change can have come in between.
    pub(super) async fn append_history_and_events(
        &self,
        tx: &mut PgConnection,
        dispute: Dispute,
        record: &NewActionRecord<'_>,
        event_types: &[&str],
        now: DateTime<Utc>,
    ) -> Result<Dispute, DisputeError> {
        let tenant_id = dispute.tenant_id.clone();
        let tenant_id = tenant_id.as_str();
        let appended = history::insert_action_record(tx, tenant_id, record).await?;
        let after = with_appended_entry(dispute, appended);
        if !self.record_events {
            // A benchmark measures mutations without their events.
            return Ok(after);
        }
        let payload = self.snapshot(&DisputeView::at(with_only_newest_entry(&after), now));
        // With one webhook delivery of each per endpoint that takes it, in one statement.
        events::insert_events_with_deliveries(
            tx,
            tenant_id,
            record.dispute_id,
            event_types,
            &payload,
        )
        .await?;
        Ok(after)
    }
}

/// The dispute's row as a write in this transaction returned it, with the history and ledger
/// `before` had (read in this transaction with the row locked).
pub(super) fn with_children_of(written: Dispute, before: &Dispute) -> Dispute {
    Dispute {
        action_history: before.action_history.clone(),
        action_history_count: before.action_history_count,
        balance_transactions: before.balance_transactions.clone(),
        ..written
    }
}

/// `dispute` with `appended` as its newest entry, keeping the newest
/// [`LATEST_HISTORY_ENTRIES`] as a read does.
fn with_appended_entry(mut dispute: Dispute, appended: AppendedAction) -> Dispute {
    dispute.action_history.push(appended.record);
    let shown = usize::try_from(LATEST_HISTORY_ENTRIES).unwrap_or(usize::MAX);
    let excess = dispute.action_history.len().saturating_sub(shown);
    dispute.action_history.drain(..excess);
    dispute.action_history_count = appended.ordinal;
    dispute
}

/// What an event holds: the dispute with only the history entry that caused the event (the
/// newest; the dispute is locked, so no other change came after it), not its whole history,
/// so that events do not grow with the history (issue 11, point 11).
fn with_only_newest_entry(dispute: &Dispute) -> Dispute {
    let mut shown = dispute.clone();
    let newest = shown.action_history.pop();
    shown.action_history = newest.into_iter().collect();
    shown
}
