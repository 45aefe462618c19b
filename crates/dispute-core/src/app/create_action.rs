//! CreateAction: the tenant takes one of the dispute's available actions.

use chrono::{DateTime, Utc};
use service_kit::auth::Caller;
use sqlx::PgConnection;

use super::evidence_documents::SubmissionLock;
use super::mutation::Start;
use super::{App, DisputeView, IdempotencyKey, MutationGuards, Outcome};
use crate::domain::lifecycle::{self, EvidenceEffect};
use crate::domain::requests::CreateAction;
use crate::domain::{Dispute, DisputeError, TenantAction, Trigger};

const CREATE_ACTION: &str = "CreateAction";

impl App {
    /// Takes one of the dispute's available actions. Submitting evidence locks its
    /// documents in document-store first, outside the transaction, and releases them if
    /// the submission does not happen.
    pub async fn create_action(
        &self,
        caller: &Caller,
        request: CreateAction,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<Outcome<DisputeView>, DisputeError> {
        self.check_action_documents(caller, &request.action.document_ids)
            .await?;
        let lock = self
            .lock_for_submission(caller, &request.dispute_id, &[], &request.action)
            .await?;
        let outcome = self
            .create_action_locked(caller, request, idempotency, lock.as_ref())
            .await;
        self.release_unused_lock(caller, lock).await;
        outcome
    }

    async fn create_action_locked(
        &self,
        caller: &Caller,
        request: CreateAction,
        idempotency: Option<IdempotencyKey>,
        lock: Option<&SubmissionLock>,
    ) -> Result<Outcome<DisputeView>, DisputeError> {
        let guards = MutationGuards {
            expected_version: request.expected_version,
            idempotency,
        };
        let (mut mutation, dispute) = match self
            .begin_dispute_mutation(
                &caller.tenant_id,
                CREATE_ACTION,
                &request.dispute_id,
                guards,
            )
            .await?
        {
            Start::Fresh(started) => started,
            Start::Replay(response) => return Ok(Outcome::Replayed(response)),
        };
        let now = Utc::now();
        let updated = self
            .apply_tenant_action(mutation.conn(), dispute, request.action, lock, now)
            .await?;
        mutation.finish(updated, now).await
    }

    /// Decides and persists a tenant action on a locked dispute. Submitting evidence takes
    /// the documents `lock` locked beforehand and records their SHA-256 digests in the
    /// history.
    pub(super) async fn apply_tenant_action(
        &self,
        tx: &mut PgConnection,
        dispute: Dispute,
        action: TenantAction,
        lock: Option<&SubmissionLock>,
        now: DateTime<Utc>,
    ) -> Result<Dispute, DisputeError> {
        let decision = lifecycle::decide(
            &dispute.lifecycle_state(),
            &Trigger::Tenant(action),
            &self.policy,
            now,
        )?;
        let Some(mut transition) = decision.transition() else {
            return Ok(dispute);
        };
        if transition.evidence == EvidenceEffect::Submitted
            || !transition.history.document_ids.is_empty()
        {
            self.take_submission_lock(tx, &dispute, &mut transition, lock)
                .await?;
        }
        self.persist_transition(tx, &dispute, &transition, now)
            .await
    }
}
