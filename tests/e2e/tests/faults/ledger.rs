//! What the clients saw: every call and every acknowledged write.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

pub type Ledger = Mutex<Record>;

#[derive(Default)]
pub struct Record {
    pub calls: u64,
    pub acknowledged: u64,
    /// Refusals by gRPC code (and `HUNG` for calls cut off past deadline + margin).
    pub refused: BTreeMap<String, u64>,
    /// The same by call and code.
    pub refused_by_call: BTreeMap<String, u64>,
    /// A sample message per refused code, to tell the causes apart in the report.
    pub samples: BTreeMap<String, String>,
    pub hung: Vec<String>,
    pub slowest: Duration,
    pub creates: Vec<CreateWrite>,
    pub accepts: Vec<AcceptWrite>,
    pub events: Vec<EventWrite>,
    pub uploads: Vec<UploadWrite>,
    pub submissions: Vec<SubmissionWrite>,
    pub last_docs_kill: Option<chrono::DateTime<chrono::Utc>>,
}

pub struct CreateWrite {
    pub charge: String,
    /// The dispute id when a call was acknowledged.
    pub acked: Option<String>,
}

pub struct AcceptWrite {
    pub dispute_id: String,
    pub acked: bool,
}

pub struct EventWrite {
    pub case_id: String,
    pub event_id: String,
    pub acked: Option<String>,
}

pub struct SubmissionWrite {
    pub dispute_id: String,
    pub document_id: String,
    pub acked: bool,
}

pub struct UploadWrite {
    pub filename: String,
    pub sha256: String,
    pub size: usize,
    pub acked: Option<String>,
}
