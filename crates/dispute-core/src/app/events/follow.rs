//! A StreamEvents stream's follower: reads the tenant's events after the stream's position
//! into its byte-bounded buffer, in order, then follows new ones as they commit.
//!
//! Reads wait for one of the process's few catch-up read slots (`--event-stream-reads`),
//! so however many streams a commit wakes, they hold at most that many pooled connections
//! and unary calls keep the rest. A stream reads only when its buffer and the process's
//! have room for the largest event it has seen, and asks for about as many rows as fit, so
//! rows read are buffered at once instead of being held while the stream waits for room.
//!
//! The follower ends the stream when the client takes nothing of what is buffered for
//! `--event-stream-slow-consumer-ms`, or when the caller's token expires.

use std::hash::BuildHasher;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::buffer::{BufferSender, StreamEnd, item_bytes};
use super::{EventHub, FeedItem, FollowSettings, StoredEvent, StreamLimits};
use crate::app::App;
use crate::domain::DisputeError;
use crate::store::events::{self, EventRow};

/// Most events a stream reads per query while it catches up.
const STREAM_BATCH: i64 = 200;
/// Size assumed for an event before the stream has read one.
const FIRST_ROW_GUESS_BYTES: usize = 64 * 1024;
/// A deadline this far away stands for "never" (tokio instants cannot be unbounded).
const FAR_AWAY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Rows to read next: about as many events of the largest size seen as fit in the room
/// left in the buffer, at least one and at most [`STREAM_BATCH`].
pub fn batch_rows(free_bytes: usize, largest_event_bytes: usize) -> i64 {
    let rows = free_bytes / largest_event_bytes.max(1);
    i64::try_from(rows)
        .unwrap_or(i64::MAX)
        .clamp(1, STREAM_BATCH)
}

/// A random duration below `period` (std's randomly keyed hasher as the source).
fn phase_within(period: Duration) -> Duration {
    let random = std::collections::hash_map::RandomState::new().hash_one(());
    period.mul_f64((random % 10_000) as f64 / 10_000.0)
}

/// The tokio instant of a wall-clock time (now if passed, about ten years ahead at most).
fn instant_of(at: DateTime<Utc>) -> Instant {
    let left = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
    Instant::now() + left.min(FAR_AWAY)
}

impl App {
    /// Follows the tenant's events after `settings.after_position` that pass the filter
    /// into `sink`, in order, (woken by `hub`, and reading again once per heartbeat
    /// interval in case a wake-up was lost), with a heartbeat after each interval in which
    /// nothing was sent. Returns when the client side is gone or on `shutdown`; a slow consumer, an
    /// expired token or a database failure ends the stream through `sink`.
    pub async fn follow_events(
        &self,
        hub: &EventHub,
        settings: FollowSettings,
        limits: &StreamLimits,
        sink: BufferSender,
        shutdown: CancellationToken,
    ) {
        let stop = Stop {
            shutdown,
            expiry: instant_of(settings.expires_at),
            slow_after: limits.slow_consumer_after,
        };
        match self.follow(hub, &settings, limits, &sink, &stop).await {
            Ok(None) => {}
            Ok(Some(end)) => {
                tracing::info!(tenant_id = %settings.tenant_id, end = ?end, "event stream ended");
                sink.end(end);
            }
            Err(error) => {
                tracing::warn!(tenant_id = %settings.tenant_id, error = ?error, "event stream ended by an error");
                sink.end(StreamEnd::Failed(error));
            }
        }
    }

    /// The follower's loop; `Ok(None)` when the client left or the service stops.
    async fn follow(
        &self,
        hub: &EventHub,
        settings: &FollowSettings,
        limits: &StreamLimits,
        sink: &BufferSender,
        stop: &Stop,
    ) -> Result<Option<StreamEnd>, DisputeError> {
        let mut wakes = hub.subscribe();
        let mut last = settings.after_position;
        let mut largest_event = FIRST_ROW_GUESS_BYTES;
        let every = settings.heartbeat.max(Duration::from_millis(10));
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.reset();
        // Reads in case a wake-up was lost, once per interval at a phase of this stream's
        // own: streams opened together (a replica's clients reconnecting) do not all read
        // at once, every interval.
        let mut rereads = tokio::time::interval_at(Instant::now() + phase_within(every), every);
        rereads.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sent_since_tick = false;
        loop {
            // Catch up: read after the last position until nothing more is committed.
            loop {
                // Read only when the largest event seen would fit, and only about as many
                // rows as fit: rows read are then buffered at once, not held waiting.
                tokio::select! {
                    room = sink.room_for(largest_event) => if room.is_err() { return Ok(None) },
                    end = stop.interrupted(sink) => return Ok(end),
                }
                let limit = batch_rows(sink.free_bytes(), largest_event);
                let rows = tokio::select! {
                    rows = self.read_after(limits, &settings.tenant_id, last, limit) => rows?,
                    end = stop.interrupted(sink) => return Ok(end),
                };
                let full = i64::try_from(rows.len()).unwrap_or(i64::MAX) >= limit;
                if let Some(largest) = rows.iter().map(|row| row.payload.len()).max() {
                    largest_event = largest;
                }
                for row in rows {
                    // Positions are dense: a gap after where the stream stands means the
                    // retention purge removed events it had not read yet (it fell behind).
                    if last > 0 && row.position > last + 1 {
                        self.refuse_purged_gap(&settings.tenant_id, last).await?;
                    }
                    last = row.position;
                    if !settings
                        .filter
                        .matches(&row.event_type, &row.dispute_id, row.create_time)
                    {
                        continue;
                    }
                    let item = FeedItem::Event(StoredEvent::from(row));
                    largest_event = largest_event.max(item_bytes(&item));
                    tokio::select! {
                        sent = sink.send(item) => if sent.is_err() { return Ok(None) },
                        end = stop.interrupted(sink) => return Ok(end),
                    }
                    sent_since_tick = true;
                }
                if !full {
                    break;
                }
            }
            // Wait for a commit of this tenant or a re-read, sending heartbeats meanwhile.
            loop {
                tokio::select! {
                    end = stop.interrupted(sink) => return Ok(end),
                    _ = ticks.tick() => {
                        if !sent_since_tick {
                            let beat = FeedItem::Heartbeat { time: Utc::now(), position: last };
                            tokio::select! {
                                sent = sink.send(beat) => if sent.is_err() { return Ok(None) },
                                end = stop.interrupted(sink) => return Ok(end),
                            }
                        }
                        sent_since_tick = false;
                    }
                    _ = rereads.tick() => break,
                    () = wakes.next_for(&settings.tenant_id) => break,
                }
            }
        }
    }

