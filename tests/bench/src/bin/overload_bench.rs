//! overload-bench: what dispute-core does when offered more unary calls than it can serve
//! (issue #10 §3). It prints figures; it asserts nothing.
//!
//! Against a fresh `dispute-core` child process (release build, its own database):
//! The call is ListDisputes of a tenant with one dispute: cheap, database only.
//! 1. peak: `--workers` closed-loop clients call it as fast as they can for
//!    `--seconds`; the peak rate is successes per second;
//! 2. overload: a fixed-rate open-loop client offers `--factor` × peak for `--seconds`
//!    (each call sent on schedule, whether or not earlier ones answered, with a client
//!    deadline of `--deadline-ms`), and counts calls shed (RESOURCE_EXHAUSTED), succeeded
//!    and failed otherwise, with p50/p99 latency of successes and of shed calls.
//!
//! With `--observability both` (the default) both phases run twice, on a child as deployed
//! (default log filter, access log, OTLP export to a sink in this process) and on one with
//! observability off (`RUST_LOG=warn`, no export), and the cost at peak is printed.
//!
//! Everything it creates (the child, the database) is removed at the end, on errors too.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use disputes_proto::disputes_v1 as dpb;
use disputes_proto::disputes_v1::dispute_service_client::DisputeServiceClient;
use harness::figures;
use harness::otlp_sink::OtlpSink;
use harness::process::{Observability, Service, ServiceCommand};
use harness::{Bearer, DisputesClient};
use secrecy::SecretString;
use tokio::sync::Mutex;
use tonic::Code;
use tonic_types::StatusExt;

const TENANT: &str = "bench";
const JWT_SECRET: &str = "overload-bench-jwt-secret-0123456789abcdef";

#[derive(Debug, Parser)]
#[command(
    name = "overload-bench",
    about = "dispute-core under 4x its peak unary rate: calls shed, succeeded, p50/p99"
)]
struct Args {
    /// Seconds of each phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Closed-loop clients of the peak phase.
    #[arg(long, default_value_t = 32)]
    workers: usize,
    /// Offered rate in the overload phase, as a multiple of the measured peak.
    #[arg(long, default_value_t = 4.0)]
    factor: f64,
    /// Client deadline of each call in the overload phase.
    #[arg(long, default_value_t = 5_000)]
    deadline_ms: u64,
    /// HTTP/2 connections the client spreads calls over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// dispute-core's --max-concurrent-calls (its default is 64).
    #[arg(long)]
    max_concurrent_calls: Option<usize>,
    /// The dispute-core binary; defaults to the one next to this program.
    #[arg(long)]
    dispute_core_bin: Option<PathBuf>,
    /// dispute-core's observability: deployed, off or both (measured one after the other).
    #[arg(long, default_value = "both")]
    observability: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.seconds >= 1 && args.workers >= 1 && args.connections >= 1);
    let modes = Observability::parse_modes(&args.observability)?;
    let binary = figures::service_binary(args.dispute_core_bin.as_deref(), "dispute-core")?;
    let sink = OtlpSink::start().await?;
    let otlp = sink.endpoint();
    let peaks = figures::with_scratch_database("overload_bench", |database_url| async move {
        let mut peaks = Vec::new();
        for mode in modes {
            println!("\n## dispute-core with observability {}", mode.name());
            let peak = run(&args, &binary, &database_url, mode, &otlp).await?;
            peaks.push((mode, peak));
        }
        anyhow::Ok(peaks)
    })
    .await?;
    if let [(_, deployed), (_, off)] = peaks[..] {
        println!(
            "\nobservability cost at peak: {deployed:.0}/s deployed, {off:.0}/s off = {:.1} % (goal <= 15 %)",
            (1.0 - deployed / off) * 100.0
        );
    }
    println!(
        "OTLP sink received {} spans in {} export requests",
        sink.spans(),
        sink.trace_exports()
    );
    Ok(())
}

