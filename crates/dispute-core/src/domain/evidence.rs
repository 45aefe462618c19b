//! Stripe-compatible evidence: 18 text fields and 9 document fields, stored as a map from
//! field name to value (absent = empty). The field names are listed once, in
//! [`with_evidence_fields`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use domain_kit::ids::DocumentId;
use domain_kit::violation::Violation;

use super::enums::{Network, Reason};

/// Whether an evidence field holds text or the id of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// Counts towards [`MAX_EVIDENCE_TEXT_CHARS`].
    Text,
    /// Holds a `doc_` id of the same tenant.
    Document,
}

/// THE list of the 27 evidence fields, in wire order, each with its kind. It expands to
/// `callback! { name: Kind, ... }`, so the wire mapping (grpc/convert.rs) builds its field
/// accessors from this same list and the names are written only here.
macro_rules! with_evidence_fields {
    ($callback:ident) => {
        $callback! {
            access_activity_log: Text,
            billing_address: Text,
            cancellation_policy: Document,
            cancellation_policy_disclosure: Text,
            cancellation_rebuttal: Text,
            customer_communication: Document,
            customer_email_address: Text,
            customer_name: Text,
            customer_purchase_ip: Text,
            customer_signature: Document,
            duplicate_charge_documentation: Document,
            duplicate_charge_explanation: Text,
            duplicate_charge_id: Text,
            product_description: Text,
            receipt: Document,
            refund_policy: Document,
            refund_policy_disclosure: Text,
            refund_refusal_explanation: Text,
            service_date: Text,
            service_documentation: Document,
            shipping_address: Text,
            shipping_carrier: Text,
            shipping_date: Text,
            shipping_documentation: Document,
            shipping_tracking_number: Text,
            uncategorized_file: Document,
            uncategorized_text: Text,
        }
    };
}
pub(crate) use with_evidence_fields;

macro_rules! field_table {
    ($($name:ident: $kind:ident),+ $(,)?) => {
        /// Every evidence field with its kind, in wire order.
        pub const FIELDS: &[(&str, FieldKind)] = &[$((stringify!($name), FieldKind::$kind)),+];
    };
}
with_evidence_fields!(field_table);

/// The fields of one kind, in wire order.
pub fn fields_of(kind: FieldKind) -> impl Iterator<Item = &'static str> {
    FIELDS
        .iter()
        .filter(move |(_, k)| *k == kind)
        .map(|(name, _)| *name)
}

pub const MAX_EVIDENCE_TEXT_CHARS: usize = 150_000;

/// Evidence values by field name; only non-empty values are kept.
pub type Evidence = BTreeMap<String, String>;

/// Characters used by the text fields.
pub fn text_chars(evidence: &Evidence) -> usize {
    fields_of(FieldKind::Text)
        .filter_map(|field| evidence.get(field))
        .map(|value| value.chars().count())
        .sum()
}

/// Whether `field` holds a document id.
pub fn is_document_field(field: &str) -> bool {
    FIELDS
        .iter()
        .any(|(name, kind)| *name == field && *kind == FieldKind::Document)
}

/// The `doc_` ids evidence refers to, in field order.
pub fn document_ids(evidence: &Evidence) -> Vec<String> {
    fields_of(FieldKind::Document)
        .filter_map(|field| evidence.get(field).cloned())
        .collect()
}

