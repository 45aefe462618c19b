//! Background workers, started one way: [`Workers`] starts each as a named task that gets
//! the service's shutdown token and returns once it is cancelled;
//! [`Workers::spawn_periodic`] is that for a job run every interval (deadline sweeper, key
//! purger, lock repair, abandoned-upload cleaner), which logs what each run did. At exit
//! [`Workers::stop`] waits for them within a budget, then cuts off the rest.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// What one run of a periodic job did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Items handled.
    pub handled: u64,
    /// Items that failed and were skipped (the job logs each one).
    pub failed: u64,
    /// The run stopped at its batch limit with work left: run again now, without waiting
    /// for the next tick, so a backlog drains in one interval.
    pub more: bool,
}

impl RunReport {
    /// A run that handled `handled` items and left nothing behind.
    pub fn done(handled: u64) -> RunReport {
        RunReport {
            handled,
            ..RunReport::default()
        }
    }
}

/// The background workers of a service: each started the same way, and all stopped
/// together at exit.
#[derive(Debug)]
pub struct Workers {
    shutdown: CancellationToken,
    running: Vec<(&'static str, JoinHandle<()>)>,
}

impl Workers {
    /// No workers yet; those started will stop when `shutdown` is cancelled.
    pub fn new(shutdown: &CancellationToken) -> Self {
        Self {
            shutdown: shutdown.clone(),
            running: Vec::new(),
        }
    }

    /// Starts worker `name` (see `spawn_worker`).
    pub fn spawn<F, Fut>(&mut self, name: &'static str, body: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handle = spawn_worker(name, &self.shutdown, body);
        self.running.push((name, handle));
    }

    /// Starts worker `name` running `job` every `every` (see `spawn_periodic`).
    pub fn spawn_periodic<F, Fut, E>(&mut self, name: &'static str, every: Duration, job: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<RunReport, E>> + Send,
        E: std::fmt::Debug,
    {
        let handle = spawn_periodic(name, every, self.shutdown.clone(), job);
        self.running.push((name, handle));
    }

    /// The names of the workers started, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.running.iter().map(|(name, _)| *name).collect()
    }

