//! The event feed: ListEvents, GetEvent and StreamEvents' reads (`feed`), the hub that wakes
//! streams when events commit (`hub`: one LISTEN connection per process) and the sequencer
//! that numbers committed events (`sequencer`). The hub's listener and the sequencer are
//! background workers, started with the others by [`start_event_workers`].
//!
//! Positions (`dispute_events.position`, migration 0012) are given to committed events by
//! the sequencer (one round at a time in the whole database, see
//! `store::events::number_committed_events`), so they are dense per tenant and become
//! visible in order: a reader that remembers the last position it read and reads
//! `position > last` never skips or repeats an event. Every process runs the sequencer;
//! a commit of the process wakes it in process ([`EventWake`]), and it polls every
//! `--event-poll-ms` for events committed through other replicas. Writers send no NOTIFY
//! (PostgreSQL makes notifying transactions commit one at a time, cluster-wide): each
//! round that numbered events sends one, naming the tenants, which wakes the streams and
//! webhook workers of every replica. A stream never trusts a notification to carry
//! anything: a notification (or a heartbeat tick, or the listener reconnecting) only makes
//! it read again after its last position.
//!
//! StreamEvents streams are admitted against per-process and per-tenant caps
//! (`admission`); each one's follower (`follow`) reads into a buffer bounded in bytes
//! (`buffer`) that its client takes from.
//!
//! This file holds what the others share; `feed` and `follow` use it, `hub` and `buffer`;
//! it uses only `hub`, `sequencer`, `admission` and `buffer`.

pub mod admission;
pub mod buffer;
mod feed;
mod follow;
mod hub;
mod sequencer;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use service_kit::worker::Workers;
use sqlx::PgPool;
use tokio::sync::{Notify, Semaphore};

pub use admission::{StreamAdmission, StreamCap, StreamPermit};
pub use hub::EventHub;

use crate::domain::requests::EventFilter;
use crate::store::events::EventRow;

/// Default of `--event-poll-ms`: how often the sequencer looks for events committed by
/// other replicas.
pub const DEFAULT_EVENT_POLL_MS: u64 = 50;

/// Wakes this process's sequencer after a commit that may have recorded events, so that they
/// are numbered (and streamed) at once, without a notification sent by the writer.
#[derive(Clone, Default)]
pub struct EventWake(Arc<Notify>);

impl EventWake {
    /// Events may have been committed (a wake-up that finds none costs one cheap query;
    /// wake-ups while a round runs fold into one).
    pub fn recorded(&self) {
        self.0.notify_one();
    }
}

/// Default heartbeat interval of StreamEvents (`--event-stream-heartbeat-ms`).
pub const DEFAULT_STREAM_HEARTBEAT_MS: u64 = 15_000;

/// The process-wide limits of StreamEvents (flags `--max-event-streams` and the other
/// `--event-stream-…` ones; docs/api.md "Limits").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimitSettings {
    /// Streams open in the process.
    pub max_streams: usize,
    /// Streams open per tenant in the process.
    pub max_streams_per_tenant: usize,
    /// Bytes one stream may buffer for its client (one event always fits).
    pub stream_buffer_bytes: u32,
    /// Bytes all streams of the process may buffer together.
    pub process_buffer_bytes: u32,
    /// A client that takes nothing of what is buffered for this long is ended.
    pub slow_consumer_after: Duration,
    /// Catch-up reads of all streams at once (pooled connections they may hold).
    pub concurrent_reads: usize,
}

/// The shared state behind [`StreamLimitSettings`]: one per process, cloned into every
/// stream.
#[derive(Clone)]
pub struct StreamLimits {
    pub admission: StreamAdmission,
    pub stream_buffer_bytes: u32,
    pub process_buffer: Arc<Semaphore>,
    pub slow_consumer_after: Duration,
    pub catch_up_reads: Arc<Semaphore>,
}

impl StreamLimits {
    pub fn new(settings: StreamLimitSettings) -> StreamLimits {
        StreamLimits {
            admission: StreamAdmission::new(settings.max_streams, settings.max_streams_per_tenant),
            stream_buffer_bytes: settings.stream_buffer_bytes.max(1),
            process_buffer: Arc::new(Semaphore::new(settings.process_buffer_bytes.max(1) as usize)),
            slow_consumer_after: settings.slow_consumer_after,
            catch_up_reads: Arc::new(Semaphore::new(settings.concurrent_reads.max(1))),
        }
    }
}

/// Starts this process's event workers among `workers`: the listener, whose one LISTEN
/// connection wakes every StreamEvents stream of the process (through the returned hub) when
/// a sequencer round of any replica announces events, and the sequencer, which `recorded`
/// wakes after this process's commits and which polls every `poll` for events committed
/// through other replicas.
pub fn start_event_workers(
    workers: &mut Workers,
    pool: PgPool,
    recorded: EventWake,
    poll: Duration,
) -> EventHub {
    let hub = EventHub::new();
    workers.spawn("event listener", {
        let hub = hub.clone();
        let pool = pool.clone();
        move |shutdown| async move { hub.listen(pool, shutdown).await }
    });
    workers.spawn("event sequencer", move |shutdown| async move {
        sequencer::sequence(pool, recorded.0, poll, shutdown).await
    });
    hub
}

/// An event as stored; the transport decodes its payload.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub id: String,
    pub event_type: String,
    pub dispute_id: String,
    pub create_time: DateTime<Utc>,
    pub position: i64,
    /// The dispute after the change, encoded as `disputes.v1.Dispute`.
    pub payload: Vec<u8>,
}

impl From<EventRow> for StoredEvent {
    fn from(row: EventRow) -> Self {
        StoredEvent {
            id: row.id,
            event_type: row.event_type,
            dispute_id: row.dispute_id,
            create_time: row.create_time,
            position: row.position,
            payload: row.payload,
        }
    }
}

/// One page of ListEvents.
#[derive(Debug, Clone)]
pub struct EventPage {
    /// Oldest first (commit order).
    pub events: Vec<StoredEvent>,
    /// Empty on the last page.
    pub next_page_token: String,
}

/// What a stream sends.
#[derive(Debug, Clone)]
pub enum FeedItem {
    Event(StoredEvent),
    /// Nothing was sent for a heartbeat interval; `position` is where the stream stands.
    Heartbeat {
        time: DateTime<Utc>,
        position: i64,
    },
}

/// How a stream runs.
#[derive(Debug, Clone)]
pub struct FollowSettings {
    pub tenant_id: String,
    pub filter: EventFilter,
    /// The position after which the stream starts.
    pub after_position: i64,
    pub heartbeat: Duration,
    /// When the caller's token expires: the stream ends then (UNAUTHENTICATED).
    pub expires_at: DateTime<Utc>,
}
