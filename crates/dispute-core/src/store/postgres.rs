//! The dispute repository. Functions take `&mut PgConnection` so callers compose
//! transactions; every query filters by tenant.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use service_kit::page_token::PageCursor;
use sqlx::PgConnection;
use sqlx::types::Json;

use crate::domain::deadlines::RegulationEFacts;
use crate::domain::lifecycle::{IssuerFacts, LifecycleMarks, LifecycleState};
use crate::domain::{
    ActionRecord, Actor, BalanceTransaction, BalanceTransactionType, CreditStatus, Dispute,
    DisputeError, DisputeFilter, Network, NewDispute, PaymentMethodType, Reason, Regulation, Side,
    Stage, Status,
};

const NETWORK_CASE_KEY: &str = "disputes_network_case_key";

const DISPUTE_COLUMNS: &str = "tenant_id, id, version, side, stage, status, amount, currency, charge, \
    payment_intent, transaction_id, merchant_id, network, payment_method_type, reason, \
    network_reason_code, network_case_id, memo, date_customer_reported, applicable_regulation, \
    credit_status, evidence, due_time, has_evidence, submission_count, is_charge_refundable, \
    metadata, livemode, original_amount, amount_won, amount_lost, created_at, updated_at, \
    reversal_lapses_at, overdue, transaction_date, new_account, pos_or_foreign, \
    billing_cycle_closing_day, three_ds_authenticated, digital_wallet_token, transaction_posted";

#[derive(sqlx::FromRow)]
struct DisputeRow {
    tenant_id: String,
    id: String,
    version: i64,
    side: String,
    stage: String,
    status: String,
    amount: i64,
    currency: String,
    charge: Option<String>,
    payment_intent: Option<String>,
    transaction_id: Option<String>,
    merchant_id: Option<String>,
    network: String,
    payment_method_type: String,
    reason: String,
    network_reason_code: Option<String>,
    network_case_id: Option<String>,
    memo: Option<String>,
    date_customer_reported: Option<NaiveDate>,
    applicable_regulation: String,
    credit_status: String,
    evidence: Json<BTreeMap<String, String>>,
    due_time: Option<DateTime<Utc>>,
    has_evidence: bool,
    submission_count: i32,
    is_charge_refundable: bool,
    metadata: Json<BTreeMap<String, String>>,
    livemode: bool,
    original_amount: Option<i64>,
    amount_won: i64,
    amount_lost: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    reversal_lapses_at: Option<DateTime<Utc>>,
    overdue: bool,
    transaction_date: Option<NaiveDate>,
    new_account: bool,
    pos_or_foreign: bool,
    billing_cycle_closing_day: Option<i32>,
    three_ds_authenticated: bool,
    digital_wallet_token: bool,
    transaction_posted: bool,
}

/// Parses a stored enum name; a value we cannot read is a bug, not bad input.
fn stored<T>(column: &str, value: &str, parse: fn(&str) -> Option<T>) -> anyhow::Result<T> {
    parse(value).with_context(|| format!("unreadable {column} {value:?} in database"))
}

impl TryFrom<DisputeRow> for Dispute {
    type Error = anyhow::Error;

