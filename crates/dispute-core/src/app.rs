//! Application functions: load through the repository, ask the domain, persist in one
//! transaction.

use std::collections::BTreeMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use disputes_proto::documents_v1 as documents_pb;
use service_kit::auth::Caller;
use service_kit::errors::Violation;
use service_kit::ids::new_id;
use service_kit::page_token::PageCursor;
use sqlx::PgConnection;
use sqlx::PgPool;

use crate::documents::DocumentsClient;
use crate::domain::dispute::validate_metadata;
use crate::domain::{Actor, Dispute, DisputeError, DisputeFilter, NewDispute, Status, evidence};
use crate::store::postgres::{self, IdempotencyClaim, NewActionRecord};

/// A mutation's `request_id` and the fingerprint of the request it came with.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub request_id: String,
    pub request_fingerprint: String,
}

/// The result of an idempotent mutation.
pub enum Outcome<T> {
    /// Done now.
    Done(T),
    /// Done before: the first response, as it was encoded then.
    Replayed(Vec<u8>),
}

#[derive(Clone)]
pub struct Disputes {
    pub pool: PgPool,
    pub documents: DocumentsClient,
}

const CREATE_DISPUTE: &str = "CreateDispute";
const UPDATE_DISPUTE: &str = "UpdateDispute";

/// What UpdateDispute changes.
#[derive(Debug, Clone, Default)]
pub struct DisputeChanges {
    /// Evidence fields to set; an empty value clears the field.
    pub evidence: Vec<(&'static str, String)>,
    /// Metadata to set; an empty value unsets the key.
    pub metadata: BTreeMap<String, String>,
    /// Remove every metadata key first.
    pub clear_metadata: bool,
    /// Also submit the evidence (SUBMIT_EVIDENCE).
    pub submit: bool,
}

/// What every mutation may carry besides its payload.
#[derive(Debug, Clone, Default)]
pub struct MutationGuards {
    /// ABORTED unless the dispute still has this version.
    pub expected_version: Option<i64>,
    /// Replays the first answer for a retried request id.
    pub idempotency: Option<IdempotencyKey>,
}

/// Claims the idempotency key inside `tx`: `Some` is the stored answer to replay.
async fn claim(
    tx: &mut PgConnection,
    tenant_id: &str,
    operation: &str,
    key: Option<&IdempotencyKey>,
) -> Result<Option<Vec<u8>>, DisputeError> {
    let Some(key) = key else { return Ok(None) };
    match postgres::claim_idempotency_key(
        tx,
        tenant_id,
        operation,
        &key.request_id,
        &key.request_fingerprint,
    )
    .await?
    {
        IdempotencyClaim::New => Ok(None),
        IdempotencyClaim::Used {
            request_fingerprint,
            response,
        } if request_fingerprint == key.request_fingerprint => Ok(Some(response)),
        IdempotencyClaim::Used { .. } => Err(DisputeError::IdempotencyKeyReused),
    }
}

async fn remember(
    tx: &mut PgConnection,
    tenant_id: &str,
    operation: &str,
    key: Option<&IdempotencyKey>,
    response: &[u8],
) -> Result<(), DisputeError> {
    if let Some(key) = key {
        postgres::save_idempotent_response(tx, tenant_id, operation, &key.request_id, response)
            .await?;
    }
    Ok(())
}

impl Disputes {
    /// Opens a dispute. `encode_response` renders the response that a retry with the same
    /// `request_id` gets back.
    pub async fn create_dispute(
        &self,
        tenant_id: &str,
        new: NewDispute,
        idempotency: Option<IdempotencyKey>,
        encode: impl Fn(&Dispute) -> Vec<u8>,
    ) -> Result<Outcome<Dispute>, DisputeError> {
        let mut tx = self.pool.begin().await.context("begin")?;
        if let Some(response) =
            claim(&mut tx, tenant_id, CREATE_DISPUTE, idempotency.as_ref()).await?
        {
            return Ok(Outcome::Replayed(response));
        }
        check_disputed_total(&mut tx, tenant_id, &new).await?;
        let id = new_id("dsp");
        postgres::insert_dispute(&mut tx, tenant_id, &id, &new).await?;
        postgres::insert_action_record(
            &mut tx,
            tenant_id,
            &NewActionRecord {
                id: &new_id("act"),
                dispute_id: &id,
                actor: Actor::Tenant,
                what: "created",
                message: "",
                document_ids: &[],
                stage: new.stage,
                status: new.status,
                amount: new.amount,
            },
        )
        .await?;
        let dispute = postgres::find_dispute(&mut tx, tenant_id, &id)
            .await?
            .context("dispute vanished after insert")?;
        let encoded = encode(&dispute);
        postgres::insert_event(&mut tx, tenant_id, &id, "dispute.created", &encoded).await?;
        remember(
            &mut tx,
            tenant_id,
            CREATE_DISPUTE,
            idempotency.as_ref(),
            &encoded,
        )
        .await?;
        tx.commit().await.context("commit")?;
        tracing::info!(dispute_id = %dispute.id, side = %dispute.side, stage = %dispute.stage, "dispute created");
        Ok(Outcome::Done(dispute))
    }

