//! Application functions: load through the repository, ask the domain, persist in one
//! transaction.

use anyhow::Context;
use disputes_proto::documents_v1 as documents_pb;
use service_kit::auth::Caller;
use service_kit::ids::new_id;
use service_kit::page_token::PageCursor;
use sqlx::PgPool;

use crate::documents::DocumentsClient;
use crate::domain::{Actor, Dispute, DisputeError, DisputeFilter, NewDispute};
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

impl Disputes {
    /// Opens a dispute. `encode_response` renders the response that a retry with the same
    /// `request_id` gets back.
    pub async fn create_dispute(
        &self,
        tenant_id: &str,
        new: NewDispute,
        idempotency: Option<IdempotencyKey>,
        encode_response: impl Fn(&Dispute) -> Vec<u8>,
    ) -> Result<Outcome<Dispute>, DisputeError> {
        let mut tx = self.pool.begin().await.context("begin")?;
        if let Some(key) = &idempotency {
            match postgres::claim_idempotency_key(
                &mut tx,
                tenant_id,
                CREATE_DISPUTE,
                &key.request_id,
                &key.request_fingerprint,
            )
            .await?
            {
                IdempotencyClaim::New => {}
                IdempotencyClaim::Used {
                    request_fingerprint,
                    response,
                } => {
                    return if request_fingerprint == key.request_fingerprint {
                        Ok(Outcome::Replayed(response))
                    } else {
                        Err(DisputeError::IdempotencyKeyReused)
                    };
                }
            }
        }

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
        if let Some(key) = &idempotency {
            postgres::save_idempotent_response(
                &mut tx,
                tenant_id,
                CREATE_DISPUTE,
                &key.request_id,
                &encode_response(&dispute),
            )
            .await?;
        }
        tx.commit().await.context("commit")?;
        tracing::info!(dispute_id = %dispute.id, side = %dispute.side, stage = %dispute.stage, "dispute created");
        Ok(Outcome::Done(dispute))
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
