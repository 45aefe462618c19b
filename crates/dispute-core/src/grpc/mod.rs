//! disputes.v1.DisputeService over gRPC: read the caller, convert, call one application
//! function, map the result.

pub mod convert;
pub mod status;

use disputes_proto::disputes_v1 as pb;
use disputes_proto::disputes_v1::dispute_service_server::DisputeService;
use prost::Message;
use service_kit::auth::{Caller, Scope};
use service_kit::errors::Violation;
use service_kit::ids::is_valid_id;
use service_kit::page_token::{decode_page_token, effective_page_size, encode_page_token};
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use crate::app::{Disputes, IdempotencyKey, MutationGuards, Outcome, RecordedNetworkEvent};
use crate::domain::dispute::validate_request_id;
use crate::domain::{Dispute, DisputeError, NewDispute};

pub struct DisputeServiceHandler {
    disputes: Disputes,
}

impl DisputeServiceHandler {
    pub fn new(disputes: Disputes) -> Self {
        Self { disputes }
    }
}

/// Hex SHA-256 of a request's encoding without its request id: what "the same request"
/// means for idempotency (maps encode in key order, so this is stable).
fn request_fingerprint<M: Message>(request: &M) -> String {
    hex_digest(&request.encode_to_vec())
}

fn hex_digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn dispute_id(id: &str) -> Result<(), DisputeError> {
    dispute_id_field("id", id).map_err(|v| DisputeError::Validation(vec![v]))
}

fn dispute_id_field(field: &str, id: &str) -> Result<(), Violation> {
    if is_valid_id("dsp", id) {
        Ok(())
    } else {
        Err(Violation::new(field, "must be a dispute id (dsp_...)"))
    }
}

/// How events and idempotent replays store a dispute: its protobuf encoding.
pub fn encode_dispute(dispute: &Dispute) -> Vec<u8> {
    pb::Dispute::from(dispute.clone()).encode_to_vec()
}

/// The dispute a mutation produced, fresh or replayed from its first answer.
fn dispute_of(outcome: Outcome<Dispute>) -> Result<pb::Dispute, DisputeError> {
    match outcome {
        Outcome::Done(dispute) => Ok(dispute.into()),
        Outcome::Replayed(bytes) => pb::Dispute::decode(bytes.as_slice()).map_err(|e| {
            DisputeError::Internal(anyhow::Error::new(e).context("decode stored response"))
        }),
    }
}

