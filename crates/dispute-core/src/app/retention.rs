//! The retention purge (docs/api.md, "Retention"): a periodic worker that deletes
//! idempotency keys past their window, finished webhook deliveries (with their attempts)
//! and, when configured, old events and then the evidence texts no kept event or remembered
//! response references any more. Each batch is its own short transaction
//! (`store::retention`); the run stops between batches when the service shuts down. The
//! cutoffs come from `domain::retention`.
//!
//! | metric | kind | unit | attributes |
//! | --- | --- | --- | --- |
//! | `retention.purged` | counter | {row} | table (`idempotency_keys`, `webhook_deliveries`, `webhook_attempts`, `dispute_events`, `evidence_texts`) |

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;
use service_kit::metrics::meter;
use service_kit::worker::{RunReport, Workers};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::domain::DisputeError;
use crate::domain::retention::RetentionPolicy;
use crate::store::evidence_texts;
use crate::store::retention::{self as store, PurgedRows};

/// How the purge runs (flags `--…-retention-…`, docs/configuration.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSettings {
    pub policy: RetentionPolicy,
    /// How often a purge run starts.
    pub interval: Duration,
    /// Rows one batch (one transaction) deletes at most.
    pub batch_size: u32,
}

/// What one purge run removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub idempotency_keys: u64,
    pub webhook_deliveries: u64,
    pub webhook_attempts: u64,
    pub events: u64,
    pub evidence_texts: u64,
    /// Transactions the run committed.
    pub batches: u64,
    /// The service began to shut down: the run stopped between two batches.
    pub stopped: bool,
}

impl PurgeReport {
    fn rows(&self) -> u64 {
        self.idempotency_keys
            + self.webhook_deliveries
            + self.webhook_attempts
            + self.events
            + self.evidence_texts
    }
}

/// One committed batch: how many rows it picked (fewer than the limit: nothing older is
/// left) and what it removed.
struct Batch {
    picked: u64,
    removed: PurgeReport,
}

impl Batch {
    fn of(rows: PurgedRows) -> Batch {
        Batch {
            picked: rows.picked,
            removed: PurgeReport {
                events: rows.events,
                webhook_deliveries: rows.deliveries,
                webhook_attempts: rows.attempts,
                ..PurgeReport::default()
            },
        }
    }
}

/// The purge over dispute-core's database. Cheap to clone.
#[derive(Clone)]
pub struct Retention {
    pool: PgPool,
    settings: RetentionSettings,
    purged: Counter<u64>,
}

impl Retention {
    pub fn new(pool: PgPool, settings: RetentionSettings) -> Retention {
        Retention {
            pool,
            settings,
            purged: meter()
                .u64_counter("retention.purged")
                .with_unit("{row}")
                .with_description("Rows deleted by the retention purge, by table")
                .build(),
        }
    }

    /// Starts the purge worker among `workers`: a run at start and then every interval; it
    /// stops between batches once `shutdown` is cancelled.
    pub fn start_worker(&self, workers: &mut Workers, shutdown: CancellationToken) {
        let retention = self.clone();
        workers.spawn_periodic("retention purger", self.settings.interval, move || {
            let retention = retention.clone();
            let shutdown = shutdown.clone();
            async move {
                let report = retention.purge_at(Utc::now(), &shutdown).await?;
                Ok::<RunReport, DisputeError>(RunReport::done(report.rows()))
            }
        });
    }

    /// One purge run now, to its end (what the worker runs at each interval).
    pub async fn purge_once(&self) -> Result<PurgeReport, DisputeError> {
        self.purge_at(Utc::now(), &CancellationToken::new()).await
    }

