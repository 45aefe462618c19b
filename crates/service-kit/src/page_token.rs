//! Opaque page tokens for keyset pagination on `(create_time, id)`, newest first.
//!
//! A token is base64url of a small JSON object holding the last row's key and a
//! fingerprint of the filters it was made with, so a token reused with other filters is
//! rejected instead of silently returning a wrong page.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Default and maximum page sizes (SPEC §3).
pub const DEFAULT_PAGE_SIZE: i64 = 20;
pub const MAX_PAGE_SIZE: i64 = 100;

/// Where the previous page ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCursor {
    pub create_time: DateTime<Utc>,
    pub id: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PageTokenError {
    #[error("page_token is malformed")]
    Malformed,
    #[error("page_token was issued for different filters")]
    FiltersChanged,
}

#[derive(Serialize, Deserialize)]
struct TokenBody {
    /// Microseconds since the Unix epoch of the last row's create time.
    t: i64,
    /// Last row's id.
    i: String,
    /// Filter fingerprint.
    f: String,
}

/// The page size to use: 0 or negative means the default, larger than the maximum is coerced.
pub fn effective_page_size(requested: i32) -> i64 {
    match i64::from(requested) {
        n if n <= 0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    }
}

/// Encodes the cursor together with the filters' fingerprint.
pub fn encode_page_token(cursor: &PageCursor, filter_fingerprint: &str) -> String {
    let body = TokenBody {
        t: cursor.create_time.timestamp_micros(),
        i: cursor.id.clone(),
        f: filter_fingerprint.to_owned(),
    };
    // Serializing a struct of plain strings and integers cannot fail.
    let json = serde_json::to_vec(&body).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// Decodes a token; an empty token means "first page".
pub fn decode_page_token(
    token: &str,
    filter_fingerprint: &str,
) -> Result<Option<PageCursor>, PageTokenError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| PageTokenError::Malformed)?;
    let body: TokenBody = serde_json::from_slice(&bytes).map_err(|_| PageTokenError::Malformed)?;
    if body.f != filter_fingerprint {
        return Err(PageTokenError::FiltersChanged);
    }
    let create_time =
        DateTime::<Utc>::from_timestamp_micros(body.t).ok_or(PageTokenError::Malformed)?;
    Ok(Some(PageCursor {
        create_time,
        id: body.i,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor() -> PageCursor {
        PageCursor {
            create_time: DateTime::<Utc>::from_timestamp_micros(1_764_000_000_123_456)
                .unwrap_or_default(),
            id: "dsp_01jd3s9v8m6q0n2c5x7r4t1k9e".into(),
        }
    }

    #[test]
    fn token_round_trips_with_the_same_filters() {
        let token = encode_page_token(&cursor(), "abc");
        assert_eq!(decode_page_token(&token, "abc"), Ok(Some(cursor())));
    }

    #[test]
    fn empty_token_is_the_first_page() {
        assert_eq!(decode_page_token("", "abc"), Ok(None));
    }

    #[test]
    fn token_with_other_filters_is_rejected() {
        let token = encode_page_token(&cursor(), "abc");
        assert_eq!(
            decode_page_token(&token, "xyz"),
            Err(PageTokenError::FiltersChanged)
        );
    }

    #[test]
    fn garbage_tokens_are_malformed() {
        for bad in ["!!!", "bm90IGpzb24", "e30"] {
            assert_eq!(
                decode_page_token(bad, "abc"),
                Err(PageTokenError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn page_size_defaults_and_caps() {
        assert_eq!(effective_page_size(0), 20);
        assert_eq!(effective_page_size(-5), 20);
        assert_eq!(effective_page_size(7), 7);
        assert_eq!(effective_page_size(100), 100);
        assert_eq!(effective_page_size(5000), 100);
    }
}
