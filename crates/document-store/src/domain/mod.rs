//! Pure rules of document-store: no I/O, no tonic, no sqlx, no aws-sdk. Each file imports
//! its siblings directly; this file only declares and re-exports them.

pub mod admission;
pub mod content;
pub mod document;
pub mod error;
pub mod header;
pub mod query;
pub mod range;
pub mod rate;

pub use admission::{Refusal, SlotLimits, TenantSlots};
pub use content::{ContentType, Sniff, check_content, sniff};
pub use document::{Document, object_key};
pub use error::DocumentError;
pub use header::UploadHeader;
pub use query::{ListQuery, batch_ids, in_request_order, missing_ids};
pub use range::{ByteRange, byte_range};
pub use rate::{RateFloor, RateWindow, TooSlow};
