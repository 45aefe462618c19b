//! The application layer: one file per use case. Each loads through the repository, asks the
//! domain, and persists in one transaction; it returns domain values only. The transport
//! (grpc/) maps requests in and results out; the domain never sees a clock, a connection or
//! a wire type.
//!
//! - Disputes (DisputeService): `create_dispute`, `update_dispute`, `create_action`,
//!   `record_network_event`, `queries`, with what they share in `mutation`, `persist`,
//!   `evidence_documents` and `staged_holds`.
//! - Events (EventService's feed): `events/` (the reads, the hub that wakes streams, the
//!   sequencer that numbers events). Events are recorded by `persist` and the sweeper, each
//!   with its webhook deliveries in the same statement.
//! - Webhooks (EventService's endpoints and deliveries): `webhooks/` ([`Webhooks`], with the
//!   delivery worker).
//! - Background workers, all started through `service_kit::worker::Workers` by `lib.rs`:
//!   `deadline_sweep` ([`App::start_workers`]: the sweeper and lock repairer),
//!   `events::start_event_workers` (listener and sequencer),
//!   [`Webhooks::start_worker`] and `retention` (the purge of old keys, deliveries and
//!   events).
//!
//! This file holds what the use cases share; none of it imports a use-case file (it only
//! re-exports `events`' and `webhooks`' settings, which import nothing from here).

mod create_action;
mod create_dispute;
pub mod deadline_sweep;
pub mod events;
mod evidence_documents;
mod mutation;
mod persist;
mod queries;
mod record_network_event;
pub mod retention;
mod staged_holds;
mod update_dispute;
pub mod webhooks;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

pub use events::DEFAULT_STREAM_HEARTBEAT_MS;
pub use webhooks::{WebhookSettings, Webhooks};

use crate::clients::documents::DocumentsClient;
use crate::domain::error::RememberedRefusal;
use crate::domain::evidence::{self, DisputeDocument, FieldKind};
use crate::domain::lifecycle::{self, AvailableAction};
use crate::domain::{ActionRecord, Dispute, DisputeError, MoneyPolicy};
use crate::store::evidence_texts::{self, StoredPayload};

/// What every use case runs against: the database, document-store and the money policy.
/// Build it with a struct literal, then add the snapshot encoder with
/// [`Disputes::with_snapshots`] to get the [`App`].
#[derive(Clone)]
pub struct Disputes {
    pub pool: PgPool,
    pub documents: DocumentsClient,
    pub policy: MoneyPolicy,
}

/// How a dispute is stored in its events and in remembered idempotent responses: its wire
/// encoding, which only the transport knows (`grpc::encode_dispute`). Replays and event
/// payloads are exactly these bytes (stored with large evidence texts cut out and read
/// back whole).
pub type SnapshotEncoder = fn(&DisputeView) -> Vec<u8>;

/// How a remembered refusal is stored: the status the transport answers for the error
/// (`grpc::encode_refusal`), so a retry gets exactly the same status and details.
pub type RefusalEncoder = fn(&DisputeError) -> RememberedRefusal;

/// dispute-core's use cases. Cheap to clone (the pool and the channel are shared).
#[derive(Clone)]
pub struct App {
    pool: PgPool,
    documents: DocumentsClient,
    policy: MoneyPolicy,
    snapshots: SnapshotEncoder,
    refusals: RefusalEncoder,
    /// How long before `due_by` the sweeper records `dispute.due_soon`; zero: never.
    due_soon_lead: chrono::Duration,
    /// Off only in benchmarks: mutations record no events (nor webhook deliveries).
    record_events: bool,
    /// Wakes this process's sequencer after a commit that may have recorded events.
    recorded: events::EventWake,
}

impl Disputes {
    /// The use cases over these dependencies, storing disputes with `snapshots` and
    /// remembered refusals with `refusals`; set once, when the service is built.
    pub fn with_snapshots(self, snapshots: SnapshotEncoder, refusals: RefusalEncoder) -> App {
        App {
            pool: self.pool,
            documents: self.documents,
            policy: self.policy,
            snapshots,
            refusals,
            due_soon_lead: chrono::Duration::zero(),
            record_events: true,
            recorded: events::EventWake::default(),
        }
    }
}

