//! The `disputes` table: insert, find, list, and write a dispute's state.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use domain_kit::page_token::PageCursor;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use sqlx::types::Json;

use super::history::{ActionRow, attach_history_rows, attach_latest_history, latest_history_json};
use super::ledger::{LEDGER_JSON, TransactionRow, attach_ledger, attach_ledger_rows};
use super::rows::{is_unique_violation_of, stored};
use crate::domain::deadlines::RegulationEFacts;
use crate::domain::dispute::LATEST_HISTORY_ENTRIES;
use crate::domain::lifecycle::{DeadlineBreach, IssuerFacts, LifecycleMarks, LifecycleState};
use crate::domain::{
    CloseReason, CreditStatus, Dispute, DisputeError, DisputeFilter, Network, NewDispute,
    OverdueDeadline, PaymentMethodType, Reason, Regulation, Side, Stage, Status,
};

const NETWORK_CASE_KEY: &str = "disputes_network_case_key";

const DISPUTE_COLUMNS: &str = "tenant_id, id, version, side, stage, status, amount, currency, charge, \
    payment_intent, transaction_id, merchant_id, network, payment_method_type, reason, \
    network_reason_code, network_case_id, memo, date_customer_reported, applicable_regulation, \
    credit_status, evidence, due_time, has_evidence, submission_count, is_charge_refundable, \
    metadata, livemode, original_amount, amount_won, amount_lost, created_at, updated_at, \
    reversal_lapses_at, transaction_date, new_account, pos_or_foreign, \
    billing_cycle_closing_day, three_ds_authenticated, digital_wallet_token, transaction_posted, \
    deadline_breaches, close_reason";

/// One element of the `deadline_breaches` column (I14).
#[derive(Serialize, Deserialize)]
struct StoredBreach {
    deadline: String,
    due: DateTime<Utc>,
    flagged: bool,
}

