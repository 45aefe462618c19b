//! The gRPC transport: disputes.v1.DisputeService (here, [`DisputeServiceHandler`]) and
//! disputes.v1.EventService (`event_service`: the event feed and webhooks). Each handler
//! reads the caller, maps the request to a draft (`convert`), checks it
//! (`domain::requests`), calls one use case (`app`) and maps the result back; errors become
//! statuses in `status.rs`, the one mapping of both services.

pub mod convert;
pub mod event_service;
pub mod status;

use chrono::Utc;
use disputes_proto::disputes_v1 as pb;
use disputes_proto::disputes_v1::dispute_service_server::DisputeService;
use prost::Message;
use service_kit::auth::{Caller, Scope};
use tonic::{Request, Response, Status};

use crate::app::{App, DisputeView, IdempotencyKey, Outcome};
use crate::domain::DisputeError;
use crate::domain::requests;

pub struct DisputeServiceHandler {
    app: App,
}

impl DisputeServiceHandler {
    pub fn new(app: App) -> Self {
        Self { app }
    }
}

/// How events and idempotent replays store a dispute: its protobuf encoding. The app gets
/// this once, at construction (`Disputes::with_snapshots`).
pub fn encode_dispute(view: &DisputeView) -> Vec<u8> {
    pb::Dispute::from(view.clone()).encode_to_vec()
}

/// The dispute a mutation produced, fresh or replayed from its first answer.
fn dispute_of(outcome: Outcome<DisputeView>) -> Result<pb::Dispute, DisputeError> {
    match outcome {
        Outcome::Done(view) => Ok(view.into()),
        Outcome::Replayed(bytes) => pb::Dispute::decode(bytes.as_slice()).map_err(|e| {
            DisputeError::Internal(anyhow::Error::new(e).context("decode stored response"))
        }),
    }
}

/// The idempotency key of a checked request id: the id, and the fingerprint of the request
/// without it (maps encode in key order, so the fingerprint is stable).
fn idempotency_key<M: Message + Clone>(
    request_id: Option<String>,
    request: &M,
    clear_request_id: impl FnOnce(&mut M),
) -> Option<IdempotencyKey> {
    let request_id = request_id?;
    let mut without_id = request.clone();
    clear_request_id(&mut without_id);
    Some(IdempotencyKey {
        request_id,
        request_fingerprint: requests::fingerprint(&without_id.encode_to_vec()),
    })
}

#[tonic::async_trait]
impl DisputeService for DisputeServiceHandler {
    async fn create_dispute(
        &self,
        request: Request<pb::CreateDisputeRequest>,
    ) -> Result<Response<pb::CreateDisputeResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::DisputesWrite)?;
        let request = request.into_inner();
        let input = requests::create_dispute(convert::create_dispute_draft(&request), Utc::now())?;
        let idempotency = idempotency_key(input.request_id, &request, |r| r.request_id.clear());
        let outcome = self
            .app
            .create_dispute(&caller.tenant_id, input.dispute, idempotency)
            .await?;
        Ok(Response::new(pb::CreateDisputeResponse {
            dispute: Some(dispute_of(outcome)?),
        }))
    }

    async fn get_dispute(
        &self,
        request: Request<pb::GetDisputeRequest>,
    ) -> Result<Response<pb::GetDisputeResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::DisputesRead)?;
        let id = requests::dispute_id("id", &request.into_inner().id)?;
        let details = self.app.get_dispute(&caller, &id).await?;
        Ok(Response::new(pb::GetDisputeResponse {
            dispute: Some(details.view.into()),
            documents: details.documents.into_iter().map(Into::into).collect(),
            documents_omitted: details.documents_omitted,
        }))
    }

    async fn list_disputes(
        &self,
        request: Request<pb::ListDisputesRequest>,
    ) -> Result<Response<pb::ListDisputesResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::DisputesRead)?;
        let input = requests::list_disputes(convert::list_disputes_draft(request.get_ref()))?;
        let page = self.app.list_disputes(&caller.tenant_id, &input).await?;
        Ok(Response::new(pb::ListDisputesResponse {
            disputes: page.disputes.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_dispute(
        &self,
        request: Request<pb::UpdateDisputeRequest>,
    ) -> Result<Response<pb::UpdateDisputeResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::DisputesWrite)?;
        let request = request.into_inner();
        let input = requests::update_dispute(convert::update_dispute_draft(&request))?;
        let idempotency =
            idempotency_key(input.request_id.clone(), &request, |r| r.request_id.clear());
        let outcome = self.app.update_dispute(&caller, input, idempotency).await?;
        Ok(Response::new(pb::UpdateDisputeResponse {
            dispute: Some(dispute_of(outcome)?),
        }))
    }

    async fn create_action(
        &self,
        request: Request<pb::CreateActionRequest>,
    ) -> Result<Response<pb::CreateActionResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::DisputesWrite)?;
        let request = request.into_inner();
        let input = requests::create_action(convert::create_action_draft(&request))?;
        let idempotency =
            idempotency_key(input.request_id.clone(), &request, |r| r.request_id.clear());
        let outcome = self.app.create_action(&caller, input, idempotency).await?;
        Ok(Response::new(pb::CreateActionResponse {
            dispute: Some(dispute_of(outcome)?),
        }))
    }

    async fn record_network_event(
        &self,
        request: Request<pb::RecordNetworkEventRequest>,
    ) -> Result<Response<pb::RecordNetworkEventResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::DisputesNetwork)?;
        let draft = convert::network_event_draft(request.get_ref());
        let input = requests::record_network_event(draft, Utc::now())?;
        let outcome = self.app.record_network_event(&caller, input).await?;
        Ok(Response::new(pb::RecordNetworkEventResponse {
            dispute: Some(outcome.view.into()),
            created: outcome.created,
            applied: outcome.applied,
        }))
    }

    async fn get_evidence_requirements(
        &self,
        request: Request<pb::GetEvidenceRequirementsRequest>,
    ) -> Result<Response<pb::GetEvidenceRequirementsResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::DisputesRead)?;
        let id = requests::dispute_id("dispute_id", &request.into_inner().dispute_id)?;
        let (guidance, due_time) = self
            .app
            .evidence_requirements(&caller.tenant_id, &id)
            .await?;
        Ok(Response::new(convert::evidence_requirements_response(
            guidance, due_time,
        )))
    }

    async fn list_dispute_history(
        &self,
        request: Request<pb::ListDisputeHistoryRequest>,
    ) -> Result<Response<pb::ListDisputeHistoryResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::DisputesRead)?;
        let request = request.into_inner();
        let input = requests::list_dispute_history(
            &request.dispute_id,
            request.page_size,
            &request.page_token,
        )?;
        let page = self
            .app
            .list_dispute_history(&caller.tenant_id, &input)
            .await?;
        Ok(Response::new(pb::ListDisputeHistoryResponse {
            action_history: page.entries.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
            total_size: convert::saturating_i32(page.total),
        }))
    }
}
