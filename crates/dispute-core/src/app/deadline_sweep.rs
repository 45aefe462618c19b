//! The background jobs: the deadline sweeper (M14, I14, H1) and the repair of document
//! locks (old idempotency keys are purged by `retention`), each a periodic worker that stops with the
//! service (started by [`App::start_workers`], like the event and webhook workers).
//!
//! The sweeper applies each due dispute in its own transaction: a dispute that fails is
//! logged, counted and pushed back with a growing backoff (`deadline_sweep_failures`), and
//! the others go on. A run stops after [`SWEEP_BATCH`] disputes and reports that more
//! remain, so the worker runs again at once and a backlog drains within one interval.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use service_kit::worker::{RunReport, Workers};

use super::persist::reload;
use super::{App, DisputeView};
use crate::domain::deadlines as deadlines_rule;
use crate::domain::lifecycle;
use crate::domain::{DisputeError, DisputeEvent, Trigger};
use crate::store::{deadlines, events};

/// Disputes one sweeper run handles (each in its own transaction) before it reports that
/// more remain.
const SWEEP_BATCH: usize = 100;
/// A dispute whose sweep failed is tried again after 1 minute, then 2, 4, … up to 1 hour.
const SWEEP_RETRY_FIRST_SECS: i64 = 60;
const SWEEP_RETRY_MAX_SECS: i64 = 3600;
/// How often, and after how long, locks of submissions that did not happen are released.
const STALE_LOCK_REPAIR_EVERY: Duration = Duration::from_secs(30);
const STALE_LOCK_AGE: Duration = Duration::from_secs(60);

/// What a sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Disputes whose deadline was applied (a transition was written).
    pub applied: u64,
    /// Disputes claimed but with nothing due after all (their mark was moved).
    pub unchanged: u64,
    /// Disputes whose sweep failed: logged, counted and pushed back.
    pub failed: u64,
    /// The run stopped at its batch limit: more disputes may be due.
    pub more: bool,
}

/// What one round of `dispute.due_soon` announcements did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DueSoonReport {
    /// `dispute.due_soon` events recorded.
    pub announced: u64,
    /// Disputes whose announcement failed (logged; tried again next run).
    pub failed: u64,
    /// The run stopped at its batch limit.
    pub more: bool,
}

/// How one claimed dispute went.
enum Swept {
    Applied,
    Unchanged,
}

impl App {
    /// Starts the sweeper (every `sweep_every`, and at once again while a backlog remains)
    /// and the repair worker that releases document locks of
    /// submissions that did not happen, among `workers`; all stop with them.
    pub fn start_workers(&self, workers: &mut Workers, sweep_every: Duration) {
        let sweeper = self.clone();
        let repairer = self.clone();
        workers.spawn_periodic("deadline sweeper", sweep_every, move || {
            let app = sweeper.clone();
            async move {
                let now = Utc::now();
                let report = app.sweep_deadline_batch(now).await?;
                let due_soon = app.announce_due_soon_batch(now).await?;
                Ok::<RunReport, DisputeError>(RunReport {
                    handled: report.applied + report.unchanged + due_soon.announced,
                    failed: report.failed + due_soon.failed,
                    more: report.more || due_soon.more,
                })
            }
        });
        workers.spawn_periodic(
            "document lock repairer",
            STALE_LOCK_REPAIR_EVERY,
            move || {
                let app = repairer.clone();
                async move {
                    let (released, failed) =
                        app.release_stale_document_locks(STALE_LOCK_AGE).await?;
                    Ok::<RunReport, DisputeError>(RunReport {
                        handled: released,
                        failed,
                        more: false,
                    })
                }
            },
        );
    }

