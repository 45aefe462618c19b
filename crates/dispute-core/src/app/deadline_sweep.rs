//! The background jobs: the deadline sweeper (M14, I14, H1) and the purge of old
//! idempotency keys, each a periodic worker that stops with the service.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use service_kit::worker::spawn_periodic;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::App;
use super::persist::reload;
use crate::domain::lifecycle;
use crate::domain::{DisputeError, Trigger};
use crate::store::{deadlines, idempotency};

/// Disputes the sweeper handles per transaction.
const SWEEP_BATCH: i64 = 100;
/// How often old idempotency keys are purged.
const IDEMPOTENCY_PURGE_EVERY: Duration = Duration::from_secs(3600);
/// Keys are kept two days (docs/api.md, "Idempotency": at least 24 hours).
const IDEMPOTENCY_KEEP_HOURS: i64 = 48;

impl App {
    /// Starts the sweeper (every `sweep_every`) and the idempotency-key purger; both stop
    /// when `shutdown` is cancelled.
    pub fn spawn_workers(
        &self,
        sweep_every: Duration,
        shutdown: &CancellationToken,
    ) -> Vec<JoinHandle<()>> {
        let sweeper = self.clone();
        let purger = self.clone();
        vec![
            spawn_periodic(
                "deadline sweeper",
                sweep_every,
                shutdown.clone(),
                move || {
                    let app = sweeper.clone();
                    async move {
                        let applied = app.sweep_deadlines_once(Utc::now()).await?;
                        Ok::<u64, DisputeError>(applied as u64)
                    }
                },
            ),
            spawn_periodic(
                "idempotency key purger",
                IDEMPOTENCY_PURGE_EVERY,
                shutdown.clone(),
                move || {
                    let app = purger.clone();
                    async move { app.purge_old_idempotency_keys().await }
                },
            ),
        ]
    }

    /// One pass of the deadline sweeper: applies every passed deadline once. Safe with
    /// several replicas: rows are claimed with `for update skip locked`.
    pub async fn sweep_deadlines_once(&self, now: DateTime<Utc>) -> Result<usize, DisputeError> {
        let mut tx = self.pool.begin().await.context("begin")?;
        let due = deadlines::claim_due_disputes(&mut tx, now, SWEEP_BATCH).await?;
        let mut applied = 0;
        for (tenant_id, id) in &due {
            let dispute = reload(&mut tx, tenant_id, id).await?;
            let decision = lifecycle::decide(
                &dispute.lifecycle_state(),
                &Trigger::DeadlinePassed,
                &self.policy,
                now,
            )?;
            match decision.transition() {
                Some(transition) => {
                    self.persist_transition(&mut tx, &dispute, &transition, now)
                        .await?;
                    applied += 1;
                }
                None => {
                    // Nothing due after all: move the sweeper's mark to the real deadline.
                    let next = dispute.lifecycle_state().next_deadline();
                    deadlines::set_next_deadline(&mut tx, tenant_id, id, next).await?;
                }
            }
        }
        tx.commit().await.context("commit")?;
        Ok(applied)
    }

    /// Forgets idempotency keys older than two days.
    pub async fn purge_old_idempotency_keys(&self) -> Result<u64, DisputeError> {
        let mut conn = self.pool.acquire().await.context("acquire")?;
        Ok(idempotency::purge_idempotency_keys(&mut conn, IDEMPOTENCY_KEEP_HOURS).await?)
    }
}
