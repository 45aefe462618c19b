//! CreateDispute, UpdateDispute, ListDisputes and GetDispute's id.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use domain_kit::ids::DisputeId;
use domain_kit::page_token::PageRequest;
use domain_kit::violation::{Violation, merge_nul, nul_violations};

use super::shared::*;
use crate::domain::dispute::{MAX_METADATA_KEYS, MAX_REFERENCE_CHARS, validate_metadata};
use crate::domain::{
    DisputeError, DisputeFilter, EnumInput, NewDispute, NewDisputeDraft, Side, Stage, Status,
    evidence,
};

/// A dispute id, or INVALID_ARGUMENT naming `field`.
pub fn dispute_id(field: &str, value: &str) -> Result<DisputeId, DisputeError> {
    checked_id(field, value, DisputeId::parse)
}

/// A new dispute as it arrived: the draft, and its due time, which may not have decoded.
#[derive(Debug, Clone, Default)]
pub struct DisputeDraft {
    /// Every field but the due time (left `None`; see `due_time`).
    pub fields: NewDisputeDraft,
    pub due_time: Option<Decoded<DateTime<Utc>>>,
}

/// CreateDispute as it arrived.
#[derive(Debug, Clone, Default)]
pub struct CreateDisputeDraft {
    pub dispute: DisputeDraft,
    pub request_id: String,
}

/// A valid CreateDispute.
#[derive(Debug, Clone)]
pub struct CreateDispute {
    pub dispute: NewDispute,
    pub request_id: Option<String>,
}

/// Checks a CreateDispute; `now` decides what "future" means for dates and deadlines.
pub fn create_dispute(
    draft: CreateDisputeDraft,
    now: DateTime<Utc>,
) -> Result<CreateDispute, DisputeError> {
    refuse_over_caps([(
        "metadata",
        draft.dispute.fields.metadata.len(),
        MAX_METADATA_KEYS,
    )])?;
    let mut texts = vec![("request_id".to_owned(), draft.request_id.as_str())];
    new_dispute_texts("", &draft.dispute.fields, &mut texts);
    let nul = nul_violations(texts);
    refuse_nul(nul, checked_create_dispute(draft, now))
}

fn checked_create_dispute(
    draft: CreateDisputeDraft,
    now: DateTime<Utc>,
) -> Result<CreateDispute, DisputeError> {
    let mut violations = Vec::new();
    let due_time = decoded(draft.dispute.due_time, &mut violations);
    let request_id = request_id(&draft.request_id, &mut violations);
    let dispute = new_dispute(draft.dispute.fields, due_time, now, violations)?;
    Ok(CreateDispute {
        dispute,
        request_id,
    })
}

/// `NewDispute::parse`, reporting `violations` found before together with its own.
pub(super) fn new_dispute(
    mut fields: NewDisputeDraft,
    due_time: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    mut violations: Vec<Violation>,
) -> Result<NewDispute, DisputeError> {
    fields.due_time = due_time;
    match NewDispute::parse(fields, now) {
        Ok(new) if violations.is_empty() => Ok(new),
        Ok(_) => Err(DisputeError::Validation(violations)),
        Err(DisputeError::Validation(more)) => {
            violations.extend(more);
            Err(DisputeError::Validation(violations))
        }
        Err(other) => Err(other),
    }
}

