//! Opaque page tokens for keyset pagination on `(create_time, id)`, newest first.
//!
//! A token is base64url of a small JSON object holding the last row's key and a
//! fingerprint of the filters it was made with, so a token reused with other filters is
//! rejected instead of silently returning a wrong page.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::violation::Violation;

/// Default and maximum page sizes (docs/api.md, "Paging").
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

/// A checked page request: the page size to use and where the previous page ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Rows per page, already defaulted and capped.
    pub size: i64,
    /// Where the previous page ended; `None` for the first page.
    pub after: Option<PageCursor>,
    filter_fingerprint: String,
}

impl PageRequest {
    /// Checks `page_size` and `page_token` (made with the same filters); every problem is
    /// added to `violations`, so it is reported together with the request's other fields.
    pub fn parse(
        page_size: i32,
        page_token: &str,
        filter_fingerprint: impl Into<String>,
        violations: &mut Vec<Violation>,
    ) -> Self {
        let filter_fingerprint = filter_fingerprint.into();
        if page_size < 0 {
            violations.push(Violation::new("page_size", "must not be negative"));
        }
        let after = decode_page_token(page_token, &filter_fingerprint).unwrap_or_else(|error| {
            violations.push(Violation::new("page_token", error.to_string()));
            None
        });
        Self {
            size: effective_page_size(page_size),
            after,
            filter_fingerprint,
        }
    }

    /// How many rows to fetch: one more than a page, to learn whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        self.size + 1
    }

    /// Cuts rows fetched with [`Self::fetch_limit`] to one page, and returns the token of
    /// the next page (empty when this is the last one).
    pub fn cut<T>(&self, mut rows: Vec<T>, key: impl Fn(&T) -> PageCursor) -> (Vec<T>, String) {
        let page_size = usize::try_from(self.size).unwrap_or(usize::MAX);
        if rows.len() <= page_size {
            return (rows, String::new());
        }
        rows.truncate(page_size);
        let next = rows
            .last()
            .map(|last| encode_page_token(&key(last), &self.filter_fingerprint))
            .unwrap_or_default();
        (rows, next)
    }
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

    #[test]
    fn page_requests_collect_violations() {
        let mut violations = Vec::new();
        let request = PageRequest::parse(-1, "%%%", "abc", &mut violations);
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, vec!["page_size", "page_token"]);
        assert_eq!(request.size, DEFAULT_PAGE_SIZE);
        assert_eq!(request.after, None);
    }

    #[test]
    fn a_page_is_cut_after_one_extra_row() {
        let mut violations = Vec::new();
        let request = PageRequest::parse(2, "", "f", &mut violations);
        assert!(violations.is_empty());
        assert_eq!(request.fetch_limit(), 3);
        let key = |n: &i64| PageCursor {
            create_time: DateTime::<Utc>::from_timestamp_micros(*n).unwrap_or_default(),
            id: format!("id{n}"),
        };
        let (page, next) = request.cut(vec![3, 2, 1], key);
        assert_eq!(page, vec![3, 2]);
        let after = PageRequest::parse(2, &next, "f", &mut violations);
        assert!(violations.is_empty());
        assert_eq!(after.after, Some(key(&2)));
        let (last, none) = request.cut(vec![3, 2], key);
        assert_eq!((last, none), (vec![3, 2], String::new()));
    }
}
