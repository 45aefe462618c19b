//! What the disputes of one charge or transaction claim together (H7), per currency, under a
//! lock.

use anyhow::Context;
use sqlx::PgConnection;

/// What is already disputed of one charge or transaction, in one currency.
pub struct DisputedSoFar {
    /// Sum of the amounts of its disputes in the currency that did not end as CLOSED.
    pub amount: i64,
    /// The original amount, if any of its disputes in the currency knows it.
    pub original_amount: Option<i64>,
}

/// Locks the (tenant, reference) pair until the transaction ends, so concurrent disputes on
/// one charge are checked one after the other, and sums what its disputes in `currency`
/// already claim: amounts in different currencies are never added up (a dispute in another
/// currency has its own original amount). `column` is `charge` or `transaction_id`.
pub async fn lock_and_sum_disputed(
    conn: &mut PgConnection,
    tenant_id: &str,
    column: ReferenceColumn,
    reference: &str,
    currency: &str,
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
          where tenant_id = $1 and {} = $2 and currency = $3 and status <> 'closed'
            and ($4::text is null or id <> $4)",
        column.as_str()
    ))
    .bind(tenant_id)
    .bind(reference)
    .bind(currency)
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