impl App {
    /// The app recording `dispute.due_soon` `lead` before each `due_by` (zero, the
    /// default of [`Disputes::with_snapshots`], records none).
    pub fn with_due_soon_lead(mut self, lead: std::time::Duration) -> App {
        self.due_soon_lead = chrono::Duration::from_std(lead).unwrap_or(chrono::Duration::MAX);
        self
    }

    /// The app recording events or not (`--record-events`; off only in benchmarks, which
    /// compare the cost of mutations with and without their events).
    pub fn with_event_recording(mut self, record: bool) -> App {
        self.record_events = record;
        self
    }

    /// What wakes this process's sequencer when a commit of this app may have recorded
    /// events (`events::start_event_workers` listens to it).
    pub fn event_wake(&self) -> events::EventWake {
        self.recorded.clone()
    }

    /// The database pool (closed by the caller at shutdown).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The stored form of a dispute: event payloads and remembered responses.
    fn snapshot(&self, view: &DisputeView) -> StoredPayload {
        stored_snapshot(self.snapshots, view)
    }
}

/// `view` encoded by `snapshots`, with its large evidence texts cut out to be stored once
/// per dispute (store/evidence_texts.rs): only the text fields can be large, and a reader
/// splices them back, so what is read is exactly what was encoded.
fn stored_snapshot(snapshots: SnapshotEncoder, view: &DisputeView) -> StoredPayload {
    let texts: Vec<&str> = evidence::fields_of(FieldKind::Text)
        .filter_map(|field| view.dispute.evidence.get(field))
        .map(String::as_str)
        .collect();
    evidence_texts::split_payload(snapshots(view), &texts)
}

/// A dispute as the API shows it: with what the tenant may do now and whether its response
/// is past due. Both depend on the clock, which the app reads once per call.
#[derive(Debug, Clone, PartialEq)]
pub struct DisputeView {
    pub dispute: Dispute,
    pub available_actions: Vec<AvailableAction>,
    pub past_due: bool,
}

impl DisputeView {
    /// The view of `dispute` at `now`.
    pub fn at(dispute: Dispute, now: DateTime<Utc>) -> DisputeView {
        DisputeView {
            available_actions: lifecycle::available_actions(&dispute.lifecycle_state(), now),
            past_due: dispute.is_past_due(now),
            dispute,
        }
    }
}

/// GetDispute: the dispute and its documents (read from document-store for the caller).
#[derive(Debug, Clone)]
pub struct DisputeDetails {
    pub view: DisputeView,
    pub documents: Vec<DisputeDocument>,
    /// The caller may not read documents, so none were read.
    pub documents_omitted: bool,
}

/// One page of ListDisputes.
#[derive(Debug, Clone)]
pub struct DisputePage {
    pub disputes: Vec<DisputeView>,
    /// Empty on the last page.
    pub next_page_token: String,
}

/// One page of ListDisputeHistory.
#[derive(Debug, Clone)]
pub struct DisputeHistoryPage {
    /// Oldest first.
    pub entries: Vec<ActionRecord>,
    /// How many entries the whole history has.
    pub total: i64,
    /// Empty on the last page.
    pub next_page_token: String,
}

/// What RecordNetworkEvent did.
#[derive(Debug, Clone)]
pub struct NetworkEventOutcome {
    pub view: DisputeView,
    /// The event opened the dispute.
    pub created: bool,
    /// The event changed something (false for a duplicate or stale event).
    pub applied: bool,
}

/// A mutation's `request_id` and the fingerprint of the request it came with.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub request_id: String,
    pub request_fingerprint: String,
}

/// The result of an idempotent mutation.
#[derive(Debug)]
pub enum Outcome<T> {
    /// Done now.
    Done(T),
    /// Done before: the first response, as its [`SnapshotEncoder`] stored it then.
    Replayed(Vec<u8>),
}

/// What every mutation of an existing dispute may carry besides its payload.
#[derive(Debug, Clone, Default)]
pub struct MutationGuards {
    /// ABORTED unless the dispute still has this version.
    pub expected_version: Option<i64>,
    /// Replays the first answer for a retried request id.
    pub idempotency: Option<IdempotencyKey>,
}
