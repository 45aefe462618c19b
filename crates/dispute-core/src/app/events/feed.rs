//! ListEvents, GetEvent and StreamEvents' reads, in commit order (by position).

use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use domain_kit::ids::EventId;
use domain_kit::page_token::PageCursor;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{EventHub, EventPage, FeedItem, FollowSettings, StoredEvent};
use crate::app::App;
use crate::domain::DisputeError;
use crate::domain::requests::{ListEvents, StreamStart};
use crate::store::events::{self, EventQuery};

/// Events a stream reads per query while it catches up.
const STREAM_BATCH: i64 = 200;

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
        let mut wakes = hub.subscribe();
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
                () = wakes.next_for(&settings.tenant_id) => {}
            }
        }
    }
}

fn event_not_found(id: &str) -> DisputeError {
    DisputeError::NotFound {
        kind: "event",
        id: id.to_owned(),
    }
}
