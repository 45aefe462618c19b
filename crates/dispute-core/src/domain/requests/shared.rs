//! The rules every request shares: NUL in strings, request ids (idempotency keys), enum
//! fields, amounts, free text, document ids, decoded wire values and page-token
//! fingerprints. The request families (disputes, actions, ...) use only these and
//! the domain's own types.

use std::collections::BTreeMap;

use domain_kit::ids::DocumentId;
use domain_kit::violation::{Violation, map_entry_field, merge_nul, nul_violations, over_caps};
use sha2::{Digest, Sha256};

use crate::domain::dispute::{MAX_MEMO_CHARS, validate_request_id};
use crate::domain::{DisputeError, EnumInput, NewDisputeDraft};

pub(super) type Texts<'a> = Vec<(String, &'a str)>;

/// Refuses at once a request holding a list or map over its cap (`(field, length, cap)`):
/// one violation per such list, found before any of its items is looked at, so that the
/// work a request costs stays small whatever its size.
pub(super) fn refuse_over_caps<'a>(
    lists: impl IntoIterator<Item = (&'a str, usize, usize)>,
) -> Result<(), DisputeError> {
    let over = over_caps(lists);
    if over.is_empty() {
        Ok(())
    } else {
        Err(DisputeError::Validation(over))
    }
}

/// Refuses a request whose strings hold NUL (`\0`; PostgreSQL text cannot store it): `nul`
/// names those fields (every request below lists all its strings), reported together with
/// the other violations `checked` found.
pub(super) fn refuse_nul<T>(
    nul: Vec<Violation>,
    checked: Result<T, DisputeError>,
) -> Result<T, DisputeError> {
    if nul.is_empty() {
        return checked;
    }
    let others = match checked {
        Err(DisputeError::Validation(others)) => others,
        _ => Vec::new(),
    };
    Err(DisputeError::Validation(merge_nul(nul, others)))
}

/// The strings of a new dispute, named `{prefix}field`.
pub(super) fn new_dispute_texts<'a>(
    prefix: &str,
    draft: &'a NewDisputeDraft,
    texts: &mut Texts<'a>,
) {
    for (field, value) in [
        ("currency", &draft.currency),
        ("charge", &draft.charge),
        ("payment_intent", &draft.payment_intent),
        ("transaction_id", &draft.transaction_id),
        ("merchant_id", &draft.merchant_id),
        ("network_reason_code", &draft.network_reason_code),
        ("network_case_id", &draft.network_case_id),
        ("memo", &draft.memo),
        ("date_customer_reported", &draft.date_customer_reported),
    ] {
        texts.push((format!("{prefix}{field}"), value));
    }
    if let Some(facts) = &draft.issuer_facts {
        texts.push((
            format!("{prefix}issuer_facts.transaction_date"),
            &facts.transaction_date,
        ));
    }
    metadata_texts(prefix, &draft.metadata, texts);
}

/// Metadata keys and values, named like `validate_metadata` names them.
pub(super) fn metadata_texts<'a>(
    prefix: &str,
    metadata: &'a BTreeMap<String, String>,
    texts: &mut Texts<'a>,
) {
    for (key, value) in metadata {
        let field = map_entry_field(&format!("{prefix}metadata"), key);
        texts.push((field.clone(), key));
        texts.push((field, value));
    }
}

/// Document ids, named `field[i]`.
pub(super) fn document_id_texts<'a>(field: &str, ids: &'a [String], texts: &mut Texts<'a>) {
    texts.extend(
        ids.iter()
            .enumerate()
            .map(|(i, id)| (format!("{field}[{i}]"), id.as_str())),
    );
}

/// A value decoded from the wire; `Err` names the field that held a malformed one (e.g. a
/// timestamp out of range).
pub type Decoded<T> = Result<T, Violation>;

/// At most this many document ids in one list.
pub const MAX_DOCUMENT_IDS: usize = 100;

/// At most this many entries in the `types` filter of ListEvents and StreamEvents (a type
/// may be repeated).
pub const MAX_TYPE_FILTERS: usize = 100;

/// At most this many paths in an update mask.
pub const MAX_MASK_PATHS: usize = 10;

