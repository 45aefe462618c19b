//! rpc-bench: dispute-core's RPCs against the database's own limit (issue 13). It prints
//! figures; it asserts nothing.
//!
//! In one run, on one PostgreSQL: document-store and dispute-core as child processes (the
//! release binaries next to this program), an s3s-fs server in this process, and the
//! minimal tonic server of `minimal.rs` as a third child. For GetDispute (a dispute with
//! history, ledger and two documents), ListDisputes (a page of 20 with history),
//! CreateAction (PROVISIONAL_CREDIT with a request id: row lock, update, history, ledger,
//! event, idempotency record) and RecordNetworkEvent (a CHARGEBACK opening a new case):
//! - 1 × 1: one connection, one call at a time;
//! - 64 in flight: closed loop over 4 connections (the peak);
//! - half of that peak, offered at a fixed rate (open loop, latency counted from each
//!   call's scheduled time, so a stall is not hidden by sending later);
//!
//! each with calls/s, mean, p50 and p99. The reads also run against the minimal server,
//! and every call's SQL through pgbench (`pgbench.rs`). Ratios are printed at the end.
//! Everything it creates (children, databases, the S3 folder) is removed at the end.
//!
//! The services run as deployed (default log filter, access log, spans and metrics exported
//! over OTLP to a sink in this process that counts and discards them) and, with
//! `--observability both` (the default), a second pair runs on the same databases with
//! observability off (`RUST_LOG=warn`, nothing exported): each call is measured on both, and
//! the cost of observability is printed as a figure of its own.

mod calls;
mod child;
mod minimal;
mod pgbench;
mod phases;
mod report;
mod seed;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, ensure};
use clap::Parser;
use disputes_proto::disputes_v1::dispute_service_client::DisputeServiceClient;
use harness::otlp_sink::OtlpSink;
use harness::process::{Observability, Service, ServiceCommand};
use harness::{Bearer, DisputesClient, S3Server};
use secrecy::SecretString;

use crate::calls::{Call, DISPUTES_URL, analyze_disputes_database};
use crate::child::{Child, free_addr};
use crate::phases::{list_documents_1x1, measure};
use crate::report::Report;
use crate::seed::seed;

const TENANT: &str = minimal::TENANT;
const JWT_SECRET: &str = "rpc-bench-jwt-secret-0123456789abcdef";
const BUCKET: &str = "rpc-bench";
/// Disputes ListDisputes has to choose from (it reads the newest 20).
const LISTED_DISPUTES: usize = 25;

#[derive(Debug, Parser)]
#[command(
    name = "rpc-bench",
    about = "dispute-core's RPCs at 1x1, 64 in flight and half of peak, against a minimal tonic server and pgbench on the same database"
)]
struct Args {
    /// Tiny counts (CI: proves the bench still works, the figures mean nothing).
    #[arg(long, env = "BENCH_RPC_QUICK")]
    quick: bool,
    /// Calls of the 1 × 1 phase.
    #[arg(long, default_value_t = 400)]
    calls_1x1: usize,
    /// Calls of the closed-loop peak phase.
    #[arg(long, default_value_t = 4_000)]
    calls_peak: usize,
    /// Calls in flight in the peak phase.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// HTTP/2 connections the peak and half-rate phases spread calls over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Seconds of the half-of-peak fixed-rate phase.
    #[arg(long, default_value_t = 5.0)]
    half_seconds: f64,
    /// Seconds of each pgbench run.
    #[arg(long, default_value_t = 5)]
    pgbench_seconds: u64,
    /// pgbench clients of its peak run (its other run has 1 client).
    #[arg(long, default_value_t = 16)]
    pgbench_clients: u32,
    /// How the services' observability runs: deployed (default log filter, access log,
    /// OTLP export to an in-process sink), off (RUST_LOG=warn, no export) or both (each
    /// call measured on each, the cost printed).
    #[arg(long, default_value = "both")]
    observability: String,
    /// Only these calls (get, list, action, network); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Skip pgbench.
    #[arg(long)]
    no_pgbench: bool,
    /// The service binaries; default: next to this program.
    #[arg(long)]
    dispute_core_bin: Option<PathBuf>,
    #[arg(long)]
    document_store_bin: Option<PathBuf>,
    /// Internal: run as the minimal server on this address (a child of the bench).
    #[arg(long, hide = true)]
    minimal_server: Option<SocketAddr>,
}

impl Args {
    fn apply_quick(&mut self) {
        if self.quick {
            self.calls_1x1 = self.calls_1x1.min(20);
            self.calls_peak = self.calls_peak.min(200);
            self.half_seconds = self.half_seconds.min(0.5);
            self.pgbench_seconds = self.pgbench_seconds.min(1);
        }
    }

