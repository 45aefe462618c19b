//! The action history of disputes (`dispute_actions`).

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::rows::{dispute_positions, stored};
use crate::domain::{ActionRecord, Actor, Dispute, Stage, Status};

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

/// Loads the history of several disputes in one query, oldest entry first.
pub(crate) async fn attach_history(
    conn: &mut PgConnection,
    tenant_id: &str,
    disputes: &mut [Dispute],
) -> anyhow::Result<()> {
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
    let (ids, positions) = dispute_positions(disputes);
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
    for row in actions {
        if let Some(&i) = positions.get(&row.dispute_id) {
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
    Ok(())
}