/// Applies changes (an empty value clears the field) and checks the result: document fields
/// hold document ids and the text fields stay within the budget. Every problem is reported.
pub fn apply_evidence_changes(
    current: &Evidence,
    changes: &[(&'static str, String)],
) -> Result<Evidence, Vec<Violation>> {
    let mut violations = Vec::new();
    let mut updated = current.clone();
    for (field, value) in changes {
        if value.is_empty() {
            updated.remove(*field);
            continue;
        }
        if is_document_field(field)
            && let Err(violation) = DocumentId::parse(&format!("evidence.{field}"), value)
        {
            violations.push(violation);
        }
        updated.insert((*field).to_owned(), value.clone());
    }
    let used = text_chars(&updated);
    if used > MAX_EVIDENCE_TEXT_CHARS {
        violations.push(Violation::new(
            "evidence",
            format!(
                "text fields hold {used} characters together; the limit is {MAX_EVIDENCE_TEXT_CHARS}"
            ),
        ));
    }
    if violations.is_empty() {
        Ok(updated)
    } else {
        Err(violations)
    }
}

/// What can be judged of evidence changes without the stored dispute, so one answer names
/// every bad field: control characters, document ids, and the text budget of the new values
/// alone ([`apply_evidence_changes`] checks the budget again with the stored values).
pub fn check_changes(changes: &[(&'static str, String)]) -> Vec<Violation> {
    let mut violations = Vec::new();
    for (field, value) in changes {
        if value
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
        {
            violations.push(Violation::new(
                format!("evidence.{field}"),
                "must not contain control characters",
            ));
        }
    }
    for (field, value) in changes {
        if is_document_field(field)
            && !value.is_empty()
            && let Err(violation) = DocumentId::parse(&format!("evidence.{field}"), value)
        {
            violations.push(violation);
        }
    }
    let new_text: usize = changes
        .iter()
        .filter(|(field, _)| !is_document_field(field))
        .map(|(_, value)| value.chars().count())
        .sum();
    if new_text > MAX_EVIDENCE_TEXT_CHARS {
        violations.push(Violation::new(
            "evidence",
            format!(
                "text fields hold {new_text} characters together; the limit is {MAX_EVIDENCE_TEXT_CHARS}"
            ),
        ));
    }
    violations
}

/// A file uploaded for a dispute, as document-store reports it. Evidence document fields and
/// actions name these by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputeDocument {
    pub id: String,
    pub tenant_id: String,
    /// Empty when the document was uploaded on its own.
    pub dispute_id: String,
    pub filename: String,
    pub content_type: String,
    pub size_bytes: i64,
    /// Lower-case hex SHA-256 of the bytes.
    pub sha256: String,
    pub create_time: Option<DateTime<Utc>>,
    /// Set once the document was submitted as evidence.
    pub lock_time: Option<DateTime<Utc>>,
}

/// GetEvidenceRequirements: what to collect for a dispute and how far its evidence is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceGuidance {
    pub requirements: EvidenceRequirements,
    pub missing_required: Vec<&'static str>,
    pub missing_recommended: Vec<&'static str>,
    pub text_chars_used: usize,
    pub text_chars_remaining: usize,
}

/// The guidance for a dispute of `reason` on `network` holding `evidence`.
pub fn guidance(reason: Reason, network: Network, evidence: &Evidence) -> EvidenceGuidance {
    let requirements = evidence_requirements(reason, network);
    let (missing_required, missing_recommended) = requirements.missing(evidence);
    let used = text_chars(evidence);
    EvidenceGuidance {
        requirements,
        missing_required,
        missing_recommended,
        text_chars_used: used,
        text_chars_remaining: MAX_EVIDENCE_TEXT_CHARS.saturating_sub(used),
    }
}

/// Evidence guidance for a reason and network: what the network needs and what helps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceRequirements {
    pub required: Vec<&'static str>,
    pub recommended: Vec<&'static str>,
}

impl EvidenceRequirements {
    /// Required and recommended fields still empty in `evidence`.
    pub fn missing(&self, evidence: &Evidence) -> (Vec<&'static str>, Vec<&'static str>) {
        let empty = |field: &&'static str| evidence.get(*field).is_none_or(|v| v.is_empty());
        (
            self.required.iter().copied().filter(empty).collect(),
            self.recommended.iter().copied().filter(empty).collect(),
        )
    }
}

/// What to collect for a dispute, following the networks' and Stripe's published guidance per
/// reason. Visa fraud (Compelling Evidence 3.0) leans on purchase IP and activity logs; Amex
/// expects a receipt for every reason.
pub fn evidence_requirements(reason: Reason, network: Network) -> EvidenceRequirements {
    let (required, recommended): (&[&str], &[&str]) = match reason {
        Reason::Fraudulent => (
            &["customer_name", "customer_email_address", "receipt"],
            &[
                "billing_address",
                "customer_purchase_ip",
                "access_activity_log",
                "customer_signature",
                "shipping_documentation",
                "shipping_tracking_number",
                "uncategorized_text",
            ],
        ),
        Reason::Unrecognized => (
            &["customer_name", "receipt"],
            &[
                "customer_email_address",
                "billing_address",
                "product_description",
                "customer_communication",
                "uncategorized_text",
            ],
        ),
        Reason::ProductNotReceived => (
            &["shipping_tracking_number", "shipping_documentation"],
            &[
                "shipping_address",
                "shipping_carrier",
                "shipping_date",
                "customer_communication",
                "product_description",
                "receipt",
            ],
        ),
        Reason::ProductUnacceptable => (
            &["product_description", "refund_policy"],
            &[
                "refund_policy_disclosure",
                "refund_refusal_explanation",
                "customer_communication",
                "receipt",
                "uncategorized_text",
            ],
        ),
        Reason::Duplicate => (
            &["duplicate_charge_explanation", "duplicate_charge_id"],
            &[
                "duplicate_charge_documentation",
                "receipt",
                "customer_communication",
            ],
        ),
        Reason::SubscriptionCanceled => (
            &["cancellation_policy", "cancellation_rebuttal"],
            &[
                "cancellation_policy_disclosure",
                "customer_communication",
                "receipt",
                "access_activity_log",
            ],
        ),
        Reason::CreditNotProcessed => (
            &["refund_refusal_explanation", "refund_policy"],
            &[
                "refund_policy_disclosure",
                "customer_communication",
                "receipt",
            ],
        ),
        Reason::BankCannotProcess
        | Reason::CheckReturned
        | Reason::CustomerInitiated
        | Reason::DebitNotAuthorized
        | Reason::General
        | Reason::IncorrectAccountDetails
        | Reason::InsufficientFunds => (
            &["uncategorized_text"],
            &[
                "receipt",
                "customer_communication",
                "product_description",
                "customer_name",
                "customer_email_address",
            ],
        ),
    };
    let mut required: Vec<&'static str> = required.to_vec();
    let mut recommended: Vec<&'static str> = recommended.to_vec();
    let mut promote = |field: &'static str| {
        recommended.retain(|f| *f != field);
        if !required.contains(&field) {
            required.push(field);
        }
    };
    if network == Network::Visa && reason == Reason::Fraudulent {
        promote("customer_purchase_ip");
        promote("access_activity_log");
    }
    if network == Network::Amex {
        promote("receipt");
    }
    EvidenceRequirements {
        required,
        recommended,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_are_27_distinct_fields() {
        let mut all: Vec<&str> = FIELDS.iter().map(|(name, _)| *name).collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 27);
        assert_eq!(fields_of(FieldKind::Text).count(), 18);
        assert_eq!(fields_of(FieldKind::Document).count(), 9);
    }

    #[test]
    fn only_text_fields_count_towards_the_budget() {
        let mut evidence = Evidence::new();
        evidence.insert("customer_name".into(), "Jane Doe".into());
        evidence.insert("receipt".into(), "doc_01jd3s9v8m6q0n2c5x7r4t1k9e".into());
        evidence.insert("uncategorized_text".into(), "é".repeat(10));
        assert_eq!(text_chars(&evidence), 18);
    }
}

