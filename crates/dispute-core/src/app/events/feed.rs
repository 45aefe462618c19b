//! ListEvents, GetEvent and where a StreamEvents stream starts, in commit order (by
//! position); the stream itself is `follow`'s.

use anyhow::Context;
use domain_kit::ids::EventId;
use domain_kit::page_token::PageCursor;

use super::{EventPage, StoredEvent};
use crate::app::App;
use crate::domain::DisputeError;
use crate::domain::requests::{ListEvents, StreamStart};
use crate::store::events::{self, EventQuery};

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
}

fn event_not_found(id: &str) -> DisputeError {
    DisputeError::NotFound {
        kind: "event",
        id: id.to_owned(),
    }
}
