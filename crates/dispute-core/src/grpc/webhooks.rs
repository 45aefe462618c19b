//! Webhook endpoints and deliveries (scope `webhooks:manage`).
// TODO(issue 12): not built yet; every RPC answers UNIMPLEMENTED.

use disputes_proto::disputes_v1 as pb;
use service_kit::auth::{Caller, Scope};
use tonic::{Request, Response, Status};

use crate::app::App;

pub struct WebhookRpcs {
    #[allow(dead_code)]
    app: App,
}

fn not_built<T, R>(request: &Request<R>, rpc: &str) -> Result<T, Status> {
    Caller::of(request)?.require(Scope::WebhooksManage)?;
    Err(Status::unimplemented(format!("{rpc} is not built yet")))
}

impl WebhookRpcs {
    pub fn new(app: App) -> Self {
        Self { app }
    }

    pub async fn create_endpoint(
        &self,
        request: Request<pb::CreateWebhookEndpointRequest>,
    ) -> Result<Response<pb::CreateWebhookEndpointResponse>, Status> {
        not_built(&request, "CreateWebhookEndpoint")
    }

    pub async fn get_endpoint(
        &self,
        request: Request<pb::GetWebhookEndpointRequest>,
    ) -> Result<Response<pb::GetWebhookEndpointResponse>, Status> {
        not_built(&request, "GetWebhookEndpoint")
    }

    pub async fn list_endpoints(
        &self,
        request: Request<pb::ListWebhookEndpointsRequest>,
    ) -> Result<Response<pb::ListWebhookEndpointsResponse>, Status> {
        not_built(&request, "ListWebhookEndpoints")
    }

    pub async fn update_endpoint(
        &self,
        request: Request<pb::UpdateWebhookEndpointRequest>,
    ) -> Result<Response<pb::UpdateWebhookEndpointResponse>, Status> {
        not_built(&request, "UpdateWebhookEndpoint")
    }

    pub async fn delete_endpoint(
        &self,
        request: Request<pb::DeleteWebhookEndpointRequest>,
    ) -> Result<Response<pb::DeleteWebhookEndpointResponse>, Status> {
        not_built(&request, "DeleteWebhookEndpoint")
    }

    pub async fn rotate_secret(
        &self,
        request: Request<pb::RotateWebhookSecretRequest>,
    ) -> Result<Response<pb::RotateWebhookSecretResponse>, Status> {
        not_built(&request, "RotateWebhookSecret")
    }

    pub async fn list_deliveries(
        &self,
        request: Request<pb::ListDeliveriesRequest>,
    ) -> Result<Response<pb::ListDeliveriesResponse>, Status> {
        not_built(&request, "ListDeliveries")
    }

    pub async fn retry_delivery(
        &self,
        request: Request<pb::RetryDeliveryRequest>,
    ) -> Result<Response<pb::RetryDeliveryResponse>, Status> {
        not_built(&request, "RetryDelivery")
    }
}
