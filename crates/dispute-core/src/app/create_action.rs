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
use crate::store::disputes;

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
        let mut action = request.action;
        if let Some(note) = request.filing.note() {
            action.message = match action.message.trim() {
                "" => note,
                message => format!("{message} [{note}]"),
            };
        }
        let now = Utc::now();
        // A refused filing (the case id held by this dispute differs) is a decision and is
        // remembered like the lifecycle's own refusals.
        let result = match &request.filing.case_id {
            Some(case_id) => record_network_case(mutation.conn(), &dispute, case_id).await,
            None => Ok(()),
        };
        let result = match result {
            Ok(()) => {
                self.apply_tenant_action(mutation.conn(), dispute, action, lock, now)
                    .await
            }
            Err(error) => Err(error),
        };
        mutation.settle(result, now).await
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

/// Stores the case id a filing got on the (locked) dispute, so that the network's later
/// events for the case reach it. A dispute keeps one case id: another one is refused.
async fn record_network_case(
    tx: &mut PgConnection,
    dispute: &Dispute,
    case_id: &str,
) -> Result<(), DisputeError> {
    match dispute.network_case_id.as_deref() {
        Some(held) if held == case_id => Ok(()),
        Some(held) => Err(DisputeError::FailedPrecondition {
            reason: "NETWORK_CASE_ID_MISMATCH",
            message: format!(
                "dispute {} is {} case {held}; it cannot take case {case_id}",
                dispute.id, dispute.network
            ),
        }),
        None => {
            disputes::set_network_case_id(
                tx,
                &dispute.tenant_id,
                &dispute.id,
                dispute.network,
                case_id,
            )
            .await
        }
    }
}