    fn wants(&self, call: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|c| c == call)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if let Some(addr) = args.minimal_server {
        let disputes = std::env::var("RPC_BENCH_DISPUTES_URL").context("RPC_BENCH_DISPUTES_URL")?;
        let documents =
            std::env::var("RPC_BENCH_DOCUMENTS_URL").context("RPC_BENCH_DOCUMENTS_URL")?;
        return minimal::serve(addr, &disputes, &documents).await;
    }
    args.apply_quick();
    ensure!(args.calls_1x1 >= 1 && args.calls_peak >= 1 && args.in_flight >= 1);
    ensure!(args.connections >= 1 && args.half_seconds > 0.0);
    let here = std::env::current_exe().context("locate this program")?;
    let binary = |given: &Option<PathBuf>, name: &str| -> anyhow::Result<PathBuf> {
        let path = given.clone().unwrap_or_else(|| here.with_file_name(name));
        ensure!(
            path.is_file(),
            "no {name} binary at {} (cargo build --release -p {name})",
            path.display()
        );
        Ok(path)
    };
    let dispute_core = binary(&args.dispute_core_bin, "dispute-core")?;
    let document_store = binary(&args.document_store_bin, "document-store")?;

    let admin_url = harness::admin_database_url();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let names = [
        format!("rpc_bench_{suffix}_disputes"),
        format!("rpc_bench_{suffix}_documents"),
    ];
    let work = tempfile::Builder::new().prefix("rpc-bench-").tempdir()?;
    let result = async {
        let disputes_url = harness::ensure_database(&admin_url, &names[0]).await?;
        let documents_url = harness::ensure_database(&admin_url, &names[1]).await?;
        tokio::select! {
            result = run(&args, &dispute_core, &document_store, &disputes_url, &documents_url, work.path()) => result,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    }
    .await;
    for name in &names {
        if let Err(error) = harness::drop_database(&admin_url, name).await {
            eprintln!("warning: could not drop database {name}: {error:#}");
        }
    }
    result
}

async fn run(
    args: &Args,
    dispute_core_bin: &Path,
    document_store_bin: &Path,
    disputes_url: &str,
    documents_url: &str,
    work: &Path,
) -> anyhow::Result<()> {
    let _ = DISPUTES_URL.set(disputes_url.to_owned());
    let s3 = S3Server::start(&work.join("s3"), "127.0.0.1:0".parse()?).await?;

    let sink = OtlpSink::start().await?;
    let mut pairs = Vec::new();
    for mode in Observability::parse_modes(&args.observability)? {
        pairs.push(
            ServicePair::start(
                mode,
                &sink,
                dispute_core_bin,
                document_store_bin,
                disputes_url,
                documents_url,
                &s3.endpoint,
                work,
            )
            .await?,
        );
    }
    let documents_addr = pairs[0].document_store.addr;

    let minimal_addr = free_addr()?;
    let mut command = tokio::process::Command::new(std::env::current_exe()?);
    command
        .arg("--minimal-server")
        .arg(minimal_addr.to_string())
        .env("RPC_BENCH_DISPUTES_URL", disputes_url)
        .env("RPC_BENCH_DOCUMENTS_URL", documents_url)
        // The reference server has no observability of its own to measure.
        .env("RUST_LOG", "warn");
    let minimal = Child::start("minimal", command, minimal_addr, work.join("minimal.log")).await?;

    let token = service_kit::auth::mint_token(
        &SecretString::from(JWT_SECRET),
        "rpc-bench",
        TENANT,
        &[
            "disputes:read",
            "disputes:write",
            "disputes:network",
            "documents:read",
            "documents:write",
        ],
        chrono::Duration::hours(4),
    )?;
    let mut cores = Vec::new();
    for pair in &pairs {
        let clients = Clients::connect(pair.dispute_core.addr, &token, args.connections).await?;
        cores.push((pair.server, clients));
    }
    let minimal_clients = Clients::connect(minimal_addr, &token, args.connections).await?;
    let seed = seed(&cores[0].1, documents_addr, &token).await?;
    analyze_disputes_database().await?;
    eprintln!(
        "seeded: GetDispute {} ({} history entries, {} ledger entries, 2 documents); ListDisputes over {} disputes",
        seed.get_id,
        seed.history,
        seed.ledger,
        LISTED_DISPUTES + 1
    );
    let mut children = vec![("minimal tonic", &minimal)];
    for pair in &pairs {
        children.push((pair.server, &pair.document_store));
        children.push((pair.server, &pair.dispute_core));
    }
    for (name, child) in children {
        eprintln!(
            "{name} ({}): pid {:?} on {}",
            child.name,
            child.pid(),
            child.addr
        );
    }

    let mut report = Report::default();
    let seed = Arc::new(seed);
    if args.wants("get") {
        let call = Call::GetDispute(seed.clone());
        for (server, core) in &cores {
            report
                .rows
                .push(measure(args, "GetDispute", server, core, &call).await?);
        }
        report
            .rows
            .push(measure(args, "GetDispute", "minimal tonic", &minimal_clients, &call).await?);
        report.list_documents_1x1 =
            Some(list_documents_1x1(documents_addr, &token, &seed.get_id, args.calls_1x1).await?);
    }
    if args.wants("list") {
        let call = Call::ListDisputes;
        for (server, core) in &cores {
            report
                .rows
                .push(measure(args, "ListDisputes", server, core, &call).await?);
        }
        report.rows.push(
            measure(
                args,
                "ListDisputes",
                "minimal tonic",
                &minimal_clients,
                &call,
            )
            .await?,
        );
    }
    // The reads' SQL through pgbench now, while the tenant holds only what the reads saw.
    if !args.no_pgbench {
        report.pgbench =
            pgbench::run_all(args, disputes_url, documents_url, &seed, TENANT, true).await?;
    }
    if args.wants("action") {
        let call = Call::CreateAction;
        for (server, core) in &cores {
            report
                .rows
                .push(measure(args, "CreateAction", server, core, &call).await?);
        }
    }
    if args.wants("network") {
        let call = Call::RecordNetworkEvent;
        for (server, core) in &cores {
            report
                .rows
                .push(measure(args, "RecordNetworkEvent", server, core, &call).await?);
        }
    }
    if !args.no_pgbench {
        let writes =
            pgbench::run_all(args, disputes_url, documents_url, &seed, TENANT, false).await?;
        report.pgbench.extend(writes);
    }
    // Stopped before the sink is read, so the spans they still held are counted.
    for pair in pairs {
        pair.stop().await;
    }
    drop(minimal);
    report.spans_exported = Some((sink.spans(), sink.trace_exports(), sink.metric_exports()));
    s3.stop().await;
    report.print(args);
    Ok(())
}

/// document-store and dispute-core with one observability mode.
struct ServicePair {
    server: &'static str,
    document_store: Child,
    dispute_core: Child,
}

impl ServicePair {
    #[allow(clippy::too_many_arguments)]
    async fn start(
        mode: Observability,
        sink: &OtlpSink,
        dispute_core_bin: &Path,
        document_store_bin: &Path,
        disputes_url: &str,
        documents_url: &str,
        s3_endpoint: &str,
        work: &Path,
    ) -> anyhow::Result<ServicePair> {
        let (server, docs_name, core_name) = match mode {
            Observability::Deployed => ("dispute-core", "document-store", "dispute-core"),
            Observability::Off => (
                report::CORE_OFF,
                "document-store (observability off)",
                "dispute-core (observability off)",
            ),
        };
        let otlp = sink.endpoint();
        let documents_addr = free_addr()?;
        let command = ServiceCommand::binary(Service::DocumentStore, document_store_bin)
            .listen_addr(documents_addr)
            .database_url(documents_url)
            .s3(s3_endpoint, BUCKET)
            .jwt_secret(JWT_SECRET)
            .observability(mode, Some(&otlp))?
            .command()?;
        let document_store = Child::start(
            docs_name,
            command,
            documents_addr,
            work.join(format!("document-store-{}.log", mode.name())),
        )
        .await?;
        let core_addr = free_addr()?;
        let command = ServiceCommand::binary(Service::DisputeCore, dispute_core_bin)
            .listen_addr(core_addr)
            .database_url(disputes_url)
            .document_store_url(format!("http://{documents_addr}"))
            .jwt_secret(JWT_SECRET)
            .observability(mode, Some(&otlp))?
            .command()?;
        let dispute_core = Child::start(
            core_name,
            command,
            core_addr,
            work.join(format!("dispute-core-{}.log", mode.name())),
        )
        .await?;
        Ok(ServicePair {
            server,
            document_store,
            dispute_core,
        })
    }

    /// SIGTERM and wait, so the services flush their last spans to the sink.
    async fn stop(self) {
        for child in [self.dispute_core, self.document_store] {
            child.terminate().await;
        }
    }
}

/// Clients of one server: one for 1 × 1, and `connections` for the loaded phases.
struct Clients {
    single: DisputesClient,
    pool: Vec<DisputesClient>,
}

impl Clients {
    async fn connect(addr: SocketAddr, token: &str, connections: usize) -> anyhow::Result<Clients> {
        let client = |channel| -> anyhow::Result<DisputesClient> {
            Ok(DisputeServiceClient::with_interceptor(
                channel,
                Bearer::new(Some(token))?,
            ))
        };
        let single = client(harness::connect(addr).await?)?;
        let mut pool = Vec::new();
        for _ in 0..connections {
            pool.push(client(harness::connect(addr).await?)?);
        }
        Ok(Clients { single, pool })
    }
}
