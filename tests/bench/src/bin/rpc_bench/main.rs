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

mod minimal;
mod pgbench;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use disputes_proto::disputes_v1 as dpb;
use disputes_proto::disputes_v1::dispute_service_client::DisputeServiceClient;
use disputes_proto::documents_v1 as docpb;
use harness::process::{Service, ServiceCommand};
use harness::{Bearer, DisputesClient, S3Server};
use secrecy::SecretString;

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

/// A child process serving gRPC, killed when dropped.
struct Child {
    name: &'static str,
    process: tokio::process::Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Child {
    async fn start(
        name: &'static str,
        mut command: tokio::process::Command,
        addr: SocketAddr,
        log: PathBuf,
    ) -> anyhow::Result<Child> {
        let file = std::fs::File::create(&log)?;
        let process = command
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {name}"))?;
        let mut child = Child {
            name,
            process,
            addr,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.process.try_wait()? {
                bail!(
                    "{name} exited at start-up ({status}):\n{}",
                    child.log_tail()
                );
            }
            if harness::tonic_health_client::health_check(addr)
                .await
                .unwrap_or(false)
            {
                return Ok(child);
            }
            ensure!(
                Instant::now() < deadline,
                "{name} not serving after 60 s:\n{}",
                child.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn pid(&self) -> Option<u32> {
        self.process.id()
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    // The child binds it itself; a just-freed port is a small, acceptable race.
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
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

    let documents_addr = free_addr()?;
    let command = ServiceCommand::binary(Service::DocumentStore, document_store_bin)
        .listen_addr(documents_addr)
        .database_url(documents_url)
        .s3(&s3.endpoint, BUCKET)
        .jwt_secret(JWT_SECRET)
        .command()?;
    let document_store = Child::start(
        "document-store",
        command,
        documents_addr,
        work.join("document-store.log"),
    )
    .await?;

    let core_addr = free_addr()?;
    let command = ServiceCommand::binary(Service::DisputeCore, dispute_core_bin)
        .listen_addr(core_addr)
        .database_url(disputes_url)
        .document_store_url(format!("http://{documents_addr}"))
        .jwt_secret(JWT_SECRET)
        .command()?;
    let dispute_core = Child::start(
        "dispute-core",
        command,
        core_addr,
        work.join("dispute-core.log"),
    )
    .await?;

    let minimal_addr = free_addr()?;
    let mut command = tokio::process::Command::new(std::env::current_exe()?);
    command
        .arg("--minimal-server")
        .arg(minimal_addr.to_string())
        .env("RPC_BENCH_DISPUTES_URL", disputes_url)
        .env("RPC_BENCH_DOCUMENTS_URL", documents_url);
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
    let core = Clients::connect(core_addr, &token, args.connections).await?;
    let minimal_clients = Clients::connect(minimal_addr, &token, args.connections).await?;
    let seed = seed(&core, documents_addr, &token).await?;
    analyze_disputes_database().await?;
    eprintln!(
        "seeded: GetDispute {} ({} history entries, {} ledger entries, 2 documents); ListDisputes over {} disputes",
        seed.get_id,
        seed.history,
        seed.ledger,
        LISTED_DISPUTES + 1
    );
    for (name, child) in [
        ("document-store", &document_store),
        ("dispute-core", &dispute_core),
        ("minimal tonic", &minimal),
    ] {
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
        report
            .rows
            .push(measure(args, "GetDispute", "dispute-core", &core, &call).await?);
        report
            .rows
            .push(measure(args, "GetDispute", "minimal tonic", &minimal_clients, &call).await?);
        report.list_documents_1x1 =
            Some(list_documents_1x1(documents_addr, &token, &seed.get_id, args.calls_1x1).await?);
    }
    if args.wants("list") {
        let call = Call::ListDisputes;
        report
            .rows
            .push(measure(args, "ListDisputes", "dispute-core", &core, &call).await?);
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
        report
            .rows
            .push(measure(args, "CreateAction", "dispute-core", &core, &call).await?);
    }
    if args.wants("network") {
        let call = Call::RecordNetworkEvent;
        report
            .rows
            .push(measure(args, "RecordNetworkEvent", "dispute-core", &core, &call).await?);
    }
    if !args.no_pgbench {
        let writes =
            pgbench::run_all(args, disputes_url, documents_url, &seed, TENANT, false).await?;
        report.pgbench.extend(writes);
    }
    drop((dispute_core, document_store, minimal));
    s3.stop().await;
    report.print(args);
    Ok(())
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

/// What the bench created before measuring.
pub struct Seed {
    /// The dispute GetDispute reads.
    pub get_id: String,
    history: usize,
    ledger: usize,
    /// The 20 disputes ListDisputes answers (for pgbench).
    pub listed_ids: Vec<String>,
    /// An issuer dispute in INQUIRY (pgbench copies it for its CreateAction transaction).
    pub issuer_template_id: String,
    /// Bytes of an encoded dispute (the size of the event payload and remembered response).
    pub snapshot_bytes: usize,
}

fn merchant_chargeback(charge: &str) -> dpb::CreateDisputeRequest {
    dpb::CreateDisputeRequest {
        side: dpb::DisputeSide::Merchant.into(),
        stage: dpb::DisputeStage::Chargeback.into(),
        amount: 12_500,
        currency: "usd".to_owned(),
        charge: charge.to_owned(),
        network: dpb::CardNetwork::Visa.into(),
        reason: dpb::DisputeReason::ProductNotReceived.into(),
        network_reason_code: "13.1".to_owned(),
        ..Default::default()
    }
}

fn issuer_inquiry(transaction_id: &str) -> dpb::CreateDisputeRequest {
    dpb::CreateDisputeRequest {
        side: dpb::DisputeSide::Issuer.into(),
        amount: 4_200,
        currency: "USD".to_owned(),
        transaction_id: transaction_id.to_owned(),
        network: dpb::CardNetwork::Mastercard.into(),
        reason: dpb::DisputeReason::Fraudulent.into(),
        date_customer_reported: chrono::Utc::now()
            .date_naive()
            .format("%Y-%m-%d")
            .to_string(),
        applicable_regulation: dpb::ApplicableRegulation::RegulationE.into(),
        memo: "cardholder does not recognise the charge".to_owned(),
        ..Default::default()
    }
}

async fn create(
    client: &DisputesClient,
    request: dpb::CreateDisputeRequest,
) -> anyhow::Result<dpb::Dispute> {
    client
        .clone()
        .create_dispute(request)
        .await
        .context("CreateDispute")?
        .into_inner()
        .dispute
        .context("no dispute")
}

async fn seed(core: &Clients, documents_addr: SocketAddr, token: &str) -> anyhow::Result<Seed> {
    let client = &core.single;
    for i in 0..LISTED_DISPUTES {
        create(client, merchant_chargeback(&format!("ch_list_{i}"))).await?;
    }
    let issuer = create(client, issuer_inquiry("txn_template")).await?;
    let dispute = create(client, merchant_chargeback("ch_get")).await?;
    // A second history entry: staged evidence.
    client
        .clone()
        .update_dispute(dpb::UpdateDisputeRequest {
            id: dispute.id.clone(),
            evidence: Some(dpb::EvidenceUpdate {
                shipping_tracking_number: Some("1Z999AA10123456784".to_owned()),
                shipping_carrier: Some("UPS".to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .context("UpdateDispute")?;
    let mut documents = harness::documents_client(documents_addr, Some(token)).await?;
    for name in ["receipt.pdf", "tracking.pdf"] {
        let messages = vec![
            docpb::UploadDocumentRequest {
                payload: Some(docpb::upload_document_request::Payload::Header(
                    docpb::DocumentHeader {
                        filename: name.to_owned(),
                        content_type: "application/pdf".to_owned(),
                        dispute_id: dispute.id.clone(),
                        ..Default::default()
                    },
                )),
            },
            docpb::UploadDocumentRequest {
                payload: Some(docpb::upload_document_request::Payload::Chunk(
                    bytes::Bytes::from_static(b"%PDF-1.7\n%%EOF\n"),
                )),
            },
        ];
        documents
            .upload_document(tokio_stream::iter(messages))
            .await
            .with_context(|| format!("upload {name}"))?;
    }
    let got = client
        .clone()
        .get_dispute(dpb::GetDisputeRequest {
            id: dispute.id.clone(),
        })
        .await?
        .into_inner();
    ensure!(
        got.documents.len() == 2,
        "GetDispute shows {} documents",
        got.documents.len()
    );
    let shown = got.dispute.context("no dispute")?;
    let listed = client
        .clone()
        .list_disputes(dpb::ListDisputesRequest {
            page_size: 20,
            ..Default::default()
        })
        .await?
        .into_inner();
    ensure!(listed.disputes.len() == 20);
    Ok(Seed {
        get_id: dispute.id,
        history: shown.action_history.len(),
        ledger: shown.balance_transactions.len(),
        listed_ids: listed.disputes.iter().map(|d| d.id.clone()).collect(),
        issuer_template_id: issuer.id,
        snapshot_bytes: prost::Message::encoded_len(&shown),
    })
}

/// One measured call.
#[derive(Clone)]
enum Call {
    GetDispute(Arc<Seed>),
    ListDisputes,
    /// PROVISIONAL_CREDIT with a request id, each call on a dispute of its own.
    CreateAction,
    /// A CHARGEBACK that opens a case of its own.
    RecordNetworkEvent,
}

/// Counts runs, so each phase gets fresh request ids, cases and charges.
static RUN: AtomicUsize = AtomicUsize::new(0);

/// dispute-core's database, for refreshing its statistics after seeding.
static DISPUTES_URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Refreshes the planner's statistics after a burst of seeding. A database in service is
/// analyzed by autovacuum as it grows; this one grew from empty seconds ago, and plans cached
/// by the service's connections would otherwise be made for tables of a few rows.
async fn analyze_disputes_database() -> anyhow::Result<()> {
    let Some(url) = DISPUTES_URL.get() else {
        return Ok(());
    };
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url).await?;
    sqlx::query("analyze").execute(&mut conn).await?;
    Ok(())
}

impl Call {
    /// Whether every call opens a new dispute (and case), so the tables grow with the phase.
    fn opens_disputes(&self) -> bool {
        matches!(self, Call::RecordNetworkEvent)
    }

    /// What the phase's `calls` calls need: a fresh issuer dispute per call for
    /// CreateAction (made now, not timed), nothing for the others.
    async fn prepare(&self, core: &Clients, calls: usize) -> anyhow::Result<Arc<Vec<String>>> {
        let run = RUN.fetch_add(1, Ordering::Relaxed);
        match self {
            Call::CreateAction => {
                let next = Arc::new(AtomicUsize::new(0));
                let ids = Arc::new(tokio::sync::Mutex::new(Vec::with_capacity(calls)));
                let mut tasks = Vec::new();
                for worker in 0..16 {
                    let client = core.pool[worker % core.pool.len()].clone();
                    let (next, ids) = (next.clone(), ids.clone());
                    tasks.push(tokio::spawn(async move {
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= calls {
                                return anyhow::Ok(());
                            }
                            let dispute =
                                create(&client, issuer_inquiry(&format!("txn_{run}_{i}"))).await?;
                            ids.lock().await.push(dispute.id);
                        }
                    }));
                }
                for task in tasks {
                    task.await??;
                }
                let ids = std::mem::take(&mut *ids.lock().await);
                analyze_disputes_database().await?;
                Ok(Arc::new(ids))
            }
            _ => Ok(Arc::new(vec![format!("{run}")])),
        }
    }

    /// Call number `i` of a phase prepared with `prepared`.
    async fn call(
        &self,
        client: &mut DisputesClient,
        prepared: &[String],
        i: usize,
    ) -> Result<(), tonic::Status> {
        match self {
            Call::GetDispute(seed) => {
                let got = client
                    .get_dispute(dpb::GetDisputeRequest {
                        id: seed.get_id.clone(),
                    })
                    .await?
                    .into_inner();
                check(
                    got.documents.len() == 2 && got.dispute.is_some(),
                    "GetDispute",
                )
            }
            Call::ListDisputes => {
                let listed = client
                    .list_disputes(dpb::ListDisputesRequest {
                        page_size: 20,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                check(listed.disputes.len() == 20, "ListDisputes")
            }
            Call::CreateAction => {
                let id = prepared
                    .get(i)
                    .ok_or_else(|| tonic::Status::out_of_range("no prepared dispute left"))?;
                let dispute = client
                    .create_action(dpb::CreateActionRequest {
                        dispute_id: id.clone(),
                        request_id: format!("bench-{id}"),
                        action: dpb::DisputeActionType::ProvisionalCredit.into(),
                        ..Default::default()
                    })
                    .await?
                    .into_inner()
                    .dispute;
                check(
                    dispute.is_some_and(|d| d.credit_status() == dpb::CreditStatus::Provisional),
                    "CreateAction",
                )
            }
            Call::RecordNetworkEvent => {
                let run = prepared.first().map_or("0", String::as_str);
                let outcome = client
                    .record_network_event(dpb::RecordNetworkEventRequest {
                        network: dpb::CardNetwork::Visa.into(),
                        network_case_id: format!("VISA-BENCH-{run}-{i}"),
                        event_id: "evt-1".to_owned(),
                        r#type: dpb::NetworkEventType::Chargeback.into(),
                        new_case: Some(dpb::CreateDisputeRequest {
                            side: dpb::DisputeSide::Merchant.into(),
                            amount: 5_000,
                            currency: "EUR".to_owned(),
                            reason: dpb::DisputeReason::Fraudulent.into(),
                            charge: format!("ch_net_{run}_{i}"),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                check(outcome.created && outcome.applied, "RecordNetworkEvent")
            }
        }
    }
}

fn check(ok: bool, what: &str) -> Result<(), tonic::Status> {
    if ok {
        Ok(())
    } else {
        Err(tonic::Status::data_loss(format!(
            "{what}: unexpected answer"
        )))
    }
}

/// Latencies of one phase.
#[derive(Debug, Default, Clone)]
struct Phase {
    calls: usize,
    errors: usize,
    first_error: Option<String>,
    seconds: f64,
    latencies: Vec<Duration>,
}

impl Phase {
    fn rate(&self) -> f64 {
        (self.calls - self.errors) as f64 / self.seconds
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let index = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
        sorted[index.min(sorted.len() - 1)].as_secs_f64() * 1e3
    }

    fn mean_ms(&self) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        self.latencies
            .iter()
            .map(Duration::as_secs_f64)
            .sum::<f64>()
            * 1e3
            / self.latencies.len() as f64
    }

    fn add(&mut self, result: Result<(), tonic::Status>, latency: Duration) {
        self.calls += 1;
        match result {
            Ok(()) => self.latencies.push(latency),
            Err(status) => {
                self.errors += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(format!("{:?}: {}", status.code(), status.message()));
                }
            }
        }
    }

    fn merge(&mut self, other: Phase) {
        self.calls += other.calls;
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
        self.latencies.extend(other.latencies);
    }
}

/// The three phases of one call on one server.
struct Row {
    call: &'static str,
    server: &'static str,
    single: Phase,
    peak: Phase,
    half: Phase,
    half_offered: f64,
}

async fn measure(
    args: &Args,
    call_name: &'static str,
    server: &'static str,
    clients: &Clients,
    call: &Call,
) -> anyhow::Result<Row> {
    eprintln!("{call_name} on {server} ...");
    // Warm-up: connections, pools and prepared statements.
    let warm = call.prepare(clients, 20).await?;
    let mut client = clients.single.clone();
    for i in 0..20 {
        call.call(&mut client, &warm, i).await.map_err(|s| {
            anyhow::anyhow!("{call_name} on {server}: {:?} {}", s.code(), s.message())
        })?;
    }
    if call.opens_disputes() {
        // A database in service holds rows and autovacuum has analyzed them. Measured from
        // a few rows, pooled connections keep the plans made for tiny tables (sequential
        // scans, foreign-key checks included) while each call adds a dispute, and the phase
        // slows down until autovacuum's next analyze (docs/decisions.md).
        closed_loop(
            clients,
            call,
            args.calls_peak.min(2_000),
            args.in_flight,
            false,
        )
        .await?;
        analyze_disputes_database().await?;
    }
    let single = closed_loop(clients, call, args.calls_1x1, 1, true).await?;
    let peak = closed_loop(clients, call, args.calls_peak, args.in_flight, false).await?;
    let offered = (peak.rate() / 2.0).max(1.0);
    let half = fixed_rate(clients, call, offered, args.half_seconds).await?;
    Ok(Row {
        call: call_name,
        server,
        single,
        peak,
        half,
        half_offered: offered,
    })
}

/// document-store's ListDocuments of one dispute, `calls` calls one at a time on one
/// connection (after 20 warm-up calls).
async fn list_documents_1x1(
    documents_addr: SocketAddr,
    token: &str,
    dispute_id: &str,
    calls: usize,
) -> anyhow::Result<Phase> {
    eprintln!("ListDocuments on document-store ...");
    let mut client = harness::documents_client(documents_addr, Some(token)).await?;
    let mut call = async || -> Result<(), tonic::Status> {
        let listed = client
            .list_documents(docpb::ListDocumentsRequest {
                dispute_id: dispute_id.to_owned(),
                ..Default::default()
            })
            .await?
            .into_inner();
        if listed.documents.len() == 2 {
            Ok(())
        } else {
            Err(tonic::Status::internal(
                "ListDocuments: expected 2 documents",
            ))
        }
    };
    for _ in 0..20 {
        call().await?;
    }
    let mut phase = Phase::default();
    let started = Instant::now();
    for _ in 0..calls {
        let sent = Instant::now();
        let result = call().await;
        phase.add(result, sent.elapsed());
    }
    phase.seconds = started.elapsed().as_secs_f64();
    Ok(phase)
}

/// `calls` calls by `workers` clients each waiting for its answer before the next call;
/// `single`: all on the one-connection client.
async fn closed_loop(
    clients: &Clients,
    call: &Call,
    calls: usize,
    workers: usize,
    single: bool,
) -> anyhow::Result<Phase> {
    let prepared = call.prepare(clients, calls).await?;
    let call = Arc::new(call.clone());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let mut client = if single {
            clients.single.clone()
        } else {
            clients.pool[worker % clients.pool.len()].clone()
        };
        let (next, prepared, call) = (next.clone(), prepared.clone(), call.clone());
        tasks.push(tokio::spawn(async move {
            let mut phase = Phase::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= calls {
                    return phase;
                }
                let sent = Instant::now();
                let result = call.call(&mut client, &prepared, i).await;
                phase.add(result, sent.elapsed());
            }
        }));
    }
    let mut phase = Phase::default();
    for task in tasks {
        phase.merge(task.await?);
    }
    phase.seconds = started.elapsed().as_secs_f64();
    Ok(phase)
}

/// Calls sent at `rate` per second for `seconds`, each at its scheduled time whether or not
/// earlier ones answered; latency counts from the scheduled time.
async fn fixed_rate(
    clients: &Clients,
    call: &Call,
    rate: f64,
    seconds: f64,
) -> anyhow::Result<Phase> {
    let calls = ((rate * seconds).round() as usize).max(1);
    let prepared = call.prepare(clients, calls).await?;
    let call = Arc::new(call.clone());
    let interval = Duration::from_secs_f64(1.0 / rate);
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let start = tokio::time::Instant::now();
    for i in 0..calls {
        let scheduled = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled).await;
        let mut client = clients.pool[i % clients.pool.len()].clone();
        let (sender, prepared, call) = (sender.clone(), prepared.clone(), call.clone());
        tokio::spawn(async move {
            let result = call.call(&mut client, &prepared, i).await;
            let _ = sender.send((result, scheduled.elapsed()));
        });
    }
    drop(sender);
    let mut phase = Phase::default();
    while let Some((result, latency)) = receiver.recv().await {
        phase.add(result, latency);
    }
    phase.seconds = start.elapsed().as_secs_f64();
    Ok(phase)
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    /// document-store's ListDocuments of the GetDispute dispute, one call at a time (the
    /// hop GetDispute makes).
    list_documents_1x1: Option<Phase>,
    pgbench: Vec<pgbench::Figure>,
}

impl Report {
    fn row(&self, call: &str, server: &str) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.call == call && r.server == server)
    }

    fn pg(&self, name: &str, clients: u32) -> Option<&pgbench::Figure> {
        self.pgbench
            .iter()
            .find(|f| f.name == name && f.clients == clients)
    }

    fn print(&self, args: &Args) {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n## gRPC calls (1x1: one connection, one call at a time; peak: {} in flight over {} connections; half: half of peak offered at a fixed rate)\n",
            args.in_flight, args.connections
        );
        let _ = writeln!(
            out,
            "| call | server | phase | calls | calls/s | mean ms | p50 ms | p99 ms | p99/p50 | errors |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
        for row in &self.rows {
            for (name, phase) in [
                ("1x1".to_owned(), &row.single),
                (format!("{} in flight", args.in_flight), &row.peak),
                (
                    format!("half ({:.0}/s offered)", row.half_offered),
                    &row.half,
                ),
            ] {
                let (p50, p99) = (phase.percentile_ms(50.0), phase.percentile_ms(99.0));
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {}{} |",
                    row.call,
                    row.server,
                    name,
                    phase.calls,
                    phase.rate(),
                    phase.mean_ms(),
                    p50,
                    p99,
                    p99 / p50,
                    phase.errors,
                    phase
                        .first_error
                        .as_deref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                );
            }
        }
        if let Some(phase) = &self.list_documents_1x1 {
            let _ = writeln!(
                out,
                "| ListDocuments | document-store | 1x1 | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {} |",
                phase.calls,
                phase.rate(),
                phase.mean_ms(),
                phase.percentile_ms(50.0),
                phase.percentile_ms(99.0),
                phase.percentile_ms(99.0) / phase.percentile_ms(50.0),
                phase.errors
            );
        }
        if !self.pgbench.is_empty() {
            let _ = writeln!(out, "\n## pgbench (the same SQL, prepared statements)\n");
            let _ = writeln!(out, "| script | clients | tx/s | mean latency ms |");
            let _ = writeln!(out, "|---|---|---|---|");
            for f in &self.pgbench {
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.0} | {:.3} |",
                    f.name, f.clients, f.tps, f.latency_ms
                );
            }
        }
        let _ = writeln!(out, "\n## ratios\n");
        let peak_clients = args.pgbench_clients;
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "n/a".to_owned(),
        };
        for call in ["GetDispute", "ListDisputes"] {
            let core = self.row(call, "dispute-core");
            let min = self.row(call, "minimal tonic");
            let _ = writeln!(
                out,
                "- P1 {call}: dispute-core / minimal tonic at peak = {} (target >= 0.7); at 1x1 = {}",
                ratio(core.map(|r| r.peak.rate()), min.map(|r| r.peak.rate())),
                ratio(core.map(|r| r.single.rate()), min.map(|r| r.single.rate())),
            );
        }
        for (call, script) in [
            ("GetDispute", "get_dispute"),
            ("ListDisputes", "list_disputes"),
            ("CreateAction", "create_action"),
            ("RecordNetworkEvent", "record_network_event"),
        ] {
            let core = self.row(call, "dispute-core");
            let _ = writeln!(
                out,
                "- {call}: dispute-core / pgbench at peak ({peak_clients} pgbench clients) = {}; at 1x1 (1 client) = {}{}",
                ratio(
                    core.map(|r| r.peak.rate()),
                    self.pg(script, peak_clients).map(|f| f.tps)
                ),
                ratio(
                    core.map(|r| r.single.rate()),
                    self.pg(script, 1).map(|f| f.tps)
                ),
                if call == "CreateAction" {
                    " (P2: target >= 0.6 at peak)"
                } else {
                    ""
                }
            );
        }
        for row in &self.rows {
            let _ = writeln!(
                out,
                "- P3 {} on {}: p99/p50 at half of peak = {:.1} (target <= 10)",
                row.call,
                row.server,
                row.half.percentile_ms(99.0) / row.half.percentile_ms(50.0)
            );
        }
        if let Some(row) = self.row("GetDispute", "dispute-core") {
            let _ = writeln!(
                out,
                "- GetDispute 1x1 mean: {:.2} ms (target < 3 ms)",
                row.single.mean_ms()
            );
        }
        print!("{out}");
    }
}
