//! document-fairness-bench: does one tenant flooding document-store with slow uploads and
//! unread downloads keep another tenant out? (issue 21, fair uploads and downloads). It
//! prints figures; it asserts nothing.
//!
//! One stack in this process (document-store at its default upload, rate and download
//! settings: 8 uploads per replica, 2 per tenant, 16 KiB/s after 10 s; 64 downloads, 16 per
//! tenant), then:
//! 1. quiet: tenant B uploads `--size-kib` and downloads it back, `--calls` times in a row;
//! 2. flood: tenant A keeps `--flood-uploads` slowloris uploads (a byte a second, retrying
//!    after each refusal or cut) and `--flood-downloads` downloads it never reads open for
//!    `--seconds`, while B repeats phase 1.
//!
//! Printed: A's outcomes by reason, the most uploads A had in flight at once, B's calls
//! stored or refused, and B's p50/p99 upload and download times, quiet and under the flood.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use disputes_proto::documents_v1 as pb;
use disputes_proto::documents_v1::document_service_client::DocumentServiceClient;
use futures::StreamExt;
use harness::{Bearer, DocumentsClient, Stack, StackOptions};
use tokio::sync::Mutex;
use tonic_types::StatusExt;

#[derive(Debug, Parser)]
#[command(
    name = "document-fairness-bench",
    about = "another tenant's uploads and downloads while one tenant floods document-store"
)]
struct Args {
    /// Seconds of the flood (at least the 10 s rate grace, to see slow uploads cut).
    #[arg(long, default_value_t = 25)]
    seconds: u64,
    /// Tenant B's uploads (and downloads) per phase.
    #[arg(long, default_value_t = 20)]
    calls: usize,
    /// Size of tenant B's file, KiB.
    #[arg(long, default_value_t = 1024)]
    size_kib: usize,
    /// Slow uploads tenant A keeps trying to hold.
    #[arg(long, default_value_t = 32)]
    flood_uploads: usize,
    /// Unread downloads tenant A keeps trying to hold.
    #[arg(long, default_value_t = 48)]
    flood_downloads: usize,
    /// For comparison, the behaviour before per-tenant caps: each tenant may take every
    /// slot (per-tenant caps = the replica's) and no minimum upload rate.
    #[arg(long)]
    unfair: bool,
}

/// Outcomes by reason, in order of first sight.
#[derive(Default)]
struct Tally(Mutex<Vec<(String, usize)>>);

impl Tally {
    async fn add(&self, what: &str) {
        let mut counts = self.0.lock().await;
        match counts.iter_mut().find(|(name, _)| name == what) {
            Some((_, count)) => *count += 1,
            None => counts.push((what.to_owned(), 1)),
        }
    }

