//! Staged evidence holds: a document named by a staged evidence field cannot be deleted in
//! document-store (DOCUMENT_IN_USE naming the dispute and field) until the field is cleared
//! or replaced. The holds use the lock protocol (docs/decisions.md, "Staged evidence
//! holds"): a hold is a lock holder `staged.<dispute_id>.<field>.<nonce>` that document-store
//! treats as "in use" without locking the document; it is taken under a lock intent before
//! the transaction that stages the field, consumed with it, and the replaced hold is
//! released after it (by the request, or the repair worker if that fails).

use domain_kit::ids::{ActionId, DisputeId, DocumentId};
use service_kit::auth::Caller;
use sqlx::PgConnection;

use super::App;
use super::evidence_documents::SubmissionLock;
use crate::domain::{DisputeError, evidence};
use crate::store::lock_intents;
use crate::store::staged_holds::{self, StagedHold};

/// A hold taken before the transaction on the document of one staged field.
pub(super) struct FieldHold {
    field: &'static str,
    lock: SubmissionLock,
}

impl App {
    /// Before the transaction: holds the document of every evidence field the changes set
    /// to a document. All or nothing: if one fails, those taken are released.
    pub(super) async fn hold_staged_documents(
        &self,
        caller: &Caller,
        dispute_id: &DisputeId,
        changes: &[(&'static str, String)],
    ) -> Result<Vec<FieldHold>, DisputeError> {
        let mut held = Vec::new();
        for (field, value) in changes {
            if value.is_empty()
                || !evidence::is_document_field(field)
                || DocumentId::parse(field, value).is_err()
            {
                continue;
            }
            let nonce = ActionId::generate();
            let nonce = nonce.as_str().trim_start_matches(ActionId::PREFIX);
            let holder = format!(
                "staged.{dispute_id}.{field}.{}",
                nonce.trim_start_matches('_')
            );
            match self
                .lock_documents_as(caller, dispute_id.as_str(), 0, holder, vec![value.clone()])
                .await
            {
                Ok(Some(lock)) => held.push(FieldHold { field, lock }),
                Ok(None) => {}
                Err(error) => {
                    self.release_holds(caller, held).await;
                    return Err(error);
                }
            }
        }
        Ok(held)
    }

    /// Inside the transaction that stages `changes`: records the new holds (consuming their
    /// intents) and, for every document field replaced or cleared, replaces the old hold by
    /// a lock intent to release it. Returns the holds to release after the commit.
    pub(super) async fn record_staged_holds(
        &self,
        tx: &mut PgConnection,
        tenant_id: &str,
        dispute_id: &str,
        changes: &[(&'static str, String)],
        held: &[FieldHold],
    ) -> Result<Vec<SubmissionLock>, DisputeError> {
        let mut released = Vec::new();
        for (field, value) in changes {
            if !evidence::is_document_field(field) {
                continue;
            }
            let old = staged_holds::find_staged_hold(tx, tenant_id, dispute_id, field).await?;
            match held.iter().find(|h| h.field == *field) {
                Some(hold) if !value.is_empty() => {
                    if !lock_intents::consume_lock_intent(tx, tenant_id, &hold.lock.lock_id).await?
                    {
                        // The repair worker is releasing this hold (the request took too long).
                        return Err(DisputeError::DocumentsUnavailable);
                    }
                    let hold = StagedHold {
                        field: (*field).to_owned(),
                        document_id: value.clone(),
                        holder: hold.lock.lock_id.clone(),
                    };
                    staged_holds::put_staged_hold(tx, tenant_id, dispute_id, &hold).await?;
                }
                _ => staged_holds::delete_staged_hold(tx, tenant_id, dispute_id, field).await?,
            }
            if let Some(old) = old {
                let document_ids = vec![old.document_id];
                lock_intents::insert_lock_intent(
                    tx,
                    tenant_id,
                    &old.holder,
                    dispute_id,
                    &document_ids,
                )
                .await?;
                released.push(SubmissionLock {
                    lock_id: old.holder,
                    version: 0,
                    document_ids,
                    documents: Vec::new(),
                });
            }
        }
        Ok(released)
    }

    /// After the transaction: releases the holds it did not record and those it replaced.
    pub(super) async fn release_holds(&self, caller: &Caller, held: Vec<FieldHold>) {
        for hold in held {
            self.release_unused_lock(caller, Some(hold.lock)).await;
        }
    }
}
