//! THE helper for idempotent, versioned mutations. Every mutation runs the same sequence in
//! one transaction: begin, claim the request id (a retry gets the first answer back), lock
//! the dispute, check the version the caller saw, run the change, remember the answer,
//! commit (docs/api.md, "Idempotency"). The use cases write only the change. A change
//! refused by a business rule (NOT_FOUND, FAILED_PRECONDITION) is undone to the savepoint
//! taken after the claim, and the refusal is remembered under the request id and committed,
//! so a retry gets the same refusal even if the dispute changed since.

use anyhow::Context;
use chrono::{DateTime, Utc};
use domain_kit::ids::DisputeId;
use sqlx::{PgConnection, Postgres, Transaction};

use super::events::EventWake;
use super::persist::load_for_update;
use super::{
    App, DisputeView, IdempotencyKey, MutationGuards, Outcome, RefusalEncoder, SnapshotEncoder,
    stored_snapshot,
};
use crate::domain::{Dispute, DisputeError};
use crate::store::idempotency::{self, IdempotencyClaim, RememberedAnswer};

/// Taken right after the key claim: a refused change rolls back to here.
const CHANGE_SAVEPOINT: &str = "savepoint idempotent_change";
const UNDO_CHANGE: &str = "rollback to savepoint idempotent_change";

/// How a mutation starts.
pub(super) enum Start<T> {
    /// The request id is ours (or there is none): make the change.
    Fresh(T),
    /// The request id was used before for the same request: answer with the first response.
    Replay(Vec<u8>),
}

/// A mutation in progress: its transaction, with the request id claimed.
pub(super) struct Mutation {
    tx: Transaction<'static, Postgres>,
    tenant_id: String,
    operation: &'static str,
    key: Option<IdempotencyKey>,
    snapshots: SnapshotEncoder,
    refusals: RefusalEncoder,
    recorded: EventWake,
}

impl App {
    /// Opens the transaction of `operation` and claims its request id. A concurrent request
    /// with the same id waits here until the first one commits (then it is replayed) or
    /// rolls back (then it goes ahead).
    pub(super) async fn begin_mutation(
        &self,
        tenant_id: &str,
        operation: &'static str,
        key: Option<IdempotencyKey>,
    ) -> Result<Start<Mutation>, DisputeError> {
        let mut tx = service_kit::database::begin(&self.pool)
            .await
            .context("begin")?;
        if let Some(key) = &key {
            let claim = idempotency::claim_idempotency_key(
                &mut tx,
                tenant_id,
                operation,
                &key.request_id,
                &key.request_fingerprint,
            )
            .await?;
            match claim {
                IdempotencyClaim::New => {
                    sqlx::query(CHANGE_SAVEPOINT)
                        .execute(&mut *tx)
                        .await
                        .context("savepoint")?;
                }
                IdempotencyClaim::Used {
                    request_fingerprint,
                    answer,
                } if request_fingerprint == key.request_fingerprint => {
                    return match answer {
                        RememberedAnswer::Response(response) => Ok(Start::Replay(response)),
                        RememberedAnswer::Refusal(refusal) => {
                            Err(DisputeError::Remembered(refusal))
                        }
                    };
                }
                IdempotencyClaim::Used { .. } => return Err(DisputeError::IdempotencyKeyReused),
            }
        }
        Ok(Start::Fresh(Mutation {
            tx,
            tenant_id: tenant_id.to_owned(),
            operation,
            key,
            snapshots: self.snapshots,
            refusals: self.refusals,
            recorded: self.recorded.clone(),
        }))
    }

    /// [`App::begin_mutation`] for an existing dispute: also locks it until the transaction
    /// ends, and answers ABORTED unless it still has the version the caller saw.
    pub(super) async fn begin_dispute_mutation(
        &self,
        tenant_id: &str,
        operation: &'static str,
        id: &DisputeId,
        guards: MutationGuards,
    ) -> Result<Start<(Mutation, Dispute)>, DisputeError> {
        let mut mutation = match self
            .begin_mutation(tenant_id, operation, guards.idempotency)
            .await?
        {
            Start::Fresh(mutation) => mutation,
            Start::Replay(response) => return Ok(Start::Replay(response)),
        };
        let dispute = match load_for_update(mutation.conn(), tenant_id, id.as_str()).await {
            Ok(dispute) => dispute,
            Err(error) => return Err(mutation.refuse(error).await),
        };
        match guards.expected_version {
            Some(expected) if expected != dispute.version => Err(DisputeError::VersionConflict {
                expected,
                current: dispute.version,
            }),
            _ => Ok(Start::Fresh((mutation, dispute))),
        }
    }
}

impl Mutation {
    /// The transaction, for the change.
    pub(super) fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// Ends the mutation with the change's result: [`Mutation::finish`] on success,
    /// [`Mutation::refuse`] on error.
    pub(super) async fn settle(
        self,
        result: Result<Dispute, DisputeError>,
        now: DateTime<Utc>,
    ) -> Result<Outcome<DisputeView>, DisputeError> {
        match result {
            Ok(dispute) => self.finish(dispute, now).await,
            Err(error) => Err(self.refuse(error).await),
        }
    }

    /// Ends a mutation that failed with `error`. A business refusal under a request id is
    /// remembered: the change is undone to the savepoint, the refusal stored and committed.
    /// Anything else rolls the whole transaction back (the key is released). Returns the
    /// error to answer.
    pub(super) async fn refuse(mut self, error: DisputeError) -> DisputeError {
        let Some(key) = self.key.take() else {
            return error;
        };
        if !error.is_remembered_refusal() {
            return error;
        }
        let refusal = (self.refusals)(&error);
        let remembered = async {
            sqlx::query(UNDO_CHANGE)
                .execute(&mut *self.tx)
                .await
                .context("rollback to savepoint")?;
            idempotency::save_idempotent_refusal(
                &mut self.tx,
                &self.tenant_id,
                self.operation,
                &key.request_id,
                &refusal,
            )
            .await?;
            self.tx.commit().await.context("commit")
        }
        .await;
        if let Err(cause) = remembered {
            // The refusal stands; a retry is decided afresh.
            tracing::warn!(error = ?cause, "could not remember a refusal");
        }
        error
    }

    /// Remembers the answer (the dispute as it is now, with its newest history entries as
    /// GetDispute shows them, never the whole history) for the request id, and commits.
    pub(super) async fn finish(
        mut self,
        dispute: Dispute,
        now: DateTime<Utc>,
    ) -> Result<Outcome<DisputeView>, DisputeError> {
        let view = DisputeView::at(dispute, now);
        if let Some(key) = &self.key {
            let response = stored_snapshot(self.snapshots, &view);
            idempotency::save_idempotent_response(
                &mut self.tx,
                &self.tenant_id,
                self.operation,
                &key.request_id,
                &view.dispute.id,
                &response,
            )
            .await?;
        }
        self.tx.commit().await.context("commit")?;
        // Its events are committed: have them numbered (and streamed) now.
        self.recorded.recorded();
        Ok(Outcome::Done(view))
    }
}
