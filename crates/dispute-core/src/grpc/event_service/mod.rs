//! disputes.v1.EventService over gRPC: the event feed (ListEvents, GetEvent, StreamEvents;
//! scope `events:read`) and webhook endpoints and deliveries (scope `webhooks:manage`).
//! Each handler works as DisputeService's do: it reads the caller, maps the request to a
//! draft (`feed`, `webhooks`), checks it (`domain::requests`), calls one use case
//! (`app::events` through [`App`], or `app::webhooks`) and maps the result back; errors
//! become statuses in `grpc/status.rs`. `webhook_json` renders a delivery's body.

mod feed;
pub mod webhook_json;
mod webhooks;

use disputes_proto::disputes_v1 as pb;
use disputes_proto::disputes_v1::event_service_server::EventService;
use secrecy::ExposeSecret;
use service_kit::auth::{Caller, Scope};
use tonic::{Request, Response, Status};

pub use feed::{EventStream, FeedSettings};

use crate::app::events::{EventHub, FollowSettings};
use crate::app::{App, Webhooks};
use crate::domain::requests::{self, StreamStart};

pub struct EventServiceHandler {
    app: App,
    hub: EventHub,
    feed: FeedSettings,
    webhooks: Webhooks,
}

impl EventServiceHandler {
    /// The feed reads through `app` and follows `hub`; endpoints and deliveries are
    /// `webhooks`'.
    pub fn new(app: App, hub: EventHub, feed: FeedSettings, webhooks: Webhooks) -> Self {
        Self {
            app,
            hub,
            feed,
            webhooks,
        }
    }
}

