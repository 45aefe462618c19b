//! The documents a request names, checked and locked in document-store on the caller's
//! behalf (document-store scopes them to the caller's tenant). Submitting evidence locks
//! its documents in three steps so that no remote call happens inside a transaction and
//! the two services never disagree: lock under a recorded intent, consume the intent with
//! the submission, release the lock if the intent is still there (docs/decisions.md).

use anyhow::Context;
use chrono::Utc;
use domain_kit::ids::{ActionId, DisputeId, DocumentId};
use domain_kit::violation::Violation;
use service_kit::auth::Caller;
use sqlx::PgConnection;

use super::App;
use crate::domain::evidence::{self, DisputeDocument};
use crate::domain::lifecycle::{self, EvidenceEffect, Transition};
use crate::domain::{Dispute, DisputeError, TenantAction, Trigger};
use crate::store::{disputes, lock_intents};

impl App {
    /// Documents an action or network event names must exist in the caller's tenant.
    pub(super) async fn check_action_documents(
        &self,
        caller: &Caller,
        document_ids: &[String],
    ) -> Result<(), DisputeError> {
        let named = document_ids
            .iter()
            .enumerate()
            .map(|(i, id)| (format!("document_ids[{i}]"), id.clone()))
            .collect();
        let violations = self.missing_documents(caller, named).await?;
        if violations.is_empty() {
            Ok(())
        } else {
            Err(DisputeError::Validation(violations))
        }
    }