    /// Stages evidence and changes metadata (SPEC §3 Evidence). Document fields must name
    /// documents of the caller's tenant.
    pub async fn update_dispute(
        &self,
        caller: &Caller,
        id: &str,
        changes: DisputeChanges,
        guards: MutationGuards,
        encode: impl Fn(&Dispute) -> Vec<u8>,
    ) -> Result<Outcome<Dispute>, DisputeError> {
        let MutationGuards {
            expected_version,
            idempotency,
        } = guards;
        if changes.submit {
            return Err(DisputeError::FailedPrecondition {
                reason: "NOT_YET",
                message: "submit is wired with the lifecycle engine".to_owned(),
            });
        }
        self.check_evidence_documents(caller, &changes.evidence)
            .await?;
        let tenant_id = caller.tenant_id.as_str();
        let mut tx = self.pool.begin().await.context("begin")?;
        if let Some(response) =
            claim(&mut tx, tenant_id, UPDATE_DISPUTE, idempotency.as_ref()).await?
        {
            return Ok(Outcome::Replayed(response));
        }
        let dispute = postgres::find_dispute_for_update(&mut tx, tenant_id, id)
            .await?
            .ok_or_else(|| DisputeError::NotFound {
                kind: "dispute",
                id: id.to_owned(),
            })?;
        check_version(&dispute, expected_version)?;

        let evidence = if changes.evidence.is_empty() {
            dispute.evidence.clone()
        } else {
            check_evidence_open(&dispute, Utc::now())?;
            evidence::apply_evidence_changes(&dispute.evidence, &changes.evidence)
                .map_err(DisputeError::Validation)?
        };
        let mut metadata = if changes.clear_metadata {
            BTreeMap::new()
        } else {
            dispute.metadata.clone()
        };
        for (key, value) in changes.metadata {
            if value.is_empty() {
                metadata.remove(&key);
            } else {
                metadata.insert(key, value);
            }
        }
        let violations = validate_metadata(&metadata);
        if !violations.is_empty() {
            return Err(DisputeError::Validation(violations));
        }

        postgres::update_evidence_and_metadata(&mut tx, tenant_id, id, &evidence, &metadata)
            .await?;
        let what = if changes.evidence.is_empty() {
            "metadata_updated"
        } else {
            "evidence_staged"
        };
        postgres::insert_action_record(
            &mut tx,
            tenant_id,
            &NewActionRecord {
                id: &new_id("act"),
                dispute_id: id,
                actor: Actor::Tenant,
                what,
                message: "",
                document_ids: &evidence::document_ids(&evidence),
                stage: dispute.stage,
                status: dispute.status,
                amount: 0,
            },
        )
        .await?;
        let updated = postgres::find_dispute(&mut tx, tenant_id, id)
            .await?
            .context("dispute vanished after update")?;
        let encoded = encode(&updated);
        postgres::insert_event(&mut tx, tenant_id, id, "dispute.updated", &encoded).await?;
        remember(
            &mut tx,
            tenant_id,
            UPDATE_DISPUTE,
            idempotency.as_ref(),
            &encoded,
        )
        .await?;
        tx.commit().await.context("commit")?;
        Ok(Outcome::Done(updated))
    }

