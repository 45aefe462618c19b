//! UpdateDispute: stages evidence, changes metadata, and submits the evidence when asked
//! (docs/api.md, "DisputeService").

use std::collections::BTreeMap;

use chrono::Utc;
use domain_kit::ids::ActionId;
use service_kit::auth::Caller;

use super::evidence_documents::SubmissionLock;
use super::mutation::Start;
use super::persist::with_children_of;
use super::staged_holds::FieldHold;
use super::{App, DisputeView, IdempotencyKey, MutationGuards, Outcome};
use crate::domain::dispute::validate_metadata;
use crate::domain::lifecycle;
use crate::domain::requests::UpdateDispute;
use crate::domain::{
    ActionType, Actor, Dispute, DisputeError, DisputeEvent, TenantAction, evidence,
};
use crate::store::disputes;
use crate::store::history::NewActionRecord;

const UPDATE_DISPUTE: &str = "UpdateDispute";

impl App {
    /// Stages evidence and changes metadata, and submits the evidence when asked (the same
    /// as SUBMIT_EVIDENCE, documents locked the same way). Document fields must name
    /// documents of the caller's tenant.
    pub async fn update_dispute(
        &self,
        caller: &Caller,
        request: UpdateDispute,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<Outcome<DisputeView>, DisputeError> {
        // Documents are held or locked only for a request that names existing ones;
        // otherwise the checks below answer it.
        let valid = request.violations.is_empty()
            && self
                .check_evidence_documents(caller, &request.changes.evidence)
                .await?
                .is_empty();
        // Documents staged as evidence are held (not deletable) while their field names them.
        let held = if valid {
            self.hold_staged_documents(caller, &request.id, &request.changes.evidence)
                .await?
        } else {
            Vec::new()
        };
        let lock = if valid && request.changes.submit {
            let submit = TenantAction::new(ActionType::SubmitEvidence);
            self.lock_for_submission(caller, &request.id, &request.changes.evidence, &submit)
                .await?
        } else {
            None
        };
        let mut replaced = Vec::new();
        let outcome = self
            .update_dispute_locked(
                caller,
                request,
                idempotency,
                lock.as_ref(),
                &held,
                &mut replaced,
            )
            .await;
        self.release_unused_lock(caller, lock).await;
        self.release_holds(caller, held).await;
        for old in replaced {
            self.release_unused_lock(caller, Some(old)).await;
        }
        outcome
    }

    async fn update_dispute_locked(
        &self,
        caller: &Caller,
        request: UpdateDispute,
        idempotency: Option<IdempotencyKey>,
        lock: Option<&SubmissionLock>,
        held: &[FieldHold],
        replaced: &mut Vec<SubmissionLock>,
    ) -> Result<Outcome<DisputeView>, DisputeError> {
        let UpdateDispute {
            id,
            changes,
            mut violations,
            expected_version,
            request_id: _,
        } = request;
        // Every problem of the request is reported at once, before the state checks.
        violations.extend(
            self.check_evidence_documents(caller, &changes.evidence)
                .await?,
        );
        if !violations.is_empty() {
            return Err(DisputeError::Validation(violations));
        }
        let tenant_id = caller.tenant_id.as_str();
        let guards = MutationGuards {
            expected_version,
            idempotency,
        };
        let (mut mutation, dispute) = match self
            .begin_dispute_mutation(tenant_id, UPDATE_DISPUTE, &id, guards)
            .await?
        {
            Start::Fresh(started) => started,
            Start::Replay(response) => return Ok(Outcome::Replayed(response)),
        };
        let now = Utc::now();
        let result = async {
            let evidence = if changes.evidence.is_empty() {
                dispute.evidence.clone()
            } else {
                lifecycle::evidence_editable(&dispute.lifecycle_state(), now)?;
                evidence::apply_evidence_changes(&dispute.evidence, &changes.evidence)
                    .unwrap_or_else(|mut found| {
                        violations.append(&mut found);
                        dispute.evidence.clone()
                    })
            };
            let mut metadata = if changes.clear_metadata {
                BTreeMap::new()
            } else {
                dispute.metadata.clone()
            };
            for (key, value) in changes.metadata {
                if value.is_empty() {
                    metadata.remove(&key);
                } else {
                    metadata.insert(key, value);
                }
            }
            violations.extend(validate_metadata(&metadata));
            if !violations.is_empty() {
                return Err(DisputeError::Validation(violations));
            }
            if !changes.evidence.is_empty() {
                // Released after the commit; if the transaction rolls back, the intents go
                // with it and the old holds stay.
                *replaced = self
                    .record_staged_holds(
                        mutation.conn(),
                        tenant_id,
                        id.as_str(),
                        &changes.evidence,
                        held,
                    )
                    .await?;
            }

            let updated = if changes.submit {
                let staged = Dispute {
                    evidence,
                    metadata,
                    ..dispute
                };
                let action = TenantAction::new(ActionType::SubmitEvidence);
                self.apply_tenant_action(mutation.conn(), staged, action, lock, now)
                    .await?
            } else {
                let tx = mutation.conn();
                let written = disputes::update_evidence_and_metadata(
                    tx,
                    tenant_id,
                    id.as_str(),
                    &evidence,
                    &metadata,
                )
                .await?;
                let what = if changes.evidence.is_empty() {
                    "metadata_updated"
                } else {
                    "evidence_staged"
                };
                let action_id = ActionId::generate();
                let record = NewActionRecord {
                    id: action_id.as_str(),
                    dispute_id: id.as_str(),
                    actor: Actor::Tenant,
                    what,
                    message: "",
                    document_ids: &evidence::document_ids(&evidence),
                    stage: dispute.stage,
                    status: dispute.status,
                    amount: 0,
                };
                self.append_history_and_events(
                    tx,
                    with_children_of(written, &dispute),
                    &record,
                    &[DisputeEvent::Updated.as_str()],
                    now,
                )
                .await?
            };
            Ok(updated)
        }
        .await;
        mutation.settle(result, now).await
    }
}