#[cfg(test)]
mod change_tests {
    use super::*;

    const DOC: &str = "doc_01jd3s9v8m6q0n2c5x7r4t1k9e";

    #[test]
    fn changes_set_and_clear_fields() {
        let mut current = Evidence::new();
        current.insert("customer_name".into(), "Jane".into());
        current.insert("billing_address".into(), "1 Main St".into());
        let updated = apply_evidence_changes(
            &current,
            &[
                ("customer_name", String::new()),
                ("receipt", DOC.to_owned()),
                ("uncategorized_text", "see receipt".to_owned()),
            ],
        )
        .unwrap();
        assert_eq!(updated.get("customer_name"), None);
        assert_eq!(
            updated.get("billing_address").map(String::as_str),
            Some("1 Main St")
        );
        assert_eq!(document_ids(&updated), vec![DOC.to_owned()]);
    }

    #[test]
    fn document_fields_need_document_ids_and_text_has_a_budget() {
        let violations = apply_evidence_changes(
            &Evidence::new(),
            &[
                ("receipt", "https://example.com/r.pdf".to_owned()),
                (
                    "uncategorized_text",
                    "x".repeat(MAX_EVIDENCE_TEXT_CHARS + 1),
                ),
            ],
        )
        .unwrap_err();
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, vec!["evidence.receipt", "evidence"]);
        assert!(violations[1].description.contains("150000"));
        // Exactly at the limit is fine, spread over fields.
        let at_limit = apply_evidence_changes(
            &Evidence::new(),
            &[
                (
                    "uncategorized_text",
                    "x".repeat(MAX_EVIDENCE_TEXT_CHARS - 10),
                ),
                ("customer_name", "y".repeat(10)),
            ],
        );
        assert!(at_limit.is_ok());
    }

    #[test]
    fn requirements_depend_on_reason_and_network() {
        let visa_fraud = evidence_requirements(Reason::Fraudulent, Network::Visa);
        assert!(visa_fraud.required.contains(&"customer_purchase_ip"));
        assert!(!visa_fraud.recommended.contains(&"customer_purchase_ip"));
        let mc_fraud = evidence_requirements(Reason::Fraudulent, Network::Mastercard);
        assert!(!mc_fraud.required.contains(&"customer_purchase_ip"));
        let amex = evidence_requirements(Reason::Duplicate, Network::Amex);
        assert!(amex.required.contains(&"receipt"));
        for reason in Reason::ALL {
            let r = evidence_requirements(*reason, Network::Visa);
            assert!(!r.required.is_empty());
            for field in r.required.iter().chain(r.recommended.iter()) {
                assert!(FIELDS.iter().any(|(name, _)| name == field), "{field}");
            }
        }
    }

    #[test]
    fn missing_fields_are_the_empty_ones() {
        let reqs = evidence_requirements(Reason::Duplicate, Network::Visa);
        let mut evidence = Evidence::new();
        evidence.insert("duplicate_charge_id".into(), "ch_1".into());
        let (required, _) = reqs.missing(&evidence);
        assert_eq!(required, vec!["duplicate_charge_explanation"]);
    }
}
