//! scale-bench: does a call cost the same on a large database as on a small one (issue 23,
//! part 5)? It prints figures; it asserts nothing.
//!
//! For each of two sizes (`--small-disputes` and `--disputes`, the same events per dispute
//! and disputes per tenant): seed a database pair in SQL (`seed.rs`), start both services
//! on it (the harness stack, in this process), and measure GetDispute, ListDisputes with
//! each filter, CreateAction, RecordNetworkEvent, ListEvents deep in the feed and with each
//! filter (closed loops, `load.rs`) and StreamEvents replay throughput; then table and
//! index sizes per dispute, and the time the retention purge takes to delete the oldest day
//! of events. Last, the large/small ratios. `--keep-db` keeps the seeded databases (and
//! reuses them on the next run: seeding the full size takes a while).

mod load;
mod report;
mod seed;

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, ensure};
use chrono::{DateTime, Utc};
use clap::Parser;
use harness::{Stack, StackOptions};
use sqlx::Connection;

use crate::load::{Call, EventsRead, ListFilter, Phase, Target};
use crate::report::{Measured, Sizes};
use crate::seed::Size;

#[derive(Debug, Parser)]
#[command(
    name = "scale-bench",
    about = "RPC latency and throughput on a large seeded database against a small one, sizes per dispute, purge time"
)]
pub struct Args {
    /// Disputes of the large database.
    #[arg(long, default_value_t = 100_000)]
    disputes: u64,
    /// Tenants of the large database (the small one keeps the disputes per tenant).
    #[arg(long, default_value_t = 1_000)]
    tenants: u64,
    /// Events of the large database (a multiple of --disputes).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Disputes of the small database.
    #[arg(long, default_value_t = 10_000)]
    small_disputes: u64,
    /// Days the seeded history spans (events and disputes spread evenly, ending now).
    #[arg(long, default_value_t = 30)]
    days: u64,
    /// Calls of each measured RPC.
    #[arg(long, default_value_t = 2_000)]
    calls: usize,
    /// Calls in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// HTTP/2 connections the calls spread over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Keep the seeded databases, and reuse them when they exist.
    #[arg(long)]
    keep_db: bool,
    /// Only seed the databases (kept, as with --keep-db), measure nothing.
    #[arg(long)]
    seed_only: bool,
    /// Tiny sizes (CI: proves the bench still works, the figures mean nothing).
    #[arg(long, env = "BENCH_SCALE_QUICK")]
    quick: bool,
}

impl Args {
    fn apply_quick(&mut self) {
        if self.quick {
            self.disputes = self.disputes.min(3_000);
            self.tenants = self.tenants.min(10);
            self.events = self.events.min(30_000);
            self.small_disputes = self.small_disputes.min(600);
            self.calls = self.calls.min(60);
            self.concurrency = self.concurrency.min(4);
        }
    }

