//! The event feed's messages: ListEvents' and StreamEvents' drafts in, events and
//! heartbeats out (the dispute itself is decoded from the stored payload, which is already
//! its wire form), and the task that forwards a followed feed to a StreamEvents client.

use std::pin::Pin;
use std::time::Duration;

use disputes_proto::disputes_v1 as pb;
use futures::Stream;
use prost::Message;
use service_kit::time::{instant, timestamp};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::app::App;
use crate::app::events::{EventHub, EventPage, FeedItem, FollowSettings, StoredEvent};
use crate::domain::DisputeError;
use crate::domain::requests::{EventFilterDraft, ListEventsDraft, StreamEventsDraft};

/// The stream StreamEvents answers with.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<pb::StreamEventsResponse, Status>> + Send>>;

/// Items a stream may buffer before it waits for the client.
const STREAM_BUFFER: usize = 64;

/// How StreamEvents runs.
#[derive(Clone)]
pub struct FeedSettings {
    /// A heartbeat is sent after this long without an event.
    pub heartbeat: Duration,
    /// Cancelled when the service shuts down: every stream then ends (OK).
    pub shutdown: CancellationToken,
}

pub(super) fn list_events_draft(request: &pb::ListEventsRequest) -> ListEventsDraft {
    ListEventsDraft {
        filter: EventFilterDraft {
            types: request.types.clone(),
            dispute_id: request.dispute_id.clone(),
            created_after: request
                .created_after
                .as_ref()
                .map(|ts| instant("created_after", ts)),
            created_before: request
                .created_before
                .as_ref()
                .map(|ts| instant("created_before", ts)),
        },
        page_size: request.page_size,
        page_token: request.page_token.clone(),
    }
}

pub(super) fn stream_events_draft(request: &pb::StreamEventsRequest) -> StreamEventsDraft {
    StreamEventsDraft {
        types: request.types.clone(),
        dispute_id: request.dispute_id.clone(),
        after_event_id: request.after_event_id.clone(),
        from_beginning: request.from_beginning,
    }
}

pub(super) fn list_events_response(
    page: EventPage,
) -> Result<pb::ListEventsResponse, DisputeError> {
    let events = page
        .events
        .into_iter()
        .map(event_message)
        .collect::<Result<_, _>>()?;
    Ok(pb::ListEventsResponse {
        events,
        next_page_token: page.next_page_token,
    })
}

/// The wire form of a stored event: the dispute decoded from its payload, and the history
/// entry that caused it (the payload's only entry; none for `dispute.due_soon`).
pub(super) fn event_message(event: StoredEvent) -> Result<pb::Event, DisputeError> {
    let dispute = pb::Dispute::decode(event.payload.as_slice()).map_err(|e| {
        DisputeError::Internal(anyhow::Error::new(e).context("decode event payload"))
    })?;
    let cause = dispute.action_history.last().cloned();
    Ok(pb::Event {
        id: event.id,
        r#type: event.event_type,
        create_time: Some(timestamp(event.create_time)),
        dispute_id: event.dispute_id,
        position: event.position,
        dispute: Some(dispute),
        cause,
    })
}

fn stream_message(item: FeedItem) -> Result<pb::StreamEventsResponse, DisputeError> {
    let kind = match item {
        FeedItem::Event(event) => pb::stream_events_response::Kind::Event(event_message(event)?),
        FeedItem::Heartbeat { time, position } => {
            pb::stream_events_response::Kind::Heartbeat(pb::Heartbeat {
                time: Some(timestamp(time)),
                position,
            })
        }
    };
    Ok(pb::StreamEventsResponse { kind: Some(kind) })
}

/// The StreamEvents answer: a task follows the feed (`App::follow_events`) and maps what it
/// sends to messages; the stream ends when either side is done (the client left, or
/// shutdown), with the error that ended it if any.
pub(super) fn follow(
    app: App,
    hub: EventHub,
    follow: FollowSettings,
    shutdown: CancellationToken,
) -> EventStream {
    let (items, mut received) = mpsc::channel(STREAM_BUFFER);
    let (answers, answered) = mpsc::channel(STREAM_BUFFER);
    let tenant_id = follow.tenant_id.clone();
    tokio::spawn(async move {
        let follower = app.follow_events(&hub, follow, items, shutdown);
        let to_client = answers.clone();
        let forward = async move {
            loop {
                let item = tokio::select! {
                    () = to_client.closed() => return,
                    item = received.recv() => item,
                };
                let Some(item) = item else { return };
                let answer = stream_message(item).map_err(Status::from);
                let failed = answer.is_err();
                if to_client.send(answer).await.is_err() || failed {
                    return;
                }
            }
        };
        let (followed, ()) = tokio::join!(follower, forward);
        if let Err(error) = followed {
            tracing::warn!(tenant_id = %tenant_id, error = ?error, "event stream ended by an error");
            let _ = answers.send(Err(Status::from(error))).await;
        }
    });
    let stream = futures::stream::unfold(answered, |mut answered| async move {
        answered.recv().await.map(|answer| (answer, answered))
    });
    Box::pin(stream)
}
