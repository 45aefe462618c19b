//! The event feed: ListEvents, GetEvent and StreamEvents' reads, and the hub that wakes
//! streams when events commit.
//!
//! Positions (`dispute_events.position`, migration 0012) are given to committed events by
//! the sequencer (one round at a time in the whole database, see
//! `store::events::number_committed_events`), so they are dense per tenant and become
//! visible in order: a reader that remembers the last position it read and reads
//! `position > last` never skips or repeats an event. Every process runs the sequencer;
//! the insert trigger wakes it on commit, and it also runs every second in case a wake-up
//! was lost. A stream never trusts a notification to carry anything: a notification (or a
//! heartbeat tick, or the listener reconnecting) only makes it read again after its last
//! position.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use domain_kit::ids::EventId;
use domain_kit::page_token::PageCursor;
use sqlx::PgPool;
use tokio::sync::{Notify, broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::App;
use crate::domain::DisputeError;
use crate::domain::requests::{EventFilter, ListEvents, StreamStart};
use crate::store::events::{self, EventQuery, EventRow};

/// Events a stream reads per query while it catches up.
const STREAM_BATCH: i64 = 200;
/// How long the listener waits before connecting again after a failure.
const LISTENER_RETRY: Duration = Duration::from_secs(1);
/// Events the sequencer numbers per round (and transaction).
const SEQUENCER_BATCH: i64 = 1000;
/// The sequencer runs at least this often, even without a wake-up.
const SEQUENCER_EVERY: Duration = Duration::from_secs(1);
/// When another process holds the sequencer lock, try again after this long (its round may
/// have started before our wake-up's events committed).
const SEQUENCER_BUSY_RETRY: Duration = Duration::from_millis(20);

/// Default heartbeat interval of StreamEvents (`--event-stream-heartbeat-ms`).
pub const DEFAULT_STREAM_HEARTBEAT_MS: u64 = 15_000;

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

/// Why streams should read again.
#[derive(Debug, Clone)]
enum Wake {
    /// Events of this tenant committed.
    Tenant(String),
    /// The listener (re)connected: notifications may have been missed.
    All,
}

/// Wakes the streams of this process: one LISTEN connection, fanned out.
#[derive(Clone)]
pub struct EventHub {
    wakes: broadcast::Sender<Wake>,
}

impl EventHub {
    /// Starts the listener on its own connection, and the sequencer; both stop when
    /// `shutdown` is cancelled.
    pub fn spawn(pool: PgPool, shutdown: CancellationToken) -> (EventHub, JoinHandle<()>) {
        let (wakes, _) = broadcast::channel(1024);
        let hub = EventHub {
            wakes: wakes.clone(),
        };
        let inserted = std::sync::Arc::new(Notify::new());
        let task = tokio::spawn({
            let inserted = inserted.clone();
            async move {
                tokio::join!(
                    listen(pool.clone(), wakes, inserted.clone(), shutdown.clone()),
                    sequence(pool, inserted, shutdown),
                );
            }
        });
        (hub, task)
    }
}

/// Numbers committed events whenever the listener reports an insert (and every
/// [`SEQUENCER_EVERY`]), round after round until none is left.
async fn sequence(pool: PgPool, inserted: std::sync::Arc<Notify>, shutdown: CancellationToken) {
    let mut wait = SEQUENCER_EVERY;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = inserted.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
        wait = SEQUENCER_EVERY;
        loop {
            match number_round(&pool).await {
                Ok(Some(numbered)) if numbered >= SEQUENCER_BATCH as u64 => continue,
                Ok(Some(_)) => break,
                Ok(None) => {
                    wait = SEQUENCER_BUSY_RETRY;
                    break;
                }
                Err(error) => {
                    tracing::warn!(error = ?error, "event sequencer round failed; retrying");
                    wait = LISTENER_RETRY;
                    break;
                }
            }
        }
    }
}

/// One sequencer round in its own transaction; `None` when another process runs one.
async fn number_round(pool: &PgPool) -> anyhow::Result<Option<u64>> {
    let mut tx = pool.begin().await.context("begin")?;
    let numbered = events::number_committed_events(&mut tx, SEQUENCER_BATCH).await?;
    tx.commit().await.context("commit")?;
    Ok(numbered)
}

/// Forwards notifications to the streams until shutdown, reconnecting when the connection
/// drops (and then waking every stream, since notifications may have been lost).
async fn listen(
    pool: PgPool,
    wakes: broadcast::Sender<Wake>,
    inserted: std::sync::Arc<Notify>,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        let listener = tokio::select! {
            () = shutdown.cancelled() => return,
            listener = events::listen_for_events(&pool) => listener,
        };
        let mut listener = match listener {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(error = ?error, "event listener cannot connect; streams fall back to their heartbeat reads");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(LISTENER_RETRY) => continue,
                }
            }
        };
        let _ = wakes.send(Wake::All);
        inserted.notify_one();
        loop {
            let received = tokio::select! {
                () = shutdown.cancelled() => return,
                received = listener.try_recv() => received,
            };
            match received {
                Ok(Some(notification)) if notification.channel() == events::EVENTS_CHANNEL => {
                    let _ = wakes.send(Wake::Tenant(notification.payload().to_owned()));
                }
                Ok(Some(_inserted)) => inserted.notify_one(),
                Ok(None) => {
                    tracing::warn!("event listener connection lost; reconnecting");
                    break;
                }
                Err(error) => {
                    tracing::warn!(error = ?error, "event listener failed; reconnecting");
                    break;
                }
            }
        }
    }
}

