//! Remembered answers of idempotent mutations (`idempotency_keys`).

use anyhow::Context;
use sqlx::PgConnection;

use super::evidence_texts::{self, AsStoredPayload};
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
    /// The response, as the snapshot encoder encoded it (whole: its evidence texts are
    /// spliced back in when it is read).
    Response(Vec<u8>),
    /// A business refusal.
    Refusal(RememberedRefusal),
}

/// A stored key: fingerprint, response (without its evidence texts, with where they go
/// back and the texts) and the refusal, if one was remembered.
#[derive(sqlx::FromRow)]
struct StoredKey {
    request_fingerprint: String,
    response: Vec<u8>,
    response_text_offsets: Option<Vec<i32>>,
    response_text_bodies: Option<Vec<Vec<u8>>>,
    refusal_code: Option<i32>,
    refusal_message: Option<String>,
    refusal_details: Option<Vec<u8>>,
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
        stored = sqlx::query_as::<_, StoredKey>(&format!(
            "select request_fingerprint, response, response_text_offsets,
                    {} as response_text_bodies,
                    refusal_code, refusal_message, refusal_details
               from idempotency_keys
              where tenant_id = $1 and operation = $2 and request_id = $3",
            evidence_texts::texts_of("idempotency_keys", "response_dispute_id", "response_texts")
        ))
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
    let stored = stored.context("idempotency key neither inserted nor found")?;
    let answer = match stored.refusal_code {
        Some(code) => RememberedAnswer::Refusal(RememberedRefusal {
            code,
            message: stored.refusal_message.unwrap_or_default(),
            details: stored.refusal_details.unwrap_or_default(),
        }),
        None => RememberedAnswer::Response(
            evidence_texts::join_payload(
                stored.response,
                stored.response_text_offsets.as_deref(),
                stored.response_text_bodies,
            )
            .context("read a remembered response")?,
        ),
    };
    Ok(IdempotencyClaim::Used {
        request_fingerprint: stored.request_fingerprint,
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

/// Remembers the response for a claimed key (in the claiming transaction): the dispute
/// `dispute_id` as encoded, stored without its large evidence texts (saved once in
/// `evidence_texts`).
pub async fn save_idempotent_response(
    conn: &mut PgConnection,
    tenant_id: &str,
    operation: &str,
    request_id: &str,
    dispute_id: &str,
    response: &(impl AsStoredPayload + ?Sized),
) -> anyhow::Result<()> {
    let response = response.as_stored();
    evidence_texts::save_texts(conn, tenant_id, dispute_id, &response).await?;
    sqlx::query(
        "update idempotency_keys
            set response = $4, response_dispute_id = $5, response_texts = $6,
                response_text_offsets = $7
          where tenant_id = $1 and operation = $2 and request_id = $3",
    )
    .bind(tenant_id)
    .bind(operation)
    .bind(request_id)
    .bind(&response.bytes)
    .bind(response.has_cuts().then_some(dispute_id))
    .bind(response.digests_column())
    .bind(response.offsets_column())
    .execute(&mut *conn)
    .await
    .context("save idempotent response")?;
    Ok(())
}
