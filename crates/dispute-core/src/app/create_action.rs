//! CreateAction: the tenant takes one of the dispute's available actions.

use chrono::{DateTime, Utc};
use service_kit::auth::Caller;
use sqlx::PgConnection;

use super::mutation::Start;
use super::{App, DisputeView, IdempotencyKey, MutationGuards, Outcome};
use crate::domain::lifecycle::{self, EvidenceEffect};
use crate::domain::requests::CreateAction;
use crate::domain::{Dispute, DisputeError, TenantAction, Trigger};

const CREATE_ACTION: &str = "CreateAction";

impl App {
    /// Takes one of the dispute's available actions.
    pub async fn create_action(
        &self,
        caller: &Caller,
        request: CreateAction,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<Outcome<DisputeView>, DisputeError> {
        self.check_action_documents(caller, &request.action.document_ids)
            .await?;
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
            .apply_tenant_action(mutation.conn(), caller, dispute, request.action, now)
            .await?;
        mutation.finish(updated, now).await
    }

    /// Decides and persists a tenant action on a locked dispute. Submitting evidence locks
    /// its documents in document-store and records their SHA-256 digests in the history.
    pub(super) async fn apply_tenant_action(
        &self,
        tx: &mut PgConnection,
        caller: &Caller,
        dispute: Dispute,
        action: TenantAction,
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
        if transition.evidence == EvidenceEffect::Submitted {
            self.lock_submitted_documents(caller, &dispute, &mut transition)
                .await?;
        }
        self.persist_transition(tx, &dispute, &transition, now)
            .await
    }
}
