//! The minimal tonic server the bench compares dispute-core with: the limit for a gRPC
//! service on this database. GetDispute and ListDisputes run exactly dispute-core's queries
//! (its store functions, on a pool built by the same code with the same size) and answer the
//! same message (its conversions), but with nothing else: no token check, no trace or
//! call-limit layer, and the dispute's documents read straight from document-store's
//! database with document-store's own query instead of over gRPC. It runs as a child
//! process of the bench, like dispute-core.

use std::net::SocketAddr;

use anyhow::Context;
use chrono::Utc;
use dispute_core::app::DisputeView;
use dispute_core::store::disputes;
use disputes_proto::disputes_v1 as pb;
use disputes_proto::disputes_v1::dispute_service_server::{DisputeService, DisputeServiceServer};
use domain_kit::page_token::PageCursor;
use service_kit::database::{DatabaseSettings, connect_pool};
use sqlx::PgPool;
use tonic::{Request, Response, Status};

/// The tenant every call reads (the minimal server checks no token).
pub const TENANT: &str = "bench";
/// Pool size of both pools: dispute-core's and document-store's default.
const POOL_SIZE: u32 = 10;

struct Minimal {
    disputes: PgPool,
    documents: PgPool,
}

fn internal(error: impl std::fmt::Display) -> Status {
    Status::internal(error.to_string())
}

/// Serves on `addr` until killed.
pub async fn serve(
    addr: SocketAddr,
    disputes_url: &str,
    documents_url: &str,
) -> anyhow::Result<()> {
    let settings = DatabaseSettings::new(POOL_SIZE);
    let server = Minimal {
        disputes: connect_pool(disputes_url, &settings, "rpc-bench-minimal").await?,
        documents: connect_pool(documents_url, &settings, "rpc-bench-minimal").await?,
    };
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(DisputeServiceServer::new(server))
        // The same accepted-socket set-up as the services (TCP_NODELAY).
        .serve_with_incoming(service_kit::server::accept_incoming(listener))
        .await
        .context("minimal server")
}

#[tonic::async_trait]
impl DisputeService for Minimal {
    async fn get_dispute(
        &self,
        request: Request<pb::GetDisputeRequest>,
    ) -> Result<Response<pb::GetDisputeResponse>, Status> {
        let id = request.into_inner().id;
        let dispute = {
            let mut conn = self.disputes.acquire().await.map_err(internal)?;
            disputes::find_dispute(&mut conn, TENANT, &id)
                .await
                .map_err(internal)?
                .ok_or_else(|| Status::not_found(id.clone()))?
        };
        // document-store's query for ListDocuments (page size 100, as dispute-core asks).
        let documents = document_store::store::postgres::list_available_documents(
            &self.documents,
            TENANT,
            Some(&id),
            None,
            101,
        )
        .await
        .map_err(internal)?;
        Ok(Response::new(pb::GetDisputeResponse {
            dispute: Some(DisputeView::at(dispute, Utc::now()).into()),
            documents: document_store::grpc::convert::documents(documents),
            documents_omitted: false,
        }))
    }

    async fn list_disputes(
        &self,
        request: Request<pb::ListDisputesRequest>,
    ) -> Result<Response<pb::ListDisputesResponse>, Status> {
        let input = dispute_core::domain::requests::list_disputes(
            dispute_core::grpc::convert::list_disputes_draft(request.get_ref()),
        )
        .map_err(|e| Status::invalid_argument(format!("{e:?}")))?;
        let page = &input.page;
        let rows = {
            let mut conn = self.disputes.acquire().await.map_err(internal)?;
            disputes::list_disputes(
                &mut conn,
                TENANT,
                &input.filter,
                page.after.as_ref(),
                page.fetch_limit(),
            )
            .await
            .map_err(internal)?
        };
        let (rows, next_page_token) = page.cut(rows, |last| PageCursor {
            create_time: last.create_time,
            id: last.id.clone(),
        });
        let now = Utc::now();
        Ok(Response::new(pb::ListDisputesResponse {
            disputes: rows
                .into_iter()
                .map(|dispute| DisputeView::at(dispute, now).into())
                .collect(),
            next_page_token,
        }))
    }

    async fn create_dispute(
        &self,
        _: Request<pb::CreateDisputeRequest>,
    ) -> Result<Response<pb::CreateDisputeResponse>, Status> {
        Err(Status::unimplemented("not measured"))
    }

    async fn update_dispute(
        &self,
        _: Request<pb::UpdateDisputeRequest>,
    ) -> Result<Response<pb::UpdateDisputeResponse>, Status> {
        Err(Status::unimplemented("not measured"))
    }

    async fn create_action(
        &self,
        _: Request<pb::CreateActionRequest>,
    ) -> Result<Response<pb::CreateActionResponse>, Status> {
        Err(Status::unimplemented("not measured"))
    }

    async fn record_network_event(
        &self,
        _: Request<pb::RecordNetworkEventRequest>,
    ) -> Result<Response<pb::RecordNetworkEventResponse>, Status> {
        Err(Status::unimplemented("not measured"))
    }

    async fn get_evidence_requirements(
        &self,
        _: Request<pb::GetEvidenceRequirementsRequest>,
    ) -> Result<Response<pb::GetEvidenceRequirementsResponse>, Status> {
        Err(Status::unimplemented("not measured"))
    }

    async fn list_dispute_history(
        &self,
        _: Request<pb::ListDisputeHistoryRequest>,
    ) -> Result<Response<pb::ListDisputeHistoryResponse>, Status> {
        Err(Status::unimplemented("not measured"))
    }
}
