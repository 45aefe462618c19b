//! gRPC clients of both services, with a bearer token.

use std::net::SocketAddr;

use anyhow::Context;
use disputes_proto::disputes_v1::dispute_service_client::DisputeServiceClient;
use disputes_proto::documents_v1::document_service_client::DocumentServiceClient;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(pub Option<MetadataValue<tonic::metadata::Ascii>>);

impl Bearer {
    /// Sends `token`, or no `authorization` header for `None`.
    pub fn new(token: Option<&str>) -> anyhow::Result<Bearer> {
        let value = token
            .map(|t| MetadataValue::try_from(format!("Bearer {t}")))
            .transpose()
            .context("a token is header-safe ASCII")?;
        Ok(Bearer(value))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type DisputesClient = DisputeServiceClient<InterceptedService<Channel, Bearer>>;
pub type DocumentsClient = DocumentServiceClient<InterceptedService<Channel, Bearer>>;

/// A channel to the server on `addr`, with HTTP/2 windows large enough for multi-MiB uploads.
pub async fn connect(addr: SocketAddr) -> anyhow::Result<Channel> {
    Ok(
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .initial_stream_window_size(Some(8 * 1024 * 1024))
            .initial_connection_window_size(Some(16 * 1024 * 1024))
            .connect()
            .await?,
    )
}

/// A DocumentService client of the server on `addr`, sending `token` (or no token).
pub async fn documents_client(
    addr: SocketAddr,
    token: Option<&str>,
) -> anyhow::Result<DocumentsClient> {
    Ok(
        DocumentServiceClient::with_interceptor(connect(addr).await?, Bearer::new(token)?)
            .max_decoding_message_size(8 * 1024 * 1024),
    )
}

/// A tiny grpc.health.v1 client over the generated code in tonic-health.
pub mod tonic_health_client {
    use std::net::SocketAddr;

    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    /// Whether the server on `addr` reports SERVING for the whole server.
    pub async fn health_check(addr: SocketAddr) -> anyhow::Result<bool> {
        health_check_service(addr, "").await
    }

    pub async fn health_check_service(addr: SocketAddr, service: &str) -> anyhow::Result<bool> {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .connect()
            .await?;
        let mut client = HealthClient::new(channel);
        let response = client
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await?;
        Ok(response.into_inner().status == ServingStatus::Serving as i32)
    }
}