fn stored_breaches(breaches: &[DeadlineBreach]) -> Json<Vec<StoredBreach>> {
    Json(
        breaches
            .iter()
            .map(|breach| StoredBreach {
                deadline: breach.deadline.as_str().to_owned(),
                due: breach.due,
                flagged: breach.flagged,
            })
            .collect(),
    )
}

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
    transaction_date: Option<NaiveDate>,
    new_account: bool,
    pos_or_foreign: bool,
    billing_cycle_closing_day: Option<i32>,
    three_ds_authenticated: bool,
    digital_wallet_token: bool,
    transaction_posted: bool,
    deadline_breaches: Json<Vec<StoredBreach>>,
    close_reason: Option<String>,
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
            action_history_count: 0,
            balance_transactions: Vec::new(),
            close_reason: row
                .close_reason
                .as_deref()
                .map(|reason| stored("close_reason", reason, CloseReason::parse))
                .transpose()?,
            marks: LifecycleMarks {
                reversal_lapses_at: row.reversal_lapses_at,
                breaches: row
                    .deadline_breaches
                    .0
                    .iter()
                    .map(|breach| {
                        Ok(DeadlineBreach {
                            deadline: stored(
                                "deadline_breaches.deadline",
                                &breach.deadline,
                                OverdueDeadline::parse,
                            )?,
                            due: breach.due,
                            flagged: breach.flagged,
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?,
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
#[tracing::instrument(skip(conn, dispute), fields(dispute_id = %id))]
pub async fn insert_dispute(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
    dispute: &NewDispute,
) -> Result<(), DisputeError> {
    let as_requested = LifecycleColumns {
        stage: dispute.stage,
        status: dispute.status,
        credit_status: CreditStatus::None,
        amount: dispute.amount,
        due_time: dispute.due_time,
        amount_won: 0,
        amount_lost: 0,
        reversal_lapses_at: None,
        breaches: Vec::new(),
        close_reason: None,
        next_deadline: dispute.due_time,
        network_reason_code: dispute.network_reason_code.clone(),
    };
    insert_opened_dispute(conn, tenant_id, id, dispute, &as_requested).await?;
    Ok(())
}

/// The lifecycle columns of a dispute: what opening it or a transition writes.
pub struct LifecycleColumns {
    pub stage: Stage,
    pub status: Status,
    pub credit_status: CreditStatus,
    pub amount: i64,
    pub due_time: Option<DateTime<Utc>>,
    /// A dispute may open already decided (H3: no right to respond).
    pub amount_won: i64,
    pub amount_lost: i64,
    pub reversal_lapses_at: Option<DateTime<Utc>>,
    /// I14: the deadlines recorded as passed; the `overdue` column mirrors the flagged ones.
    pub breaches: Vec<DeadlineBreach>,
    pub close_reason: Option<CloseReason>,
    pub next_deadline: Option<DateTime<Utc>>,
    /// A network event may bring the case's reason code (issue 11, point 4).
    pub network_reason_code: Option<String>,
}

impl From<&LifecycleState> for LifecycleColumns {
    fn from(state: &LifecycleState) -> Self {
        LifecycleColumns {
            stage: state.stage,
            status: state.status,
            credit_status: state.credit_status,
            amount: state.amount,
            due_time: state.due_time,
            amount_won: state.amount_won,
            amount_lost: state.amount_lost,
            reversal_lapses_at: state.reversal_lapses_at,
            breaches: state.breaches.clone(),
            close_reason: state.close_reason,
            next_deadline: state.next_deadline(),
            network_reason_code: state.case.network_reason_code.clone(),
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
    opened: &LifecycleColumns,
) -> Result<Dispute, DisputeError> {
    let result: Result<DisputeRow, _> = sqlx::query_as(&format!(
        "insert into disputes (tenant_id, id, side, stage, status, amount, currency, charge,
            payment_intent, transaction_id, merchant_id, network, payment_method_type, reason,
            network_reason_code, network_case_id, memo, date_customer_reported,
            applicable_regulation, credit_status, due_time, is_charge_refundable, metadata,
            livemode, original_amount, reversal_lapses_at, overdue, next_deadline, amount_won,
            amount_lost, transaction_date, new_account, pos_or_foreign, billing_cycle_closing_day,
            three_ds_authenticated, digital_wallet_token, transaction_posted)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
            $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34,
            $35, $36, $37)
         returning {DISPUTE_COLUMNS}"
    ))
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
    .bind(opened.breaches.iter().any(|breach| breach.flagged))
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
    .fetch_one(&mut *conn)
    .await;
    match result {
        Ok(row) => Ok(Dispute::try_from(row)?),
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

/// Loads a dispute and locks its row until the transaction ends.
#[tracing::instrument(skip(conn))]
pub async fn find_dispute_for_update(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
) -> anyhow::Result<Option<Dispute>> {
    select_dispute(conn, tenant_id, id, "for update").await
}

/// Stores staged evidence and metadata, bumps the version and returns the dispute's row (no
/// history or ledger attached).
#[tracing::instrument(skip(conn, evidence, metadata))]
pub async fn update_evidence_and_metadata(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
    evidence: &BTreeMap<String, String>,
    metadata: &BTreeMap<String, String>,
) -> anyhow::Result<Dispute> {
    let row: DisputeRow = sqlx::query_as(&format!(
        "update disputes
            set evidence = $3, has_evidence = $4, metadata = $5, version = version + 1
          where tenant_id = $1 and id = $2
          returning {DISPUTE_COLUMNS}"
    ))
    .bind(tenant_id)
    .bind(id)
    .bind(Json(evidence))
    .bind(!evidence.is_empty())
    .bind(Json(metadata))
    .fetch_one(&mut *conn)
    .await
    .context("update evidence and metadata")?;
    Dispute::try_from(row)
}
#[tracing::instrument(skip(conn))]
pub async fn find_dispute(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
) -> anyhow::Result<Option<Dispute>> {
    select_dispute(conn, tenant_id, id, "").await
}

/// A dispute's newest history entries and its ledger, as JSON columns `history` and `ledger`.
fn children_columns() -> String {
    format!(
        "{} as history, {LEDGER_JSON} as ledger",
        latest_history_json(LATEST_HISTORY_ENTRIES)
    )
}

/// Dispute `$2` of tenant `$1` with its children, in one statement.
static SELECT_WITH_CHILDREN: LazyLock<String> = LazyLock::new(|| {
    format!(
        "select {DISPUTE_COLUMNS}, {}
           from disputes where tenant_id = $1 and id = $2",
        children_columns()
    )
});

/// The children of dispute `$2` of tenant `$1` alone (after a locking read).
static SELECT_CHILDREN: LazyLock<String> =
    LazyLock::new(|| format!("select {}", children_columns()));

/// One dispute with its latest history entries and its ledger; `locking` is empty or a
/// row-locking clause. Unlocked, it is one statement. Locked, the children are read by a
/// second statement after the lock is held: a statement that waited for the lock sees the
/// row as the other transaction committed it, but subqueries of that same statement would
/// still see the children as they were before it.
async fn select_dispute(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
    locking: &'static str,
) -> anyhow::Result<Option<Dispute>> {
    #[derive(sqlx::FromRow)]
    struct Children {
        history: Json<Vec<ActionRow>>,
        ledger: Json<Vec<TransactionRow>>,
    }
    #[derive(sqlx::FromRow)]
    struct WithChildren {
        #[sqlx(flatten)]
        row: DisputeRow,
        #[sqlx(flatten)]
        children: Children,
    }
    let (row, children) = if locking.is_empty() {
        let found: Option<WithChildren> = sqlx::query_as(&SELECT_WITH_CHILDREN)
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .context("select dispute")?;
        let Some(found) = found else { return Ok(None) };
        (found.row, found.children)
    } else {
        let row: Option<DisputeRow> = sqlx::query_as(&format!(
            "select {DISPUTE_COLUMNS} from disputes where tenant_id = $1 and id = $2 {locking}"
        ))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .context("select dispute")?;
        let Some(row) = row else { return Ok(None) };
        let children: Children = sqlx::query_as(&SELECT_CHILDREN)
            .bind(tenant_id)
            .bind(id)
            .fetch_one(&mut *conn)
            .await
            .context("select dispute history and ledger")?;
        (row, children)
    };
    let mut dispute = Dispute::try_from(row)?;
    attach_history_rows(&mut dispute, children.history.0)?;
    attach_ledger_rows(&mut dispute, children.ledger.0)?;
    Ok(Some(dispute))
}

/// ListDisputes' statement, exposed so that a test can check its plans. Parameters: tenant,
/// charge, payment intent, transaction id, status, stage, side, created after, created
/// before, due before, the cursor's create time and id, limit (`null`: no such filter).
pub static LIST_DISPUTES_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
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
    )
});

/// One page of disputes, newest first.
#[tracing::instrument(skip(conn))]
pub async fn list_disputes(
    conn: &mut PgConnection,
    tenant_id: &str,
    filter: &DisputeFilter,
    after: Option<&PageCursor>,
    limit: i64,
) -> anyhow::Result<Vec<Dispute>> {
    let rows: Vec<DisputeRow> = sqlx::query_as(&LIST_DISPUTES_SQL)
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

/// Loads the latest history entries and the ledger of several disputes, one query each.
async fn attach_history_and_ledger(
    conn: &mut PgConnection,
    tenant_id: &str,
    disputes: &mut [Dispute],
) -> anyhow::Result<()> {
    if disputes.is_empty() {
        return Ok(());
    }
    attach_latest_history(conn, tenant_id, disputes, LATEST_HISTORY_ENTRIES).await?;
    attach_ledger(conn, tenant_id, disputes).await
}

/// What a transition writes.
pub struct StateUpdate<'a> {
    pub lifecycle: LifecycleColumns,
    pub submission_count: i32,
    pub evidence: &'a BTreeMap<String, String>,
    pub metadata: &'a BTreeMap<String, String>,
}

/// Writes a transition's state, bumps the version and returns the dispute's row (no history
/// or ledger attached).
#[tracing::instrument(skip(conn, update))]
pub async fn update_dispute_state(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
    update: &StateUpdate<'_>,
) -> anyhow::Result<Dispute> {
    let row: DisputeRow = sqlx::query_as(&format!(
        "update disputes
            set stage = $3, status = $4, credit_status = $5, amount = $6, due_time = $7,
                amount_won = $8, amount_lost = $9, submission_count = $10,
                reversal_lapses_at = $11, overdue = $12, next_deadline = $13,
                evidence = $14, has_evidence = $15, metadata = $16,
                network_reason_code = $17, deadline_breaches = $18, close_reason = $19,
                version = version + 1
          where tenant_id = $1 and id = $2
          returning {DISPUTE_COLUMNS}"
    ))
    .bind(tenant_id)
    .bind(id)
    .bind(update.lifecycle.stage.as_str())
    .bind(update.lifecycle.status.as_str())
    .bind(update.lifecycle.credit_status.as_str())
    .bind(update.lifecycle.amount)
    .bind(update.lifecycle.due_time)
    .bind(update.lifecycle.amount_won)
    .bind(update.lifecycle.amount_lost)
    .bind(update.submission_count)
    .bind(update.lifecycle.reversal_lapses_at)
    .bind(
        update
            .lifecycle
            .breaches
            .iter()
            .any(|breach| breach.flagged),
    )
    .bind(update.lifecycle.next_deadline)
    .bind(Json(update.evidence))
    .bind(!update.evidence.is_empty())
    .bind(Json(update.metadata))
    .bind(&update.lifecycle.network_reason_code)
    .bind(stored_breaches(&update.lifecycle.breaches))
    .bind(update.lifecycle.close_reason.map(CloseReason::as_str))
    .fetch_one(&mut *conn)
    .await
    .context("update dispute state")?;
    Dispute::try_from(row)
}

/// Gives a dispute the network case id its filing got (CreateAction CHARGEBACK and later
/// filings): ALREADY_EXISTS when another dispute of the tenant holds (network, case id).
#[tracing::instrument(skip(conn))]
pub async fn set_network_case_id(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
    network: Network,
    network_case_id: &str,
) -> Result<(), DisputeError> {
    let result =
        sqlx::query("update disputes set network_case_id = $3 where tenant_id = $1 and id = $2")
            .bind(tenant_id)
            .bind(id)
            .bind(network_case_id)
            .execute(&mut *conn)
            .await;
    match result {
        Ok(_) => Ok(()),
        Err(error) if is_unique_violation_of(&error, NETWORK_CASE_KEY) => {
            Err(DisputeError::AlreadyExists {
                what: format!("a dispute for {network} case {network_case_id}"),
            })
        }
        Err(error) => Err(anyhow::Error::new(error)
            .context("set network case id")
            .into()),
    }
}
