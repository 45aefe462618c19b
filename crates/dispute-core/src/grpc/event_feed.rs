//! ListEvents, GetEvent and StreamEvents (scope `events:read`). The mapping of the feed's
//! messages lives here next to the handlers (the dispute itself is decoded from the stored
//! payload, which is already its wire form).

use std::pin::Pin;
use std::time::Duration;

use disputes_proto::disputes_v1 as pb;
use futures::Stream;
use prost::Message;
use service_kit::auth::{Caller, Scope};
use service_kit::time::{instant, timestamp};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::app::{App, EventHub, FeedItem, FollowSettings, StoredEvent};
use crate::domain::DisputeError;
use crate::domain::requests::{self, EventFilterDraft, ListEventsDraft, StreamEventsDraft};

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

pub struct EventFeedRpcs {
    app: App,
    hub: EventHub,
    settings: FeedSettings,
}

impl EventFeedRpcs {
    pub fn new(app: App, hub: EventHub, settings: FeedSettings) -> Self {
        Self { app, hub, settings }
    }

    pub async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::EventsRead)?;
        let request = request.into_inner();
        let input = requests::list_events(ListEventsDraft {
            filter: EventFilterDraft {
                types: request.types,
                dispute_id: request.dispute_id,
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
            page_token: request.page_token,
        })?;
        let page = self.app.list_events(&caller.tenant_id, &input).await?;
        let events = page
            .events
            .into_iter()
            .map(event_message)
            .collect::<Result<_, _>>()?;
        Ok(Response::new(pb::ListEventsResponse {
            events,
            next_page_token: page.next_page_token,
        }))
    }

    pub async fn get_event(
        &self,
        request: Request<pb::GetEventRequest>,
    ) -> Result<Response<pb::GetEventResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::EventsRead)?;
        let id = requests::event_id("id", &request.get_ref().id)?;
        let event = self.app.get_event(&caller.tenant_id, &id).await?;
        Ok(Response::new(pb::GetEventResponse {
            event: Some(event_message(event)?),
        }))
    }

    pub async fn stream_events(
        &self,
        request: Request<pb::StreamEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::EventsRead)?;
        let request = request.into_inner();
        let input = requests::stream_events(StreamEventsDraft {
            types: request.types,
            dispute_id: request.dispute_id,
            after_event_id: request.after_event_id,
            from_beginning: request.from_beginning,
        })?;
        // Resolved before answering: an unknown `after_event_id` is NOT_FOUND, not a stream.
        let after_position = self
            .app
            .stream_start_position(&caller.tenant_id, &input.start)
            .await?;
        let follow = FollowSettings {
            tenant_id: caller.tenant_id.clone(),
            filter: input.filter,
            after_position,
            heartbeat: self.settings.heartbeat,
        };
        let (items, mut received) = mpsc::channel(STREAM_BUFFER);
        let (answers, answered) = mpsc::channel(STREAM_BUFFER);
        let app = self.app.clone();
        let hub = self.hub.clone();
        let shutdown = self.settings.shutdown.clone();
        // Follows the feed, and maps what it sends to messages; the stream ends when either
        // side is done (the client left, or shutdown), with the error that ended it if any.
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
                tracing::warn!(tenant_id = %caller.tenant_id, error = ?error, "event stream ended by an error");
                let _ = answers.send(Err(Status::from(error))).await;
            }
        });
        let stream = futures::stream::unfold(answered, |mut answered| async move {
            answered.recv().await.map(|answer| (answer, answered))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// The wire form of a stored event: the dispute decoded from its payload, and the history
/// entry that caused it (the payload's only entry; none for `dispute.due_soon`).
fn event_message(event: StoredEvent) -> Result<pb::Event, DisputeError> {
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