#[tonic::async_trait]
impl EventService for EventServiceHandler {
    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::EventsRead)?;
        let input = requests::list_events(feed::list_events_draft(request.get_ref()))?;
        let page = self.app.list_events(&caller.tenant_id, &input).await?;
        Ok(Response::new(feed::list_events_response(page)?))
    }

    async fn get_event(
        &self,
        request: Request<pb::GetEventRequest>,
    ) -> Result<Response<pb::GetEventResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::EventsRead)?;
        let id = requests::event_id("id", &request.get_ref().id)?;
        let event = self.app.get_event(&caller.tenant_id, &id).await?;
        Ok(Response::new(pb::GetEventResponse {
            event: Some(feed::event_message(event)?),
        }))
    }

    type StreamEventsStream = EventStream;

    async fn stream_events(
        &self,
        request: Request<pb::StreamEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::EventsRead)?;
        let input = requests::stream_events(feed::stream_events_draft(request.get_ref()))?;
        // Admitted before any read; the permit lives as long as the stream.
        let permit = self
            .feed
            .limits
            .admission
            .admit(&caller.tenant_id)
            .map_err(feed::stream_refused)?;
        // Resolved before answering: an unknown `after_event_id` is NOT_FOUND, not a stream.
        let after_position = self
            .app
            .stream_start_position(&caller.tenant_id, &input.start)
            .await?;
        let resume_from = match &input.start {
            StreamStart::After(id) => Some(id.as_str().to_owned()),
            StreamStart::Beginning | StreamStart::Now => None,
        };
        let follow = FollowSettings {
            tenant_id: caller.tenant_id.clone(),
            filter: input.filter,
            after_position,
            heartbeat: self.feed.heartbeat,
            expires_at: caller.expires_at(),
        };
        Ok(Response::new(feed::follow(
            self.app.clone(),
            self.hub.clone(),
            follow,
            &self.feed,
            permit,
            resume_from,
        )))
    }

    async fn create_webhook_endpoint(
        &self,
        request: Request<pb::CreateWebhookEndpointRequest>,
    ) -> Result<Response<pb::CreateWebhookEndpointResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::WebhooksManage)?;
        let draft = webhooks::create_endpoint_draft(request.into_inner());
        let input = requests::create_webhook_endpoint(draft, self.webhooks.url_policy())?;
        let made = self
            .webhooks
            .create_endpoint(&caller.tenant_id, input)
            .await?;
        Ok(Response::new(pb::CreateWebhookEndpointResponse {
            endpoint: Some(webhooks::endpoint_message(made.endpoint)),
            secret: made.secret.expose_secret().to_owned(),
        }))
    }

    async fn get_webhook_endpoint(
        &self,
        request: Request<pb::GetWebhookEndpointRequest>,
    ) -> Result<Response<pb::GetWebhookEndpointResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::WebhooksManage)?;
        let id = requests::webhook_endpoint_id("id", &request.get_ref().id)?;
        let endpoint = self.webhooks.get_endpoint(&caller.tenant_id, &id).await?;
        Ok(Response::new(pb::GetWebhookEndpointResponse {
            endpoint: Some(webhooks::endpoint_message(endpoint)),
        }))
    }

    async fn list_webhook_endpoints(
        &self,
        request: Request<pb::ListWebhookEndpointsRequest>,
    ) -> Result<Response<pb::ListWebhookEndpointsResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::WebhooksManage)?;
        let request = request.get_ref();
        let input = requests::list_webhook_endpoints(request.page_size, &request.page_token)?;
        let page = self
            .webhooks
            .list_endpoints(&caller.tenant_id, &input)
            .await?;
        Ok(Response::new(pb::ListWebhookEndpointsResponse {
            endpoints: page
                .items
                .into_iter()
                .map(webhooks::endpoint_message)
                .collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_webhook_endpoint(
        &self,
        request: Request<pb::UpdateWebhookEndpointRequest>,
    ) -> Result<Response<pb::UpdateWebhookEndpointResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::WebhooksManage)?;
        let draft = webhooks::update_endpoint_draft(request.into_inner());
        let input = requests::update_webhook_endpoint(draft)?;
        let endpoint = self
            .webhooks
            .update_endpoint(&caller.tenant_id, input)
            .await?;
        Ok(Response::new(pb::UpdateWebhookEndpointResponse {
            endpoint: Some(webhooks::endpoint_message(endpoint)),
        }))
    }

    async fn delete_webhook_endpoint(
        &self,
        request: Request<pb::DeleteWebhookEndpointRequest>,
    ) -> Result<Response<pb::DeleteWebhookEndpointResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::WebhooksManage)?;
        let id = requests::webhook_endpoint_id("id", &request.get_ref().id)?;
        self.webhooks
            .delete_endpoint(&caller.tenant_id, &id)
            .await?;
        Ok(Response::new(pb::DeleteWebhookEndpointResponse {}))
    }

    async fn rotate_webhook_secret(
        &self,
        request: Request<pb::RotateWebhookSecretRequest>,
    ) -> Result<Response<pb::RotateWebhookSecretResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::WebhooksManage)?;
        let request = request.get_ref();
        let input = requests::rotate_webhook_secret(
            &request.id,
            webhooks::overlap_draft(request.overlap.as_ref()),
        )?;
        let rotated = self
            .webhooks
            .rotate_secret(&caller.tenant_id, &input)
            .await?;
        Ok(Response::new(pb::RotateWebhookSecretResponse {
            endpoint: Some(webhooks::endpoint_message(rotated.endpoint)),
            secret: rotated.secret.expose_secret().to_owned(),
        }))
    }

    async fn list_deliveries(
        &self,
        request: Request<pb::ListDeliveriesRequest>,
    ) -> Result<Response<pb::ListDeliveriesResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::WebhooksManage)?;
        let input =
            requests::list_deliveries(webhooks::list_deliveries_draft(request.into_inner()))?;
        let page = self
            .webhooks
            .list_deliveries(&caller.tenant_id, &input)
            .await?;
        Ok(Response::new(pb::ListDeliveriesResponse {
            deliveries: page
                .items
                .into_iter()
                .map(webhooks::delivery_message)
                .collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn retry_delivery(
        &self,
        request: Request<pb::RetryDeliveryRequest>,
    ) -> Result<Response<pb::RetryDeliveryResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::WebhooksManage)?;
        let id = requests::webhook_delivery_id("id", &request.get_ref().id)?;
        let details = self.webhooks.retry_delivery(&caller.tenant_id, &id).await?;
        Ok(Response::new(pb::RetryDeliveryResponse {
            delivery: Some(webhooks::delivery_message(details)),
        }))
    }
}
