//! Remembered answers of idempotent mutations (`idempotency_keys`).

use anyhow::Context;
use sqlx::PgConnection;

use crate::domain::error::RememberedRefusal;

/// What an idempotency key says about a mutation.
pub enum IdempotencyClaim {
    /// First use: go ahead, then [`save_idempotent_response`] in the same transaction.
    New,
    /// Used before (committed): replay or refuse.
    Used {
        request_fingerprint: String,
        answer: RememberedAnswer,
    },
}

/// What a used key answered the first time.
pub enum RememberedAnswer {
    /// The response, as the snapshot encoder stored it.
    Response(Vec<u8>),
    /// A business refusal.
    Refusal(RememberedRefusal),
}

/// A stored key: fingerprint, response and the refusal, if one was remembered.
type StoredKey = (
    String,
    Vec<u8>,
    Option<i32>,
    Option<String>,
    Option<Vec<u8>>,
);

/// Claims `request_id` for this transaction. A concurrent holder of the same key makes this
/// wait until it commits (then the key reads as used) or rolls back (then it is ours).
pub async fn claim_idempotency_key(
    conn: &mut PgConnection,
    tenant_id: &str,
    operation: &str,
    request_id: &str,
    request_fingerprint: &str,
) -> anyhow::Result<IdempotencyClaim> {
    // Twice at most: a key the retention purge removes between the insert and the read is
    // new again, so the second insert takes it.
    let mut stored = None;
    for _ in 0..2 {
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
        stored = sqlx::query_as::<_, StoredKey>(
            "select request_fingerprint, response, refusal_code, refusal_message, refusal_details
               from idempotency_keys
              where tenant_id = $1 and operation = $2 and request_id = $3",
        )
        .bind(tenant_id)
        .bind(operation)
        .bind(request_id)
        .fetch_optional(&mut *conn)
        .await
        .context("read idempotency key")?;
        if stored.is_some() {
            break;
        }
    }
    let (request_fingerprint, response, code, message, details) =
        stored.context("idempotency key neither inserted nor found")?;
    let answer = match code {
        Some(code) => RememberedAnswer::Refusal(RememberedRefusal {
            code,
            message: message.unwrap_or_default(),
            details: details.unwrap_or_default(),
        }),
        None => RememberedAnswer::Response(response),
    };
    Ok(IdempotencyClaim::Used {
        request_fingerprint,
        answer,
    })
}

/// Remembers a business refusal for a claimed key (in the claiming transaction).
pub async fn save_idempotent_refusal(
    conn: &mut PgConnection,
    tenant_id: &str,
    operation: &str,
    request_id: &str,
    refusal: &RememberedRefusal,
) -> anyhow::Result<()> {
    sqlx::query(
        "update idempotency_keys
            set refusal_code = $4, refusal_message = $5, refusal_details = $6
          where tenant_id = $1 and operation = $2 and request_id = $3",
    )
    .bind(tenant_id)
    .bind(operation)
    .bind(request_id)
    .bind(refusal.code)
    .bind(&refusal.message)
    .bind(&refusal.details)
    .execute(&mut *conn)
    .await
    .context("save idempotent refusal")?;
    Ok(())
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
