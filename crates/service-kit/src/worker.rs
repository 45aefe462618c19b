//! Periodic background workers (deadline sweeper, key purger, abandoned-upload cleaner):
//! one loop that runs a job, logs what it did, and stops with the service.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Runs `job` now and then every `every` until `shutdown` is cancelled. A run returns how
/// many items it handled; a failed run is logged and retried at the next tick, so a
/// database blip never stops the worker. `name` names the worker in logs.
pub fn spawn_periodic<F, Fut, E>(
    name: &'static str,
    every: Duration,
    shutdown: CancellationToken,
    mut job: F,
) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<u64, E>> + Send,
    E: std::fmt::Debug,
{
    tokio::spawn(async move {
        loop {
            // A run already started finishes: its transaction either commits or rolls back.
            match job().await {
                Ok(0) => {}
                Ok(handled) => tracing::info!(worker = name, handled, "worker run done"),
                Err(error) => tracing::warn!(worker = name, error = ?error, "worker run failed"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {},
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[tokio::test]
    async fn runs_until_shutdown_and_survives_failures() {
        let runs = Arc::new(AtomicU64::new(0));
        let shutdown = CancellationToken::new();
        let counter = runs.clone();
        let worker = spawn_periodic(
            "test",
            Duration::from_millis(5),
            shutdown.clone(),
            move || {
                let counter = counter.clone();
                async move {
                    let run = counter.fetch_add(1, Ordering::SeqCst);
                    if run.is_multiple_of(2) {
                        Err("odd failure")
                    } else {
                        Ok(run)
                    }
                }
            },
        );
        while runs.load(Ordering::SeqCst) < 4 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), worker)
            .await
            .expect("the worker stops on shutdown")
            .expect("the worker does not panic");
    }
}
