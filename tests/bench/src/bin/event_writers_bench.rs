//! event-writers-bench: do writers of different tenants wait for each other because their
//! mutations record events (issue 23, point 3)? It prints figures; it asserts nothing.
//!
//! Two fresh `dispute-core` child processes run side by side, each on a database of its own
//! (default log level, access log on: as deployed): one records events as in production, the
//! other runs with `--record-events=false` (benchmarks only: its mutations record no events
//! and no webhook deliveries). `--tenants` tenants write at once: at each concurrency level,
//! that many callers in closed loop (a new call as soon as one answers), each caller owning
//! its share of the tenants, repeat event-producing mutations per tenant: CreateDispute,
//! UpdateDispute (metadata), CreateAction (ACCEPT). The two processes are measured in turn
//! at each level; the bench prints calls/s of each and the on/off ratio.
//!
//! Everything it creates (children, databases, files) is removed at the end, on errors too.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use clap::Parser;
use disputes_proto::disputes_v1 as dpb;
use disputes_proto::disputes_v1::dispute_service_client::DisputeServiceClient;
use harness::figures::percentile_ms;
use harness::process::{Service, ServiceCommand, ServiceProcess};
use harness::{Bearer, DisputesClient};
use secrecy::SecretString;

const JWT_SECRET: &str = "event-writers-bench-jwt-secret-0123456789a";