    async fn line(&self) -> String {
        let counts = self.0.lock().await;
        if counts.is_empty() {
            return "none".to_owned();
        }
        counts
            .iter()
            .map(|(name, count)| format!("{name} {count}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn reason(status: &tonic::Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .unwrap_or_else(|| format!("{:?}", status.code()))
}

fn pdf(size: usize) -> Vec<u8> {
    let mut bytes = b"%PDF-1.7\n".to_vec();
    bytes.resize(size.max(16), b'x');
    bytes
}

fn header_message(filename: &str) -> pb::UploadDocumentRequest {
    pb::UploadDocumentRequest {
        payload: Some(pb::upload_document_request::Payload::Header(
            pb::DocumentHeader {
                filename: filename.to_owned(),
                content_type: "application/pdf".to_owned(),
                ..Default::default()
            },
        )),
    }
}

fn chunk_message(bytes: &[u8]) -> pb::UploadDocumentRequest {
    pb::UploadDocumentRequest {
        payload: Some(pb::upload_document_request::Payload::Chunk(
            Bytes::copy_from_slice(bytes),
        )),
    }
}

async fn upload(client: &mut DocumentsClient, bytes: &[u8]) -> Result<String, tonic::Status> {
    let mut messages = vec![header_message("b.pdf")];
    messages.extend(bytes.chunks(256 * 1024).map(chunk_message));
    let response = client.upload_document(tokio_stream::iter(messages)).await?;
    Ok(response
        .into_inner()
        .document
        .map(|document| document.id)
        .unwrap_or_default())
}

async fn download(client: &mut DocumentsClient, id: &str) -> Result<usize, tonic::Status> {
    let mut stream = client
        .download_document(pb::DownloadDocumentRequest {
            id: id.to_owned(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut bytes = 0;
    while let Some(message) = stream.message().await? {
        bytes += message.chunk.len();
    }
    Ok(bytes)
}

/// A client on its own connection with 64 KiB windows: a download it does not read stops
/// the server after a few chunks.
async fn narrow_client(stack: &Stack, tenant: &str) -> anyhow::Result<DocumentsClient> {
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", stack.document_store_addr))?
            .initial_stream_window_size(Some(64 * 1024))
            .initial_connection_window_size(Some(64 * 1024))
            .connect()
            .await?;
    Ok(DocumentServiceClient::with_interceptor(
        channel,
        Bearer::new(Some(&stack.full_token(tenant)))?,
    ))
}

/// p50 and p99 of `times`, in ms.
fn percentiles(times: &mut [Duration]) -> (f64, f64) {
    if times.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    times.sort();
    let at = |q: f64| {
        let index = ((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1;
        times[index].as_secs_f64() * 1000.0
    };
    (at(0.50), at(0.99))
}

/// Tenant B's work of one phase: `calls` uploads, each downloaded back, repeated until
/// `until` if given.
struct Phase {
    uploads: Vec<Duration>,
    downloads: Vec<Duration>,
    refused: Tally,
}

async fn tenant_b(
    stack: &Stack,
    calls: usize,
    bytes: &[u8],
    until: Option<Instant>,
) -> anyhow::Result<Phase> {
    let mut client = stack.documents_of("tenant-b").await;
    let mut phase = Phase {
        uploads: Vec::new(),
        downloads: Vec::new(),
        refused: Tally::default(),
    };
    let mut done = 0;
    while done < calls || until.is_some_and(|until| Instant::now() < until) {
        done += 1;
        let started = Instant::now();
        match upload(&mut client, bytes).await {
            Ok(id) => {
                phase.uploads.push(started.elapsed());
                let started = Instant::now();
                match download(&mut client, &id).await {
                    Ok(_) => phase.downloads.push(started.elapsed()),
                    Err(status) => {
                        phase
                            .refused
                            .add(&format!("download {}", reason(&status)))
                            .await
                    }
                }
            }
            Err(status) => {
                phase
                    .refused
                    .add(&format!("upload {}", reason(&status)))
                    .await;
                // As a client honouring RetryInfo would.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    Ok(phase)
}

fn print_phase(name: &str, phase: &mut Phase, refused: &str) {
    let (up50, up99) = percentiles(&mut phase.uploads);
    let (down50, down99) = percentiles(&mut phase.downloads);
    println!(
        "| {name} | {} | {} | {refused} | {up50:.1} / {up99:.1} | {down50:.1} / {down99:.1} |",
        phase.uploads.len(),
        phase.downloads.len(),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut options = StackOptions {
        // document-store's own defaults (the stack's default raises the upload cap for tests).
        max_concurrent_uploads: 8,
        ..Default::default()
    };
    if args.unfair {
        let fairness = &mut options.document_store_resilience.fairness;
        fairness.max_uploads_per_tenant = Some(8);
        fairness.min_upload_rate_bytes_per_sec = 0;
        fairness.max_downloads_per_tenant = Some(fairness.max_concurrent_downloads);
    }
    let stack = Stack::start(options).await?;
    let result = run(&stack, &args).await;
    stack.stop().await;
    result
}

async fn run(stack: &Stack, args: &Args) -> anyhow::Result<()> {
    let bytes = pdf(args.size_kib * 1024);
    let mut quiet = tenant_b(stack, args.calls, &bytes, None).await?;

    // Tenant A's document to download, large enough that an unread download holds.
    let mut a_client = stack.documents_of("tenant-a").await;
    let a_document = upload(&mut a_client, &pdf(2 * 1024 * 1024)).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let a_outcomes = Arc::new(Tally::default());
    let mut workers = tokio::task::JoinSet::new();
    for n in 0..args.flood_uploads {
        let stop = stop.clone();
        let outcomes = a_outcomes.clone();
        let mut client = stack.documents_of("tenant-a").await;
        workers.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // A slowloris: the header, then a byte a second, forever.
                let stop = stop.clone();
                let messages = slowloris_messages(n, stop);
                match client.upload_document(messages).await {
                    Ok(_) => outcomes.add("upload stored").await,
                    Err(status) => {
                        let why = reason(&status);
                        outcomes.add(&format!("upload {why}")).await;
                        if why.ends_with("CAPACITY") {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            }
        });
    }
    let held_downloads = Arc::new(AtomicUsize::new(0));
    for _ in 0..args.flood_downloads {
        let stop = stop.clone();
        let outcomes = a_outcomes.clone();
        let held = held_downloads.clone();
        let mut client = narrow_client(stack, "tenant-a").await?;
        let id = a_document.clone();
        workers.spawn(async move {
            let mut open = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match client
                    .download_document(pb::DownloadDocumentRequest {
                        id: id.clone(),
                        ..Default::default()
                    })
                    .await
                {
                    Ok(stream) => {
                        outcomes.add("download held").await;
                        held.fetch_add(1, Ordering::Relaxed);
                        open.push(stream);
                        // One held per worker; keep it until the end.
                        while !stop.load(Ordering::Relaxed) {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                    Err(status) => {
                        outcomes.add(&format!("download {}", reason(&status))).await;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            drop(open);
        });
    }

    // A's uploads in flight: its pending rows, sampled.
    let pool = sqlx::PgPool::connect(&stack.document_db_url).await?;
    let most_in_flight = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let stop = stop.clone();
        let most = most_in_flight.clone();
        let pool = pool.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let pending: i64 = sqlx::query_scalar(
                    "select count(*) from documents where tenant_id = 'tenant-a' and state = 'pending'",
                )
                .fetch_one(&pool)
                .await
                .unwrap_or(0);
                most.fetch_max(usize::try_from(pending).unwrap_or(0), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // Let the flood take what it can, then measure B for the rest of the flood.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let flood_end =
        Instant::now() + Duration::from_secs(args.seconds).saturating_sub(Duration::from_secs(2));
    let mut flooded = tenant_b(stack, args.calls, &bytes, Some(flood_end)).await?;
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    workers.abort_all();
    while workers.join_next().await.is_some() {}
    pool.close().await;

    println!(
        "{} caps; tenant A (flood, {} s): {} slowloris upload workers, {} unread download workers",
        if args.unfair {
            "unfair (no per-tenant)"
        } else {
            "default"
        },
        args.seconds,
        args.flood_uploads,
        args.flood_downloads
    );
    println!("  outcomes: {}", a_outcomes.line().await);
    println!(
        "  most uploads in flight at once: {}; downloads held: {}",
        most_in_flight.load(Ordering::Relaxed),
        held_downloads.load(Ordering::Relaxed)
    );
    println!(
        "tenant B: uploads of {} KiB, each downloaded back ({} quiet, then for the whole flood; ms, p50 / p99)",
        args.size_kib, args.calls
    );
    println!("| phase | stored | downloaded | failed | upload p50 / p99 | download p50 / p99 |");
    println!("|---|---|---|---|---|---|");
    let quiet_refused = quiet.refused.line().await;
    print_phase("quiet", &mut quiet, &quiet_refused);
    let flooded_refused = flooded.refused.line().await;
    print_phase("tenant A flooding", &mut flooded, &flooded_refused);
    Ok(())
}

/// The messages of a slowloris upload: its header, then one byte a second until `stop`.
fn slowloris_messages(
    n: usize,
    stop: Arc<AtomicBool>,
) -> impl futures::Stream<Item = pb::UploadDocumentRequest> + Send + 'static {
    let first = futures::stream::once(async move { header_message(&format!("slow-{n}.pdf")) });
    let pdf = b"%PDF-1.7\n".to_vec();
    let rest = futures::stream::unfold(0usize, move |sent| {
        let stop = stop.clone();
        let byte = pdf.get(sent).copied().unwrap_or(b'x');
        async move {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            Some((chunk_message(&[byte]), sent + 1))
        }
    });
    first.chain(rest)
}
