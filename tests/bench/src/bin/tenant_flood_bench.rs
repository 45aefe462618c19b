//! tenant-flood-bench: does one tenant's flood of unary calls hurt another tenant (issue 21,
//! fair admission)? It prints figures; it asserts nothing.
//!
//! Against fresh `dispute-core` and `document-store` child processes (release build, their
//! own databases, default log level, access log on: as deployed):
//! 1. quiet: tenant B makes `--b-calls` sequential calls, GetDispute and ListDisputes in
//!    turn, alone; p50/p99 per method;
//! 2. flood: tenant A keeps `--flood-in-flight` ListDisputes in flight over
//!    `--connections` HTTP/2 connections (closed loop, a new call as soon as one answers,
//!    shed or not, like h2load) while B repeats its sequential calls on a connection of its
//!    own; B's p50/p99, calls shed and failed, the ratio to the quiet p99, and A's calls
//!    served and shed (by ErrorInfo reason). `--flooder-backoff-ms` makes A wait after a shed
//!    answer (by default it calls again at once).
//!
//! Everything it creates (children, databases, files) is removed at the end, on errors too.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use clap::Parser;
use disputes_proto::disputes_v1 as dpb;
use disputes_proto::disputes_v1::dispute_service_client::DisputeServiceClient;
use harness::figures::percentile_ms;
use harness::process::{Service, ServiceCommand, ServiceProcess};
use harness::{Bearer, DisputesClient, S3Server};
use secrecy::SecretString;
use tonic::Code;
use tonic_types::StatusExt;

const JWT_SECRET: &str = "tenant-flood-bench-jwt-secret-0123456789ab";
const FLOODER: &str = "tenant_a";
const BYSTANDER: &str = "tenant_b";
const BUCKET: &str = "tenant-flood-bench";

