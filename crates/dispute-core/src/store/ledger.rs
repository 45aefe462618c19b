//! Money movements of disputes (`balance_transactions`), with their fees.

use anyhow::Context;
use chrono::{DateTime, Utc};
use domain_kit::ids::BalanceTransactionId;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use sqlx::types::Json;

use super::rows::{dispute_positions, stored};
use crate::domain::ledger::FeeDetail;
use crate::domain::{
    BalanceTransaction, BalanceTransactionStatus, BalanceTransactionType, Dispute, FeeType,
    LedgerEntry,
};

/// One element of the `fee_details` column.
#[derive(Serialize, Deserialize)]
struct FeeDetailRow {
    #[serde(rename = "type")]
    kind: String,
    amount: i64,
    description: String,
}

/// A `balance_transactions` row as read.
#[derive(sqlx::FromRow, Deserialize)]
pub(crate) struct TransactionRow {
    dispute_id: String,
    id: String,
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    kind: String,
    amount: i64,
    currency: String,
    description: String,
    created_at: DateTime<Utc>,
    fee_details: Json<Vec<FeeDetailRow>>,
    reporting_category: String,
    available_on: DateTime<Utc>,
    /// `available_on <= now()`, as the database saw it.
    available: bool,
}

impl TryFrom<TransactionRow> for BalanceTransaction {
    type Error = anyhow::Error;

    fn try_from(row: TransactionRow) -> anyhow::Result<BalanceTransaction> {
        let fee_details = row
            .fee_details
            .0
            .into_iter()
            .map(|detail| {
                Ok(FeeDetail {
                    kind: stored("fee_details.type", &detail.kind, FeeType::parse)?,
                    amount: detail.amount,
                    description: detail.description,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(BalanceTransaction {
            kind: stored("type", &row.kind, BalanceTransactionType::parse)?,
            id: row.id,
            amount: row.amount,
            fee_details,
            currency: row.currency,
            create_time: row.created_at,
            description: row.description,
            status: if row.available {
                BalanceTransactionStatus::Available
            } else {
                BalanceTransactionStatus::Pending
            },
            reporting_category: row.reporting_category,
            available_on: row.available_on,
        })
    }
}

/// A ledger entry as one `balance_transactions` row.
pub struct NewBalanceTransaction<'a> {
    pub entry: &'a LedgerEntry,
    pub currency: &'a str,
    pub reporting_category: &'a str,
    pub available_on: DateTime<Utc>,
}

/// Appends a money movement and returns it as stored.
pub async fn insert_balance_transaction(
    conn: &mut PgConnection,
    tenant_id: &str,
    dispute_id: &str,
    new: &NewBalanceTransaction<'_>,
) -> anyhow::Result<BalanceTransaction> {
    let entry = new.entry;
    let fee_details: Vec<FeeDetailRow> = entry
        .fee_details
        .iter()
        .map(|detail| FeeDetailRow {
            kind: detail.kind.as_str().to_owned(),
            amount: detail.amount,
            description: detail.description.clone(),
        })
        .collect();
    let row: TransactionRow = sqlx::query_as(
        "insert into balance_transactions (tenant_id, id, dispute_id, type, amount, currency,
                description, fee, fee_details, reporting_category, available_on)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         returning dispute_id, id, type, amount, currency, description, created_at, fee_details,
                   reporting_category, available_on, available_on <= now() as available",
    )
    .bind(tenant_id)
    .bind(BalanceTransactionId::generate().as_str())
    .bind(dispute_id)
    .bind(entry.kind.as_str())
    .bind(entry.amount)
    .bind(new.currency)
    .bind(&entry.description)
    .bind(entry.fee())
    .bind(Json(fee_details))
    .bind(new.reporting_category)
    .bind(new.available_on)
    .fetch_one(&mut *conn)
    .await
    .context("insert balance transaction")?;
    row.try_into()
}

/// A scalar subquery: the ledger of dispute `$2` of tenant `$1` as a JSON array of
/// [`TransactionRow`]s, oldest entry first, for reading a dispute in one statement.
pub(crate) const LEDGER_JSON: &str =
    "(select coalesce(json_agg(l order by l.created_at, l.id), '[]'::json)
    from (select dispute_id, id, type, amount, currency, description, created_at, fee_details,
                 reporting_category, available_on, available_on <= now() as available
            from balance_transactions
           where tenant_id = $1 and dispute_id = $2) l)";

/// Gives `dispute` the entries [`LEDGER_JSON`] read.
pub(crate) fn attach_ledger_rows(
    dispute: &mut Dispute,
    rows: Vec<TransactionRow>,
) -> anyhow::Result<()> {
    for row in rows {
        dispute.balance_transactions.push(row.try_into()?);
    }
    Ok(())
}

/// Loads the ledger of several disputes in one query, oldest entry first.
pub(crate) async fn attach_ledger(
    conn: &mut PgConnection,
    tenant_id: &str,
    disputes: &mut [Dispute],
) -> anyhow::Result<()> {
    let (ids, positions) = dispute_positions(disputes);
    let transactions: Vec<TransactionRow> = sqlx::query_as(
        "select b.dispute_id, b.id, b.type, b.amount, b.currency, b.description, b.created_at,
                b.fee_details, b.reporting_category, b.available_on,
                b.available_on <= now() as available
           from unnest($2::text[]) as d(id)
           cross join lateral (
               select * from balance_transactions
                where tenant_id = $1 and dispute_id = d.id) b
          order by b.created_at, b.id",
    )
    .bind(tenant_id)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .context("select balance transactions")?;
    for row in transactions {
        if let Some(&i) = positions.get(&row.dispute_id) {
            disputes[i].balance_transactions.push(row.try_into()?);
        }
    }
    Ok(())
}