/// A request id and the fingerprint of the request without it.
fn idempotency_key<M: Message + Clone>(
    request: &M,
    request_id: &str,
    clear: impl FnOnce(&mut M),
    violations: &mut Vec<Violation>,
) -> Option<IdempotencyKey> {
    match validate_request_id(request_id) {
        Ok(Some(request_id)) => {
            let mut without_id = request.clone();
            clear(&mut without_id);
            Some(IdempotencyKey {
                request_id,
                request_fingerprint: request_fingerprint(&without_id),
            })
        }
        Ok(None) => None,
        Err(violation) => {
            violations.push(violation);
            None
        }
    }
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

        let (draft, mut violations) = convert::new_dispute_draft(&request);
        let idempotency = idempotency_key(
            &request,
            &request.request_id,
            |r| r.request_id.clear(),
            &mut violations,
        );
        let new = match NewDispute::parse(draft, chrono::Utc::now()) {
            Ok(new) if violations.is_empty() => new,
            Ok(_) => return Err(DisputeError::Validation(violations).into()),
            Err(DisputeError::Validation(mut more)) => {
                violations.append(&mut more);
                return Err(DisputeError::Validation(violations).into());
            }
            Err(other) => return Err(other.into()),
        };

        let outcome = self
            .disputes
            .create_dispute(&caller.tenant_id, new, idempotency, encode_dispute)
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
        let id = request.into_inner().id;
        dispute_id(&id)?;
        let (dispute, documents) = self.disputes.get_dispute(&caller, &id).await?;
        Ok(Response::new(pb::GetDisputeResponse {
            dispute: Some(dispute.into()),
            documents,
        }))
    }

    async fn list_disputes(
        &self,
        request: Request<pb::ListDisputesRequest>,
    ) -> Result<Response<pb::ListDisputesResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::DisputesRead)?;
        let request = request.into_inner();
        let mut violations = Vec::new();
        let filter = convert::dispute_filter(&request).unwrap_or_else(|mut v| {
            violations.append(&mut v);
            Default::default()
        });
        let fingerprint = hex_digest(filter.canonical().as_bytes());
        let cursor = decode_page_token(&request.page_token, &fingerprint).unwrap_or_else(|e| {
            violations.push(Violation::new("page_token", e.to_string()));
            None
        });
        if !violations.is_empty() {
            return Err(DisputeError::Validation(violations).into());
        }
        let (disputes, next) = self
            .disputes
            .list_disputes(
                &caller.tenant_id,
                &filter,
                cursor.as_ref(),
                effective_page_size(request.page_size),
            )
            .await?;
        Ok(Response::new(pb::ListDisputesResponse {
            disputes: disputes.into_iter().map(Into::into).collect(),
            next_page_token: next
                .map(|cursor| encode_page_token(&cursor, &fingerprint))
                .unwrap_or_default(),
        }))
    }

    async fn update_dispute(
        &self,
        request: Request<pb::UpdateDisputeRequest>,
    ) -> Result<Response<pb::UpdateDisputeResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::DisputesWrite)?;
        let request = request.into_inner();
        let mut violations = Vec::new();
        if let Err(v) = dispute_id_field("id", &request.id) {
            violations.push(v);
        }
        let idempotency = idempotency_key(
            &request,
            &request.request_id,
            |r| r.request_id.clear(),
            &mut violations,
        );
        let (mut changes, found) = convert::dispute_changes(&request);
        violations.extend(found);
        if violations.iter().any(|v| v.field == "id") {
            return Err(DisputeError::Validation(violations).into());
        }
        // Reported with the document checks, so one answer names every bad field.
        changes.violations = violations;
        let outcome = self
            .disputes
            .update_dispute(
                &caller,
                &request.id,
                changes,
                MutationGuards {
                    expected_version: request.expected_version,
                    idempotency,
                },
                encode_dispute,
            )
            .await?;
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
        let mut violations = Vec::new();
        if let Err(v) = dispute_id_field("dispute_id", &request.dispute_id) {
            violations.push(v);
        }
        let idempotency = idempotency_key(
            &request,
            &request.request_id,
            |r| r.request_id.clear(),
            &mut violations,
        );
        let action = convert::tenant_action(&request).unwrap_or_else(|mut v| {
            violations.append(&mut v);
            crate::domain::TenantAction::new(crate::domain::ActionType::Accept)
        });
        if !violations.is_empty() {
            return Err(DisputeError::Validation(violations).into());
        }
        let outcome = self
            .disputes
            .create_action(
                &caller,
                &request.dispute_id,
                action,
                MutationGuards {
                    expected_version: request.expected_version,
                    idempotency,
                },
                encode_dispute,
            )
            .await?;
        Ok(Response::new(pb::CreateActionResponse {
            dispute: Some(dispute_of(outcome)?),
        }))
    }

    async fn record_network_event(
        &self,
        request: Request<pb::RecordNetworkEventRequest>,
    ) -> Result<Response<pb::RecordNetworkEventResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require(Scope::DisputesWrite)?;
        let request = request.into_inner();
        let mut violations = Vec::new();
        let event = convert::network_event(&request).map_err(|mut v| {
            violations.append(&mut v);
        });
        let new_case = match &request.new_case {
            None => None,
            Some(new_case) => {
                // The case's network and id come from the event itself.
                let mut new_case = new_case.clone();
                new_case.network = request.network;
                new_case.network_case_id = request.network_case_id.clone();
                let (draft, more) = convert::new_dispute_draft(&new_case);
                violations.extend(more.into_iter().map(|mut v| {
                    v.field = format!("new_case.{}", v.field);
                    v
                }));
                match NewDispute::parse(draft, chrono::Utc::now()) {
                    Ok(new) => Some(new),
                    Err(DisputeError::Validation(v)) => {
                        violations.extend(v.into_iter().map(|mut v| {
                            v.field = format!("new_case.{}", v.field);
                            v
                        }));
                        None
                    }
                    Err(other) => return Err(other.into()),
                }
            }
        };
        let (network, event) = match event {
            Ok(event) if violations.is_empty() => event,
            _ => return Err(DisputeError::Validation(violations).into()),
        };
        let outcome = self
            .disputes
            .record_network_event(
                &caller,
                RecordedNetworkEvent {
                    network,
                    network_case_id: request.network_case_id.clone(),
                    event_id: request.event_id.clone(),
                    event,
                    new_case,
                },
                encode_dispute,
            )
            .await?;
        Ok(Response::new(pb::RecordNetworkEventResponse {
            dispute: Some(outcome.dispute.into()),
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
        let id = request.into_inner().dispute_id;
        dispute_id_field("dispute_id", &id).map_err(|v| DisputeError::Validation(vec![v]))?;
        let (dispute, requirements) = self
            .disputes
            .evidence_requirements(&caller.tenant_id, &id)
            .await?;
        let (missing_required, missing_recommended) = requirements.missing(&dispute.evidence);
        let used = crate::domain::evidence::text_chars(&dispute.evidence);
        let names = |fields: Vec<&'static str>| fields.into_iter().map(str::to_owned).collect();
        Ok(Response::new(pb::GetEvidenceRequirementsResponse {
            required_fields: names(requirements.required.clone()),
            recommended_fields: names(requirements.recommended.clone()),
            missing_required_fields: names(missing_required),
            missing_recommended_fields: names(missing_recommended),
            text_characters_used: used as i32,
            text_characters_remaining: crate::domain::evidence::MAX_EVIDENCE_TEXT_CHARS
                .saturating_sub(used) as i32,
            due_time: dispute.due_time.map(convert::timestamp),
        }))
    }
}
