//! Opaque ids: a type prefix and a time-ordered random part (a lower-case ULID),
//! e.g. `dsp_01jd3s9v8m6q0n2c5x7r4t1k9e`.

use std::sync::Mutex;

use ulid::{Generator, Ulid};

use crate::violation::Violation;

/// Monotonic within the process: ids made in one transaction (several history entries, say)
/// sort in the order they were made even within the same millisecond.
static GENERATOR: Mutex<Generator> = Mutex::new(Generator::new());

/// Length of the ULID part of an id.
const ULID_LEN: usize = 26;

/// A new id with `prefix` (without the underscore), ordered by creation time.
pub fn new_id(prefix: &str) -> String {
    let monotonic = GENERATOR
        .lock()
        .ok()
        .and_then(|mut generator| generator.generate().ok());
    // None only after 2^80 ids in one millisecond, or a poisoned lock: fall back to random.
    // (Ulid::default() would be the nil id, so no unwrap_or_default here.)
    let ulid = match monotonic {
        Some(ulid) => ulid,
        None => Ulid::new(),
    };
    format!("{prefix}_{}", ulid.to_string().to_lowercase())
}

/// Whether `id` is a well-formed id with `prefix` (without the underscore).
pub fn is_valid_id(prefix: &str, id: &str) -> bool {
    let Some(rest) = id.strip_prefix(prefix).and_then(|r| r.strip_prefix('_')) else {
        return false;
    };
    // A ULID's first character encodes the top 3 bits of a 128-bit value: at most '7'.
    rest.len() == ULID_LEN
        && rest.starts_with(|c: char| ('0'..='7').contains(&c))
        && rest
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        && Ulid::from_string(&rest.to_uppercase()).is_ok()
}

/// A typed id: parsed once at the edge, so code past the transport never re-checks it.
macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $noun:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// The id prefix, without the underscore.
            pub const PREFIX: &'static str = $prefix;

            /// A new id, ordered by creation time.
            pub fn generate() -> Self {
                Self(new_id($prefix))
            }

            /// `value` as this id, or a violation naming `field`.
            pub fn parse(field: &str, value: &str) -> Result<Self, Violation> {
                if is_valid_id($prefix, value) {
                    Ok(Self(value.to_owned()))
                } else {
                    Err(Violation::new(
                        field,
                        concat!("must be a ", $noun, " id (", $prefix, "_...)"),
                    ))
                }
            }

            /// An id read back from our own storage, where only valid ids are written.
            pub fn from_stored(value: String) -> Self {
                Self(value)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

prefixed_id!(
    /// A dispute (`dsp_…`).
    DisputeId, "dsp", "dispute"
);
prefixed_id!(
    /// A document in document-store (`doc_…`).
    DocumentId, "doc", "document"
);
prefixed_id!(
    /// A history entry of a dispute (`act_…`).
    ActionId, "act", "action"
);
prefixed_id!(
    /// An event (`evt_…`).
    EventId, "evt", "event"
);
prefixed_id!(
    /// A balance transaction (`txn_…`).
    BalanceTransactionId, "txn", "balance transaction"
);
prefixed_id!(
    /// A webhook endpoint (`whe_…`).
    WebhookEndpointId, "whe", "webhook endpoint"
);
prefixed_id!(
    /// A webhook delivery (`whd_…`), also the `webhook-id` header of its attempts.
    WebhookDeliveryId, "whd", "webhook delivery"
);

/// Parses an optional id: an empty string is `None`.
pub fn parse_optional<T>(
    value: &str,
    parse: impl FnOnce(&str) -> Result<T, Violation>,
) -> Result<Option<T>, Violation> {
    if value.is_empty() {
        Ok(None)
    } else {
        parse(value).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_carry_their_prefix_and_validate() {
        let id = new_id("dsp");
        assert!(id.starts_with("dsp_"));
        assert_eq!(id.len(), 4 + ULID_LEN);
        assert!(is_valid_id("dsp", &id));
        assert!(!is_valid_id("doc", &id));
    }

    #[test]
    fn ids_made_in_a_burst_keep_their_order() {
        let ids: Vec<String> = (0..1000).map(|_| new_id("act")).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }

    #[test]
    fn ids_sort_by_creation_time() {
        let first = new_id("doc");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = new_id("doc");
        assert!(first < second);
    }

    #[test]
    fn malformed_ids_are_rejected() {
        for bad in [
            "",
            "dsp_",
            "dsp",
            "dsp_123",
            "dsp_01jd3s9v8m6q0n2c5x7r4t1k9",
            "dsp_01jd3s9v8m6q0n2c5x7r4t1k9ee",
            "dsp-01jd3s9v8m6q0n2c5x7r4t1k9e",
            "dsp_01jd3s9v8m6q0n2c5x7r4t1k9!",
            "dsp_zzzzzzzzzzzzzzzzzzzzzzzzzz",
        ] {
            assert!(!is_valid_id("dsp", bad), "{bad:?} should be invalid");
        }
        assert!(is_valid_id("dsp", "dsp_01jd3s9v8m6q0n2c5x7r4t1k9e"));
    }

    #[test]
    fn typed_ids_parse_or_name_the_field() {
        let id = DisputeId::generate();
        assert_eq!(DisputeId::parse("id", id.as_str()), Ok(id.clone()));
        let error = DisputeId::parse("dispute_id", "doc_01jd3s9v8m6q0n2c5x7r4t1k9e");
        assert_eq!(
            error,
            Err(Violation::new(
                "dispute_id",
                "must be a dispute id (dsp_...)"
            ))
        );
        assert_eq!(
            DocumentId::parse("ids[2]", "x"),
            Err(Violation::new("ids[2]", "must be a document id (doc_...)"))
        );
        assert_eq!(parse_optional("", |v| DisputeId::parse("f", v)), Ok(None));
        assert_eq!(
            parse_optional(id.as_str(), |v| DisputeId::parse("f", v)),
            Ok(Some(id))
        );
    }
}