#[derive(Debug, Parser)]
#[command(
    name = "tenant-flood-bench",
    about = "tenant B's p50/p99 and sheds, quiet and while tenant A floods dispute-core"
)]
struct Args {
    /// Sequential calls of tenant B in each phase.
    #[arg(long, default_value_t = 400)]
    b_calls: usize,
    /// Tenant A's ListDisputes kept in flight during the flood.
    #[arg(long, default_value_t = 256)]
    flood_in_flight: usize,
    /// HTTP/2 connections tenant A floods over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// How long each of tenant A's callers waits after a shed answer before its next call
    /// (0: at once, like h2load; 250 would follow the RetryInfo).
    #[arg(long, default_value_t = 0)]
    flooder_backoff_ms: u64,
    /// Disputes of tenant A (its ListDisputes returns a page of up to 50 of them).
    #[arg(long, default_value_t = 50)]
    flooder_disputes: usize,
    /// dispute-core's --max-concurrent-calls (its default is 64).
    #[arg(long)]
    max_concurrent_calls: Option<usize>,
    /// dispute-core's --max-concurrent-calls-per-tenant (its default is the limit).
    #[arg(long)]
    max_concurrent_calls_per_tenant: Option<usize>,
    /// Directory holding the dispute-core and document-store binaries; defaults to this
    /// program's.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.b_calls >= 2 && args.flood_in_flight >= 1 && args.connections >= 1);
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
        format!("tenant_flood_disputes_{suffix}"),
        format!("tenant_flood_documents_{suffix}"),
    ];
    let work = tempfile::Builder::new()
        .prefix("tenant-flood-bench-")
        .tempdir()?;
    let result = async {
        let disputes_url = harness::ensure_database(&admin_url, &names[0]).await?;
        let documents_url = harness::ensure_database(&admin_url, &names[1]).await?;
        tokio::select! {
            result = run(&args, &bin_dir, &disputes_url, &documents_url, work.path()) => result,
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

async fn run(
    args: &Args,
    bin_dir: &Path,
    disputes_url: &str,
    documents_url: &str,
    work: &Path,
) -> anyhow::Result<()> {
    let s3 = S3Server::start(&work.join("s3"), "127.0.0.1:0".parse()?).await?;
    let documents_addr = free_addr()?;
    let _document_store = ServiceProcess::start(
        ServiceCommand::binary(Service::DocumentStore, bin_dir.join("document-store"))
            .listen_addr(documents_addr)
            .database_url(documents_url)
            .s3(&s3.endpoint, BUCKET)
            .jwt_secret(JWT_SECRET),
        work.join("document-store.log"),
    )
    .await?;
    let core_addr = free_addr()?;
    let mut command = ServiceCommand::binary(Service::DisputeCore, bin_dir.join("dispute-core"))
        .listen_addr(core_addr)
        .database_url(disputes_url)
        .document_store_url(format!("http://{documents_addr}"))
        .jwt_secret(JWT_SECRET);
    if let Some(limit) = args.max_concurrent_calls {
        command = command.env("DISPUTE_CORE_MAX_CONCURRENT_CALLS", limit.to_string());
    }
    if let Some(cap) = args.max_concurrent_calls_per_tenant {
        command = command.env(
            "DISPUTE_CORE_MAX_CONCURRENT_CALLS_PER_TENANT",
            cap.to_string(),
        );
    }
    let _dispute_core = ServiceProcess::start(command, work.join("dispute-core.log")).await?;

    let flooders = clients(core_addr, FLOODER, args.connections).await?;
    let mut bystander = clients(core_addr, BYSTANDER, 1).await?.remove(0);
    let mut seeding = flooders[0].clone();
    for n in 0..args.flooder_disputes.max(1) {
        seeding
            .create_dispute(dispute(&format!("a-{n}")))
            .await
            .context("seed tenant A")?;
    }
    let b_dispute = bystander
        .create_dispute(dispute("b-1"))
        .await
        .context("seed tenant B")?
        .into_inner()
        .dispute
        .context("created dispute")?
        .id;

    // Warm-up: connections, pools and caches, so the quiet phase is steady.
    bystander_calls(&mut bystander, &b_dispute, 50).await;
    let quiet = bystander_calls(&mut bystander, &b_dispute, args.b_calls).await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut flood = Vec::new();
    for n in 0..args.flood_in_flight {
        let mut client = flooders[n % flooders.len()].clone();
        let stop = stop.clone();
        let backoff = Duration::from_millis(args.flooder_backoff_ms);
        flood.push(tokio::spawn(async move {
            let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
            while !stop.load(Ordering::Relaxed) {
                let outcome = match client
                    .list_disputes(dpb::ListDisputesRequest::default())
                    .await
                {
                    Ok(_) => "ok".to_owned(),
                    Err(status) => {
                        if !backoff.is_zero() && status.code() == Code::ResourceExhausted {
                            tokio::time::sleep(backoff).await;
                        }
                        outcome_of(&status)
                    }
                };
                *outcomes.entry(outcome).or_default() += 1;
            }
            outcomes
        }));
    }
    // Let the flood fill the process before B starts measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let flood_started = Instant::now();
    let flooded = bystander_calls(&mut bystander, &b_dispute, args.b_calls).await;
    let flood_seconds = flood_started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut flooder_outcomes: BTreeMap<String, u64> = BTreeMap::new();
    for task in flood {
        if let Ok(outcomes) = task.await {
            for (outcome, n) in outcomes {
                *flooder_outcomes.entry(outcome).or_default() += n;
            }
        }
    }

    println!(
        "dispute-core: max concurrent calls {}, per tenant {}; tenant A: {} ListDisputes in flight over {} connections, {} disputes, {} ms back-off after a shed",
        args.max_concurrent_calls
            .map_or("default (64)".to_owned(), |n| n.to_string()),
        args.max_concurrent_calls_per_tenant
            .map_or("default (the limit)".to_owned(), |n| n.to_string()),
        args.flood_in_flight,
        args.connections,
        args.flooder_disputes,
        args.flooder_backoff_ms,
    );
    for (method, quiet_ms) in &quiet.latencies {
        let flood_ms = flooded.latencies.get(method).map_or(&[][..], Vec::as_slice);
        let quiet_p99 = percentile_ms(quiet_ms, 99.0);
        let flood_p99 = percentile_ms(flood_ms, 99.0);
        println!(
            "tenant B {method:<12} quiet p50 {:.2} ms p99 {:.2} ms | flood p50 {:.2} ms p99 {:.2} ms | p99 ratio {:.2}x",
            percentile_ms(quiet_ms, 50.0),
            quiet_p99,
            percentile_ms(flood_ms, 50.0),
            flood_p99,
            flood_p99 / quiet_p99,
        );
    }
    println!(
        "tenant B calls: quiet {} ok, shed {}, failed {:?}; flood {} ok, shed {}, failed {:?}",
        quiet.ok, quiet.shed, quiet.failed, flooded.ok, flooded.shed, flooded.failed
    );
    let served = flooder_outcomes.get("ok").copied().unwrap_or(0);
    println!(
        "tenant A during the flood ({flood_seconds:.1} s): {served} served ({:.0}/s), outcomes {flooder_outcomes:?}",
        served as f64 / flood_seconds,
    );
    Ok(())
}

async fn clients(
    addr: SocketAddr,
    tenant: &str,
    connections: usize,
) -> anyhow::Result<Vec<DisputesClient>> {
    let token = service_kit::auth::mint_token(
        &SecretString::from(JWT_SECRET),
        "tenant-flood-bench",
        tenant,
        &["disputes:read", "disputes:write"],
        chrono::Duration::hours(1),
    )?;
    let mut clients = Vec::new();
    for _ in 0..connections {
        let channel = harness::connect(addr).await?;
        clients.push(DisputeServiceClient::with_interceptor(
            channel,
            Bearer::new(Some(&token))?,
        ));
    }
    Ok(clients)
}

fn dispute(request_id: &str) -> dpb::CreateDisputeRequest {
    dpb::CreateDisputeRequest {
        request_id: request_id.to_owned(),
        side: dpb::DisputeSide::Merchant.into(),
        stage: dpb::DisputeStage::Chargeback.into(),
        amount: 12_500,
        currency: "usd".to_owned(),
        charge: format!("ch_{request_id}"),
        network: dpb::CardNetwork::Visa.into(),
        reason: dpb::DisputeReason::ProductNotReceived.into(),
        network_reason_code: "13.1".to_owned(),
        ..Default::default()
    }
}

/// `RESOURCE_EXHAUSTED/<ErrorInfo reason>` for a shed call, else the code.
fn outcome_of(status: &tonic::Status) -> String {
    match status.get_error_details().error_info() {
        Some(info) if status.code() == Code::ResourceExhausted => {
            format!("RESOURCE_EXHAUSTED/{}", info.reason)
        }
        _ => format!("{:?}", status.code()),
    }
}

#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    shed: u64,
    failed: BTreeMap<String, u64>,
    /// Latencies of successful calls, by method.
    latencies: BTreeMap<&'static str, Vec<Duration>>,
}

/// Tenant B's `calls` sequential calls, GetDispute and ListDisputes in turn.
async fn bystander_calls(client: &mut DisputesClient, dispute_id: &str, calls: usize) -> Tally {
    let mut tally = Tally::default();
    for n in 0..calls {
        let started = Instant::now();
        let (method, result) = if n % 2 == 0 {
            let request = dpb::GetDisputeRequest {
                id: dispute_id.to_owned(),
            };
            ("GetDispute", client.get_dispute(request).await.map(|_| ()))
        } else {
            let request = dpb::ListDisputesRequest::default();
            (
                "ListDisputes",
                client.list_disputes(request).await.map(|_| ()),
            )
        };
        let elapsed = started.elapsed();
        match result {
            Ok(()) => {
                tally.ok += 1;
                tally.latencies.entry(method).or_default().push(elapsed);
            }
            Err(status) if status.code() == Code::ResourceExhausted => tally.shed += 1,
            Err(status) => *tally.failed.entry(outcome_of(&status)).or_default() += 1,
        }
    }
    tally
}