/// How a stream runs.
#[derive(Debug, Clone)]
pub struct FollowSettings {
    pub tenant_id: String,
    pub filter: EventFilter,
    /// The position after which the stream starts.
    pub after_position: i64,
    pub heartbeat: Duration,
}

impl App {
    /// One page of the tenant's events, in commit order.
    pub async fn list_events(
        &self,
        tenant_id: &str,
        request: &ListEvents,
    ) -> Result<EventPage, DisputeError> {
        let mut conn = self.pool.acquire().await.context("acquire")?;
        let types = request.filter.type_names();
        let query = EventQuery {
            types: &types,
            dispute_id: request.filter.dispute_id.as_ref().map(|id| id.as_str()),
            created_after: request.filter.created_after,
            created_before: request.filter.created_before,
        };
        let page = &request.page;
        let rows = events::list_events(
            &mut conn,
            tenant_id,
            &query,
            page.after.as_ref().map(|cursor| cursor.id.as_str()),
            page.fetch_limit(),
        )
        .await?;
        let (rows, next_page_token) = page.cut(rows, |last| PageCursor {
            create_time: last.create_time,
            id: last.id.clone(),
        });
        Ok(EventPage {
            events: rows.into_iter().map(StoredEvent::from).collect(),
            next_page_token,
        })
    }

    /// One event of the tenant; another tenant's is NOT_FOUND.
    pub async fn get_event(
        &self,
        tenant_id: &str,
        id: &EventId,
    ) -> Result<StoredEvent, DisputeError> {
        let mut conn = self.pool.acquire().await.context("acquire")?;
        events::find_event(&mut conn, tenant_id, id.as_str())
            .await?
            .map(StoredEvent::from)
            .ok_or_else(|| event_not_found(id.as_str()))
    }

    /// The position a stream starts after: the given event's (NOT_FOUND if the tenant has
    /// no such event), 0 for the beginning, or the newest committed one for "now".
    pub async fn stream_start_position(
        &self,
        tenant_id: &str,
        start: &StreamStart,
    ) -> Result<i64, DisputeError> {
        let mut conn = self.pool.acquire().await.context("acquire")?;
        match start {
            StreamStart::Beginning => Ok(0),
            StreamStart::Now => Ok(events::last_event_position(&mut conn, tenant_id).await?),
            // An event not numbered yet was never streamed: not a place to continue from.
            StreamStart::After(id) => events::find_event(&mut conn, tenant_id, id.as_str())
                .await?
                .map(|row| row.position)
                .filter(|position| *position > 0)
                .ok_or_else(|| event_not_found(id.as_str())),
        }
    }

    /// Sends the tenant's events after `settings.after_position` that pass the filter into
    /// `sink`, in order, then follows new ones as they commit (woken by `hub`, and reading
    /// again at every heartbeat tick in case a wake-up was lost), with a heartbeat after
    /// each interval in which nothing was sent. Returns when the receiver is gone, or on
    /// `shutdown`; a database failure is returned as the error that ends the stream.
    pub async fn follow_events(
        &self,
        hub: &EventHub,
        settings: FollowSettings,
        sink: mpsc::Sender<FeedItem>,
        shutdown: CancellationToken,
    ) -> Result<(), DisputeError> {
        let mut wakes = hub.wakes.subscribe();
        let mut last = settings.after_position;
        let mut ticks = tokio::time::interval(settings.heartbeat.max(Duration::from_millis(10)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.reset();
        let mut sent_since_tick = false;
        loop {
            // Catch up: read after the last position until nothing more is committed.
            loop {
                let rows = {
                    let mut conn = self.pool.acquire().await.context("acquire")?;
                    events::events_after_position(
                        &mut conn,
                        &settings.tenant_id,
                        last,
                        STREAM_BATCH,
                    )
                    .await?
                };
                let full = i64::try_from(rows.len()).unwrap_or(i64::MAX) >= STREAM_BATCH;
                for row in rows {
                    last = row.position;
                    if settings
                        .filter
                        .matches(&row.event_type, &row.dispute_id, row.create_time)
                    {
                        if sink.send(FeedItem::Event(row.into())).await.is_err() {
                            return Ok(());
                        }
                        sent_since_tick = true;
                    }
                }
                if !full {
                    break;
                }
            }
            // Wait for a commit of this tenant, a tick, the client leaving or shutdown.
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = sink.closed() => return Ok(()),
                _ = ticks.tick() => {
                    if !sent_since_tick {
                        let beat = FeedItem::Heartbeat { time: Utc::now(), position: last };
                        if sink.send(beat).await.is_err() {
                            return Ok(());
                        }
                    }
                    sent_since_tick = false;
                }
                () = next_wake_of(&mut wakes, &settings.tenant_id) => {}
            }
        }
    }
}

/// Waits for a wake-up that concerns `tenant_id` (a lagging receiver counts as one: it may
/// have missed one). The hub holds the sender, so the channel never closes while a stream
/// runs; if it did, only the heartbeat reads would wake the stream.
async fn next_wake_of(wakes: &mut broadcast::Receiver<Wake>, tenant_id: &str) {
    loop {
        match wakes.recv().await {
            Ok(Wake::Tenant(tenant)) if tenant != tenant_id => continue,
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => return,
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}

fn event_not_found(id: &str) -> DisputeError {
    DisputeError::NotFound {
        kind: "event",
        id: id.to_owned(),
    }
}