    /// Applies every deadline passed at `now`, batch after batch until none is left (or only
    /// disputes whose sweep failed). Safe with several replicas: rows are claimed with
    /// `for update skip locked`.
    pub async fn sweep_deadlines_once(
        &self,
        now: DateTime<Utc>,
    ) -> Result<SweepReport, DisputeError> {
        let mut total = SweepReport::default();
        loop {
            let batch = self.sweep_deadline_batch(now).await?;
            total.applied += batch.applied;
            total.unchanged += batch.unchanged;
            total.failed += batch.failed;
            if !batch.more {
                return Ok(total);
            }
        }
    }

    /// One sweeper run: up to [`SWEEP_BATCH`] due disputes, each claimed and applied in its
    /// own transaction. A dispute that fails is logged with its tenant and id, counted,
    /// and tried again after a backoff; it never blocks the others. Fails only when the
    /// database cannot be reached at all.
    pub async fn sweep_deadline_batch(
        &self,
        now: DateTime<Utc>,
    ) -> Result<SweepReport, DisputeError> {
        let mut report = SweepReport::default();
        // Disputes tried in this run, in case their failure could not even be recorded.
        let mut tried: Vec<String> = Vec::new();
        let mut unrecorded = 0;
        while tried.len() < SWEEP_BATCH {
            let mut tx = service_kit::database::begin(&self.pool)
                .await
                .context("begin")?;
            let Some((tenant_id, id)) =
                deadlines::claim_next_due_dispute(&mut tx, now, &tried).await?
            else {
                return Ok(report);
            };
            tried.push(id.clone());
            let swept =
                match self
                    .sweep_claimed_dispute(&mut tx, &tenant_id, &id, now)
                    .await
                {
                    Ok(swept) => tx.commit().await.map(|()| swept).map_err(|e| {
                        DisputeError::Internal(anyhow::Error::new(e).context("commit"))
                    }),
                    Err(error) => {
                        // Give the connection back before recording the failure on another.
                        let _ = tx.rollback().await;
                        Err(error)
                    }
                };
            match swept {
                Ok(Swept::Applied) => {
                    report.applied += 1;
                    self.recorded.recorded();
                }
                Ok(Swept::Unchanged) => report.unchanged += 1,
                Err(error) => {
                    report.failed += 1;
                    if !self
                        .record_sweep_failure(&tenant_id, &id, &error, now)
                        .await
                    {
                        unrecorded += 1;
                    }
                }
            }
        }
        // A full batch means more may be due, unless nothing in it could even be recorded
        // (then running again at once would only claim the same disputes).
        report.more = unrecorded < tried.len();
        Ok(report)
    }

