//! Money movements of disputes (`balance_transactions`).

use anyhow::Context;
use chrono::{DateTime, Utc};
use service_kit::ids::BalanceTransactionId;
use sqlx::PgConnection;

use super::rows::{dispute_positions, stored};
use crate::domain::{BalanceTransaction, BalanceTransactionType, Dispute};

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
    .bind(BalanceTransactionId::generate().as_str())
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

/// Loads the ledger of several disputes in one query, oldest entry first.
pub(crate) async fn attach_ledger(
    conn: &mut PgConnection,
    tenant_id: &str,
    disputes: &mut [Dispute],
) -> anyhow::Result<()> {
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
    let (ids, positions) = dispute_positions(disputes);
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
    for row in transactions {
        if let Some(&i) = positions.get(&row.dispute_id) {
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
