//! The one home of request validation. A request arrives as a draft (wire values mapped by
//! the transport, nothing checked); the functions here turn it into a validated input or
//! name every bad field at once (a string holding NUL is named for that, see
//! `shared::refuse_nul`). Rules about a dispute itself stay with it (`NewDispute::parse`,
//! `validate_metadata`, `validate_request_id` in `dispute`), rules about evidence with the
//! evidence (`evidence::check_changes`), rules about webhook endpoints with them
//! (`webhooks`).
//!
//! One file per family of RPCs; each uses only `shared` (the rules every request shares:
//! NUL, request ids, enums, amounts, document ids, paging fingerprints) and the domain:
//! - `disputes`: CreateDispute, UpdateDispute, ListDisputes, GetDispute's id;
//! - `actions`: CreateAction;
//! - `network_events`: RecordNetworkEvent (and the dispute it may open, via `disputes`);
//! - `history`: ListDisputeHistory;
//! - `events`: ListEvents, GetEvent, StreamEvents;
//! - `webhooks`: the webhook endpoint and delivery RPCs.

mod actions;
mod disputes;
mod events;
mod history;
mod network_events;
mod shared;
mod webhooks;

pub use actions::*;
pub use disputes::*;
pub use events::*;
pub use history::*;
pub use network_events::*;
pub use shared::{Decoded, MAX_DOCUMENT_IDS, MAX_MASK_PATHS, MAX_TYPE_FILTERS, fingerprint};
pub use webhooks::*;