    fn try_from(row: DisputeRow) -> anyhow::Result<Dispute> {
        Ok(Dispute {
            side: stored("side", &row.side, Side::parse)?,
            stage: stored("stage", &row.stage, Stage::parse)?,
            status: stored("status", &row.status, Status::parse)?,
            network: stored("network", &row.network, Network::parse)?,
            payment_method_type: stored(
                "payment_method_type",
                &row.payment_method_type,
                PaymentMethodType::parse,
            )?,
            reason: stored("reason", &row.reason, Reason::parse)?,
            applicable_regulation: stored(
                "applicable_regulation",
                &row.applicable_regulation,
                Regulation::parse,
            )?,
            credit_status: stored("credit_status", &row.credit_status, CreditStatus::parse)?,
            id: row.id,
            tenant_id: row.tenant_id,
            create_time: row.created_at,
            update_time: row.updated_at,
            version: row.version,
            amount: row.amount,
            currency: row.currency,
            charge: row.charge,
            payment_intent: row.payment_intent,
            transaction_id: row.transaction_id,
            merchant_id: row.merchant_id,
            network_reason_code: row.network_reason_code,
            network_case_id: row.network_case_id,
            memo: row.memo,
            date_customer_reported: row.date_customer_reported,
            evidence: row.evidence.0,
            due_time: row.due_time,
            has_evidence: row.has_evidence,
            submission_count: row.submission_count,
            is_charge_refundable: row.is_charge_refundable,
            metadata: row.metadata.0,
            livemode: row.livemode,
            original_amount: row.original_amount,
            amount_won: row.amount_won,
            amount_lost: row.amount_lost,
            action_history: Vec::new(),
            balance_transactions: Vec::new(),
            marks: LifecycleMarks {
                reversal_lapses_at: row.reversal_lapses_at,
                overdue: row.overdue,
            },
            issuer: IssuerFacts {
                transaction_date: row.transaction_date,
                regulation_e: RegulationEFacts {
                    new_account: row.new_account,
                    pos_or_foreign: row.pos_or_foreign,
                },
                billing_cycle_closing_day: row
                    .billing_cycle_closing_day
                    .and_then(|day| u32::try_from(day).ok()),
                three_ds_authenticated: row.three_ds_authenticated,
                digital_wallet_token: row.digital_wallet_token,
                transaction_posted: row.transaction_posted,
            },
        })
    }
}

fn is_unique_violation_of(error: &sqlx::Error, constraint: &str) -> bool {
    error
        .as_database_error()
        .is_some_and(|db| db.is_unique_violation() && db.constraint() == Some(constraint))
}

#[tracing::instrument(skip(conn, dispute), fields(dispute_id = %id))]
pub async fn insert_dispute(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
    dispute: &NewDispute,
) -> Result<(), DisputeError> {
    let as_requested = OpenedState {
        stage: dispute.stage,
        status: dispute.status,
        credit_status: CreditStatus::None,
        amount: dispute.amount,
        due_time: dispute.due_time,
        amount_won: 0,
        amount_lost: 0,
        reversal_lapses_at: None,
        overdue: false,
        next_deadline: dispute.due_time,
    };
    insert_opened_dispute(conn, tenant_id, id, dispute, &as_requested).await
}

/// The lifecycle fields of a dispute as it opens.
pub struct OpenedState {
    pub stage: Stage,
    pub status: Status,
    pub credit_status: CreditStatus,
    pub amount: i64,
    pub due_time: Option<DateTime<Utc>>,
    /// A dispute may open already decided (H3: no right to respond).
    pub amount_won: i64,
    pub amount_lost: i64,
    pub reversal_lapses_at: Option<DateTime<Utc>>,
    pub overdue: bool,
    pub next_deadline: Option<DateTime<Utc>>,
}

impl From<&LifecycleState> for OpenedState {
    fn from(state: &LifecycleState) -> Self {
        OpenedState {
            stage: state.stage,
            status: state.status,
            credit_status: state.credit_status,
            amount: state.amount,
            due_time: state.due_time,
            amount_won: state.amount_won,
            amount_lost: state.amount_lost,
            reversal_lapses_at: state.reversal_lapses_at,
            overdue: state.overdue,
            next_deadline: state.next_deadline(),
        }
    }
}