    /// Cancels the shutdown token (if not yet) and waits up to `within` for every worker
    /// to stop (see `stop_workers`). Returns whether all stopped in time.
    pub async fn stop(self, within: Duration) -> bool {
        self.shutdown.cancel();
        let (names, handles): (Vec<_>, Vec<_>) = self.running.into_iter().unzip();
        let all_stopped = stop_workers(handles, within).await;
        if !all_stopped {
            tracing::debug!(workers = ?names, "not every worker stopped in time");
        }
        all_stopped
    }
}

/// Starts worker `name`: `body` gets the service's shutdown token and must return once it
/// is cancelled (finishing, or giving back, the work in hand).
fn spawn_worker<F, Fut>(name: &'static str, shutdown: &CancellationToken, body: F) -> JoinHandle<()>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let run = body(shutdown.clone());
    tokio::spawn(async move {
        run.await;
        tracing::debug!(worker = name, "worker stopped");
    })
}

/// Runs `job` now and then every `every` until `shutdown` is cancelled. A run that reports
/// `more` is followed by the next one at once; a failed run is logged and retried at the
/// next tick, so a database blip never stops the worker. `name` names the worker in logs
/// and metrics. Each run is a root span of its own (`worker.run`), so its log lines carry
/// their own trace id, and counts in the `worker.*` metrics.
fn spawn_periodic<F, Fut, E>(
    name: &'static str,
    every: Duration,
    shutdown: CancellationToken,
    mut job: F,
) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<RunReport, E>> + Send,
    E: std::fmt::Debug,
{
    let metrics = crate::metrics::WorkerMetrics::new();
    spawn_worker(name, &shutdown, move |shutdown| async move {
        loop {
            let span = tracing::info_span!(
                parent: None,
                "worker.run",
                otel.name = name,
                worker = name,
                handled = tracing::field::Empty,
                failed = tracing::field::Empty,
            );
            // A run already started finishes: its transactions either commit or roll back.
            let result = job().instrument(span.clone()).await;
            let more = span.in_scope(|| match result {
                Ok(report) => {
                    span.record("handled", report.handled);
                    span.record("failed", report.failed);
                    metrics.run(name, Some((report.handled, report.failed)));
                    if report.handled > 0 || report.failed > 0 {
                        tracing::info!(
                            worker = name,
                            handled = report.handled,
                            failed = report.failed,
                            more = report.more,
                            "worker run done"
                        );
                    }
                    report.more
                }
                Err(error) => {
                    metrics.run(name, None);
                    tracing::warn!(worker = name, error = ?error, "worker run failed");
                    false
                }
            });
            drop(span);
            if shutdown.is_cancelled() {
                return;
            }
            if more {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {},
            }
        }
    })
}

/// Waits up to `within` for `workers` to stop (once shutdown is cancelled they stop after
/// the run in progress), then cuts off any still running: dropping a run mid-way rolls its
/// open transaction back, so nothing is half-applied. Returns whether all stopped in time.
async fn stop_workers(workers: Vec<JoinHandle<()>>, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut all_stopped = true;
    for mut worker in workers {
        if tokio::time::timeout_at(deadline, &mut worker)
            .await
            .is_err()
        {
            worker.abort();
            let _ = worker.await;
            all_stopped = false;
        }
    }
    all_stopped
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
                        Ok(RunReport::done(run))
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

    #[tokio::test]
    async fn runs_again_at_once_while_more_work_remains() {
        // A backlog of 10 batches drains although the interval is an hour.
        let backlog = Arc::new(AtomicU64::new(10));
        let shutdown = CancellationToken::new();
        let left = backlog.clone();
        let worker = spawn_periodic(
            "test",
            Duration::from_secs(3600),
            shutdown.clone(),
            move || {
                let left = left.clone();
                async move {
                    let before = left.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, &str>(RunReport {
                        handled: 1,
                        failed: 0,
                        more: before > 1,
                    })
                }
            },
        );
        tokio::time::timeout(Duration::from_secs(10), async {
            while backlog.load(Ordering::SeqCst) > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the backlog drains without waiting for the next tick");
        // Nothing more: the worker now waits for its tick instead of running again.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(backlog.load(Ordering::SeqCst), 0);
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), worker)
            .await
            .expect("the worker stops on shutdown")
            .expect("the worker does not panic");
    }

    #[tokio::test]
    async fn workers_start_one_way_and_stop_together() {
        let shutdown = CancellationToken::new();
        let mut workers = Workers::new(&shutdown);
        let runs = Arc::new(AtomicU64::new(0));
        let counter = runs.clone();
        workers.spawn(
            "waits",
            |shutdown| async move { shutdown.cancelled().await },
        );
        workers.spawn_periodic("counts", Duration::from_millis(5), move || {
            let counter = counter.clone();
            async move { Ok::<_, &str>(RunReport::done(counter.fetch_add(1, Ordering::SeqCst))) }
        });
        assert_eq!(workers.names(), ["waits", "counts"]);
        while runs.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let stopped =
            tokio::time::timeout(Duration::from_secs(5), workers.stop(Duration::from_secs(5)))
                .await
                .expect("stop returns");
        assert!(stopped, "every worker observed the cancelled token");
        assert!(shutdown.is_cancelled());
    }

    #[tokio::test]
    async fn stop_workers_cuts_off_a_run_past_its_budget() {
        let shutdown = CancellationToken::new();
        let quick = spawn_periodic(
            "quick",
            Duration::from_secs(3600),
            shutdown.clone(),
            || async { Ok::<_, &str>(RunReport::done(0)) },
        );
        let stuck = spawn_periodic(
            "stuck",
            Duration::from_secs(3600),
            shutdown.clone(),
            || async {
                std::future::pending::<()>().await;
                Ok::<_, &str>(RunReport::done(1))
            },
        );
        shutdown.cancel();
        let stopped = tokio::time::timeout(
            Duration::from_secs(5),
            stop_workers(vec![quick, stuck], Duration::from_millis(50)),
        )
        .await
        .expect("stop_workers returns once its budget is spent");
        assert!(!stopped, "the stuck run was reported as cut off");
    }
}