/// Hex SHA-256: what "the same request" (idempotency) and "the same filters" (page tokens)
/// mean.
pub fn fingerprint(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A prefixed id (`dsp_…`, `evt_…`, `whe_…`) parsed with `parse`, or INVALID_ARGUMENT naming
/// `field` (for NUL first, like every string).
pub(super) fn checked_id<T>(
    field: &str,
    value: &str,
    parse: impl FnOnce(&str, &str) -> Result<T, Violation>,
) -> Result<T, DisputeError> {
    let nul = nul_violations([(field, value)]);
    refuse_nul(nul, Ok(()))?;
    parse(field, value).map_err(|violation| DisputeError::Validation(vec![violation]))
}

/// The value, or `None` after adding the violation of a value that did not decode.
pub(super) fn decoded<T>(value: Option<Decoded<T>>, violations: &mut Vec<Violation>) -> Option<T> {
    value?.map_err(|violation| violations.push(violation)).ok()
}

/// An optional request id (idempotency key).
pub(super) fn request_id(value: &str, violations: &mut Vec<Violation>) -> Option<String> {
    validate_request_id(value)
        .map_err(|violation| violations.push(violation))
        .ok()
        .flatten()
}

/// A required enum field.
pub(super) fn required<T>(
    field: &str,
    input: EnumInput<T>,
    violations: &mut Vec<Violation>,
) -> Option<T> {
    match input {
        EnumInput::Known(value) => Some(value),
        EnumInput::Unspecified => {
            violations.push(Violation::new(field, "is required"));
            None
        }
        EnumInput::Unknown(n) => {
            violations.push(Violation::new(field, format!("unknown value {n}")));
            None
        }
    }
}

/// An optional enum filter: unset means "any".
pub(super) fn optional<T>(
    field: &str,
    input: Option<EnumInput<T>>,
    violations: &mut Vec<Violation>,
) -> Option<T> {
    match input? {
        EnumInput::Unspecified => None,
        EnumInput::Known(value) => Some(value),
        EnumInput::Unknown(n) => {
            violations.push(Violation::new(field, format!("unknown value {n}")));
            None
        }
    }
}

/// A positive amount, or 0 for "the disputed amount".
pub(super) fn optional_amount(
    field: &str,
    amount: i64,
    violations: &mut Vec<Violation>,
) -> Option<i64> {
    match amount {
        0 => None,
        n if n < 0 => {
            violations.push(Violation::new(field, "must not be negative"));
            None
        }
        n => Some(n),
    }
}

/// A free-text message of at most [`MAX_MEMO_CHARS`] characters.
pub(super) fn memo_text(field: &str, value: &str, violations: &mut Vec<Violation>) {
    if value.chars().count() > MAX_MEMO_CHARS {
        violations.push(Violation::new(
            field,
            format!("must be at most {MAX_MEMO_CHARS} characters"),
        ));
    }
}

/// A list of document ids (at most [`MAX_DOCUMENT_IDS`], see `refuse_over_caps`), naming
/// each bad entry.
pub(super) fn document_ids(field: &str, ids: &[String], violations: &mut Vec<Violation>) {
    for (i, id) in ids.iter().enumerate() {
        if let Err(violation) = DocumentId::parse(&format!("{field}[{i}]"), id) {
            violations.push(violation);
        }
    }
}

#[cfg(test)]
pub(super) mod test_support {
    use chrono::{DateTime, Utc};

    use super::*;

    pub(crate) fn fields(result: Result<impl std::fmt::Debug, DisputeError>) -> Vec<String> {
        match result {
            Err(DisputeError::Validation(violations)) => {
                violations.into_iter().map(|v| v.field).collect()
            }
            other => panic!("expected violations, got {other:?}"),
        }
    }

    pub(crate) fn bad_time(field: &str) -> Option<Decoded<DateTime<Utc>>> {
        Some(Err(Violation::new(field, "is not a valid timestamp")))
    }

    pub(crate) fn at(seconds: i64) -> Option<Decoded<DateTime<Utc>>> {
        Some(Ok(DateTime::from_timestamp(seconds, 0).unwrap()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_hex_sha256() {
        assert_eq!(
            fingerprint(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
