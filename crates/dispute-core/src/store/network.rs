//! Network cases and the network events already applied to them (`network_events`).

use anyhow::Context;
use sqlx::PgConnection;

use crate::domain::Network;

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
