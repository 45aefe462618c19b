//! Stripe-compatible evidence: 18 text fields and 9 document fields, stored as a map from
//! field name to value (absent = empty).

use std::collections::BTreeMap;

/// Text fields; together they hold at most [`MAX_EVIDENCE_TEXT_CHARS`] characters.
pub const TEXT_FIELDS: [&str; 18] = [
    "access_activity_log",
    "billing_address",
    "cancellation_policy_disclosure",
    "cancellation_rebuttal",
    "customer_email_address",
    "customer_name",
    "customer_purchase_ip",
    "duplicate_charge_explanation",
    "duplicate_charge_id",
    "product_description",
    "refund_policy_disclosure",
    "refund_refusal_explanation",
    "service_date",
    "shipping_address",
    "shipping_carrier",
    "shipping_date",
    "shipping_tracking_number",
    "uncategorized_text",
];

/// Fields holding a `doc_` id of the same tenant.
pub const DOCUMENT_FIELDS: [&str; 9] = [
    "cancellation_policy",
    "customer_communication",
    "customer_signature",
    "duplicate_charge_documentation",
    "receipt",
    "refund_policy",
    "service_documentation",
    "shipping_documentation",
    "uncategorized_file",
];

pub const MAX_EVIDENCE_TEXT_CHARS: usize = 150_000;

/// Evidence values by field name; only non-empty values are kept.
pub type Evidence = BTreeMap<String, String>;

/// Characters used by the text fields.
pub fn text_chars(evidence: &Evidence) -> usize {
    TEXT_FIELDS
        .iter()
        .filter_map(|field| evidence.get(*field))
        .map(|value| value.chars().count())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_are_27_distinct_fields() {
        let mut all: Vec<&str> = TEXT_FIELDS
            .iter()
            .chain(DOCUMENT_FIELDS.iter())
            .copied()
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 27);
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
