//! The action history of disputes (`dispute_actions`).

use std::sync::LazyLock;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Deserialize;
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

/// Appends an entry at the end of its dispute's history (the caller holds the dispute's row
/// lock, or has just inserted the dispute, so no other entry takes the same place).
#[tracing::instrument(skip(conn, record), fields(dispute_id = %record.dispute_id))]
pub async fn insert_action_record(
    conn: &mut PgConnection,
    tenant_id: &str,
    record: &NewActionRecord<'_>,
) -> anyhow::Result<AppendedAction> {
    let row: ActionRow = sqlx::query_as(&format!(
        "insert into dispute_actions as a (tenant_id, id, dispute_id, actor, what, message,
            document_ids, stage, status, amount, ordinal)
         select $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, coalesce(max(ordinal), 0) + 1
           from dispute_actions where tenant_id = $1 and dispute_id = $3
         returning {ACTION_COLUMNS}"
    ))
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
    .fetch_one(&mut *conn)
    .await
    .context("insert action record")?;
    let ordinal = row.ordinal;
    Ok(AppendedAction {
        record: row.try_into()?,
        ordinal,
    })
}

/// A history entry as stored, and its place in the history (1 for the first entry), which
/// is the history's length right after the append.
pub struct AppendedAction {
    pub record: ActionRecord,
    pub ordinal: i64,
}

const ACTION_COLUMNS: &str = "a.dispute_id, a.id, a.actor, a.what, a.message, a.document_ids, a.stage, a.status, \
     a.amount, a.created_at, a.ordinal";

#[derive(sqlx::FromRow, Deserialize)]
pub(crate) struct ActionRow {
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
    ordinal: i64,
}

impl TryFrom<ActionRow> for ActionRecord {
    type Error = anyhow::Error;

    fn try_from(row: ActionRow) -> anyhow::Result<ActionRecord> {
        Ok(ActionRecord {
            actor: stored("actor", &row.actor, Actor::parse)?,
            stage: stored("stage", &row.stage, Stage::parse)?,
            status: stored("status", &row.status, Status::parse)?,
            id: row.id,
            what: row.what,
            create_time: row.created_at,
            message: row.message,
            document_ids: row.document_ids,
            amount: row.amount,
        })
    }
}

/// A scalar subquery: the newest `latest` history entries of dispute `$2` of tenant `$1` as a
/// JSON array (oldest of them first) of [`ActionRow`]s, for reading a dispute in one
/// statement.
pub(crate) fn latest_history_json(latest: i64) -> String {
    format!(
        "(select coalesce(json_agg(h order by h.ordinal), '[]'::json)
            from (select {ACTION_COLUMNS} from dispute_actions a
                   where a.tenant_id = $1 and a.dispute_id = $2
                   order by a.ordinal desc
                   limit {latest}) h)"
    )
}

/// Gives `dispute` the entries [`latest_history_json`] read, and its history's length.
pub(crate) fn attach_history_rows(
    dispute: &mut Dispute,
    rows: Vec<ActionRow>,
) -> anyhow::Result<()> {
    for row in rows {
        dispute.action_history_count = dispute.action_history_count.max(row.ordinal);
        dispute.action_history.push(row.try_into()?);
    }
    Ok(())
}

/// Loads the newest `latest` history entries of several disputes in one query (oldest of
/// them first), and each history's length: never the whole history.
pub(crate) async fn attach_latest_history(
    conn: &mut PgConnection,
    tenant_id: &str,
    disputes: &mut [Dispute],
    latest: i64,
) -> anyhow::Result<()> {
    let (ids, positions) = dispute_positions(disputes);
    let rows: Vec<ActionRow> = sqlx::query_as(&format!(
        "select {ACTION_COLUMNS}
           from unnest($2::text[]) as d(id)
           cross join lateral (
               select * from dispute_actions
                where tenant_id = $1 and dispute_id = d.id
                order by ordinal desc
                limit $3) a"
    ))
    .bind(tenant_id)
    .bind(&ids)
    .bind(latest)
    .fetch_all(&mut *conn)
    .await
    .context("select latest action history")?;
    // Newest first per dispute: the first row seen is the history's last entry, whose
    // ordinal is the history's length.
    for row in rows {
        if let Some(&i) = positions.get(&row.dispute_id) {
            let dispute = &mut disputes[i];
            dispute.action_history_count = dispute.action_history_count.max(row.ordinal);
            dispute.action_history.push(row.try_into()?);
        }
    }
    for dispute in disputes.iter_mut() {
        dispute.action_history.reverse();
    }
    Ok(())
}

/// The length of a dispute's history, or `None` when the tenant has no such dispute.
#[tracing::instrument(skip(conn))]
pub async fn count_history(
    conn: &mut PgConnection,
    tenant_id: &str,
    dispute_id: &str,
) -> anyhow::Result<Option<i64>> {
    let count: Option<i64> = sqlx::query_scalar(
        "select (select coalesce(max(ordinal), 0) from dispute_actions
                  where tenant_id = $1 and dispute_id = $2)
           from disputes where tenant_id = $1 and id = $2",
    )
    .bind(tenant_id)
    .bind(dispute_id)
    .fetch_optional(&mut *conn)
    .await
    .context("count action history")?;
    Ok(count)
}

/// ListDisputeHistory's statement, exposed so that a test can check its plans. Parameters:
/// tenant, dispute id, the id of the entry to continue after (`null`: from the start), limit.
pub static LIST_HISTORY_PAGE_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "select {ACTION_COLUMNS}
           from dispute_actions a
          where a.tenant_id = $1 and a.dispute_id = $2
            and ($3::text is null
                 or a.ordinal > (select ordinal from dispute_actions
                                  where tenant_id = $1 and dispute_id = $2 and id = $3))
          order by a.ordinal
          limit $4"
    )
});

/// Up to `limit` history entries of a dispute, oldest first, after the entry `after_id`
/// (from the start when `None`; nothing when the dispute has no such entry). New entries
/// only ever come after the existing ones, so walking on from the last entry seen never
/// skips or repeats one.
#[tracing::instrument(skip(conn))]
pub async fn list_history_page(
    conn: &mut PgConnection,
    tenant_id: &str,
    dispute_id: &str,
    after_id: Option<&str>,
    limit: i64,
) -> anyhow::Result<Vec<ActionRecord>> {
    let rows: Vec<ActionRow> = sqlx::query_as(&LIST_HISTORY_PAGE_SQL)
        .bind(tenant_id)
        .bind(dispute_id)
        .bind(after_id)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await
        .context("list action history")?;
    rows.into_iter().map(ActionRecord::try_from).collect()
}