    fn sizes(&self) -> anyhow::Result<(Size, Size)> {
        ensure!(
            self.disputes > 0 && self.tenants > 0 && self.disputes.is_multiple_of(self.tenants),
            "--disputes must be a multiple of --tenants"
        );
        ensure!(
            self.events > 0 && self.events.is_multiple_of(self.disputes),
            "--events must be a multiple of --disputes"
        );
        let large = Size {
            disputes: self.disputes,
            tenants: self.tenants,
            events_per_dispute: self.events / self.disputes,
            days: self.days.max(2),
        };
        let per_tenant = large.per_tenant();
        ensure!(per_tenant >= 30, "at least 30 disputes per tenant");
        ensure!(
            self.small_disputes >= per_tenant && self.small_disputes <= self.disputes,
            "--small-disputes between {per_tenant} (one tenant) and --disputes"
        );
        let small_tenants = self.small_disputes / per_tenant;
        let small = Size {
            disputes: small_tenants * per_tenant,
            tenants: small_tenants,
            ..large
        };
        Ok((small, large))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    args.apply_quick();
    args.keep_db |= args.seed_only;
    let (small, large) = args.sizes()?;
    let admin_url = harness::admin_database_url();
    let mut measured = Vec::new();
    for (label, size) in [("small", small), ("large", large)] {
        let names = size.database_names(args.keep_db);
        let result = tokio::select! {
            result = measure_size(&args, label, size, &admin_url, &names) => result,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        };
        if !args.keep_db {
            for name in [&names.0, &names.1] {
                if let Err(error) = harness::drop_database(&admin_url, name).await {
                    eprintln!("warning: could not drop database {name}: {error:#}");
                }
            }
        }
        if let Some(result) = result? {
            report::print_size(&result);
            measured.push(result);
        }
    }
    if let [small, large] = &measured[..] {
        report::print_ratios(&args, small, large);
    }
    Ok(())
}

async fn measure_size(
    args: &Args,
    label: &'static str,
    size: Size,
    admin_url: &str,
    names: &(String, String),
) -> anyhow::Result<Option<Measured>> {
    eprintln!(
        "\n{label}: {} disputes across {} tenants, {} events ({} per dispute) over {} days",
        size.disputes,
        size.tenants,
        size.events(),
        size.events_per_dispute,
        size.days
    );
    let kept = if args.keep_db
        && harness::database_exists(admin_url, &names.1).await?
        && harness::database_exists(admin_url, &names.0).await?
    {
        seed::read_seed_info(admin_url, &names.0).await?
    } else {
        None
    };
    let (info, reused) = match kept {
        Some(info) => {
            eprintln!("  reusing the seeded databases {} and {}", names.0, names.1);
            (info, true)
        }
        None => {
            for name in [&names.0, &names.1] {
                harness::drop_database(admin_url, name).await?;
            }
            (seed::seed(size, admin_url, names).await?, false)
        }
    };

    if args.seed_only {
        eprintln!("  seeded (--seed-only): {} and {}", names.0, names.1);
        return Ok(None);
    }
    let stack = Stack::start(StackOptions {
        databases: Some(names.clone()),
        ..Default::default()
    })
    .await?;
    let result = measure_calls(args, size, info.base, &stack).await;
    let disputes_url = stack.dispute_db_url.clone();
    let documents_url = stack.document_db_url.clone();
    stack.stop().await;
    let (rows, replay) = result?;
    let sizes = sizes(&disputes_url, &documents_url, size).await?;
    let purge = purge_oldest_day(&disputes_url).await?;
    Ok(Some(Measured {
        label,
        size,
        seed_seconds: info.seconds,
        reused,
        rows,
        replay,
        sizes,
        purge,
    }))
}

type Rows = Vec<(String, Phase)>;

async fn measure_calls(
    args: &Args,
    size: Size,
    base: DateTime<Utc>,
    stack: &Stack,
) -> anyhow::Result<(Rows, Vec<(usize, u64, f64)>)> {
    // CreateAction's targets: a dispute per call, warm-up included.
    let target = Arc::new(
        Target::new(stack, size, base, args.connections, args.calls + 60)
            .await
            .context("prepare the calls")?,
    );
    let mut calls = vec![Call::GetDispute];
    for filter in [
        ListFilter::None,
        ListFilter::Charge,
        ListFilter::PaymentIntent,
        ListFilter::TransactionId,
        ListFilter::Status,
        ListFilter::Stage,
        ListFilter::Side,
        ListFilter::Created,
        ListFilter::DueBefore,
    ] {
        calls.push(Call::ListDisputes(filter));
    }
    for read in [
        EventsRead::Deep,
        EventsRead::TypeDeep,
        EventsRead::Dispute,
        EventsRead::CreatedDay,
    ] {
        calls.push(Call::ListEvents(read));
    }
    let mut rows = Vec::new();
    for call in calls {
        eprintln!("  {} ...", call.name());
        let phase = target
            .closed_loop(call, args.calls, args.concurrency)
            .await?;
        rows.push((call.name(), phase));
    }
    // Replays before the writes, so the feeds hold only seeded events.
    let mut replay = Vec::new();
    for streams in [1, 4] {
        eprintln!("  StreamEvents replay, {streams} stream(s) ...");
        let (events, seconds) = target.replay(&stack.dispute_db_url, streams).await?;
        replay.push((streams, events, seconds));
    }
    let action_calls = args.calls.min(target.action_targets().saturating_sub(50));
    for (call, count) in [
        (Call::CreateAction, action_calls),
        (Call::RecordNetworkEvent, args.calls),
    ] {
        eprintln!("  {} ...", call.name());
        let phase = target.closed_loop(call, count, args.concurrency).await?;
        rows.push((call.name(), phase));
    }
    Ok((rows, replay))
}

/// Table (heap + TOAST) and index bytes of the tables that grow with disputes and events.
async fn sizes(disputes_url: &str, documents_url: &str, size: Size) -> anyhow::Result<Sizes> {
    let mut tables = Vec::new();
    let mut database_bytes = 0;
    for (url, names) in [
        (
            disputes_url,
            &[
                "disputes",
                "dispute_actions",
                "balance_transactions",
                "dispute_events",
                "event_positions",
                "idempotency_keys",
                "network_events",
            ][..],
        ),
        (documents_url, &["documents"][..]),
    ] {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        for name in names {
            let (table, indexes): (i64, i64) =
                sqlx::query_as("select pg_table_size($1::regclass), pg_indexes_size($1::regclass)")
                    .bind(name)
                    .fetch_one(&mut conn)
                    .await?;
            tables.push((name.to_string(), table, indexes));
        }
        let bytes: i64 = sqlx::query_scalar("select pg_database_size(current_database())")
            .fetch_one(&mut conn)
            .await?;
        database_bytes += bytes;
        conn.close().await?;
    }
    Ok(Sizes {
        disputes: size.disputes,
        tables,
        database_bytes,
    })
}

/// What purging the oldest day of events took.
pub struct Purge {
    pub events: u64,
    pub batches: u64,
    pub seconds: f64,
}

/// The retention purge (the worker's own code, default batch size) with a one-day event
/// period, run at "oldest event + 2 days": it deletes the oldest day of events.
async fn purge_oldest_day(disputes_url: &str) -> anyhow::Result<Purge> {
    use dispute_core::app::retention::{Retention, RetentionSettings};
    use dispute_core::domain::retention::{self as defaults, RetentionPolicy};
    let pool = sqlx::PgPool::connect(disputes_url).await?;
    let oldest: Option<DateTime<Utc>> =
        sqlx::query_scalar("select min(created_at) from dispute_events")
            .fetch_one(&pool)
            .await?;
    let oldest = oldest.context("no events left to purge")?;
    let retention = Retention::new(
        pool.clone(),
        RetentionSettings {
            policy: RetentionPolicy {
                idempotency_hours: defaults::DEFAULT_IDEMPOTENCY_RETENTION_HOURS,
                webhook_delivery_days: 0,
                event_days: 1,
            },
            interval: std::time::Duration::from_secs(defaults::DEFAULT_RETENTION_INTERVAL_SECS),
            batch_size: defaults::DEFAULT_RETENTION_BATCH_SIZE,
        },
    );
    eprintln!("  purging the oldest day of events ...");
    let started = Instant::now();
    let report = retention
        .purge_at(
            oldest + chrono::Duration::days(2),
            &tokio_util::sync::CancellationToken::new(),
        )
        .await
        .map_err(|error| anyhow::anyhow!("purge: {error}"))?;
    let seconds = started.elapsed().as_secs_f64();
    pool.close().await;
    Ok(Purge {
        events: report.events,
        batches: report.batches,
        seconds,
    })
}
