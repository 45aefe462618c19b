//! disputes.v1.EventService over gRPC: the event feed (ListEvents, GetEvent, StreamEvents;
//! `grpc/event_feed.rs`) and webhook endpoints and deliveries (`grpc/webhooks.rs`). This
//! file only routes each RPC to its half.

use disputes_proto::disputes_v1 as pb;
use disputes_proto::disputes_v1::event_service_server::EventService;
use tonic::{Request, Response, Status};

use super::event_feed::{EventFeedRpcs, EventStream};
use super::webhooks::WebhookRpcs;

pub struct EventServiceHandler {
    feed: EventFeedRpcs,
    webhooks: WebhookRpcs,
}

impl EventServiceHandler {
    pub fn new(feed: EventFeedRpcs, webhooks: WebhookRpcs) -> Self {
        Self { feed, webhooks }
    }
}

#[tonic::async_trait]
impl EventService for EventServiceHandler {
    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        self.feed.list_events(request).await
    }

    async fn get_event(
        &self,
        request: Request<pb::GetEventRequest>,
    ) -> Result<Response<pb::GetEventResponse>, Status> {
        self.feed.get_event(request).await
    }

    type StreamEventsStream = EventStream;

    async fn stream_events(
        &self,
        request: Request<pb::StreamEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        self.feed.stream_events(request).await
    }

    async fn create_webhook_endpoint(
        &self,
        request: Request<pb::CreateWebhookEndpointRequest>,
    ) -> Result<Response<pb::CreateWebhookEndpointResponse>, Status> {
        self.webhooks.create_endpoint(request).await
    }

    async fn get_webhook_endpoint(
        &self,
        request: Request<pb::GetWebhookEndpointRequest>,
    ) -> Result<Response<pb::GetWebhookEndpointResponse>, Status> {
        self.webhooks.get_endpoint(request).await
    }

    async fn list_webhook_endpoints(
        &self,
        request: Request<pb::ListWebhookEndpointsRequest>,
    ) -> Result<Response<pb::ListWebhookEndpointsResponse>, Status> {
        self.webhooks.list_endpoints(request).await
    }

    async fn update_webhook_endpoint(
        &self,
        request: Request<pb::UpdateWebhookEndpointRequest>,
    ) -> Result<Response<pb::UpdateWebhookEndpointResponse>, Status> {
        self.webhooks.update_endpoint(request).await
    }

    async fn delete_webhook_endpoint(
        &self,
        request: Request<pb::DeleteWebhookEndpointRequest>,
    ) -> Result<Response<pb::DeleteWebhookEndpointResponse>, Status> {
        self.webhooks.delete_endpoint(request).await
    }

    async fn rotate_webhook_secret(
        &self,
        request: Request<pb::RotateWebhookSecretRequest>,
    ) -> Result<Response<pb::RotateWebhookSecretResponse>, Status> {
        self.webhooks.rotate_secret(request).await
    }

    async fn list_deliveries(
        &self,
        request: Request<pb::ListDeliveriesRequest>,
    ) -> Result<Response<pb::ListDeliveriesResponse>, Status> {
        self.webhooks.list_deliveries(request).await
    }

    async fn retry_delivery(
        &self,
        request: Request<pb::RetryDeliveryRequest>,
    ) -> Result<Response<pb::RetryDeliveryResponse>, Status> {
        self.webhooks.retry_delivery(request).await
    }
}
