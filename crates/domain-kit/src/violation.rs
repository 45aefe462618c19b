//! Invalid request fields as a plain value. Pure: no tonic here, so the services' domain
//! code can report violations without compiling against transport code. `errors` turns
//! them into a google.rpc BadRequest at the gRPC edge.

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
/// named once, by its NUL).
pub fn merge_nul(nul: Vec<Violation>, others: Vec<Violation>) -> Vec<Violation> {
    let rest: Vec<Violation> = others
        .into_iter()
        .filter(|other| !nul.iter().any(|n| n.field == other.field))
        .collect();
    let mut all = nul;
    all.extend(rest);
    all
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
}