    /// Every document an evidence change names must exist in the caller's tenant.
    pub(super) async fn check_evidence_documents(
        &self,
        caller: &Caller,
        changes: &[(&'static str, String)],
    ) -> Result<Vec<Violation>, DisputeError> {
        let named = changes
            .iter()
            .filter(|(field, value)| {
                // Malformed ids are reported by the request checks.
                evidence::is_document_field(field) && DocumentId::parse(field, value).is_ok()
            })
            .map(|(field, id)| (format!("evidence.{field}"), id.clone()))
            .collect();
        self.missing_documents(caller, named).await
    }

    /// "document not found" for each `(field, id)` whose document the caller cannot see.
    async fn missing_documents(
        &self,
        caller: &Caller,
        named: Vec<(String, String)>,
    ) -> Result<Vec<Violation>, DisputeError> {
        if named.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = named.iter().map(|(_, id)| id.clone()).collect();
        let missing = self.documents.missing_documents(caller, &ids).await?;
        Ok(named
            .into_iter()
            .filter(|(_, id)| missing.contains(id))
            .map(|(field, _)| Violation::new(field, "document not found"))
            .collect())
    }

    /// Step 1 of a submission (docs/decisions.md, "Locking evidence documents"), before
    /// its transaction: if `action` on the dispute, with `evidence_changes` staged, would
    /// submit evidence naming documents, records a lock intent and locks them in
    /// document-store under a fresh lock id. No database connection is held during the
    /// call. `None` when nothing is to be locked (the transaction then decides as usual).
    pub(super) async fn lock_for_submission(
        &self,
        caller: &Caller,
        dispute_id: &DisputeId,
        evidence_changes: &[(&'static str, String)],
        action: &TenantAction,
    ) -> Result<Option<SubmissionLock>, DisputeError> {
        let tenant_id = caller.tenant_id.as_str();
        let dispute = {
            let mut conn = self.pool.acquire().await.context("acquire")?;
            disputes::find_dispute(&mut conn, tenant_id, dispute_id.as_str()).await?
        };
        let Some(mut dispute) = dispute else {
            return Ok(None);
        };
        if !evidence_changes.is_empty() {
            match evidence::apply_evidence_changes(&dispute.evidence, evidence_changes) {
                Ok(staged) => dispute.evidence = staged,
                Err(_) => return Ok(None),
            }
        }
        let decision = lifecycle::decide(
            &dispute.lifecycle_state(),
            &Trigger::Tenant(action.clone()),
            &self.policy,
            Utc::now(),
        );
        let Some(transition) = decision.ok().and_then(|d| d.transition()) else {
            return Ok(None);
        };
        let document_ids = filed_document_ids(&dispute.evidence, &transition);
        self.lock_filed_documents(caller, dispute_id.as_str(), dispute.version, document_ids)
            .await
    }

    /// Records a lock intent for `document_ids` and locks them in document-store under a
    /// fresh lock id (step 1 of the protocol); `None` when there is nothing to lock.
    pub(super) async fn lock_filed_documents(
        &self,
        caller: &Caller,
        dispute_id: &str,
        version: i64,
        document_ids: Vec<String>,
    ) -> Result<Option<SubmissionLock>, DisputeError> {
        if document_ids.is_empty() {
            return Ok(None);
        }
        let lock_id = format!("lck_{}", ActionId::generate().as_str());
        self.lock_documents_as(caller, dispute_id, version, lock_id, document_ids)
            .await
    }

    /// Step 1 with a given lock id (holder): records the intent, then locks.
    pub(super) async fn lock_documents_as(
        &self,
        caller: &Caller,
        dispute_id: &str,
        version: i64,
        lock_id: String,
        document_ids: Vec<String>,
    ) -> Result<Option<SubmissionLock>, DisputeError> {
        let tenant_id = caller.tenant_id.as_str();
        {
            let mut conn = self.pool.acquire().await.context("acquire")?;
            lock_intents::insert_lock_intent(
                &mut conn,
                tenant_id,
                &lock_id,
                dispute_id,
                &document_ids,
            )
            .await?;
        }
        let lock = SubmissionLock {
            lock_id,
            version,
            document_ids,
            documents: Vec::new(),
        };
        match self
            .documents
            .lock_documents(caller, &lock.document_ids, &lock.lock_id)
            .await
        {
            Ok(documents) => Ok(Some(SubmissionLock { documents, ..lock })),
            Err(DisputeError::DocumentsUnavailable) => {
                // The call may or may not have locked them, and document-store is not
                // answering: the repair worker releases the lock once it is back.
                Err(DisputeError::DocumentsUnavailable)
            }
            Err(error) => {
                // A refusal locks nothing (all or nothing): forget the intent.
                self.release_unused_lock(caller, Some(lock)).await;
                Err(error)
            }
        }
    }

    /// Step 2, inside the submission's transaction: the documents to submit (or file with
    /// the network) must be the ones locked in step 1 (else ABORTED: the dispute changed
    /// meanwhile, retry), and the intent is consumed with the submission. Records the
    /// documents' SHA-256 digests in the history entry.
    pub(super) async fn take_submission_lock(
        &self,
        tx: &mut PgConnection,
        dispute: &Dispute,
        transition: &mut Transition,
        lock: Option<&SubmissionLock>,
    ) -> Result<(), DisputeError> {
        let document_ids = filed_document_ids(&dispute.evidence, transition);
        if document_ids.is_empty() {
            return Ok(());
        }
        let same_documents = |lock: &&SubmissionLock| {
            let mut locked = lock.document_ids.clone();
            let mut wanted = document_ids.clone();
            locked.sort();
            wanted.sort();
            locked == wanted
        };
        let Some(lock) = lock.filter(same_documents) else {
            return Err(DisputeError::VersionConflict {
                expected: lock.map_or(dispute.version, |l| l.version),
                current: dispute.version,
            });
        };
        let verb = if transition.evidence == EvidenceEffect::Submitted {
            "submitted"
        } else {
            "filed"
        };
        self.consume_lock(tx, &dispute.tenant_id, lock, verb, transition)
            .await?;
        transition.history.document_ids = document_ids;
        Ok(())
    }

    /// Consumes `lock`'s intent in the transaction that records the filing, and appends
    /// the documents' SHA-256 digests to the history entry (`<verb> documents: ...`).
    pub(super) async fn consume_lock(
        &self,
        tx: &mut PgConnection,
        tenant_id: &str,
        lock: &SubmissionLock,
        verb: &str,
        transition: &mut Transition,
    ) -> Result<(), DisputeError> {
        if !lock_intents::consume_lock_intent(tx, tenant_id, &lock.lock_id).await? {
            // The repair worker is releasing this lock (the request took too long).
            return Err(DisputeError::DocumentsUnavailable);
        }
        let digests: Vec<String> = lock
            .documents
            .iter()
            .map(|d| format!("{} sha256={}", d.id, d.sha256))
            .collect();
        transition.history.message = join_message(
            &transition.history.message,
            &format!("{verb} documents: {}", digests.join(", ")),
        );
        Ok(())
    }

    /// Step 3, after the transaction whatever its outcome: a lock intent still recorded
    /// means the submission did not happen, so its lock is released, then forgotten. If
    /// that fails, the repair worker releases it later.
    pub(super) async fn release_unused_lock(&self, caller: &Caller, lock: Option<SubmissionLock>) {
        let Some(lock) = lock else { return };
        let tenant_id = caller.tenant_id.as_str();
        let released = async {
            let intent = {
                let mut conn = self.pool.acquire().await.context("acquire")?;
                lock_intents::find_lock_intent(&mut conn, tenant_id, &lock.lock_id).await?
            };
            let Some(intent) = intent else {
                return Ok(());
            };
            self.documents
                .unlock_documents(caller, &intent.document_ids, &intent.lock_id)
                .await?;
            let mut conn = self.pool.acquire().await.context("acquire")?;
            lock_intents::delete_lock_intent(&mut conn, tenant_id, &lock.lock_id).await?;
            Ok::<(), DisputeError>(())
        }
        .await;
        if let Err(error) = released {
            tracing::warn!(
                tenant_id,
                lock_id = %lock.lock_id,
                error = ?error,
                "releasing an unused document lock failed; the repair worker will release it"
            );
        }
    }

    /// The repair worker's run: releases the locks of submissions that did not happen and
    /// whose request could not release them (a crash, document-store unreachable), once
    /// older than `older_than`. Returns how many it released and how many failed.
    pub async fn release_stale_document_locks(
        &self,
        older_than: std::time::Duration,
    ) -> Result<(u64, u64), DisputeError> {
        let stale = {
            let mut conn = self.pool.acquire().await.context("acquire")?;
            lock_intents::claim_stale_lock_intents(
                &mut conn,
                older_than.as_secs() as i64,
                STALE_LOCKS_PER_RUN,
            )
            .await?
        };
        let (mut released, mut failed) = (0, 0);
        for intent in stale {
            let result = async {
                let caller = self.documents.service_caller(&intent.tenant_id).await?;
                self.documents
                    .unlock_documents(&caller, &intent.document_ids, &intent.lock_id)
                    .await?;
                let mut conn = self.pool.acquire().await.context("acquire")?;
                lock_intents::delete_lock_intent(&mut conn, &intent.tenant_id, &intent.lock_id)
                    .await?;
                Ok::<(), DisputeError>(())
            }
            .await;
            match result {
                Ok(()) => {
                    released += 1;
                    tracing::info!(tenant_id = %intent.tenant_id, dispute_id = %intent.dispute_id, lock_id = %intent.lock_id, "released the document lock of a submission that did not happen");
                }
                Err(error) => {
                    failed += 1;
                    tracing::warn!(tenant_id = %intent.tenant_id, dispute_id = %intent.dispute_id, lock_id = %intent.lock_id, error = ?error, "releasing a stale document lock failed; retried at the next run");
                }
            }
        }
        Ok((released, failed))
    }
}

/// Most stale locks one repair run releases.
const STALE_LOCKS_PER_RUN: i64 = 100;

/// Documents locked in document-store for one submission, before its transaction.
#[derive(Debug, Clone)]
pub(super) struct SubmissionLock {
    pub(super) lock_id: String,
    /// The dispute's version when the documents were chosen.
    pub(super) version: i64,
    pub(super) document_ids: Vec<String>,
    pub(super) documents: Vec<DisputeDocument>,
}

/// What a transition files and so locks: a submission, the documents of its evidence; any
/// transition, the documents it names (a chargeback's, a network event's).
pub(super) fn filed_document_ids(
    evidence: &evidence::Evidence,
    transition: &Transition,
) -> Vec<String> {
    let mut document_ids = if transition.evidence == EvidenceEffect::Submitted {
        evidence::document_ids(evidence)
    } else {
        Vec::new()
    };
    for id in &transition.history.document_ids {
        if !document_ids.contains(id) {
            document_ids.push(id.clone());
        }
    }
    document_ids
}

fn join_message(first: &str, second: &str) -> String {
    match (first.is_empty(), second.is_empty()) {
        (true, _) => second.to_owned(),
        (_, true) => first.to_owned(),
        _ => format!("{first}; {second}"),
    }
}