    /// Up to `limit` events of the tenant after `last`, read in one of the process's
    /// catch-up read slots.
    async fn read_after(
        &self,
        limits: &StreamLimits,
        tenant_id: &str,
        last: i64,
        limit: i64,
    ) -> Result<Vec<EventRow>, DisputeError> {
        let _slot = limits
            .catch_up_reads
            .acquire()
            .await
            .context("catch-up read slots closed")?;
        let mut conn = self.pool.acquire().await.context("acquire")?;
        Ok(events::events_after_position(&mut conn, tenant_id, last, limit).await?)
    }
}

impl App {
    /// EVENTS_PURGED when events after `last` were purged.
    async fn refuse_purged_gap(&self, tenant_id: &str, last: i64) -> Result<(), DisputeError> {
        let mut conn = self.pool.acquire().await.context("acquire")?;
        super::feed::refuse_purged_cursor(&mut conn, tenant_id, Some(last)).await
    }
}

/// What ends a stream besides its own progress.
struct Stop {
    shutdown: CancellationToken,
    /// When the caller's token expires.
    expiry: Instant,
    /// How long the client may take nothing of what is buffered.
    slow_after: Duration,
}

impl Stop {
    /// Resolves when the stream must stop: `None` for the client gone or shutdown,
    /// otherwise the ending to send.
    async fn interrupted(&self, sink: &BufferSender) -> Option<StreamEnd> {
        loop {
            // Only this follower buffers items, so "nothing buffered" lasts until the
            // select this future is in ends; then a new one is made.
            let stalled_at = sink
                .waiting_since()
                .map_or(self.expiry + FAR_AWAY, |since| since + self.slow_after);
            tokio::select! {
                () = self.shutdown.cancelled() => return None,
                () = sink.closed() => return None,
                () = sleep_until(self.expiry) => return Some(StreamEnd::TokenExpired),
                () = sleep_until(stalled_at) => {
                    // The client may have taken something meanwhile: look again.
                    let stalled = sink
                        .waiting_since()
                        .is_some_and(|since| since + self.slow_after <= Instant::now());
                    if stalled {
                        return Some(StreamEnd::SlowConsumer);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_fit_the_room_left() {
        assert_eq!(batch_rows(1 << 20, 64 * 1024), 16);
        assert_eq!(batch_rows(1 << 20, 1_000), STREAM_BATCH);
        assert_eq!(batch_rows(0, 1_000), 1);
        assert_eq!(batch_rows(100, 0), 100);
        assert_eq!(batch_rows(1 << 20, 600_000), 1);
    }

    proptest::proptest! {
        #[test]
        fn a_batch_is_never_empty_nor_over_the_cap(free in 0usize..1 << 30, largest in 0usize..1 << 24) {
            let rows = batch_rows(free, largest);
            proptest::prop_assert!((1..=STREAM_BATCH).contains(&rows));
            // When more than one row is asked for, they fit in the room left.
            if rows > 1 {
                proptest::prop_assert!(rows as usize * largest.max(1) <= free);
            }
        }
    }

    #[test]
    fn phases_fall_within_the_period_and_differ() {
        let period = Duration::from_secs(15);
        let phases: Vec<Duration> = (0..50).map(|_| phase_within(period)).collect();
        assert!(phases.iter().all(|phase| *phase < period));
        assert!(phases.iter().any(|phase| *phase != phases[0]));
    }

    #[test]
    fn past_and_far_times_become_bounded_instants() {
        let now = Instant::now();
        assert!(instant_of(Utc::now() - chrono::Duration::seconds(5)) <= Instant::now());
        assert!(instant_of(DateTime::<Utc>::MAX_UTC) <= now + FAR_AWAY + Duration::from_secs(1));
        let soon = instant_of(Utc::now() + chrono::Duration::seconds(60));
        assert!(
            soon > now + Duration::from_secs(58)
                && soon <= Instant::now() + Duration::from_secs(60)
        );
    }
}