#[derive(Debug, Parser)]
#[command(
    name = "event-writers-bench",
    about = "calls/s of event-producing mutations of many tenants at once, events on vs off"
)]
struct Args {
    /// Tenants writing (each caller owns tenants `i, i + c, i + 2c, …` at concurrency c).
    #[arg(long, default_value_t = 64)]
    tenants: usize,
    /// Concurrency levels (calls in flight), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 4, 16, 64])]
    levels: Vec<usize>,
    /// Seconds measured per level and process.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Seconds of warm-up per process before the first level.
    #[arg(long, default_value_t = 2.0)]
    warmup_seconds: f64,
    /// HTTP/2 connections to each process, shared by the tenants' clients.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Tiny durations, to check that the bench runs (CI); its figures mean nothing.
    #[arg(long)]
    quick: bool,
    /// Directory holding the dispute-core binary; defaults to this program's.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.quick {
        args.seconds = args.seconds.min(0.5);
        args.warmup_seconds = args.warmup_seconds.min(0.2);
    }
    ensure!(
        args.tenants >= 1 && args.connections >= 1 && args.seconds > 0.0,
        "--tenants, --connections and --seconds must be positive"
    );
    ensure!(
        args.levels.iter().all(|level| *level >= 1),
        "every level must be at least 1"
    );
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()
            .context("locate this program")?
            .parent()
            .context("this program's directory")?
            .to_owned(),
    };
    let admin_url = harness::admin_database_url();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let names = [
        format!("event_writers_on_{suffix}"),
        format!("event_writers_off_{suffix}"),
    ];
    let work = tempfile::Builder::new()
        .prefix("event-writers-bench-")
        .tempdir()?;
    let result = async {
        let on_url = harness::ensure_database(&admin_url, &names[0]).await?;
        let off_url = harness::ensure_database(&admin_url, &names[1]).await?;
        tokio::select! {
            result = run(&args, &bin_dir, [&on_url, &off_url], work.path()) => result,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    }
    .await;
    for name in &names {
        if let Err(error) = harness::drop_database(&admin_url, name).await {
            eprintln!("could not drop database {name}: {error:#}");
        }
    }
    result
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    // The child binds it itself; a just-freed port is a small, acceptable race.
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// One dispute-core child and a client per tenant.
struct Target {
    label: &'static str,
    _process: ServiceProcess,
    clients: Vec<DisputesClient>,
}

async fn start(
    label: &'static str,
    record_events: bool,
    args: &Args,
    bin_dir: &Path,
    database_url: &str,
    work: &Path,
) -> anyhow::Result<Target> {
    let addr = free_addr()?;
    let command = ServiceCommand::binary(Service::DisputeCore, bin_dir.join("dispute-core"))
        .listen_addr(addr)
        .database_url(database_url)
        // No mutation here reads documents: document-store is never called.
        .document_store_url(format!("http://{}", free_addr()?))
        .jwt_secret(JWT_SECRET)
        .env("DISPUTE_CORE_RECORD_EVENTS", record_events.to_string());
    let process = ServiceProcess::start(command, work.join(format!("dispute-core-{label}.log")))
        .await
        .with_context(|| format!("start dispute-core ({label})"))?;
    let mut channels = Vec::new();
    for _ in 0..args.connections {
        channels.push(harness::connect(addr).await?);
    }
    let mut clients = Vec::new();
    for n in 0..args.tenants {
        let token = service_kit::auth::mint_token(
            &SecretString::from(JWT_SECRET),
            "event-writers-bench",
            &tenant(n),
            &["disputes:read", "disputes:write"],
            chrono::Duration::hours(1),
        )?;
        clients.push(DisputeServiceClient::with_interceptor(
            channels[n % channels.len()].clone(),
            Bearer::new(Some(&token))?,
        ));
    }
    Ok(Target {
        label,
        _process: process,
        clients,
    })
}

fn tenant(n: usize) -> String {
    format!("tenant_{n:03}")
}

async fn run(
    args: &Args,
    bin_dir: &Path,
    [on_url, off_url]: [&String; 2],
    work: &Path,
) -> anyhow::Result<()> {
    let on = start("on", true, args, bin_dir, on_url, work).await?;
    let off = start("off", false, args, bin_dir, off_url, work).await?;
    let warmup = Duration::from_secs_f64(args.warmup_seconds);
    let level_time = Duration::from_secs_f64(args.seconds);
    for target in [&on, &off] {
        let warm = measure(target, 16.min(args.tenants), warmup).await;
        ensure!(
            warm.ok > 0,
            "dispute-core ({}) answered no call in the warm-up: {:?}",
            target.label,
            warm.failed
        );
    }
    println!(
        "{} tenants writing (CreateDispute, UpdateDispute metadata, CreateAction ACCEPT per tenant in turn), {:.1} s per level and process, {} connections per process",
        args.tenants, args.seconds, args.connections
    );
    println!(
        "{:>11} | {:>11} {:>8} {:>8} | {:>11} {:>8} {:>8} | {:>6}",
        "concurrency",
        "on calls/s",
        "p50 ms",
        "p99 ms",
        "off calls/s",
        "p50 ms",
        "p99 ms",
        "on/off"
    );
    for &level in &args.levels {
        // Off first, then on: each level compares two runs made one after the other.
        let off_tally = measure(&off, level, level_time).await;
        let on_tally = measure(&on, level, level_time).await;
        let on_rate = on_tally.rate();
        let off_rate = off_tally.rate();
        println!(
            "{level:>11} | {on_rate:>11.0} {:>8.2} {:>8.2} | {off_rate:>11.0} {:>8.2} {:>8.2} | {:>5.2}x",
            percentile_ms(&on_tally.latencies, 50.0),
            percentile_ms(&on_tally.latencies, 99.0),
            percentile_ms(&off_tally.latencies, 50.0),
            percentile_ms(&off_tally.latencies, 99.0),
            if off_rate > 0.0 {
                on_rate / off_rate
            } else {
                0.0
            },
        );
        for (label, tally) in [("on", &on_tally), ("off", &off_tally)] {
            if !tally.failed.is_empty() {
                println!("  events {label}: failed calls {:?}", tally.failed);
            }
        }
    }
    Ok(())
}

#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    failed: BTreeMap<String, u64>,
    latencies: Vec<Duration>,
    seconds: f64,
}

impl Tally {
    fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ok as f64 / self.seconds
        } else {
            0.0
        }
    }

    fn add(&mut self, other: Tally) {
        self.ok += other.ok;
        for (code, n) in other.failed {
            *self.failed.entry(code).or_default() += n;
        }
        self.latencies.extend(other.latencies);
    }
}