/// UpdateDispute as it arrived.
#[derive(Debug, Clone, Default)]
pub struct UpdateDisputeDraft {
    pub id: String,
    pub request_id: String,
    /// Evidence fields the request sets, by name; an empty value clears the field.
    pub evidence: Vec<(&'static str, String)>,
    pub metadata: BTreeMap<String, String>,
    pub clear_metadata: bool,
    pub submit: bool,
    pub expected_version: Option<i64>,
}

/// What UpdateDispute changes.
#[derive(Debug, Clone, Default)]
pub struct DisputeChanges {
    /// Evidence fields to set; an empty value clears the field.
    pub evidence: Vec<(&'static str, String)>,
    /// Metadata to set; an empty value unsets the key.
    pub metadata: BTreeMap<String, String>,
    /// Remove every metadata key first.
    pub clear_metadata: bool,
    /// Also submit the evidence (SUBMIT_EVIDENCE).
    pub submit: bool,
}

/// An UpdateDispute for a well-formed dispute id.
#[derive(Debug, Clone)]
pub struct UpdateDispute {
    pub id: DisputeId,
    pub request_id: Option<String>,
    pub expected_version: Option<i64>,
    pub changes: DisputeChanges,
    /// Bad fields found here. They are reported together with the checks of the documents
    /// the evidence names (which need document-store), so one answer names every bad field.
    pub violations: Vec<Violation>,
}

/// Checks an UpdateDispute as far as it can be judged without the stored dispute. A bad id
/// fails at once; other problems travel in [`UpdateDispute::violations`].
pub fn update_dispute(draft: UpdateDisputeDraft) -> Result<UpdateDispute, DisputeError> {
    refuse_over_caps([("metadata", draft.metadata.len(), MAX_METADATA_KEYS)])?;
    let mut texts = vec![
        ("id".to_owned(), draft.id.as_str()),
        ("request_id".to_owned(), draft.request_id.as_str()),
    ];
    texts.extend(
        draft
            .evidence
            .iter()
            .map(|(name, value)| (format!("evidence.{name}"), value.as_str())),
    );
    metadata_texts("", &draft.metadata, &mut texts);
    let nul = nul_violations(texts);
    match checked_update_dispute(draft) {
        Ok(update) if !nul.is_empty() => {
            Err(DisputeError::Validation(merge_nul(nul, update.violations)))
        }
        checked => refuse_nul(nul, checked),
    }
}

fn checked_update_dispute(draft: UpdateDisputeDraft) -> Result<UpdateDispute, DisputeError> {
    let mut violations = Vec::new();
    let id = DisputeId::parse("id", &draft.id).map_err(|v| violations.push(v));
    let request_id = request_id(&draft.request_id, &mut violations);
    violations.extend(evidence::check_changes(&draft.evidence));
    violations.extend(validate_metadata(&draft.metadata));
    if draft.evidence.is_empty()
        && draft.metadata.is_empty()
        && !draft.clear_metadata
        && !draft.submit
    {
        violations.push(Violation::new(
            "evidence",
            "nothing to change: set evidence, metadata, clear_metadata or submit",
        ));
    }
    let Ok(id) = id else {
        return Err(DisputeError::Validation(violations));
    };
    Ok(UpdateDispute {
        id,
        request_id,
        expected_version: draft.expected_version,
        changes: DisputeChanges {
            evidence: draft.evidence,
            metadata: draft.metadata,
            clear_metadata: draft.clear_metadata,
            submit: draft.submit,
        },
        violations,
    })
}

/// ListDisputes as it arrived.
#[derive(Debug, Clone, Default)]
pub struct ListDisputesDraft {
    pub charge: String,
    pub payment_intent: String,
    pub transaction_id: String,
    pub status: Option<EnumInput<Status>>,
    pub stage: Option<EnumInput<Stage>>,
    pub side: Option<EnumInput<Side>>,
    pub created_after: Option<Decoded<DateTime<Utc>>>,
    pub created_before: Option<Decoded<DateTime<Utc>>>,
    pub due_before: Option<Decoded<DateTime<Utc>>>,
    pub page_size: i32,
    pub page_token: String,
}

/// A valid ListDisputes: its filters and the page asked for.
#[derive(Debug, Clone)]
pub struct ListDisputes {
    pub filter: DisputeFilter,
    pub page: PageRequest,
}

/// Checks ListDisputes filters and paging.
pub fn list_disputes(draft: ListDisputesDraft) -> Result<ListDisputes, DisputeError> {
    let nul = nul_violations([
        ("charge", draft.charge.as_str()),
        ("payment_intent", draft.payment_intent.as_str()),
        ("transaction_id", draft.transaction_id.as_str()),
        ("page_token", draft.page_token.as_str()),
    ]);
    refuse_nul(nul, checked_list_disputes(draft))
}

fn checked_list_disputes(draft: ListDisputesDraft) -> Result<ListDisputes, DisputeError> {
    let mut violations = Vec::new();
    let created_after = decoded(draft.created_after, &mut violations);
    let created_before = decoded(draft.created_before, &mut violations);
    let due_before = decoded(draft.due_before, &mut violations);
    for (field, value) in [
        ("charge", &draft.charge),
        ("payment_intent", &draft.payment_intent),
        ("transaction_id", &draft.transaction_id),
    ] {
        if value.chars().count() > MAX_REFERENCE_CHARS {
            violations.push(Violation::new(
                field,
                format!("must be at most {MAX_REFERENCE_CHARS} characters"),
            ));
        }
    }
    let text = |value: String| (!value.is_empty()).then_some(value);
    let filter = DisputeFilter {
        charge: text(draft.charge),
        payment_intent: text(draft.payment_intent),
        transaction_id: text(draft.transaction_id),
        status: optional("status", draft.status, &mut violations),
        stage: optional("stage", draft.stage, &mut violations),
        side: optional("side", draft.side, &mut violations),
        created_after,
        created_before,
        due_before,
    };
    if let (Some(after), Some(before)) = (filter.created_after, filter.created_before)
        && after >= before
    {
        violations.push(Violation::new(
            "created_before",
            "must be later than created_after",
        ));
    }
    let page = PageRequest::parse(
        draft.page_size,
        &draft.page_token,
        fingerprint(filter.canonical().as_bytes()),
        &mut violations,
    );
    if violations.is_empty() {
        Ok(ListDisputes { filter, page })
    } else {
        Err(DisputeError::Validation(violations))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::requests::shared::test_support::*;

    #[test]
    fn list_filters_report_bad_fields() {
        let draft = ListDisputesDraft {
            status: Some(EnumInput::Unknown(99)),
            created_after: at(10),
            created_before: at(5),
            due_before: bad_time("due_before"),
            page_size: -1,
            ..Default::default()
        };
        let mut fields = fields(list_disputes(draft));
        fields.sort();
        assert_eq!(
            fields,
            vec!["created_before", "due_before", "page_size", "status"]
        );
    }

    #[test]
    fn an_update_with_a_bad_id_fails_at_once() {
        let draft = UpdateDisputeDraft {
            id: "dispute-1".into(),
            request_id: "has spaces".into(),
            evidence: vec![("customer_name", "bell\u{7}".into())],
            ..Default::default()
        };
        assert_eq!(
            fields(update_dispute(draft)),
            vec!["id", "request_id", "evidence.customer_name"]
        );
    }

    #[test]
    fn an_update_keeps_its_violations_for_the_document_checks() {
        let draft = UpdateDisputeDraft {
            id: DisputeId::generate().into_string(),
            evidence: vec![("receipt", "policy.pdf".into())],
            ..Default::default()
        };
        let update = update_dispute(draft).unwrap();
        let found: Vec<&str> = update.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(found, vec!["evidence.receipt"]);
        assert_eq!(
            update.violations[0].description,
            "must be a document id (doc_...)"
        );
    }
}
