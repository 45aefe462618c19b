//! Invalid request fields as a plain value. Pure: no tonic here, so the services' domain
//! code can report violations without compiling against transport code. `errors` turns
//! them into a google.rpc BadRequest at the gRPC edge.

use std::collections::HashSet;

/// One invalid request field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Field path as in the request, e.g. `currency` or `metadata["k"]`.
    pub field: String,
    /// Why it is invalid, in lower case.
    pub description: String,
}

impl Violation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// What a text field holding a NUL character is told.
pub const NUL_DESCRIPTION: &str = "must not contain NUL characters";

/// The one check every string field of every request goes through: PostgreSQL text cannot
/// hold NUL (`\0`). One violation per field that holds it, in order.
pub fn nul_violations<F, S>(fields: impl IntoIterator<Item = (F, S)>) -> Vec<Violation>
where
    F: Into<String>,
    S: AsRef<str>,
{
    let mut found: Vec<Violation> = fields
        .into_iter()
        .filter(|(_, value)| value.as_ref().contains('\0'))
        .map(|(field, _)| Violation::new(field, NUL_DESCRIPTION))
        .collect();
    // A map entry is one field for its key and its value: name it once.
    found.dedup();
    found
}

/// The NUL violations first, then the other violations of fields without NUL (a field is
/// named once, by its NUL). Linear: the NUL fields are looked up in a set.
pub fn merge_nul(nul: Vec<Violation>, others: Vec<Violation>) -> Vec<Violation> {
    if nul.is_empty() {
        return others;
    }
    let named: HashSet<String> = nul.iter().map(|n| n.field.clone()).collect();
    let mut all = nul;
    all.extend(
        others
            .into_iter()
            .filter(|other| !named.contains(&other.field)),
    );
    all
}

/// At most this many violations are reported in one answer; the message counts the rest.
pub const MAX_REPORTED_VIOLATIONS: usize = 20;

/// The message names at most this many fields (the details name the others reported).
pub const MAX_MESSAGE_FIELDS: usize = 5;

/// A reported field path is cut to this many bytes of UTF-8 (a map key can be as long as
/// the request).
pub const MAX_FIELD_BYTES: usize = 96;

/// A reported description is cut to this many bytes of UTF-8.
pub const MAX_DESCRIPTION_BYTES: usize = 128;

/// The longest map key echoed in a field path (`metadata["<key>"]`), in bytes of UTF-8.
pub const MAX_ECHOED_KEY_BYTES: usize = 64;

/// What ends a text that was cut.
const CUT: &str = "…";

/// `text` cut to at most `max` bytes on a character boundary, `…` ending a cut text.
pub fn truncated(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub(CUT.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{CUT}", &text[..end])
}

/// The field path of a map entry, `{map}["<key>"]`, its key cut to
/// [`MAX_ECHOED_KEY_BYTES`].
pub fn map_entry_field(map: &str, key: &str) -> String {
    let key = truncated(key, MAX_ECHOED_KEY_BYTES);
    format!("{map}[{key:?}]")
}

/// One violation for a list or map holding more than `max` items. Checked before the items
/// are looked at, so that the work done on a request stays small whatever its size.
pub fn too_many(field: impl Into<String>, max: usize, got: usize) -> Violation {
    Violation::new(field, format!("must hold at most {max} items, got {got}"))
}

/// The [`too_many`] violations of the lists `(field, length, cap)` over their cap, in
/// order; empty when every list is within its cap.
pub fn over_caps<'a>(lists: impl IntoIterator<Item = (&'a str, usize, usize)>) -> Vec<Violation> {
    lists
        .into_iter()
        .filter(|&(_, len, max)| len > max)
        .map(|(field, len, max)| too_many(field, max, len))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_named_once_per_field_and_first() {
        assert!(nul_violations([("memo", "fine\ttext"), ("charge", "ch_1")]).is_empty());
        let nul = nul_violations([
            ("memo", "a\0b"),
            ("charge", "ch_1"),
            ("metadata[\"k\"]", "\0"),
            ("metadata[\"k\"]", "v\0"),
        ]);
        assert_eq!(
            nul,
            vec![
                Violation::new("memo", NUL_DESCRIPTION),
                Violation::new("metadata[\"k\"]", NUL_DESCRIPTION),
            ]
        );
        let merged = merge_nul(
            nul,
            vec![
                Violation::new("amount", "must be positive"),
                Violation::new("memo", "must be at most 5000 characters"),
            ],
        );
        let fields: Vec<&str> = merged.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, vec!["memo", "metadata[\"k\"]", "amount"]);
    }

    #[test]
    fn caps_truncation_and_a_linear_merge() {
        assert_eq!(truncated("abc", 3), "abc");
        assert_eq!(truncated("abcdef", 5), "ab…");
        assert_eq!(truncated("ééééé", 6), "é…");
        assert_eq!(truncated("😀😀", 6), "…");
        let key = "k".repeat(1_000);
        assert_eq!(
            map_entry_field("metadata", &key).len(),
            MAX_ECHOED_KEY_BYTES + "metadata[\"\"]".len()
        );
        assert!(over_caps([("ids", 100, 100), ("types", 0, 10)]).is_empty());
        assert_eq!(
            over_caps([("ids", 101, 100)]),
            vec![Violation::new(
                "ids",
                "must hold at most 100 items, got 101"
            )]
        );
        // 100,000 NUL fields and as many others: linear, so instant.
        let nul: Vec<Violation> = (0..100_000)
            .map(|i| Violation::new(format!("types[{i}]"), NUL_DESCRIPTION))
            .collect();
        let others: Vec<Violation> = (0..100_000)
            .map(|i| Violation::new(format!("types[{i}]"), "unknown"))
            .chain([Violation::new("page_token", "bad")])
            .collect();
        let merged = merge_nul(nul, others);
        assert_eq!(merged.len(), 100_001);
        assert_eq!(merged[100_000].field, "page_token");
    }
}