/// Both phases against a fresh child in `mode`; returns the peak rate.
async fn run(
    args: &Args,
    binary: &PathBuf,
    database_url: &str,
    mode: Observability,
    otlp: &str,
) -> anyhow::Result<f64> {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut service = ServiceCommand::binary(Service::DisputeCore, binary)
        .listen_addr(addr)
        .database_url(database_url)
        // ListDisputes never calls document-store; nothing listens here.
        .document_store_url("http://127.0.0.1:9")
        .jwt_secret(JWT_SECRET)
        .observability(mode, Some(otlp))?;
    if let Some(limit) = args.max_concurrent_calls {
        service = service.env("DISPUTE_CORE_MAX_CONCURRENT_CALLS", limit.to_string());
    }
    let mut child = service
        .command()?
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {}", binary.display()))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("dispute-core exited at start-up ({status})");
        }
        if harness::tonic_health_client::health_check(addr)
            .await
            .unwrap_or(false)
        {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "dispute-core not serving after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let clients = clients(addr, args.connections).await?;
    let mut first = clients[0].clone();
    first
        .create_dispute(dpb::CreateDisputeRequest {
            request_id: "bench-1".to_owned(),
            side: dpb::DisputeSide::Merchant.into(),
            stage: dpb::DisputeStage::Chargeback.into(),
            amount: 12_500,
            currency: "usd".to_owned(),
            charge: "ch_bench".to_owned(),
            network: dpb::CardNetwork::Visa.into(),
            reason: dpb::DisputeReason::ProductNotReceived.into(),
            network_reason_code: "13.1".to_owned(),
            ..Default::default()
        })
        .await
        .context("create the dispute the bench lists")?;

    let phase = Duration::from_secs(args.seconds);
    let peak = measure_peak(&clients, args.workers, phase).await;
    let peak_rate = peak.ok as f64 / phase.as_secs_f64();
    println!(
        "peak (closed loop, {} workers, {} s): {:.0} ListDisputes/s, p50 {:.2} ms, p99 {:.2} ms, errors {} {:?}",
        args.workers,
        args.seconds,
        peak_rate,
        figures::percentile_ms(&peak.ok_latencies, 50.0),
        figures::percentile_ms(&peak.ok_latencies, 99.0),
        peak.errors_total(),
        peak.errors,
    );
    ensure!(peak_rate >= 1.0, "no call succeeded in the peak phase");

    let offered = peak_rate * args.factor;
    let overload = offer_fixed_rate(
        &clients,
        offered,
        phase,
        Duration::from_millis(args.deadline_ms),
    )
    .await;
    let total = overload.ok + overload.shed + overload.errors_total();
    println!(
        "overload (open loop, {:.0}/s offered = {:.1}x peak, {} s, client deadline {} ms, max concurrent calls {}):",
        offered,
        args.factor,
        args.seconds,
        args.deadline_ms,
        args.max_concurrent_calls
            .map_or("default (64)".to_owned(), |n| n.to_string()),
    );
    println!(
        "  sent {total} ({:.0}/s achieved), succeeded {} ({:.0}/s), shed (RESOURCE_EXHAUSTED, OVERLOADED) {}, other errors {} {:?}",
        total as f64 / overload.sending.as_secs_f64(),
        overload.ok,
        overload.ok as f64 / phase.as_secs_f64(),
        overload.shed,
        overload.errors_total(),
        overload.errors,
    );
    println!(
        "  successes p50 {:.2} ms, p99 {:.2} ms; shed answers p50 {:.2} ms, p99 {:.2} ms",
        figures::percentile_ms(&overload.ok_latencies, 50.0),
        figures::percentile_ms(&overload.ok_latencies, 99.0),
        figures::percentile_ms(&overload.shed_latencies, 50.0),
        figures::percentile_ms(&overload.shed_latencies, 99.0),
    );
    // SIGTERM, so the last spans reach the sink before it is read.
    if let Some(pid) = child.id() {
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
    Ok(peak_rate)
}

async fn clients(addr: SocketAddr, connections: usize) -> anyhow::Result<Vec<DisputesClient>> {
    let token = service_kit::auth::mint_token(
        &SecretString::from(JWT_SECRET),
        "overload-bench",
        TENANT,
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

#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    shed: u64,
    errors: BTreeMap<String, u64>,
    ok_latencies: Vec<Duration>,
    shed_latencies: Vec<Duration>,
    /// How long sending took (open loop: may exceed the phase if the client lags).
    sending: Duration,
}

impl Tally {
    fn record(&mut self, result: Result<(), tonic::Status>, latency: Duration) {
        match result {
            Ok(()) => {
                self.ok += 1;
                self.ok_latencies.push(latency);
            }
            // Shed by the server's call limit (not, say, an HTTP/2 ENHANCE_YOUR_CALM reset,
            // which also reads as RESOURCE_EXHAUSTED).
            Err(status)
                if status.code() == Code::ResourceExhausted
                    && status
                        .get_error_details()
                        .error_info()
                        .is_some_and(|info| info.reason == "OVERLOADED") =>
            {
                self.shed += 1;
                self.shed_latencies.push(latency);
            }
            Err(status) => {
                *self
                    .errors
                    .entry(format!("{:?}", status.code()))
                    .or_default() += 1
            }
        }
    }

    fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// One ListDisputes of the tenant (one dispute): a cheap call that only reads the database
/// (GetDispute would also call document-store).
async fn call(
    client: &mut DisputesClient,
    deadline: Option<Duration>,
) -> Result<(), tonic::Status> {
    let mut request = tonic::Request::new(dpb::ListDisputesRequest::default());
    if let Some(deadline) = deadline {
        request.set_timeout(deadline);
    }
    let listed = client.list_disputes(request).await?.into_inner();
    if listed.disputes.len() == 1 {
        Ok(())
    } else {
        Err(tonic::Status::data_loss("expected exactly one dispute"))
    }
}

async fn measure_peak(clients: &[DisputesClient], workers: usize, phase: Duration) -> Tally {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let end = Instant::now() + phase;
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let mut client = clients[worker % clients.len()].clone();
        let tally = tally.clone();
        tasks.push(tokio::spawn(async move {
            let mut local = Tally::default();
            while Instant::now() < end {
                let started = Instant::now();
                let result = call(&mut client, None).await;
                local.record(result, started.elapsed());
            }
            let mut tally = tally.lock().await;
            tally.ok += local.ok;
            tally.shed += local.shed;
            tally.ok_latencies.extend(local.ok_latencies);
            tally.shed_latencies.extend(local.shed_latencies);
            for (code, n) in local.errors {
                *tally.errors.entry(code).or_default() += n;
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    Arc::try_unwrap(tally)
        .map(Mutex::into_inner)
        .unwrap_or_default()
}

async fn offer_fixed_rate(
    clients: &[DisputesClient],
    rate: f64,
    phase: Duration,
    deadline: Duration,
) -> Tally {
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let calls = (rate * phase.as_secs_f64()) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now();
    for n in 0..calls {
        // Open loop: each call leaves at its scheduled time, answered or not.
        tokio::time::sleep_until(start + interval.mul_f64(n as f64)).await;
        let mut client = clients[n as usize % clients.len()].clone();
        let sender = sender.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = call(&mut client, Some(deadline)).await;
            let _ = sender.send((result, started.elapsed()));
        });
    }
    let sending = start.elapsed();
    drop(sender);
    let mut tally = Tally {
        sending,
        ..Tally::default()
    };
    while let Some((result, latency)) = receiver.recv().await {
        tally.record(result, latency);
    }
    tally
}
