//! Opaque ids: a type prefix and a time-ordered random part (a lower-case ULID),
//! e.g. `dsp_01jd3s9v8m6q0n2c5x7r4t1k9e`.

use std::sync::Mutex;

use ulid::{Generator, Ulid};

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
}
