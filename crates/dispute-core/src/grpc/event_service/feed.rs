//! The event feed's messages: ListEvents' and StreamEvents' drafts in, events and
//! heartbeats out (the dispute itself is decoded from the stored payload, which is already
//! its wire form), and the task that forwards a followed feed to a StreamEvents client.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use disputes_proto::disputes_v1 as pb;
use futures::Stream;
use prost::Message;
use service_kit::time::{instant, timestamp};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::app::App;
use crate::app::events::buffer::{BufferReceiver, Next, StreamEnd, stream_buffer};
use crate::app::events::{
    EventHub, EventPage, FeedItem, FollowSettings, StoredEvent, StreamCap, StreamLimits,
    StreamPermit,
};
use crate::domain::DisputeError;
use crate::domain::requests::{EventFilterDraft, ListEventsDraft, StreamEventsDraft};
use crate::grpc::status::DOMAIN;

/// The stream StreamEvents answers with.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<pb::StreamEventsResponse, Status>> + Send>>;

/// RetryInfo delay of a stream refused by a cap: streams are long-lived, so a place frees
/// up only when another stream of the tenant (or the replica) ends.
pub const STREAM_REFUSED_RETRY_DELAY: Duration = Duration::from_secs(5);

/// How StreamEvents runs.
#[derive(Clone)]
pub struct FeedSettings {
    /// A heartbeat is sent after this long without an event.
    pub heartbeat: Duration,
    /// Cancelled when the service shuts down: every stream then ends (OK).
    pub shutdown: CancellationToken,
    /// Caps on open streams, their buffers, slow consumers and catch-up reads.
    pub limits: StreamLimits,
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

/// The StreamEvents answer: a task follows the feed (`App::follow_events`) into the
/// stream's byte-bounded buffer, and the answer takes from it, mapping items to messages;
/// the stream ends when either side is done (the client left, or shutdown), with the
/// status that ended it if any. `permit` (the stream's place under the caps) is held until
/// both the follower and the answer are gone. `resume_from` is the event the stream starts
/// after, if the request named one.
pub(super) fn follow(
    app: App,
    hub: EventHub,
    follow: FollowSettings,
    feed: &FeedSettings,
    permit: StreamPermit,
    resume_from: Option<String>,
) -> EventStream {
    let limits = feed.limits.clone();
    let (sink, buffer) = stream_buffer(limits.stream_buffer_bytes, limits.process_buffer.clone());
    let permit = Arc::new(permit);
    let follower_permit = permit.clone();
    let shutdown = feed.shutdown.clone();
    tokio::spawn(async move {
        app.follow_events(&hub, follow, &limits, sink, shutdown)
            .await;
        drop(follower_permit);
    });
    let answer = Answer {
        buffer,
        last_event_id: resume_from,
        done: false,
        _permit: permit,
    };
    Box::pin(futures::stream::unfold(answer, |mut answer| async move {
        answer.next().await.map(|message| (message, answer))
    }))
}

/// The client's side of a stream: what it was last given, for the resume information.
struct Answer {
    buffer: BufferReceiver,
    /// The last event given to the transport (or the one the stream started after).
    last_event_id: Option<String>,
    done: bool,
    _permit: Arc<StreamPermit>,
}

impl Answer {
    async fn next(&mut self) -> Option<Result<pb::StreamEventsResponse, Status>> {
        if self.done {
            return None;
        }
        let answer = match self.buffer.next().await {
            Next::Item(item) => {
                if let FeedItem::Event(event) = &item {
                    self.last_event_id = Some(event.id.clone());
                }
                stream_message(item).map_err(Status::from)
            }
            Next::Ended(end) => Err(ending_status(end, self.last_event_id.as_deref())),
            Next::Closed => return None,
        };
        self.done = answer.is_err();
        Some(answer)
    }
}

/// ErrorInfo metadata key of the last event a stream delivered before it was ended.
pub const LAST_EVENT_ID_KEY: &str = "last_event_id";

/// The status a stream ends with: a slow consumer ABORTED (reason `SLOW_CONSUMER`), an
/// expired token UNAUTHENTICATED (reason `TOKEN_EXPIRED`), both saying how to resume (the
/// last event delivered, in the message and in ErrorInfo metadata `last_event_id`); a
/// failure as any other error.
pub fn ending_status(end: StreamEnd, last_event_id: Option<&str>) -> Status {
    let resume = match last_event_id {
        Some(id) => format!("resume with after_event_id={id}"),
        None => "no event was delivered; open the stream again as before".to_owned(),
    };
    let (code, reason, message) = match end {
        StreamEnd::SlowConsumer => (
            Code::Aborted,
            "SLOW_CONSUMER",
            format!("the client took nothing of what the stream buffered for too long; {resume}"),
        ),
        StreamEnd::TokenExpired => (
            Code::Unauthenticated,
            "TOKEN_EXPIRED",
            format!("the token expired; {resume} and a fresh token"),
        ),
        StreamEnd::Failed(error) => return Status::from(error),
    };
    let details = ErrorDetails::with_error_info(
        reason,
        DOMAIN,
        [(
            LAST_EVENT_ID_KEY.to_owned(),
            last_event_id.unwrap_or_default().to_owned(),
        )],
    );
    Status::with_error_details(code, message, details)
}

/// RESOURCE_EXHAUSTED with RetryInfo and the cap in ErrorInfo: reason
/// `EVENT_STREAMS_PER_TENANT` or `EVENT_STREAMS_PER_PROCESS`, metadata `limit`.
pub fn stream_refused(cap: StreamCap) -> Status {
    let (reason, limit, message) = match cap {
        StreamCap::Tenant { limit } => (
            "EVENT_STREAMS_PER_TENANT",
            limit,
            format!(
                "this tenant already has {limit} event streams open on this replica; close one or retry later"
            ),
        ),
        StreamCap::Process { limit } => (
            "EVENT_STREAMS_PER_PROCESS",
            limit,
            format!("this replica already serves {limit} event streams; retry later"),
        ),
    };
    let mut details = ErrorDetails::with_retry_info(Some(STREAM_REFUSED_RETRY_DELAY));
    details.set_error_info(reason, DOMAIN, [("limit".to_owned(), limit.to_string())]);
    Status::with_error_details(Code::ResourceExhausted, message, details)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_consumer_is_told_where_to_resume() {
        let status = ending_status(StreamEnd::SlowConsumer, Some("evt_42"));
        assert_eq!(status.code(), Code::Aborted);
        assert!(
            status
                .message()
                .contains("resume with after_event_id=evt_42")
        );
        let info = status.get_error_details().error_info().cloned().unwrap();
        assert_eq!(info.reason, "SLOW_CONSUMER");
        assert_eq!(info.metadata.get(LAST_EVENT_ID_KEY).unwrap(), "evt_42");
    }

    #[test]
    fn an_expired_token_is_unauthenticated_with_the_resume_point() {
        let status = ending_status(StreamEnd::TokenExpired, None);
        assert_eq!(status.code(), Code::Unauthenticated);
        assert!(status.message().contains("no event was delivered"));
        let info = status.get_error_details().error_info().cloned().unwrap();
        assert_eq!(info.reason, "TOKEN_EXPIRED");
        assert_eq!(info.metadata.get(LAST_EVENT_ID_KEY).unwrap(), "");
    }

    #[test]
    fn a_refused_stream_names_its_cap_and_when_to_retry() {
        for (cap, reason) in [
            (StreamCap::Tenant { limit: 2 }, "EVENT_STREAMS_PER_TENANT"),
            (StreamCap::Process { limit: 9 }, "EVENT_STREAMS_PER_PROCESS"),
        ] {
            let status = stream_refused(cap);
            assert_eq!(status.code(), Code::ResourceExhausted);
            let details = status.get_error_details();
            assert_eq!(details.error_info().unwrap().reason, reason);
            assert_eq!(
                details.retry_info().and_then(|r| r.retry_delay),
                Some(STREAM_REFUSED_RETRY_DELAY)
            );
        }
    }
}