    /// Applies the passed deadline of one claimed dispute inside `tx`.
    async fn sweep_claimed_dispute(
        &self,
        tx: &mut sqlx::PgConnection,
        tenant_id: &str,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Swept, DisputeError> {
        let dispute = reload(tx, tenant_id, id).await?;
        let decision = lifecycle::decide(
            &dispute.lifecycle_state(),
            &Trigger::DeadlinePassed,
            &self.policy,
            now,
        )?;
        let swept = match decision.transition() {
            Some(transition) => {
                self.persist_transition(tx, &dispute, &transition, now)
                    .await?;
                Swept::Applied
            }
            None => {
                // Nothing due after all: move the sweeper's mark to the real deadline.
                let next = dispute.lifecycle_state().next_deadline();
                deadlines::set_next_deadline(tx, tenant_id, id, next).await?;
                Swept::Unchanged
            }
        };
        deadlines::clear_sweep_failure(tx, tenant_id, id).await?;
        Ok(swept)
    }

    /// Records `dispute.due_soon` for up to [`SWEEP_BATCH`] disputes whose `due_by` is
    /// within the lead time and not announced yet (for that `due_by`), each in its own
    /// transaction; safe with several replicas (`for update skip locked`). Final disputes
    /// are only marked. Nothing happens when the lead is zero.
    pub async fn announce_due_soon_batch(
        &self,
        now: DateTime<Utc>,
    ) -> Result<DueSoonReport, DisputeError> {
        let mut report = DueSoonReport::default();
        if self.due_soon_lead <= chrono::Duration::zero() {
            return Ok(report);
        }
        let lead_secs = self.due_soon_lead.num_seconds().max(1);
        let mut tried: Vec<String> = Vec::new();
        while tried.len() < SWEEP_BATCH {
            let mut tx = service_kit::database::begin(&self.pool)
                .await
                .context("begin")?;
            let Some((tenant_id, id, sent_for)) =
                deadlines::claim_next_due_soon_dispute(&mut tx, now, lead_secs, &tried).await?
            else {
                return Ok(report);
            };
            tried.push(id.clone());
            let announced = self
                .announce_due_soon(&mut tx, &tenant_id, &id, sent_for, now)
                .await;
            let committed =
                match announced {
                    Ok(announced) => tx.commit().await.map(|()| announced).map_err(|e| {
                        DisputeError::Internal(anyhow::Error::new(e).context("commit"))
                    }),
                    Err(error) => {
                        let _ = tx.rollback().await;
                        Err(error)
                    }
                };
            match committed {
                Ok(true) => {
                    report.announced += 1;
                    self.recorded.recorded();
                }
                Ok(false) => {}
                Err(error) => {
                    report.failed += 1;
                    tracing::error!(
                        tenant_id,
                        dispute_id = id,
                        error = ?error,
                        "dispute.due_soon could not be recorded; tried again at the next run"
                    );
                }
            }
        }
        report.more = true;
        Ok(report)
    }

    /// Records `dispute.due_soon` for one claimed dispute if it is owed, and marks its
    /// `due_by` as announced; returns whether an event was recorded.
    async fn announce_due_soon(
        &self,
        tx: &mut sqlx::PgConnection,
        tenant_id: &str,
        id: &str,
        sent_for: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<bool, DisputeError> {
        let dispute = reload(tx, tenant_id, id).await?;
        let open_due = dispute.due_time.filter(|_| !dispute.status.is_final());
        let due = deadlines_rule::due_soon_to_announce(open_due, sent_for, now, self.due_soon_lead);
        if due.is_some() {
            // Nothing in the history caused it: the event holds the dispute without entries.
            let mut shown = dispute.clone();
            shown.action_history.clear();
            let payload = self.snapshot(&DisputeView::at(shown, now));
            let event_type = DisputeEvent::DueSoon.as_str();
            // With one webhook delivery per endpoint that takes it, in one statement.
            events::insert_event(tx, tenant_id, id, event_type, &payload).await?;
        }
        deadlines::mark_due_soon_sent(tx, tenant_id, id, dispute.due_time).await?;
        Ok(due.is_some())
    }

    /// Logs a failed sweep and pushes the dispute's next try back (its transaction has
    /// rolled back). If even that fails, the dispute is retried at the next run; returns
    /// whether the failure was recorded.
    async fn record_sweep_failure(
        &self,
        tenant_id: &str,
        id: &str,
        error: &DisputeError,
        now: DateTime<Utc>,
    ) -> bool {
        let recorded = async {
            let mut conn = self.pool.acquire().await.context("acquire")?;
            deadlines::record_sweep_failure(
                &mut conn,
                tenant_id,
                id,
                &format!("{error:#}"),
                now,
                SWEEP_RETRY_FIRST_SECS,
                SWEEP_RETRY_MAX_SECS,
            )
            .await
        }
        .await;
        match recorded {
            Ok(attempts) => {
                tracing::error!(
                    tenant_id,
                    dispute_id = id,
                    attempts,
                    error = ?error,
                    "deadline sweep of a dispute failed; skipped and retried later"
                );
                true
            }
            Err(record_error) => {
                tracing::error!(
                    tenant_id,
                    dispute_id = id,
                    error = ?error,
                    record_error = ?record_error,
                    "deadline sweep of a dispute failed and the failure could not be recorded"
                );
                false
            }
        }
    }
}
