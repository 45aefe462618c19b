//! Validation of an upload's header message.

use domain_kit::ids::{DisputeId, parse_optional};
use domain_kit::violation::{Violation, merge_nul, nul_violations};

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
    /// The total size the client says it sends; the upload fails unless it sends exactly
    /// this many bytes.
    pub expected_size_bytes: Option<u64>,
}

impl UploadHeader {
    /// Checks every field and reports all bad ones at once.
    pub fn parse(
        filename: &str,
        content_type: &str,
        dispute_id: &str,
        expected_sha256: &str,
        expected_size_bytes: u64,
    ) -> Result<UploadHeader, DocumentError> {
        // NUL (which PostgreSQL text cannot hold) is named first, once per field.
        let nul = nul_violations([
            ("header.filename", filename),
            ("header.content_type", content_type),
            ("header.dispute_id", dispute_id),
            ("header.expected_sha256", expected_sha256),
        ]);
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
        if !nul.is_empty() {
            return Err(DocumentError::Validation(merge_nul(nul, violations)));
        }
        match declared {
            Some(declared) if violations.is_empty() => Ok(UploadHeader {
                filename: filename.to_owned(),
                declared,
                dispute_id,
                expected_sha256: (!expected.is_empty()).then_some(expected),
                expected_size_bytes: (expected_size_bytes != 0).then_some(expected_size_bytes),
            }),
            _ => Err(DocumentError::Validation(violations)),
        }
    }

    /// Refuses a declared size above the cap before any byte is read.
    pub fn check_size_limit(&self, max_bytes: u64) -> Result<(), DocumentError> {
        match self.expected_size_bytes {
            Some(declared) if declared > max_bytes => Err(Violation::new(
                "header.expected_size_bytes",
                format!("must be at most {max_bytes} bytes"),
            )
            .into()),
            _ => Ok(()),
        }
    }

    /// Checks the running total against the declared size while bytes arrive: fails as
    /// soon as more than the declared size has been sent.
    pub fn check_size_so_far(&self, received: u64) -> Result<(), DocumentError> {
        match self.expected_size_bytes {
            Some(declared) if received > declared => Err(DocumentError::SizeExceeded { declared }),
            _ => Ok(()),
        }
    }

    /// Checks the final total against the declared size once the stream has ended.
    pub fn check_final_size(&self, received: u64) -> Result<(), DocumentError> {
        match self.expected_size_bytes {
            Some(declared) if received != declared => {
                Err(DocumentError::SizeMismatch { declared, received })
            }
            _ => Ok(()),
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
            0,
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
            UploadHeader::parse("../etc/passwd", "text/html", "dispute-1", "xyz", 0).unwrap_err();
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
            UploadHeader::parse("", "image/png", "", "", 0)
                .unwrap_err()
                .violated_fields(),
            vec!["header.filename"]
        );
        assert_eq!(
            UploadHeader::parse(&"é".repeat(256), "image/png", "", "", 0)
                .unwrap_err()
                .violated_fields(),
            vec!["header.filename"]
        );
        assert!(UploadHeader::parse(&"é".repeat(255), "image/png", "", "", 0).is_ok());
        assert!(UploadHeader::parse("a\nb.png", "image/png", "", "", 0).is_err());
    }

    #[test]
    fn declared_size_is_optional_capped_and_checked() {
        let unstated = UploadHeader::parse("a.png", "image/png", "", "", 0).unwrap();
        assert_eq!(unstated.expected_size_bytes, None);
        assert!(unstated.check_size_limit(10).is_ok());
        assert!(unstated.check_size_so_far(u64::MAX).is_ok());
        assert!(unstated.check_final_size(0).is_ok());

        let declared = UploadHeader::parse("a.png", "image/png", "", "", 100).unwrap();
        assert_eq!(declared.expected_size_bytes, Some(100));
        assert!(declared.check_size_limit(100).is_ok());
        assert_eq!(
            declared.check_size_limit(99).unwrap_err().violated_fields(),
            vec!["header.expected_size_bytes"]
        );
        assert!(declared.check_size_so_far(100).is_ok());
        assert!(matches!(
            declared.check_size_so_far(101),
            Err(DocumentError::SizeExceeded { declared: 100 })
        ));
        assert!(declared.check_final_size(100).is_ok());
        assert!(matches!(
            declared.check_final_size(99),
            Err(DocumentError::SizeMismatch {
                declared: 100,
                received: 99
            })
        ));
    }
}