/// Inserts a dispute in the state the lifecycle opened it in.
#[tracing::instrument(skip(conn, dispute, opened), fields(dispute_id = %id))]
pub async fn insert_opened_dispute(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
    dispute: &NewDispute,
    opened: &OpenedState,
) -> Result<(), DisputeError> {
    let result = sqlx::query(
        "insert into disputes (tenant_id, id, side, stage, status, amount, currency, charge,
            payment_intent, transaction_id, merchant_id, network, payment_method_type, reason,
            network_reason_code, network_case_id, memo, date_customer_reported,
            applicable_regulation, credit_status, due_time, is_charge_refundable, metadata,
            livemode, original_amount, reversal_lapses_at, overdue, next_deadline, amount_won,
            amount_lost, transaction_date, new_account, pos_or_foreign, billing_cycle_closing_day,
            three_ds_authenticated, digital_wallet_token, transaction_posted)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
            $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34,
            $35, $36, $37)",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(dispute.side.as_str())
    .bind(opened.stage.as_str())
    .bind(opened.status.as_str())
    .bind(opened.amount)
    .bind(dispute.currency.as_str())
    .bind(&dispute.charge)
    .bind(&dispute.payment_intent)
    .bind(&dispute.transaction_id)
    .bind(&dispute.merchant_id)
    .bind(dispute.network.as_str())
    .bind(dispute.payment_method_type.as_str())
    .bind(dispute.reason.as_str())
    .bind(&dispute.network_reason_code)
    .bind(&dispute.network_case_id)
    .bind(&dispute.memo)
    .bind(dispute.date_customer_reported)
    .bind(dispute.applicable_regulation.as_str())
    .bind(opened.credit_status.as_str())
    .bind(opened.due_time)
    .bind(dispute.is_charge_refundable)
    .bind(Json(&dispute.metadata))
    .bind(dispute.livemode)
    .bind(dispute.original_amount)
    .bind(opened.reversal_lapses_at)
    .bind(opened.overdue)
    .bind(opened.next_deadline)
    .bind(opened.amount_won)
    .bind(opened.amount_lost)
    .bind(dispute.issuer.transaction_date)
    .bind(dispute.issuer.regulation_e.new_account)
    .bind(dispute.issuer.regulation_e.pos_or_foreign)
    .bind(
        dispute
            .issuer
            .billing_cycle_closing_day
            .map(|day| day as i32),
    )
    .bind(dispute.issuer.three_ds_authenticated)
    .bind(dispute.issuer.digital_wallet_token)
    .bind(dispute.issuer.transaction_posted)
    .execute(&mut *conn)
    .await;
    match result {
        Ok(_) => Ok(()),
        Err(error) if is_unique_violation_of(&error, NETWORK_CASE_KEY) => {
            Err(DisputeError::AlreadyExists {
                what: format!(
                    "a dispute for {} case {}",
                    dispute.network,
                    dispute.network_case_id.as_deref().unwrap_or_default()
                ),
            })
        }
        Err(error) => Err(anyhow::Error::new(error).context("insert dispute").into()),
    }
}

/// A history entry to append.
pub struct NewActionRecord<'a> {
    pub id: &'a str,
    pub dispute_id: &'a str,
    pub actor: Actor,
    pub what: &'a str,
    pub message: &'a str,
    pub document_ids: &'a [String],
    pub stage: Stage,
    pub status: Status,
    pub amount: i64,
}

pub async fn insert_action_record(
    conn: &mut PgConnection,
    tenant_id: &str,
    record: &NewActionRecord<'_>,
) -> anyhow::Result<()> {
    sqlx::query(
        "insert into dispute_actions (tenant_id, id, dispute_id, actor, what, message,
            document_ids, stage, status, amount)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(tenant_id)
    .bind(record.id)
    .bind(record.dispute_id)
    .bind(record.actor.as_str())
    .bind(record.what)
    .bind(record.message)
    .bind(record.document_ids)
    .bind(record.stage.as_str())
    .bind(record.status.as_str())
    .bind(record.amount)
    .execute(&mut *conn)
    .await
    .context("insert action record")?;
    Ok(())
}

/// Loads a dispute and locks its row until the transaction ends.
#[tracing::instrument(skip(conn))]
pub async fn find_dispute_for_update(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
) -> anyhow::Result<Option<Dispute>> {
    select_dispute(conn, tenant_id, id, "for update").await
}

