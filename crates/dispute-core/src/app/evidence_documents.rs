//! The documents a request names, checked and locked in document-store on the caller's
//! behalf (document-store scopes them to the caller's tenant).

use service_kit::auth::Caller;
use service_kit::ids::DocumentId;
use service_kit::violation::Violation;

use super::App;
use crate::domain::evidence;
use crate::domain::lifecycle::Transition;
use crate::domain::{Dispute, DisputeError};

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

    /// Submitting evidence makes its documents, and any the action names, immutable: locks
    /// them in document-store and records their SHA-256 digests in the history entry.
    pub(super) async fn lock_submitted_documents(
        &self,
        caller: &Caller,
        dispute: &Dispute,
        transition: &mut Transition,
    ) -> Result<(), DisputeError> {
        let mut document_ids = evidence::document_ids(&dispute.evidence);
        for id in &transition.history.document_ids {
            if !document_ids.contains(id) {
                document_ids.push(id.clone());
            }
        }
        if document_ids.is_empty() {
            return Ok(());
        }
        let locked = self.documents.lock_documents(caller, &document_ids).await?;
        let digests: Vec<String> = locked
            .iter()
            .map(|d| format!("{} sha256={}", d.id, d.sha256))
            .collect();
        transition.history.message = join_message(
            &transition.history.message,
            &format!("submitted documents: {}", digests.join(", ")),
        );
        transition.history.document_ids = document_ids;
        Ok(())
    }
}

fn join_message(first: &str, second: &str) -> String {
    match (first.is_empty(), second.is_empty()) {
        (true, _) => second.to_owned(),
        (_, true) => first.to_owned(),
        _ => format!("{first}; {second}"),
    }
}
