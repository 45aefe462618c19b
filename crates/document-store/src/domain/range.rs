//! The byte range a download asks for.

use domain_kit::violation::Violation;

use super::error::DocumentError;

/// A validated byte range of a download: first byte and last byte, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub first: u64,
    pub last: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// `bytes=first-last` for an HTTP Range header.
    pub fn http_header(&self) -> String {
        format!("bytes={}-{}", self.first, self.last)
    }
}

/// The range `offset`/`length` (0 = to the end) select in a document of `size` bytes.
pub fn byte_range(offset: i64, length: i64, size: i64) -> Result<ByteRange, DocumentError> {
    let mut violations = Vec::new();
    if offset < 0 {
        violations.push(Violation::new("offset", "must not be negative"));
    }
    if length < 0 {
        violations.push(Violation::new("length", "must not be negative"));
    }
    if !violations.is_empty() {
        return Err(DocumentError::Validation(violations));
    }
    if offset >= size {
        return Err(DocumentError::OutOfRange { offset, size });
    }
    let end_exclusive = if length == 0 {
        size
    } else {
        offset.saturating_add(length).min(size)
    };
    Ok(ByteRange {
        first: offset as u64,
        last: (end_exclusive - 1) as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_clamped_to_the_document() {
        assert_eq!(
            byte_range(0, 0, 10).unwrap(),
            ByteRange { first: 0, last: 9 }
        );
        assert_eq!(
            byte_range(3, 4, 10).unwrap(),
            ByteRange { first: 3, last: 6 }
        );
        assert_eq!(
            byte_range(8, 100, 10).unwrap(),
            ByteRange { first: 8, last: 9 }
        );
        assert_eq!(byte_range(9, 1, 10).unwrap().len(), 1);
        assert_eq!(byte_range(2, i64::MAX, 10).unwrap().last, 9);
    }

    #[test]
    fn bad_ranges_are_rejected() {
        assert!(matches!(
            byte_range(10, 0, 10),
            Err(DocumentError::OutOfRange { .. })
        ));
        assert!(matches!(
            byte_range(-1, -1, 10),
            Err(DocumentError::Validation(v)) if v.len() == 2
        ));
    }
}