/// `level` callers in closed loop for `time`, caller `i` writing for tenants `i, i + level, …`.
async fn measure(target: &Target, level: usize, time: Duration) -> Tally {
    let level = level.min(target.clients.len()).max(1);
    let started = Instant::now();
    let until = started + time;
    let mut callers = Vec::new();
    for caller in 0..level {
        let owned: Vec<DisputesClient> = target
            .clients
            .iter()
            .skip(caller)
            .step_by(level)
            .cloned()
            .collect();
        callers.push(tokio::spawn(write_until(owned, until)));
    }
    let mut tally = Tally::default();
    for caller in callers {
        match caller.await {
            Ok(part) => tally.add(part),
            Err(error) => *tally.failed.entry(format!("panic: {error}")).or_default() += 1,
        }
    }
    tally.seconds = started.elapsed().as_secs_f64();
    tally
}

/// Where one tenant's cycle of mutations stands.
struct TenantTurn {
    client: DisputesClient,
    dispute: Option<(String, i64)>,
    step: u32,
}

/// Writes for `clients`' tenants in turn, one call at a time, until `until`.
async fn write_until(clients: Vec<DisputesClient>, until: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut turns: Vec<TenantTurn> = clients
        .into_iter()
        .map(|client| TenantTurn {
            client,
            dispute: None,
            step: 0,
        })
        .collect();
    let count = turns.len();
    let mut next = 0;
    while Instant::now() < until {
        let turn = &mut turns[next];
        next = (next + 1) % count;
        let started = Instant::now();
        let result = step(turn).await;
        match result {
            Ok(()) => {
                tally.ok += 1;
                tally.latencies.push(started.elapsed());
            }
            Err(status) => {
                // Start the tenant's cycle again with a new dispute.
                turn.dispute = None;
                *tally
                    .failed
                    .entry(format!("{:?}", status.code()))
                    .or_default() += 1;
            }
        }
    }
    tally
}

/// The tenant's next mutation: a new dispute, then a metadata update, then ACCEPT (which
/// closes it, so the next call creates another).
async fn step(turn: &mut TenantTurn) -> Result<(), tonic::Status> {
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    match turn.dispute.take() {
        None => {
            let created = turn
                .client
                .create_dispute(dpb::CreateDisputeRequest {
                    request_id: request_id.clone(),
                    side: dpb::DisputeSide::Merchant.into(),
                    stage: dpb::DisputeStage::Chargeback.into(),
                    amount: 12_500,
                    currency: "usd".to_owned(),
                    charge: format!("ch_{request_id}"),
                    network: dpb::CardNetwork::Visa.into(),
                    reason: dpb::DisputeReason::ProductNotReceived.into(),
                    network_reason_code: "13.1".to_owned(),
                    ..Default::default()
                })
                .await?
                .into_inner()
                .dispute
                .ok_or_else(|| tonic::Status::internal("no dispute in the answer"))?;
            turn.dispute = Some((created.id, created.version));
            turn.step = 1;
        }
        Some((id, version)) if turn.step == 1 => {
            let updated = turn
                .client
                .update_dispute(dpb::UpdateDisputeRequest {
                    id,
                    request_id,
                    expected_version: Some(version),
                    metadata: [("bench_step".to_owned(), version.to_string())].into(),
                    ..Default::default()
                })
                .await?
                .into_inner()
                .dispute
                .ok_or_else(|| tonic::Status::internal("no dispute in the answer"))?;
            turn.dispute = Some((updated.id, updated.version));
            turn.step = 2;
        }
        Some((id, version)) => {
            turn.client
                .create_action(dpb::CreateActionRequest {
                    dispute_id: id,
                    request_id,
                    expected_version: Some(version),
                    action: dpb::DisputeActionType::Accept.into(),
                    ..Default::default()
                })
                .await?;
            turn.step = 0;
        }
    }
    Ok(())
}
