//! Validation of the read and batch requests: which documents a call names, and which page
//! of a listing it wants.

use domain_kit::ids::{DisputeId, DocumentId, parse_optional};
use domain_kit::page_token::PageRequest;
use std::collections::HashSet;

use domain_kit::violation::{Violation, merge_nul, nul_violations, too_many};

use super::document::Document;
use super::error::DocumentError;

/// Most ids one batch call takes.
pub const MAX_BATCH_IDS: usize = 100;

/// Checks a batch of document ids: 1 to 100 well-formed ids, duplicates removed (the first
/// occurrence keeps its place). More than 100 is one violation, found before any id is
/// looked at.
pub fn batch_ids(ids: &[String]) -> Result<Vec<DocumentId>, DocumentError> {
    if ids.len() > MAX_BATCH_IDS {
        return Err(DocumentError::Validation(vec![too_many(
            "ids",
            MAX_BATCH_IDS,
            ids.len(),
        )]));
    }
    let nul = nul_violations(
        ids.iter()
            .enumerate()
            .map(|(i, id)| (format!("ids[{i}]"), id)),
    );
    let mut violations = Vec::new();
    if ids.is_empty() {
        violations.push(Violation::new(
            "ids",
            format!("must hold 1 to {MAX_BATCH_IDS} ids"),
        ));
    }
    let mut seen = HashSet::with_capacity(ids.len());
    let mut unique = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        match DocumentId::parse(&format!("ids[{i}]"), id) {
            Ok(id) if seen.insert(id.clone()) => unique.push(id),
            Ok(_) => {}
            Err(violation) => violations.push(violation),
        }
    }
    let violations = merge_nul(nul, violations);
    if violations.is_empty() {
        Ok(unique)
    } else {
        Err(DocumentError::Validation(violations))
    }
}

/// Puts documents in the order of `ids`.
pub fn in_request_order(ids: &[DocumentId], mut documents: Vec<Document>) -> Vec<Document> {
    documents.sort_by_key(|d| ids.iter().position(|id| *id == d.id));
    documents
}

/// The ids among `ids` that `found` does not hold, in request order.
pub fn missing_ids(ids: &[DocumentId], found: &[Document]) -> Vec<DocumentId> {
    ids.iter()
        .filter(|id| !found.iter().any(|d| d.id == **id))
        .cloned()
        .collect()
}

/// One page of a tenant's available documents, optionally of one dispute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub dispute_id: Option<DisputeId>,
    pub page: PageRequest,
}

impl ListQuery {
    /// Checks every field and reports all bad ones at once. A page token is valid only with
    /// the dispute filter it was issued for.
    pub fn parse(
        dispute_id: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<ListQuery, DocumentError> {
        let nul = nul_violations([("dispute_id", dispute_id), ("page_token", page_token)]);
        let mut violations = Vec::new();
        let parsed_dispute_id = parse_optional(dispute_id, |id| DisputeId::parse("dispute_id", id))
            .unwrap_or_else(|violation| {
                violations.push(violation);
                None
            });
        let page = PageRequest::parse(
            page_size,
            page_token,
            format!("dispute={dispute_id}"),
            &mut violations,
        );
        let violations = merge_nul(nul, violations);
        if violations.is_empty() {
            Ok(ListQuery {
                dispute_id: parsed_dispute_id,
                page,
            })
        } else {
            Err(DocumentError::Validation(violations))
        }
    }
}

/// A lock holder named by a request: 1 to 128 characters of `[A-Za-z0-9_.-]`, or empty when
/// `required` is false (a lock that is never released).
pub fn lock_holder(field: &str, lock_id: &str, required: bool) -> Result<String, DocumentError> {
    let nul = nul_violations([(field, lock_id)]);
    if !nul.is_empty() {
        return Err(DocumentError::Validation(nul));
    }
    let well_formed = lock_id.len() <= 128
        && lock_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if !well_formed || (required && lock_id.is_empty()) {
        return Err(DocumentError::Validation(vec![Violation::new(
            field,
            "must be 1 to 128 characters of [A-Za-z0-9_.-]",
        )]));
    }
    Ok(lock_id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_ids_are_checked_and_deduplicated() {
        let a = DocumentId::generate();
        let b = DocumentId::generate();
        let ids = vec![b.to_string(), a.to_string(), b.to_string(), a.to_string()];
        assert_eq!(batch_ids(&ids).unwrap(), vec![b, a]);
        assert_eq!(batch_ids(&[]).unwrap_err().violated_fields(), vec!["ids"]);
        let too_many = vec![DocumentId::generate().to_string(); MAX_BATCH_IDS + 1];
        assert_eq!(
            batch_ids(&too_many).unwrap_err().violated_fields(),
            vec!["ids"]
        );
        let nul = vec!["\0".to_owned(); 128_000];
        assert_eq!(batch_ids(&nul).unwrap_err().violated_fields(), vec!["ids"]);
        let bad = vec![DocumentId::generate().to_string(), "dsp_x".to_owned()];
        assert_eq!(
            batch_ids(&bad).unwrap_err().violated_fields(),
            vec!["ids[1]"]
        );
    }

    #[test]
    fn list_queries_report_every_bad_field() {
        let query = ListQuery::parse("", 0, "").unwrap();
        assert_eq!(query.dispute_id, None);
        assert_eq!(query.page.after, None);
        assert_eq!(
            ListQuery::parse("doc_1", -1, "%%%")
                .unwrap_err()
                .violated_fields(),
            vec!["dispute_id", "page_size", "page_token"]
        );
    }
}
