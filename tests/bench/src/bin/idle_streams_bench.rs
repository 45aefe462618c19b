//! idle-streams-bench: what many open StreamEvents streams cost dispute-core (issue 21,
//! "2,000 idle streams"). It prints figures; it asserts nothing.
//!
//! Against a fresh `dispute-core` child process (release build, default flags and log
//! level, its own database):
//! 1. quiet: another tenant's GetDispute (database only: its token lacks `documents:read`)
//!    p50/p99 over `--calls` sequential calls, and dispute-core's RSS;
//! 2. idle: `--streams` streams ("from now") spread over `--tenants` tenants (each tenant's
//!    streams on their own HTTP/2 connections), every one read by its client; RSS and the
//!    other tenant's GetDispute p50/p99 again;
//! 3. events: the first tenant makes a dispute with `--evidence-chars` characters of
//!    evidence, then `--events` metadata changes (each event carries the whole dispute), so
//!    each of its streams receives them all; meanwhile the other tenant's GetDispute runs
//!    sequentially. Prints the time until every stream had every event, the GetDispute
//!    figures during it, and RSS (VmRSS, VmHWM from /proc/<pid>/status) after.
//!
//! Everything it creates (the child, the database) is removed at the end, on errors too.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use disputes_proto::disputes_v1 as dpb;
use disputes_proto::disputes_v1::dispute_service_client::DisputeServiceClient;
use disputes_proto::disputes_v1::event_service_client::EventServiceClient;
use harness::figures;
use harness::process::{Service, ServiceCommand};
use harness::{Bearer, DisputesClient};
use secrecy::SecretString;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

const JWT_SECRET: &str = "idle-streams-bench-jwt-secret-0123456789abcdef";
const READER_TENANT: &str = "bench_reader";
/// Streams per HTTP/2 connection (the server allows 200 concurrent streams on one).
const STREAMS_PER_CONNECTION: usize = 100;

type EventsClient = EventServiceClient<InterceptedService<Channel, Bearer>>;

#[derive(Debug, Parser)]
#[command(
    name = "idle-streams-bench",
    about = "dispute-core RSS and another tenant's GetDispute p99 with thousands of open streams"
)]
struct Args {
    /// Streams opened in all.
    #[arg(long, default_value_t = 2000)]
    streams: usize,
    /// Tenants the streams are spread over (dispute-core allows 128 per tenant by default).
    #[arg(long, default_value_t = 16)]
    tenants: usize,
    /// Metadata changes of the first tenant's dispute after its evidence is staged.
    #[arg(long, default_value_t = 20)]
    events: usize,
    /// Characters of evidence text of that dispute (150,000 is the most a dispute holds).
    #[arg(long, default_value_t = 150_000)]
    evidence_chars: usize,
    /// The first tenant's clients never read (default HTTP/2 windows): its streams fill
    /// their buffers and, after dispute-core's slow-consumer time (30 s), are ended. The
    /// event phase then lasts `--stall-seconds` instead of "until every stream has every
    /// event".
    #[arg(long)]
    stalled: bool,
    /// How long the event phase lasts with `--stalled`.
    #[arg(long, default_value_t = 5)]
    stall_seconds: u64,
    /// Sequential GetDispute calls of the quiet and idle phases.
    #[arg(long, default_value_t = 500)]
    calls: usize,
    /// The dispute-core binary; defaults to the one next to this program.
    #[arg(long)]
    dispute_core_bin: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.streams >= 1 && args.tenants >= 1 && args.calls >= 1);
    let binary = figures::service_binary(args.dispute_core_bin.as_deref(), "dispute-core")?;
    figures::with_scratch_database("idle_streams_bench", |database_url| async move {
        run(&args, &binary, &database_url).await
    })
    .await
}