/// Stores staged evidence and metadata and bumps the version.
#[tracing::instrument(skip(conn, evidence, metadata))]
pub async fn update_evidence_and_metadata(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
    evidence: &BTreeMap<String, String>,
    metadata: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    sqlx::query(
        "update disputes
            set evidence = $3, has_evidence = $4, metadata = $5, version = version + 1
          where tenant_id = $1 and id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(Json(evidence))
    .bind(!evidence.is_empty())
    .bind(Json(metadata))
    .execute(&mut *conn)
    .await
    .context("update evidence and metadata")?;
    Ok(())
}

/// Records an event holding the dispute as it is after the change.
pub async fn insert_event(
    conn: &mut PgConnection,
    tenant_id: &str,
    dispute_id: &str,
    event_type: &str,
    payload: &[u8],
) -> anyhow::Result<()> {
    sqlx::query(
        "insert into dispute_events (tenant_id, id, dispute_id, type, payload)
         values ($1, $2, $3, $4, $5)",
    )
    .bind(tenant_id)
    .bind(service_kit::ids::new_id("evt"))
    .bind(dispute_id)
    .bind(event_type)
    .bind(payload)
    .execute(&mut *conn)
    .await
    .context("insert event")?;
    Ok(())
}

#[tracing::instrument(skip(conn))]
pub async fn find_dispute(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
) -> anyhow::Result<Option<Dispute>> {
    select_dispute(conn, tenant_id, id, "").await
}

/// One dispute with its history and ledger; `locking` is empty or a row-locking clause.
async fn select_dispute(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
    locking: &'static str,
) -> anyhow::Result<Option<Dispute>> {
    let row: Option<DisputeRow> = sqlx::query_as(&format!(
        "select {DISPUTE_COLUMNS} from disputes where tenant_id = $1 and id = $2 {locking}"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .context("select dispute")?;
    let Some(row) = row else { return Ok(None) };
    let mut disputes = vec![Dispute::try_from(row)?];
    attach_history_and_ledger(conn, tenant_id, &mut disputes).await?;
    Ok(disputes.pop())
}

/// One page of disputes, newest first.
#[tracing::instrument(skip(conn))]
pub async fn list_disputes(
    conn: &mut PgConnection,
    tenant_id: &str,
    filter: &DisputeFilter,
    after: Option<&PageCursor>,
    limit: i64,
) -> anyhow::Result<Vec<Dispute>> {
    let rows: Vec<DisputeRow> = sqlx::query_as(&format!(
        "select {DISPUTE_COLUMNS} from disputes
          where tenant_id = $1
            and ($2::text is null or charge = $2)
            and ($3::text is null or payment_intent = $3)
            and ($4::text is null or transaction_id = $4)
            and ($5::text is null or status = $5)
            and ($6::text is null or stage = $6)
            and ($7::text is null or side = $7)
            and ($8::timestamptz is null or created_at >= $8)
            and ($9::timestamptz is null or created_at < $9)
            and ($10::timestamptz is null or due_time < $10)
            and ($11::timestamptz is null or (created_at, id) < ($11, $12))
          order by created_at desc, id desc
          limit $13"
    ))
    .bind(tenant_id)
    .bind(&filter.charge)
    .bind(&filter.payment_intent)
    .bind(&filter.transaction_id)
    .bind(filter.status.map(Status::as_str))
    .bind(filter.stage.map(Stage::as_str))
    .bind(filter.side.map(Side::as_str))
    .bind(filter.created_after)
    .bind(filter.created_before)
    .bind(filter.due_before)
    .bind(after.map(|c| c.create_time))
    .bind(after.map(|c| c.id.as_str()))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .context("list disputes")?;
    let mut disputes = rows
        .into_iter()
        .map(Dispute::try_from)
        .collect::<anyhow::Result<Vec<_>>>()?;
    attach_history_and_ledger(conn, tenant_id, &mut disputes).await?;
    Ok(disputes)
}

/// Loads history and ledger of several disputes in two queries.
async fn attach_history_and_ledger(
    conn: &mut PgConnection,
    tenant_id: &str,
    disputes: &mut [Dispute],
) -> anyhow::Result<()> {
    if disputes.is_empty() {
        return Ok(());
    }
    #[derive(sqlx::FromRow)]
    struct ActionRow {
        dispute_id: String,
        id: String,
        actor: String,
        what: String,
        message: String,
        document_ids: Vec<String>,
        stage: String,
        status: String,
        amount: i64,
        created_at: DateTime<Utc>,
    }
    #[derive(sqlx::FromRow)]
    struct TransactionRow {
        dispute_id: String,
        id: String,
        #[sqlx(rename = "type")]
        kind: String,
        amount: i64,
        currency: String,
        description: String,
        created_at: DateTime<Utc>,
    }

    let ids: Vec<String> = disputes.iter().map(|d| d.id.clone()).collect();
    let actions: Vec<ActionRow> = sqlx::query_as(
        "select dispute_id, id, actor, what, message, document_ids, stage, status, amount, created_at
           from dispute_actions where tenant_id = $1 and dispute_id = any($2)
          order by created_at, id",
    )
    .bind(tenant_id)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .context("select action history")?;
    let transactions: Vec<TransactionRow> = sqlx::query_as(
        "select dispute_id, id, type, amount, currency, description, created_at
           from balance_transactions where tenant_id = $1 and dispute_id = any($2)
          order by created_at, id",
    )
    .bind(tenant_id)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .context("select balance transactions")?;

    let position: HashMap<String, usize> =
        ids.into_iter().enumerate().map(|(i, id)| (id, i)).collect();
    for row in actions {
        if let Some(&i) = position.get(&row.dispute_id) {
            disputes[i].action_history.push(ActionRecord {
                actor: stored("actor", &row.actor, Actor::parse)?,
                stage: stored("stage", &row.stage, Stage::parse)?,
                status: stored("status", &row.status, Status::parse)?,
                id: row.id,
                what: row.what,
                create_time: row.created_at,
                message: row.message,
                document_ids: row.document_ids,
                amount: row.amount,
            });
        }
    }
    for row in transactions {
        if let Some(&i) = position.get(&row.dispute_id) {
            disputes[i].balance_transactions.push(BalanceTransaction {
                kind: stored("type", &row.kind, BalanceTransactionType::parse)?,
                id: row.id,
                amount: row.amount,
                currency: row.currency,
                create_time: row.created_at,
                description: row.description,
            });
        }
    }
    Ok(())
}

/// What an idempotency key says about a mutation.
pub enum IdempotencyClaim {
    /// First use: go ahead, then [`save_idempotent_response`] in the same transaction.
    New,
    /// Used before (committed): replay or refuse.
    Used {
        request_fingerprint: String,
        response: Vec<u8>,
    },
}

/// Claims `request_id` for this transaction. A concurrent holder of the same key makes this
/// wait until it commits (then the key reads as used) or rolls back (then it is ours).
pub async fn claim_idempotency_key(
    conn: &mut PgConnection,
    tenant_id: &str,
    operation: &str,
    request_id: &str,
    request_fingerprint: &str,
) -> anyhow::Result<IdempotencyClaim> {
    let inserted = sqlx::query(
        "insert into idempotency_keys (tenant_id, operation, request_id, request_fingerprint, response)
         values ($1, $2, $3, $4, '')
         on conflict do nothing",
    )
    .bind(tenant_id)
    .bind(operation)
    .bind(request_id)
    .bind(request_fingerprint)
    .execute(&mut *conn)
    .await
    .context("claim idempotency key")?
    .rows_affected();
    if inserted == 1 {
        return Ok(IdempotencyClaim::New);
    }
    let (request_fingerprint, response): (String, Vec<u8>) = sqlx::query_as(
        "select request_fingerprint, response from idempotency_keys
          where tenant_id = $1 and operation = $2 and request_id = $3",
    )
    .bind(tenant_id)
    .bind(operation)
    .bind(request_id)
    .fetch_one(&mut *conn)
    .await
    .context("read idempotency key")?;
    Ok(IdempotencyClaim::Used {
        request_fingerprint,
        response,
    })
}

pub async fn save_idempotent_response(
    conn: &mut PgConnection,
    tenant_id: &str,
    operation: &str,
    request_id: &str,
    response: &[u8],
) -> anyhow::Result<()> {
    sqlx::query(
        "update idempotency_keys set response = $4
          where tenant_id = $1 and operation = $2 and request_id = $3",
    )
    .bind(tenant_id)
    .bind(operation)
    .bind(request_id)
    .bind(response)
    .execute(&mut *conn)
    .await
    .context("save idempotent response")?;
    Ok(())
}

/// Forgets idempotency keys older than `older_than_hours` (SPEC keeps them at least 24 h).
pub async fn purge_idempotency_keys(
    conn: &mut PgConnection,
    older_than_hours: i64,
) -> anyhow::Result<u64> {
    let deleted = sqlx::query(
        "delete from idempotency_keys where created_at < now() - make_interval(hours => $1::int)",
    )
    .bind(older_than_hours)
    .execute(&mut *conn)
    .await
    .context("purge idempotency keys")?
    .rows_affected();
    Ok(deleted)
}

/// What is already disputed of one charge or transaction.
pub struct DisputedSoFar {
    /// Sum of the amounts of its disputes that did not end as CLOSED.
    pub amount: i64,
    /// The original amount, if any of its disputes knows it.
    pub original_amount: Option<i64>,
}

/// Locks the (tenant, reference) pair until the transaction ends, so concurrent disputes on
/// one charge are checked one after the other, and sums what its disputes already claim.
/// `column` is `charge` or `transaction_id`.
pub async fn lock_and_sum_disputed(
    conn: &mut PgConnection,
    tenant_id: &str,
    column: ReferenceColumn,
    reference: &str,
    except_dispute_id: Option<&str>,
) -> anyhow::Result<DisputedSoFar> {
    sqlx::query("select pg_advisory_xact_lock(hashtextextended($1 || '/' || $2 || '/' || $3, 0))")
        .bind(tenant_id)
        .bind(column.as_str())
        .bind(reference)
        .execute(&mut *conn)
        .await
        .context("lock reference")?;
    let (amount, original_amount): (i64, Option<i64>) = sqlx::query_as(&format!(
        "select coalesce(sum(amount), 0)::bigint, max(original_amount) from disputes
          where tenant_id = $1 and {} = $2 and status <> 'closed'
            and ($3::text is null or id <> $3)",
        column.as_str()
    ))
    .bind(tenant_id)
    .bind(reference)
    .bind(except_dispute_id)
    .fetch_one(&mut *conn)
    .await
    .context("sum disputed amounts")?;
    Ok(DisputedSoFar {
        amount,
        original_amount,
    })
}

/// The columns a dispute references its payment by.
#[derive(Debug, Clone, Copy)]
pub enum ReferenceColumn {
    Charge,
    TransactionId,
}

impl ReferenceColumn {
    fn as_str(self) -> &'static str {
        match self {
            ReferenceColumn::Charge => "charge",
            ReferenceColumn::TransactionId => "transaction_id",
        }
    }
}

/// The lifecycle fields a transition writes.
pub struct StateUpdate<'a> {
    pub stage: Stage,
    pub status: Status,
    pub credit_status: CreditStatus,
    pub amount: i64,
    pub due_time: Option<DateTime<Utc>>,
    pub amount_won: i64,
    pub amount_lost: i64,
    pub submission_count: i32,
    pub reversal_lapses_at: Option<DateTime<Utc>>,
    pub overdue: bool,
    pub next_deadline: Option<DateTime<Utc>>,
    pub evidence: &'a BTreeMap<String, String>,
    pub metadata: &'a BTreeMap<String, String>,
}

/// Writes a transition's state and bumps the version.
#[tracing::instrument(skip(conn, update))]
pub async fn update_dispute_state(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
    update: &StateUpdate<'_>,
) -> anyhow::Result<()> {
    sqlx::query(
        "update disputes
            set stage = $3, status = $4, credit_status = $5, amount = $6, due_time = $7,
                amount_won = $8, amount_lost = $9, submission_count = $10,
                reversal_lapses_at = $11, overdue = $12, next_deadline = $13,
                evidence = $14, has_evidence = $15, metadata = $16, version = version + 1
          where tenant_id = $1 and id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(update.stage.as_str())
    .bind(update.status.as_str())
    .bind(update.credit_status.as_str())
    .bind(update.amount)
    .bind(update.due_time)
    .bind(update.amount_won)
    .bind(update.amount_lost)
    .bind(update.submission_count)
    .bind(update.reversal_lapses_at)
    .bind(update.overdue)
    .bind(update.next_deadline)
    .bind(Json(update.evidence))
    .bind(!update.evidence.is_empty())
    .bind(Json(update.metadata))
    .execute(&mut *conn)
    .await
    .context("update dispute state")?;
    Ok(())
}

/// Appends a money movement.
pub async fn insert_balance_transaction(
    conn: &mut PgConnection,
    tenant_id: &str,
    dispute_id: &str,
    kind: BalanceTransactionType,
    amount: i64,
    currency: &str,
    description: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "insert into balance_transactions (tenant_id, id, dispute_id, type, amount, currency, description)
         values ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(tenant_id)
    .bind(service_kit::ids::new_id("txn"))
    .bind(dispute_id)
    .bind(kind.as_str())
    .bind(amount)
    .bind(currency)
    .bind(description)
    .execute(&mut *conn)
    .await
    .context("insert balance transaction")?;
    Ok(())
}

/// Serialises everything that happens to one network case until the transaction ends.
pub async fn lock_network_case(
    conn: &mut PgConnection,
    tenant_id: &str,
    network: Network,
    network_case_id: &str,
) -> anyhow::Result<()> {
    sqlx::query("select pg_advisory_xact_lock(hashtextextended('case/' || $1 || '/' || $2 || '/' || $3, 0))")
        .bind(tenant_id)
        .bind(network.as_str())
        .bind(network_case_id)
        .execute(&mut *conn)
        .await
        .context("lock network case")?;
    Ok(())
}

/// The dispute of a network case, if any.
pub async fn find_dispute_id_by_case(
    conn: &mut PgConnection,
    tenant_id: &str,
    network: Network,
    network_case_id: &str,
) -> anyhow::Result<Option<String>> {
    let id = sqlx::query_scalar(
        "select id from disputes where tenant_id = $1 and network = $2 and network_case_id = $3",
    )
    .bind(tenant_id)
    .bind(network.as_str())
    .bind(network_case_id)
    .fetch_optional(&mut *conn)
    .await
    .context("find dispute by case")?;
    Ok(id)
}

/// A network event seen before: its dispute and whether it changed anything.
pub async fn find_network_event(
    conn: &mut PgConnection,
    tenant_id: &str,
    network: Network,
    network_case_id: &str,
    event_id: &str,
) -> anyhow::Result<Option<(String, bool)>> {
    let seen = sqlx::query_as(
        "select dispute_id, applied from network_events
          where tenant_id = $1 and network = $2 and network_case_id = $3 and event_id = $4",
    )
    .bind(tenant_id)
    .bind(network.as_str())
    .bind(network_case_id)
    .bind(event_id)
    .fetch_optional(&mut *conn)
    .await
    .context("find network event")?;
    Ok(seen)
}

#[allow(clippy::too_many_arguments)]
pub async fn insert_network_event(
    conn: &mut PgConnection,
    tenant_id: &str,
    network: Network,
    network_case_id: &str,
    event_id: &str,
    dispute_id: &str,
    kind: &str,
    applied: bool,
) -> anyhow::Result<()> {
    sqlx::query(
        "insert into network_events (tenant_id, network, network_case_id, event_id, dispute_id, type, applied)
         values ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(tenant_id)
    .bind(network.as_str())
    .bind(network_case_id)
    .bind(event_id)
    .bind(dispute_id)
    .bind(kind)
    .bind(applied)
    .execute(&mut *conn)
    .await
    .context("insert network event")?;
    Ok(())
}

/// Claims up to `limit` disputes whose next deadline has passed, locking their rows until
/// the transaction ends; other replicas skip them (`for update skip locked`).
pub async fn claim_due_disputes(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> anyhow::Result<Vec<(String, String)>> {
    let due = sqlx::query_as(
        "select tenant_id, id from disputes
          where next_deadline <= $1
          order by next_deadline
          limit $2
          for update skip locked",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .context("claim due disputes")?;
    Ok(due)
}

/// Moves the sweeper's mark of one dispute.
pub async fn set_next_deadline(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
    next_deadline: Option<DateTime<Utc>>,
) -> anyhow::Result<()> {
    sqlx::query("update disputes set next_deadline = $3 where tenant_id = $1 and id = $2")
        .bind(tenant_id)
        .bind(id)
        .bind(next_deadline)
        .execute(&mut *conn)
        .await
        .context("set next deadline")?;
    Ok(())
}
