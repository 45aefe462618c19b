//! ListEvents, GetEvent and StreamEvents (scope `events:read`).
// TODO(issue 12): not built yet; every RPC answers UNIMPLEMENTED.

use std::pin::Pin;

use disputes_proto::disputes_v1 as pb;
use futures::Stream;
use service_kit::auth::{Caller, Scope};
use tonic::{Request, Response, Status};

use crate::app::App;

/// The stream StreamEvents answers with.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<pb::StreamEventsResponse, Status>> + Send>>;

pub struct EventFeedRpcs {
    #[allow(dead_code)]
    app: App,
}

impl EventFeedRpcs {
    pub fn new(app: App) -> Self {
        Self { app }
    }

    pub async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        Caller::of(&request)?.require(Scope::EventsRead)?;
        Err(Status::unimplemented("ListEvents is not built yet"))
    }

    pub async fn get_event(
        &self,
        request: Request<pb::GetEventRequest>,
    ) -> Result<Response<pb::GetEventResponse>, Status> {
        Caller::of(&request)?.require(Scope::EventsRead)?;
        Err(Status::unimplemented("GetEvent is not built yet"))
    }

    pub async fn stream_events(
        &self,
        request: Request<pb::StreamEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        Caller::of(&request)?.require(Scope::EventsRead)?;
        Err(Status::unimplemented("StreamEvents is not built yet"))
    }
}