async fn run(args: &Args, binary: &PathBuf, database_url: &str) -> anyhow::Result<()> {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut child = ServiceCommand::binary(Service::DisputeCore, binary)
        .listen_addr(addr)
        .database_url(database_url)
        // Nothing here calls document-store (no token has documents:read).
        .document_store_url("http://127.0.0.1:9")
        .jwt_secret(JWT_SECRET)
        .command()?
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {}", binary.display()))?;
    let pid = child.id().context("child pid")?;
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
    println!(
        "dispute-core ({} build, default flags), {} streams over {} tenants, {} events of a dispute with {} characters of evidence; client on the same machine",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        args.streams,
        args.tenants,
        args.events,
        args.evidence_chars
    );

    // 1. Quiet.
    let mut reader =
        disputes_client(addr, READER_TENANT, &["disputes:read", "disputes:write"]).await?;
    let reader_dispute = create_dispute(&mut reader, "ch_reader").await?.id;
    get_latencies(&mut reader, &reader_dispute, 50).await?;
    let quiet = get_latencies(&mut reader, &reader_dispute, args.calls).await?;
    let rss_quiet = memory(pid)?;
    print_phase("quiet (no stream)", &quiet, rss_quiet);

    // 2. Idle streams, each read by its client.
    let tenants: Vec<String> = (0..args.tenants).map(|t| format!("bench_t{t}")).collect();
    let received: Vec<Arc<AtomicUsize>> = tenants
        .iter()
        .map(|_| Arc::new(AtomicUsize::new(0)))
        .collect();
    let opened = Arc::new(AtomicUsize::new(0));
    let refused: Arc<std::sync::Mutex<BTreeMap<String, usize>>> = Arc::default();
    let mut streams_of = vec![0usize; args.tenants];
    for stream in 0..args.streams {
        streams_of[stream % args.tenants] += 1;
    }
    let started_opening = Instant::now();
    for (index, tenant) in tenants.iter().enumerate() {
        let token = token(tenant, &["events:read"])?;
        let mut clients = Vec::new();
        let stalled = args.stalled && index == 0;
        for _ in 0..streams_of[index].div_ceil(STREAMS_PER_CONNECTION) {
            let channel = if stalled {
                // tonic's default 64 KiB stream window: a client that does not read
                // stops the server after that much.
                Channel::from_shared(format!("http://{addr}"))?
                    .connect()
                    .await?
            } else {
                harness::connect(addr).await?
            };
            clients.push(EventServiceClient::with_interceptor(
                channel,
                Bearer::new(Some(&token))?,
            ));
        }
        for stream in 0..streams_of[index] {
            let client = clients[stream / STREAMS_PER_CONNECTION].clone();
            tokio::spawn(follow(
                client,
                !stalled,
                received[index].clone(),
                opened.clone(),
                refused.clone(),
            ));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while opened.load(Ordering::SeqCst) + refused_total(&refused) < args.streams {
        ensure!(Instant::now() < deadline, "streams not open after 120 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "opened {} streams in {:.2} s; refused {:?}",
        opened.load(Ordering::SeqCst),
        started_opening.elapsed().as_secs_f64(),
        refused.lock().map(|r| r.clone()).unwrap_or_default()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = get_latencies(&mut reader, &reader_dispute, args.calls).await?;
    let rss_idle = memory(pid)?;
    print_phase("idle streams", &idle, rss_idle);

    // 3. Large events for the first tenant's streams, the other tenant reading meanwhile.
    let mut writer =
        disputes_client(addr, &tenants[0], &["disputes:read", "disputes:write"]).await?;
    // The other tenant calls GetDispute back to back until every stream has every event.
    let stop_measuring = Arc::new(AtomicBool::new(false));
    let measuring = tokio::spawn({
        let mut reader = reader.clone();
        let reader_dispute = reader_dispute.clone();
        let stop = stop_measuring.clone();
        async move {
            let mut latencies = Vec::new();
            let mut failures: BTreeMap<String, usize> = BTreeMap::new();
            while !stop.load(Ordering::SeqCst) {
                let started = Instant::now();
                match get_dispute(&mut reader, &reader_dispute).await {
                    Ok(()) => latencies.push(started.elapsed()),
                    Err(status) => {
                        *failures.entry(format!("{:?}", status.code())).or_default() += 1
                    }
                }
            }
            (latencies, failures)
        }
    });
    let started = Instant::now();
    let big = create_dispute(&mut writer, "ch_big").await?;
    writer
        .update_dispute(dpb::UpdateDisputeRequest {
            id: big.id.clone(),
            evidence: Some(dpb::EvidenceUpdate {
                uncategorized_text: Some("e".repeat(args.evidence_chars)),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .context("stage evidence")?;
    for change in 0..args.events {
        writer
            .update_dispute(dpb::UpdateDisputeRequest {
                id: big.id.clone(),
                metadata: BTreeMap::from([("change".to_owned(), change.to_string())]),
                ..Default::default()
            })
            .await
            .context("change metadata")?;
    }
    let written = started.elapsed();
    // Created, funds withdrawn, evidence staged, then one event per change.
    let per_stream = args.events + 3;
    let expected = per_stream * streams_of[0];
    let deadline = Instant::now() + Duration::from_secs(300);
    let stall_end = Instant::now() + Duration::from_secs(args.stall_seconds);
    let mut peak_rss = memory(pid)?;
    while if args.stalled {
        Instant::now() < stall_end
    } else {
        received[0].load(Ordering::SeqCst) < expected
    } {
        ensure!(
            Instant::now() < deadline,
            "streams got {} of {expected} events after 300 s",
            received[0].load(Ordering::SeqCst)
        );
        let now = memory(pid)?;
        peak_rss.rss_kib = peak_rss.rss_kib.max(now.rss_kib);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered = started.elapsed();
    stop_measuring.store(true, Ordering::SeqCst);
    let (during, failures) = measuring.await.unwrap_or_default();
    let rss_after = memory(pid)?;
    if args.stalled {
        println!(
            "  the {} streams of {} never read: their events wait in dispute-core's buffers (1 MiB each) and HTTP/2",
            streams_of[0], tenants[0]
        );
    }
    println!(
        "events: {} events × {} streams of {} ({} KB each) written in {:.2} s, phase over after {:.2} s",
        per_stream,
        streams_of[0],
        tenants[0],
        args.evidence_chars / 1000,
        written.as_secs_f64(),
        delivered.as_secs_f64()
    );
    print_phase("during the events", &during, rss_after);
    println!("  GetDispute failures during the events: {failures:?}");
    println!(
        "  RSS sampled every 20 ms during delivery: peak {:.1} MiB; after: VmRSS {:.1} MiB, VmHWM {:.1} MiB",
        mib(peak_rss.rss_kib),
        mib(rss_after.rss_kib),
        mib(rss_after.hwm_kib)
    );
    println!(
        "summary: RSS quiet {:.1} MiB -> {} idle streams {:.1} MiB -> after events {:.1} MiB (VmHWM {:.1} MiB); GetDispute p99 quiet {:.2} ms, idle {:.2} ms, during events {:.2} ms",
        mib(rss_quiet.rss_kib),
        opened.load(Ordering::SeqCst),
        mib(rss_idle.rss_kib),
        mib(rss_after.rss_kib),
        mib(rss_after.hwm_kib),
        figures::percentile_ms(&quiet, 99.0),
        figures::percentile_ms(&idle, 99.0),
        figures::percentile_ms(&during, 99.0),
    );
    let _ = child.kill().await;
    Ok(())
}

/// Opens one stream from now and, when `read`, reads it to its end, counting events in
/// `received`; otherwise holds it open without reading.
async fn follow(
    mut client: EventsClient,
    read: bool,
    received: Arc<AtomicUsize>,
    opened: Arc<AtomicUsize>,
    refused: Arc<std::sync::Mutex<BTreeMap<String, usize>>>,
) {
    let stream = client
        .stream_events(dpb::StreamEventsRequest::default())
        .await;
    let mut stream = match stream {
        Ok(stream) => stream.into_inner(),
        Err(status) => {
            if let Ok(mut refused) = refused.lock() {
                *refused.entry(format!("{:?}", status.code())).or_default() += 1;
            }
            return;
        }
    };
    opened.fetch_add(1, Ordering::SeqCst);
    if !read {
        std::future::pending::<()>().await;
    }
    while let Ok(Some(message)) = stream.message().await {
        if let Some(dpb::stream_events_response::Kind::Event(_)) = message.kind {
            received.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn refused_total(refused: &std::sync::Mutex<BTreeMap<String, usize>>) -> usize {
    refused.lock().map(|r| r.values().sum()).unwrap_or(0)
}

fn token(tenant: &str, scopes: &[&str]) -> anyhow::Result<String> {
    Ok(service_kit::auth::mint_token(
        &SecretString::from(JWT_SECRET),
        "idle-streams-bench",
        tenant,
        scopes,
        chrono::Duration::hours(1),
    )?)
}

async fn disputes_client(
    addr: SocketAddr,
    tenant: &str,
    scopes: &[&str],
) -> anyhow::Result<DisputesClient> {
    Ok(DisputeServiceClient::with_interceptor(
        harness::connect(addr).await?,
        Bearer::new(Some(&token(tenant, scopes)?))?,
    ))
}

async fn create_dispute(client: &mut DisputesClient, charge: &str) -> anyhow::Result<dpb::Dispute> {
    client
        .create_dispute(dpb::CreateDisputeRequest {
            request_id: format!("bench-{charge}"),
            side: dpb::DisputeSide::Merchant.into(),
            stage: dpb::DisputeStage::Chargeback.into(),
            amount: 12_500,
            currency: "usd".to_owned(),
            charge: charge.to_owned(),
            network: dpb::CardNetwork::Visa.into(),
            reason: dpb::DisputeReason::ProductNotReceived.into(),
            network_reason_code: "13.1".to_owned(),
            ..Default::default()
        })
        .await
        .context("create a dispute")?
        .into_inner()
        .dispute
        .context("no dispute in the answer")
}

async fn get_dispute(client: &mut DisputesClient, id: &str) -> Result<(), tonic::Status> {
    client
        .get_dispute(dpb::GetDisputeRequest { id: id.to_owned() })
        .await
        .map(|_| ())
}

async fn get_latencies(
    client: &mut DisputesClient,
    id: &str,
    calls: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        get_dispute(client, id).await.context("GetDispute")?;
        latencies.push(started.elapsed());
    }
    Ok(latencies)
}

#[derive(Debug, Clone, Copy)]
struct Memory {
    rss_kib: u64,
    hwm_kib: u64,
}

/// VmRSS and VmHWM of process `pid`.
fn memory(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context("read /proc/<pid>/status")?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(0)
    };
    Ok(Memory {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
    })
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn print_phase(name: &str, latencies: &[Duration], memory: Memory) {
    println!(
        "{name}: {READER_TENANT} GetDispute ×{} p50 {:.2} ms, p99 {:.2} ms; dispute-core VmRSS {:.1} MiB, VmHWM {:.1} MiB",
        latencies.len(),
        figures::percentile_ms(latencies, 50.0),
        figures::percentile_ms(latencies, 99.0),
        mib(memory.rss_kib),
        mib(memory.hwm_kib),
    );
}
