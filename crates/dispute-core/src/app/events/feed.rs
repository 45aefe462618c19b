//! ListEvents, GetEvent and where a StreamEvents stream starts, in commit order (by
//! position); the stream itself is `follow`'s.

use anyhow::Context;
use domain_kit::ids::EventId;
use domain_kit::page_token::PageCursor;

use super::{EventPage, StoredEvent};
use crate::app::App;
use crate::domain::DisputeError;
use crate::domain::requests::{ListEvents, StreamStart};
use crate::domain::retention::cursor_is_purged;
use crate::store::events::{self, EventQuery};
use crate::store::retention;

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
        // The page token's event, by position: `None` when it is gone.
        let cursor_position = match page.after.as_ref() {
            Some(cursor) => Some(events::event_position(&mut conn, tenant_id, &cursor.id).await?),
            None => None,
        };
        let rows = events::list_events(
            &mut conn,
            tenant_id,
            &query,
            cursor_position.flatten().unwrap_or(0),
            page.fetch_limit(),
        )
        .await?;
        // Checked after the read: a purge that committed before or during it is seen, so a
        // page never silently skips purged events.
        if let Some(position) = cursor_position {
            refuse_purged_cursor(&mut conn, tenant_id, position).await?;
        }
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

    /// The position a stream starts after: the given event's, 0 for the beginning (the
    /// oldest event kept), or the newest committed one for "now". An event the tenant never
    /// had (or not numbered yet) is NOT_FOUND; one removed by retention, or after which
    /// events were removed, is OUT_OF_RANGE (EVENTS_PURGED) naming the oldest kept.
    pub async fn stream_start_position(
        &self,
        tenant_id: &str,
        start: &StreamStart,
    ) -> Result<i64, DisputeError> {
        let mut conn = self.pool.acquire().await.context("acquire")?;
        match start {
            StreamStart::Beginning => Ok(0),
            StreamStart::Now => Ok(events::last_event_position(&mut conn, tenant_id).await?),
            StreamStart::After(id) => {
                let position = events::event_position(&mut conn, tenant_id, id.as_str()).await?;
                refuse_purged_cursor(&mut conn, tenant_id, position).await?;
                // An event not numbered yet was never streamed: not a place to continue from.
                position
                    .filter(|position| *position > 0)
                    .ok_or_else(|| event_not_found(id.as_str()))
            }
        }
    }
}

/// EVENTS_PURGED when going on after `position` (`None`: the cursor's event is gone) would
/// skip events the retention purge removed.
pub(super) async fn refuse_purged_cursor(
    conn: &mut sqlx::PgConnection,
    tenant_id: &str,
    position: Option<i64>,
) -> Result<(), DisputeError> {
    let purged_through = retention::purged_through(conn, tenant_id).await?;
    if !cursor_is_purged(position, purged_through) {
        return Ok(());
    }
    Err(DisputeError::EventsPurged {
        oldest_event_id: retention::oldest_event_id(conn, tenant_id).await?,
    })
}

fn event_not_found(id: &str) -> DisputeError {
    DisputeError::NotFound {
        kind: "event",
        id: id.to_owned(),
    }
}
