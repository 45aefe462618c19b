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
use crate::domain::ledger;
use crate::domain::lifecycle::{self, CaseFacts, EvidenceEffect, Opening, Transition};
use crate::domain::{
    ActionType, Actor, Dispute, DisputeError, DisputeFilter, MoneyPolicy, Network, NetworkEvent,
    NewDispute, TenantAction, Trigger, evidence,
};
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
    pub policy: MoneyPolicy,
}

/// A network event as RecordNetworkEvent received it.
#[derive(Debug, Clone)]
pub struct RecordedNetworkEvent {
    pub network: Network,
    pub network_case_id: String,
    pub event_id: String,
    pub event: NetworkEvent,
    /// The dispute to open when the case is new.
    pub new_case: Option<NewDispute>,
}

/// What RecordNetworkEvent did.
pub struct NetworkEventOutcome {
    pub dispute: Dispute,
    pub created: bool,
    pub applied: bool,
}

/// Disputes the sweeper handles per transaction.
const SWEEP_BATCH: i64 = 100;

const CREATE_DISPUTE: &str = "CreateDispute";
const UPDATE_DISPUTE: &str = "UpdateDispute";
const CREATE_ACTION: &str = "CreateAction";

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
    /// Problems the transport already found; reported together with the document checks.
    pub violations: Vec<Violation>,
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
        check_disputed_total(&mut tx, tenant_id, &Claim::of_new(&new)).await?;
        let opening = Opening::Tenant {
            stage: new.stage,
            due_time: new.due_time,
        };
        let opened = lifecycle::open_dispute(
            case_facts(&new),
            new.amount,
            &opening,
            &self.policy,
            Utc::now(),
        )?;
        let dispute = insert_opened_dispute(&mut tx, tenant_id, &new, &opened, &encode).await?;
        remember(
            &mut tx,
            tenant_id,
            CREATE_DISPUTE,
            idempotency.as_ref(),
            &encode(&dispute),
        )
        .await?;
        tx.commit().await.context("commit")?;
        tracing::info!(dispute_id = %dispute.id, side = %dispute.side, stage = %dispute.stage, "dispute created");
        Ok(Outcome::Done(dispute))
    }

    /// Stages evidence and changes metadata (SPEC §3 Evidence), and submits the evidence when
    /// asked (the same as SUBMIT_EVIDENCE). Document fields must name documents of the
    /// caller's tenant.
    pub async fn update_dispute(
        &self,
        caller: &Caller,
        id: &str,
        changes: DisputeChanges,
        guards: MutationGuards,
        encode: impl Fn(&Dispute) -> Vec<u8>,
    ) -> Result<Outcome<Dispute>, DisputeError> {
        // Every problem of the request is reported at once, after the state checks.
        let mut changes = changes;
        let mut violations = std::mem::take(&mut changes.violations);
        violations.extend(
            self.check_evidence_documents(caller, &changes.evidence)
                .await?,
        );
        if !violations.is_empty() {
            return Err(DisputeError::Validation(violations));
        }
        let tenant_id = caller.tenant_id.as_str();
        let mut tx = self.pool.begin().await.context("begin")?;
        if let Some(response) = claim(
            &mut tx,
            tenant_id,
            UPDATE_DISPUTE,
            guards.idempotency.as_ref(),
        )
        .await?
        {
            return Ok(Outcome::Replayed(response));
        }
        let dispute = load_for_update(&mut tx, tenant_id, id).await?;
        check_version(&dispute, guards.expected_version)?;
        let now = Utc::now();

        let evidence = if changes.evidence.is_empty() {
            dispute.evidence.clone()
        } else {
            lifecycle::evidence_editable(&dispute.lifecycle_state(), now)?;
            evidence::apply_evidence_changes(&dispute.evidence, &changes.evidence).unwrap_or_else(
                |mut v| {
                    violations.append(&mut v);
                    dispute.evidence.clone()
                },
            )
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
        violations.extend(validate_metadata(&metadata));
        if !violations.is_empty() {
            return Err(DisputeError::Validation(violations));
        }

        let updated = if changes.submit {
            let action = TenantAction::new(ActionType::SubmitEvidence);
            let staged = Dispute {
                evidence,
                metadata,
                ..dispute
            };
            self.apply_tenant_action(&mut tx, caller, staged, action, &encode)
                .await?
        } else {
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
            let updated = reload(&mut tx, tenant_id, id).await?;
            postgres::insert_event(&mut tx, tenant_id, id, "dispute.updated", &encode(&updated))
                .await?;
            updated
        };
        remember(
            &mut tx,
            tenant_id,
            UPDATE_DISPUTE,
            guards.idempotency.as_ref(),
            &encode(&updated),
        )
        .await?;
        tx.commit().await.context("commit")?;
        Ok(Outcome::Done(updated))
    }

    /// Takes one of the dispute's available actions (CreateAction).
    pub async fn create_action(
        &self,
        caller: &Caller,
        id: &str,
        action: TenantAction,
        guards: MutationGuards,
        encode: impl Fn(&Dispute) -> Vec<u8>,
    ) -> Result<Outcome<Dispute>, DisputeError> {
        self.check_action_documents(caller, &action.document_ids)
            .await?;
        let tenant_id = caller.tenant_id.as_str();
        let mut tx = self.pool.begin().await.context("begin")?;
        if let Some(response) = claim(
            &mut tx,
            tenant_id,
            CREATE_ACTION,
            guards.idempotency.as_ref(),
        )
        .await?
        {
            return Ok(Outcome::Replayed(response));
        }
        let dispute = load_for_update(&mut tx, tenant_id, id).await?;
        check_version(&dispute, guards.expected_version)?;
        let updated = self
            .apply_tenant_action(&mut tx, caller, dispute, action, &encode)
            .await?;
        remember(
            &mut tx,
            tenant_id,
            CREATE_ACTION,
            guards.idempotency.as_ref(),
            &encode(&updated),
        )
        .await?;
        tx.commit().await.context("commit")?;
        Ok(Outcome::Done(updated))
    }

    /// Decides and persists a tenant action on a locked dispute. Submitting evidence locks
    /// its documents in document-store and records their SHA-256 digests in the history.
    async fn apply_tenant_action(
        &self,
        tx: &mut PgConnection,
        caller: &Caller,
        dispute: Dispute,
        action: TenantAction,
        encode: &impl Fn(&Dispute) -> Vec<u8>,
    ) -> Result<Dispute, DisputeError> {
        let decision = lifecycle::decide(
            &dispute.lifecycle_state(),
            &Trigger::Tenant(action),
            &self.policy,
            Utc::now(),
        )?;
        let Some(mut transition) = decision.transition() else {
            return Ok(dispute);
        };
        if transition.evidence == EvidenceEffect::Submitted {
            // The evidence's documents and any the action names become immutable.
            let mut document_ids = evidence::document_ids(&dispute.evidence);
            for id in &transition.history.document_ids {
                if !document_ids.contains(id) {
                    document_ids.push(id.clone());
                }
            }
            if !document_ids.is_empty() {
                let locked = self.documents.lock_documents(caller, &document_ids).await?;
                let digests: Vec<String> = locked
                    .iter()
                    .map(|d| format!("{} sha256={}", d.id, d.sha256))
                    .collect();
                transition.history.message = join_message(
                    &transition.history.message,
                    &format!("submitted documents: {}", digests.join(", ")),
                );
                transition.history.document_ids = document_ids;
            }
        }
        persist_transition(tx, &dispute, &transition, encode).await
    }

    /// Applies a network event, idempotently on (network, case id, event id); opens the
    /// dispute for a new case. Returns the dispute, whether it was created, and whether the
    /// event changed anything.
    pub async fn record_network_event(
        &self,
        caller: &Caller,
        event: RecordedNetworkEvent,
        encode: impl Fn(&Dispute) -> Vec<u8>,
    ) -> Result<NetworkEventOutcome, DisputeError> {
        // Documents that come with an event (a representment's) belong to the same tenant.
        self.check_action_documents(caller, &event.event.document_ids)
            .await?;
        let tenant_id = caller.tenant_id.as_str();
        let mut tx = self.pool.begin().await.context("begin")?;
        postgres::lock_network_case(&mut tx, tenant_id, event.network, &event.network_case_id)
            .await?;
        if let Some((dispute_id, _)) = postgres::find_network_event(
            &mut tx,
            tenant_id,
            event.network,
            &event.network_case_id,
            &event.event_id,
        )
        .await?
        {
            let dispute = reload(&mut tx, tenant_id, &dispute_id).await?;
            return Ok(NetworkEventOutcome {
                dispute,
                created: false,
                applied: false,
            });
        }
        let existing = postgres::find_dispute_id_by_case(
            &mut tx,
            tenant_id,
            event.network,
            &event.network_case_id,
        )
        .await?;
        let (dispute, created, applied) = match existing {
            Some(dispute_id) => {
                let dispute = load_for_update(&mut tx, tenant_id, &dispute_id).await?;
                let decision = lifecycle::decide(
                    &dispute.lifecycle_state(),
                    &Trigger::Network(event.event.clone()),
                    &self.policy,
                    Utc::now(),
                )?;
                match decision.transition() {
                    Some(transition) => {
                        let updated =
                            persist_transition(&mut tx, &dispute, &transition, &encode).await?;
                        (updated, false, true)
                    }
                    None => (dispute, false, false),
                }
            }
            None => {
                let Some(mut new) = event.new_case else {
                    return Err(DisputeError::Validation(vec![Violation::new(
                        "new_case",
                        "is required: the case is new to us, so the dispute must be opened",
                    )]));
                };
                new.network = event.network;
                new.network_case_id = Some(event.network_case_id.clone());
                check_disputed_total(&mut tx, tenant_id, &Claim::of_new(&new)).await?;
                let opened = lifecycle::open_dispute(
                    case_facts(&new),
                    new.amount,
                    &Opening::Network(event.event.clone()),
                    &self.policy,
                    Utc::now(),
                )?;
                let dispute =
                    insert_opened_dispute(&mut tx, tenant_id, &new, &opened, &encode).await?;
                (dispute, true, true)
            }
        };
        postgres::insert_network_event(
            &mut tx,
            tenant_id,
            event.network,
            &event.network_case_id,
            &event.event_id,
            &dispute.id,
            event.event.kind.as_str(),
            applied,
        )
        .await?;
        tx.commit().await.context("commit")?;
        Ok(NetworkEventOutcome {
            dispute,
            created,
            applied,
        })
    }

    /// One pass of the deadline sweeper: applies every passed deadline (M14, I14, H1) once.
    /// Safe with several replicas: rows are claimed with `for update skip locked`.
    pub async fn sweep_deadlines_once(
        &self,
        now: DateTime<Utc>,
        encode: impl Fn(&Dispute) -> Vec<u8>,
    ) -> Result<usize, DisputeError> {
        let mut tx = self.pool.begin().await.context("begin")?;
        let due = postgres::claim_due_disputes(&mut tx, now, SWEEP_BATCH).await?;
        let mut applied = 0;
        for (tenant_id, id) in &due {
            let dispute = reload(&mut tx, tenant_id, id).await?;
            let decision = lifecycle::decide(
                &dispute.lifecycle_state(),
                &Trigger::DeadlinePassed,
                &self.policy,
                now,
            )?;
            match decision.transition() {
                Some(transition) => {
                    persist_transition(&mut tx, &dispute, &transition, &encode).await?;
                    applied += 1;
                }
                None => {
                    // Nothing due after all: move the sweeper's mark to the real deadline.
                    postgres::set_next_deadline(
                        &mut tx,
                        tenant_id,
                        id,
                        dispute.lifecycle_state().next_deadline(),
                    )
                    .await?;
                }
            }
        }
        tx.commit().await.context("commit")?;
        Ok(applied)
    }

    /// Documents an action refers to must exist in the caller's tenant.
    async fn check_action_documents(
        &self,
        caller: &Caller,
        document_ids: &[String],
    ) -> Result<(), DisputeError> {
        if document_ids.is_empty() {
            return Ok(());
        }
        let missing = self
            .documents
            .missing_documents(caller, document_ids)
            .await?;
        let violations: Vec<Violation> = document_ids
            .iter()
            .enumerate()
            .filter(|(_, id)| missing.contains(id))
            .map(|(i, _)| Violation::new(format!("document_ids[{i}]"), "document not found"))
            .collect();
        if violations.is_empty() {
            Ok(())
        } else {
            Err(DisputeError::Validation(violations))
        }
    }

    /// Every document an evidence change names must exist in the caller's tenant.
    async fn check_evidence_documents(
        &self,
        caller: &Caller,
        changes: &[(&'static str, String)],
    ) -> Result<Vec<Violation>, DisputeError> {
        let mut violations = Vec::new();
        let mut referenced: Vec<(&'static str, &String)> = Vec::new();
        for (field, value) in changes {
            if !evidence::is_document_field(field) || value.is_empty() {
                continue;
            }
            // Malformed ids are reported by the transport and by `apply_evidence_changes`.
            if service_kit::ids::is_valid_id("doc", value) {
                referenced.push((field, value));
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
        Ok(violations)
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

/// A dispute's claim on its charge or transaction.
struct Claim<'a> {
    charge: Option<&'a str>,
    transaction_id: Option<&'a str>,
    original_amount: Option<i64>,
    amount: i64,
    /// The dispute itself when its amount changes (it does not count against itself).
    dispute_id: Option<&'a str>,
}

impl<'a> Claim<'a> {
    fn of_new(new: &'a NewDispute) -> Claim<'a> {
        Claim {
            charge: new.charge.as_deref(),
            transaction_id: new.transaction_id.as_deref(),
            original_amount: new.original_amount,
            amount: new.amount,
            dispute_id: None,
        }
    }
}

/// Several disputes may exist for one charge or transaction, but together they never claim
/// more than its original amount when that is known (SPEC §3, H7).
async fn check_disputed_total(
    tx: &mut PgConnection,
    tenant_id: &str,
    claim: &Claim<'_>,
) -> Result<(), DisputeError> {
    let references = [
        (postgres::ReferenceColumn::Charge, claim.charge),
        (
            postgres::ReferenceColumn::TransactionId,
            claim.transaction_id,
        ),
    ];
    for (column, reference) in references {
        let Some(reference) = reference else { continue };
        let others =
            postgres::lock_and_sum_disputed(tx, tenant_id, column, reference, claim.dispute_id)
                .await?;
        let original = claim.original_amount.or(others.original_amount);
        ledger::check_within_original_amount(original, others.amount, claim.amount)?;
    }
    Ok(())
}

/// The facts of a new dispute the lifecycle reads.
fn case_facts(new: &NewDispute) -> CaseFacts {
    CaseFacts {
        side: new.side,
        network: new.network,
        reason: new.reason,
        network_reason_code: new.network_reason_code.clone(),
        currency: new.currency.as_str().to_owned(),
        original_amount: new.original_amount,
        applicable_regulation: new.applicable_regulation,
        date_customer_reported: new.date_customer_reported,
        issuer: new.issuer,
    }
}

async fn load_for_update(
    tx: &mut PgConnection,
    tenant_id: &str,
    id: &str,
) -> Result<Dispute, DisputeError> {
    postgres::find_dispute_for_update(tx, tenant_id, id)
        .await?
        .ok_or_else(|| DisputeError::NotFound {
            kind: "dispute",
            id: id.to_owned(),
        })
}

async fn reload(tx: &mut PgConnection, tenant_id: &str, id: &str) -> Result<Dispute, DisputeError> {
    Ok(postgres::find_dispute(tx, tenant_id, id)
        .await?
        .context("dispute vanished inside its transaction")?)
}

fn join_message(first: &str, second: &str) -> String {
    match (first.is_empty(), second.is_empty()) {
        (true, _) => second.to_owned(),
        (_, true) => first.to_owned(),
        _ => format!("{first}; {second}"),
    }
}

/// Inserts a dispute as `open_dispute` decided it, with its ledger, history and events.
async fn insert_opened_dispute(
    tx: &mut PgConnection,
    tenant_id: &str,
    new: &NewDispute,
    opened: &Transition,
    encode: &impl Fn(&Dispute) -> Vec<u8>,
) -> Result<Dispute, DisputeError> {
    let id = new_id("dsp");
    postgres::insert_opened_dispute(tx, tenant_id, &id, new, &(&opened.state).into()).await?;
    append_effects(tx, tenant_id, &id, opened, encode).await
}

/// Writes a transition decided for `before` (locked): state, ledger, history and events.
async fn persist_transition(
    tx: &mut PgConnection,
    before: &Dispute,
    transition: &Transition,
    encode: &impl Fn(&Dispute) -> Vec<u8>,
) -> Result<Dispute, DisputeError> {
    let state = &transition.state;
    if state.amount != before.amount {
        // A chargeback may restate the amount (M3, I6): it must still fit the original.
        let claim = Claim {
            charge: before.charge.as_deref(),
            transaction_id: before.transaction_id.as_deref(),
            original_amount: before.original_amount,
            amount: state.amount,
            dispute_id: Some(&before.id),
        };
        check_disputed_total(tx, &before.tenant_id, &claim).await?;
    }
    postgres::update_dispute_state(
        tx,
        &before.tenant_id,
        &before.id,
        &postgres::StateUpdate {
            stage: state.stage,
            status: state.status,
            credit_status: state.credit_status,
            amount: state.amount,
            due_time: state.due_time,
            amount_won: state.amount_won,
            amount_lost: state.amount_lost,
            submission_count: state.submission_count,
            reversal_lapses_at: state.reversal_lapses_at,
            overdue: state.overdue,
            next_deadline: state.next_deadline(),
            evidence: &before.evidence,
            metadata: &before.metadata,
        },
    )
    .await?;
    append_effects(tx, &before.tenant_id, &before.id, transition, encode).await
}

/// Appends a transition's ledger entries and history entry, then records its events with
/// the dispute as it is afterwards.
async fn append_effects(
    tx: &mut PgConnection,
    tenant_id: &str,
    dispute_id: &str,
    transition: &Transition,
    encode: &impl Fn(&Dispute) -> Vec<u8>,
) -> Result<Dispute, DisputeError> {
    let state = &transition.state;
    for entry in &transition.ledger_entries {
        postgres::insert_balance_transaction(
            tx,
            tenant_id,
            dispute_id,
            entry.kind,
            entry.amount,
            &state.case.currency,
            &entry.description,
        )
        .await?;
    }
    let history = &transition.history;
    postgres::insert_action_record(
        tx,
        tenant_id,
        &NewActionRecord {
            id: &new_id("act"),
            dispute_id,
            actor: history.actor,
            what: &history.what,
            message: &history.message,
            document_ids: &history.document_ids,
            stage: state.stage,
            status: state.status,
            amount: history.amount,
        },
    )
    .await?;
    let after = reload(tx, tenant_id, dispute_id).await?;
    let payload = encode(&after);
    for event in &transition.events {
        postgres::insert_event(tx, tenant_id, dispute_id, event.as_str(), &payload).await?;
    }
    Ok(after)
}