    /// One purge run with the cutoffs of `now`: batch after batch until nothing older is
    /// left, or until `stop` is cancelled.
    pub async fn purge_at(
        &self,
        now: DateTime<Utc>,
        stop: &CancellationToken,
    ) -> Result<PurgeReport, DisputeError> {
        let cutoffs = self.settings.policy.cutoffs(now);
        let limit = i64::from(self.settings.batch_size.max(1));
        let mut report = PurgeReport::default();

        let idempotency_before = cutoffs.idempotency_keys;
        self.purge_batches(&mut report, stop, limit, |conn| {
            Box::pin(async move {
                let deleted =
                    store::purge_idempotency_keys(conn, idempotency_before, limit).await?;
                Ok(Batch {
                    picked: deleted,
                    removed: PurgeReport {
                        idempotency_keys: deleted,
                        ..PurgeReport::default()
                    },
                })
            })
        })
        .await?;
        if let Some(before) = cutoffs.webhook_deliveries {
            self.purge_batches(&mut report, stop, limit, |conn| {
                Box::pin(async move {
                    Ok(Batch::of(
                        store::purge_finished_deliveries(conn, before, limit).await?,
                    ))
                })
            })
            .await?;
        }
        if let Some(before) = cutoffs.events {
            self.purge_batches(&mut report, stop, limit, |conn| {
                Box::pin(
                    async move { Ok(Batch::of(store::purge_events(conn, before, limit).await?)) },
                )
            })
            .await?;
            // Texts only events and remembered responses reference (the disputes row keeps
            // its own copy). While events are kept forever every text stays referenced by
            // the events that wrote it, so there is nothing to look for. A run stopped
            // early leaves them for the next one.
            let idempotency_before = cutoffs.idempotency_keys;
            let texts_before = before.min(idempotency_before) - evidence_texts::LAST_USE_SLACK;
            self.purge_batches(&mut report, stop, limit, |conn| {
                Box::pin(async move {
                    let deleted =
                        evidence_texts::purge_unused_texts(conn, texts_before, limit).await?;
                    Ok(Batch {
                        picked: deleted,
                        removed: PurgeReport {
                            evidence_texts: deleted,
                            ..PurgeReport::default()
                        },
                    })
                })
            })
            .await?;
        }
        report.stopped = stop.is_cancelled();
        if report.rows() > 0 {
            tracing::info!(
                idempotency_keys = report.idempotency_keys,
                webhook_deliveries = report.webhook_deliveries,
                webhook_attempts = report.webhook_attempts,
                events = report.events,
                evidence_texts = report.evidence_texts,
                batches = report.batches,
                stopped = report.stopped,
                "retention purge removed old rows"
            );
        }
        Ok(report)
    }

    /// Runs `batch` in its own transaction until a batch selects fewer than `limit` rows
    /// (nothing older is left) or `stop` is cancelled.
    async fn purge_batches<F>(
        &self,
        report: &mut PurgeReport,
        stop: &CancellationToken,
        limit: i64,
        mut batch: F,
    ) -> Result<(), DisputeError>
    where
        F: for<'c> FnMut(
            &'c mut sqlx::PgConnection,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = anyhow::Result<Batch>> + Send + 'c>,
        >,
    {
        while !stop.is_cancelled() {
            let mut tx = service_kit::database::begin(&self.pool)
                .await
                .context("begin")?;
            let Batch { picked, removed } = batch(&mut tx).await?;
            tx.commit().await.context("commit")?;
            report.batches += 1;
            report.idempotency_keys += removed.idempotency_keys;
            report.events += removed.events;
            report.webhook_deliveries += removed.webhook_deliveries;
            report.webhook_attempts += removed.webhook_attempts;
            report.evidence_texts += removed.evidence_texts;
            self.count("idempotency_keys", removed.idempotency_keys);
            self.count("dispute_events", removed.events);
            self.count("webhook_deliveries", removed.webhook_deliveries);
            self.count("webhook_attempts", removed.webhook_attempts);
            self.count("evidence_texts", removed.evidence_texts);
            if picked < limit.unsigned_abs() {
                return Ok(());
            }
        }
        Ok(())
    }

    fn count(&self, table: &'static str, rows: u64) {
        if rows > 0 {
            self.purged.add(rows, &[KeyValue::new("table", table)]);
        }
    }
}
