//! Validation of an upload's header message.

use service_kit::ids::{DisputeId, parse_optional};
use service_kit::violation::Violation;

use super::content::ContentType;
use super::error::DocumentError;

const MAX_FILENAME_CHARS: usize = 255;

/// A validated upload header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadHeader {
    pub filename: String,
    pub declared: ContentType,
    pub dispute_id: Option<DisputeId>,
    pub expected_sha256: Option<String>,
}

impl UploadHeader {
    /// Checks every field and reports all bad ones at once.
    pub fn parse(
        filename: &str,
        content_type: &str,
        dispute_id: &str,
        expected_sha256: &str,
    ) -> Result<UploadHeader, DocumentError> {
        let mut violations = Vec::new();
        let filename_chars = filename.chars().count();
        if filename.trim().is_empty() {
            violations.push(Violation::new("header.filename", "is required"));
        } else if filename_chars > MAX_FILENAME_CHARS {
            violations.push(Violation::new(
                "header.filename",
                format!("must be at most {MAX_FILENAME_CHARS} characters"),
            ));
        } else if filename
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\')
        {
            violations.push(Violation::new(
                "header.filename",
                "must not contain control characters or path separators",
            ));
        }
        let declared = ContentType::from_mime(content_type);
        if declared.is_none() {
            violations.push(Violation::new(
                "header.content_type",
                "must be application/pdf, image/jpeg, image/png or image/tiff",
            ));
        }
        let dispute_id = parse_optional(dispute_id, |id| DisputeId::parse("header.dispute_id", id))
            .unwrap_or_else(|violation| {
                violations.push(violation);
                None
            });
        let expected = expected_sha256.to_ascii_lowercase();
        let well_formed_digest =
            expected.len() == 64 && expected.bytes().all(|b| b.is_ascii_hexdigit());
        if !expected.is_empty() && !well_formed_digest {
            violations.push(Violation::new(
                "header.expected_sha256",
                "must be 64 hexadecimal characters",
            ));
        }
        match declared {
            Some(declared) if violations.is_empty() => Ok(UploadHeader {
                filename: filename.to_owned(),
                declared,
                dispute_id,
                expected_sha256: (!expected.is_empty()).then_some(expected),
            }),
            _ => Err(DocumentError::Validation(violations)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_header_parses() {
        let header = UploadHeader::parse(
            "receipt.pdf",
            "application/pdf",
            "dsp_01jd3s9v8m6q0n2c5x7r4t1k9e",
            &"AB".repeat(32),
        )
        .unwrap();
        assert_eq!(header.declared, ContentType::Pdf);
        assert_eq!(
            header.expected_sha256.as_deref(),
            Some("ab".repeat(32).as_str())
        );
    }

    #[test]
    fn every_bad_field_is_reported() {
        let err =
            UploadHeader::parse("../etc/passwd", "text/html", "dispute-1", "xyz").unwrap_err();
        assert_eq!(
            err.violated_fields(),
            vec![
                "header.filename",
                "header.content_type",
                "header.dispute_id",
                "header.expected_sha256"
            ]
        );
    }

    #[test]
    fn filename_limits() {
        assert_eq!(
            UploadHeader::parse("", "image/png", "", "")
                .unwrap_err()
                .violated_fields(),
            vec!["header.filename"]
        );
        assert_eq!(
            UploadHeader::parse(&"é".repeat(256), "image/png", "", "")
                .unwrap_err()
                .violated_fields(),
            vec!["header.filename"]
        );
        assert!(UploadHeader::parse(&"é".repeat(255), "image/png", "", "").is_ok());
        assert!(UploadHeader::parse("a\nb.png", "image/png", "", "").is_err());
    }
}