    /// Every document an evidence change names must exist in the caller's tenant.
    async fn check_evidence_documents(
        &self,
        caller: &Caller,
        changes: &[(&'static str, String)],
    ) -> Result<(), DisputeError> {
        let mut violations = Vec::new();
        let mut referenced: Vec<(&'static str, &String)> = Vec::new();
        for (field, value) in changes {
            if !evidence::is_document_field(field) || value.is_empty() {
                continue;
            }
            if service_kit::ids::is_valid_id("doc", value) {
                referenced.push((field, value));
            } else {
                violations.push(Violation::new(
                    format!("evidence.{field}"),
                    "must be a document id (doc_...)",
                ));
            }
        }
        if !referenced.is_empty() {
            let ids: Vec<String> = referenced.iter().map(|(_, id)| (*id).clone()).collect();
            let missing = self.documents.missing_documents(caller, &ids).await?;
            violations.extend(
                referenced
                    .iter()
                    .filter(|(_, id)| missing.contains(id))
                    .map(|(field, _)| {
                        Violation::new(format!("evidence.{field}"), "document not found")
                    }),
            );
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(DisputeError::Validation(violations))
        }
    }

    /// The evidence guidance for a dispute.
    pub async fn evidence_requirements(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<(Dispute, evidence::EvidenceRequirements), DisputeError> {
        let mut conn = self.pool.acquire().await.context("acquire")?;
        let dispute = postgres::find_dispute(&mut conn, tenant_id, id)
            .await?
            .ok_or_else(|| DisputeError::NotFound {
                kind: "dispute",
                id: id.to_owned(),
            })?;
        let requirements = evidence::evidence_requirements(dispute.reason, dispute.network);
        Ok((dispute, requirements))
    }

    /// A dispute and its documents (read from document-store on the caller's behalf).
    pub async fn get_dispute(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(Dispute, Vec<documents_pb::Document>), DisputeError> {
        let mut conn = self.pool.acquire().await.context("acquire")?;
        let dispute = postgres::find_dispute(&mut conn, &caller.tenant_id, id)
            .await?
            .ok_or_else(|| DisputeError::NotFound {
                kind: "dispute",
                id: id.to_owned(),
            })?;
        drop(conn);
        let documents = self
            .documents
            .list_dispute_documents(caller, &dispute.id)
            .await?;
        Ok((dispute, documents))
    }

    /// One page of disputes plus one extra row when another page follows.
    pub async fn list_disputes(
        &self,
        tenant_id: &str,
        filter: &DisputeFilter,
        after: Option<&PageCursor>,
        page_size: i64,
    ) -> Result<(Vec<Dispute>, Option<PageCursor>), DisputeError> {
        let mut conn = self.pool.acquire().await.context("acquire")?;
        let mut disputes =
            postgres::list_disputes(&mut conn, tenant_id, filter, after, page_size + 1).await?;
        let next = if disputes.len() as i64 > page_size {
            disputes.truncate(page_size as usize);
            disputes.last().map(|last| PageCursor {
                create_time: last.create_time,
                id: last.id.clone(),
            })
        } else {
            None
        };
        Ok((disputes, next))
    }

    /// Forgets idempotency keys older than two days (SPEC keeps them at least 24 hours).
    pub async fn purge_old_idempotency_keys(&self) -> Result<u64, DisputeError> {
        let mut conn = self.pool.acquire().await.context("acquire")?;
        Ok(postgres::purge_idempotency_keys(&mut conn, 48).await?)
    }
}

/// ABORTED unless the dispute still has the version the caller saw.
fn check_version(dispute: &Dispute, expected: Option<i64>) -> Result<(), DisputeError> {
    match expected {
        Some(expected) if expected != dispute.version => Err(DisputeError::VersionConflict {
            expected,
            current: dispute.version,
        }),
        _ => Ok(()),
    }
}

/// Evidence can change only while the dispute needs a response and is not past due (M4).
fn check_evidence_open(dispute: &Dispute, now: DateTime<Utc>) -> Result<(), DisputeError> {
    if dispute.status != Status::NeedsResponse {
        return Err(DisputeError::FailedPrecondition {
            reason: "EVIDENCE_CLOSED",
            message: format!(
                "evidence can change only while the dispute needs a response; it is {}",
                dispute.status
            ),
        });
    }
    if dispute.is_past_due(now) {
        return Err(DisputeError::FailedPrecondition {
            reason: "DEADLINE_PASSED",
            message: "the response deadline has passed".to_owned(),
        });
    }
    Ok(())
}

/// Several disputes may exist for one charge or transaction, but together they never claim
/// more than its original amount when that is known (SPEC §3).
async fn check_disputed_total(
    tx: &mut PgConnection,
    tenant_id: &str,
    new: &NewDispute,
) -> Result<(), DisputeError> {
    let references = [
        (postgres::ReferenceColumn::Charge, new.charge.as_deref()),
        (
            postgres::ReferenceColumn::TransactionId,
            new.transaction_id.as_deref(),
        ),
    ];
    for (column, reference) in references {
        let Some(reference) = reference else { continue };
        let so_far = postgres::lock_and_sum_disputed(tx, tenant_id, column, reference).await?;
        let Some(original) = new.original_amount.or(so_far.original_amount) else {
            continue;
        };
        if so_far.amount + new.amount > original {
            return Err(DisputeError::FailedPrecondition {
                reason: "AMOUNT_EXCEEDS_ORIGINAL",
                message: format!(
                    "disputes of {reference} would claim {} of its original {original}",
                    so_far.amount + new.amount
                ),
            });
        }
    }
    Ok(())
}
