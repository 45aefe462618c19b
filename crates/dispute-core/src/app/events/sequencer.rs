//! The sequencer: gives committed events their positions, one round at a time in the whole
//! database (`store::events::number_committed_events`), so positions are dense per tenant
//! and become visible in order. Each round that numbered events announces them in one
//! notification; writers notify nothing.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::store::events;

/// Events the sequencer numbers per round (and transaction).
const SEQUENCER_BATCH: i64 = 1000;
/// When another process holds the sequencer lock, try again after this long (its round may
/// have started before our wake-up's events committed).
const SEQUENCER_BUSY_RETRY: Duration = Duration::from_millis(20);

/// How long the sequencer waits after a failed round.
const FAILED_ROUND_RETRY: Duration = Duration::from_secs(1);

/// Numbers committed events whenever a commit of this process wakes it (`recorded`), and
/// every `poll` if events wait for a position (committed through other replicas), round
/// after round until none is left.
pub(super) async fn sequence(
    pool: PgPool,
    recorded: Arc<Notify>,
    poll: Duration,
    shutdown: CancellationToken,
) {
    let mut wait = poll;
    loop {
        let woken = tokio::select! {
            () = shutdown.cancelled() => return,
            () = recorded.notified() => true,
            () = tokio::time::sleep(wait) => false,
        };
        wait = poll;
        // The poll only looks (one index probe); a round takes the lock and commits.
        if !woken && !has_unnumbered(&pool).await {
            continue;
        }
        loop {
            match number_round(&pool).await {
                Ok(Some(numbered)) if numbered >= SEQUENCER_BATCH as u64 => continue,
                Ok(Some(_)) => break,
                Ok(None) => {
                    wait = SEQUENCER_BUSY_RETRY;
                    break;
                }
                Err(error) => {
                    tracing::warn!(error = ?error, "event sequencer round failed; retrying");
                    wait = FAILED_ROUND_RETRY;
                    break;
                }
            }
        }
    }
}

/// Whether events wait for a position; true when the look fails (the round then reports
/// the failure).
async fn has_unnumbered(pool: &PgPool) -> bool {
    let look = async {
        let mut conn = pool.acquire().await.context("acquire")?;
        events::has_unnumbered_events(&mut conn).await
    };
    look.await.unwrap_or(true)
}

/// One sequencer round in its own transaction; `None` when another process runs one.
async fn number_round(pool: &PgPool) -> anyhow::Result<Option<u64>> {
    let mut tx = service_kit::database::begin(pool).await.context("begin")?;
    let numbered = events::number_committed_events(&mut tx, SEQUENCER_BATCH).await?;
    tx.commit().await.context("commit")?;
    Ok(numbered)
}
