//! The sequencer: gives committed events their positions, one round at a time in the whole
//! database (`store::events::number_committed_events`), so positions are dense per tenant
//! and become visible in order.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::store::events;

/// Events the sequencer numbers per round (and transaction).
const SEQUENCER_BATCH: i64 = 1000;
/// The sequencer runs at least this often, even without a wake-up.
const SEQUENCER_EVERY: Duration = Duration::from_secs(1);
/// When another process holds the sequencer lock, try again after this long (its round may
/// have started before our wake-up's events committed).
const SEQUENCER_BUSY_RETRY: Duration = Duration::from_millis(20);

/// How long the sequencer waits after a failed round.
const FAILED_ROUND_RETRY: Duration = Duration::from_secs(1);

/// Numbers committed events whenever the listener reports an insert (and every
/// [`SEQUENCER_EVERY`]), round after round until none is left.
pub(super) async fn sequence(pool: PgPool, inserted: Arc<Notify>, shutdown: CancellationToken) {
    let mut wait = SEQUENCER_EVERY;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = inserted.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
        wait = SEQUENCER_EVERY;
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

/// One sequencer round in its own transaction; `None` when another process runs one.
async fn number_round(pool: &PgPool) -> anyhow::Result<Option<u64>> {
    let mut tx = service_kit::database::begin(pool).await.context("begin")?;
    let numbered = events::number_committed_events(&mut tx, SEQUENCER_BATCH).await?;
    tx.commit().await.context("commit")?;
    Ok(numbered)
}
