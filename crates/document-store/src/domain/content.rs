//! Content sniffing: the type of a document is what its bytes say, not what the uploader
//! declares. Only PDF, JPEG, PNG and TIFF are accepted.

use super::error::DocumentError;

/// An accepted document type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    Pdf,
    Jpeg,
    Png,
    Tiff,
}

impl ContentType {
    pub const ALL: [ContentType; 4] = [
        ContentType::Pdf,
        ContentType::Jpeg,
        ContentType::Png,
        ContentType::Tiff,
    ];

    pub fn mime(self) -> &'static str {
        match self {
            ContentType::Pdf => "application/pdf",
            ContentType::Jpeg => "image/jpeg",
            ContentType::Png => "image/png",
            ContentType::Tiff => "image/tiff",
        }
    }

    /// Parses a declared MIME type, ignoring case and parameters (`; charset=...`).
    pub fn from_mime(mime: &str) -> Option<ContentType> {
        let essence = mime.split(';').next().unwrap_or("").trim();
        ContentType::ALL
            .into_iter()
            .find(|t| t.mime().eq_ignore_ascii_case(essence))
    }

    fn magic(self) -> &'static [&'static [u8]] {
        match self {
            ContentType::Pdf => &[b"%PDF-"],
            ContentType::Jpeg => &[&[0xFF, 0xD8, 0xFF]],
            ContentType::Png => &[&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]],
            ContentType::Tiff => &[b"II*\0", b"MM\0*"],
        }
    }
}

/// The longest signature: after this many bytes sniffing always decides.
pub const SNIFF_LEN: usize = 8;

/// What the first bytes of a file say about its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniff {
    Detected(ContentType),
    /// The prefix could still become an accepted type: read more bytes.
    NeedMore,
    /// Not an accepted type.
    Unknown,
}

/// Sniffs the type from the first bytes of a file.
pub fn sniff(prefix: &[u8]) -> Sniff {
    let mut could_match = false;
    for content_type in ContentType::ALL {
        for magic in content_type.magic() {
            if prefix.len() >= magic.len() {
                if prefix.starts_with(magic) {
                    return Sniff::Detected(content_type);
                }
            } else if magic.starts_with(prefix) {
                could_match = true;
            }
        }
    }
    if could_match {
        Sniff::NeedMore
    } else {
        Sniff::Unknown
    }
}

/// Sniffs the buffered prefix: `Ok(None)` while more bytes are needed (and the stream goes
/// on), the detected type once known, or the reason the content is refused.
pub fn check_content(
    declared: ContentType,
    prefix: &[u8],
    stream_ended: bool,
) -> Result<Option<ContentType>, DocumentError> {
    match sniff(&prefix[..prefix.len().min(SNIFF_LEN)]) {
        Sniff::Detected(detected) if detected == declared => Ok(Some(detected)),
        Sniff::Detected(detected) => Err(DocumentError::ContentTypeMismatch {
            declared: declared.mime(),
            detected: detected.mime(),
        }),
        Sniff::NeedMore if stream_ended => Err(DocumentError::TooShortToIdentify),
        Sniff::NeedMore => Ok(None),
        Sniff::Unknown => Err(DocumentError::UnsupportedContent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_check_waits_then_decides() {
        assert_eq!(
            check_content(ContentType::Png, &[0x89], false).unwrap(),
            None
        );
        assert!(matches!(
            check_content(ContentType::Png, &[0x89], true),
            Err(DocumentError::TooShortToIdentify)
        ));
        assert!(matches!(
            check_content(ContentType::Png, b"%PDF-1.4", false),
            Err(DocumentError::ContentTypeMismatch { .. })
        ));
        assert!(matches!(
            check_content(ContentType::Pdf, b"GIF89a", false),
            Err(DocumentError::UnsupportedContent)
        ));
        assert_eq!(
            check_content(ContentType::Pdf, b"%PDF-1.4 and much more", false).unwrap(),
            Some(ContentType::Pdf)
        );
    }

    #[test]
    fn detects_each_accepted_type() {
        assert_eq!(sniff(b"%PDF-1.7\n%..."), Sniff::Detected(ContentType::Pdf));
        assert_eq!(
            sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10]),
            Sniff::Detected(ContentType::Jpeg)
        );
        assert_eq!(
            sniff(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0]),
            Sniff::Detected(ContentType::Png)
        );
        assert_eq!(
            sniff(b"II*\0\x08\0\0\0"),
            Sniff::Detected(ContentType::Tiff)
        );
        assert_eq!(
            sniff(b"MM\0*\0\0\0\x08"),
            Sniff::Detected(ContentType::Tiff)
        );
    }

    #[test]
    fn smallest_detectable_file_is_a_three_byte_jpeg() {
        assert_eq!(
            sniff(&[0xFF, 0xD8, 0xFF]),
            Sniff::Detected(ContentType::Jpeg)
        );
        assert_eq!(sniff(&[0xFF, 0xD8]), Sniff::NeedMore);
    }

    #[test]
    fn short_prefixes_ask_for_more() {
        assert_eq!(sniff(b""), Sniff::NeedMore);
        assert_eq!(sniff(b"%PD"), Sniff::NeedMore);
        assert_eq!(sniff(&[0x89, b'P', b'N']), Sniff::NeedMore);
        assert_eq!(sniff(b"I"), Sniff::NeedMore);
    }

    #[test]
    fn other_formats_are_unknown() {
        assert_eq!(sniff(b"GIF89a..."), Sniff::Unknown);
        assert_eq!(sniff(b"PK\x03\x04zip"), Sniff::Unknown);
        assert_eq!(sniff(b"<html>"), Sniff::Unknown);
        assert_eq!(sniff(b"%PDX-1.4"), Sniff::Unknown);
    }

    #[test]
    fn declared_types_parse_loosely() {
        assert_eq!(
            ContentType::from_mime("Application/PDF; charset=binary"),
            Some(ContentType::Pdf)
        );
        assert_eq!(ContentType::from_mime("image/gif"), None);
        assert_eq!(ContentType::from_mime(""), None);
    }
}
