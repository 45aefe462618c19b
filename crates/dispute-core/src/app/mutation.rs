//! THE helper for idempotent, versioned mutations. Every mutation runs the same sequence in
//! one transaction: begin, claim the request id (a retry gets the first answer back), lock
//! the dispute, check the version the caller saw, run the change, remember the answer,
//! commit (docs/api.md, "Idempotency"). The use cases write only the change.

use anyhow::Context;
use chrono::{DateTime, Utc};
use service_kit::ids::DisputeId;
use sqlx::{PgConnection, Postgres, Transaction};

use super::persist::load_for_update;
use super::{App, DisputeView, IdempotencyKey, MutationGuards, Outcome, SnapshotEncoder};
use crate::domain::{Dispute, DisputeError};
use crate::store::idempotency::{self, IdempotencyClaim};

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
        let mut tx = self.pool.begin().await.context("begin")?;
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
                IdempotencyClaim::New => {}
                IdempotencyClaim::Used {
                    request_fingerprint,
                    response,
                } if request_fingerprint == key.request_fingerprint => {
                    return Ok(Start::Replay(response));
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
        let dispute = load_for_update(mutation.conn(), tenant_id, id.as_str()).await?;
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

    /// Remembers the answer (the dispute as it is now) for the request id, and commits.
    pub(super) async fn finish(
        mut self,
        dispute: Dispute,
        now: DateTime<Utc>,
    ) -> Result<Outcome<DisputeView>, DisputeError> {
        let view = DisputeView::at(dispute, now);
        if let Some(key) = &self.key {
            let response = (self.snapshots)(&view);
            idempotency::save_idempotent_response(
                &mut self.tx,
                &self.tenant_id,
                self.operation,
                &key.request_id,
                &response,
            )
            .await?;
        }
        self.tx.commit().await.context("commit")?;
        Ok(Outcome::Done(view))
    }
}
