//! upload-bench: how fast and in how much memory document-store takes large uploads
//! (issue #2).
//!
//! For each size it uploads the same deterministic bytes twice per run against one s3s-fs
//! server running in this process:
//! - directly with aws-sdk-s3 (multipart, same part size and parts in flight as
//!   document-store), the baseline;
//! - through a fresh `document-store` child process over gRPC, reading the child's peak
//!   RSS (`VmHWM`) once the upload is done.
//!
//! Throughput is the median of `--runs`; peak RSS the maximum.
//!
//! With `--load` (issue 10 §2) it measures memory under hostile load instead: one
//! document-store child at its default settings takes one 8 MiB + 1 B upload sent as 1-byte
//! chunks and, while that runs, 64 concurrent 24 MiB uploads on 64 connections; it prints the
//! child's peak RSS (`VmHWM`) and how many uploads were stored, shed with
//! RESOURCE_EXHAUSTED, or failed otherwise.
//!
//! Everything it creates (child processes, the database, the S3 folder) is removed at the
//! end, on errors too.

mod child;
mod content;
mod load;
mod measure;
mod report;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, ensure};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use clap::Parser;
use disputes_proto::documents_v1 as pb;
use document_store::store::s3::ChecksumMode;
use futures::{StreamExt, TryStreamExt, stream};
use harness::S3Server;
use harness::otlp_sink::OtlpSink;
use harness::process::Observability;
use secrecy::SecretString;

use crate::child::{ChildService, tail};
use crate::content::Content;
use crate::measure::{child_cpu_seconds, median_kib, own_cpu_seconds, proc_status_kib, sample_rss};
use crate::report::{print_load_report, print_report};

const MIB: u64 = 1024 * 1024;
/// Bytes per gRPC chunk message, and the unit the content is generated in.
const CHUNK: usize = 1024 * 1024;
const BUCKET: &str = "upload-bench";
const TENANT: &str = "bench";
const JWT_SECRET: &str = "upload-bench-jwt-secret-0123456789abcdef";

#[derive(Debug, Parser)]
#[command(
    name = "upload-bench",
    about = "Upload throughput and peak RSS of document-store against a direct aws-sdk-s3 multipart upload"
)]
struct Args {
    /// File sizes to upload, in MiB.
    #[arg(long, value_delimiter = ',', default_value = "64,1024")]
    sizes_mib: Vec<u64>,
    /// Runs per size; throughput is the median, peak RSS the maximum.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// aws-sdk-s3 request checksums, for document-store and the direct baseline alike.
    #[arg(long, value_enum, default_value = "when-required")]
    checksum_mode: ChecksumMode,
    /// Multipart part size in MiB (document-store's default is 8).
    #[arg(long, default_value_t = 8)]
    part_size_mib: u64,
    /// Parts uploaded concurrently (document-store's default is 2).
    #[arg(long, default_value_t = 2)]
    parts_in_flight: usize,
    /// The document-store binary; defaults to the one next to this program.
    #[arg(long)]
    document_store_bin: Option<PathBuf>,
    /// Extra environment for the document-store child only, e.g.
    /// `--child-env MALLOC_ARENA_MAX=2` (repeatable).
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_env_pair)]
    child_env: Vec<(String, String)>,
    /// How document-store's observability runs: deployed (default log filter, access log,
    /// OTLP export to a sink in this process), off (RUST_LOG=warn, no export) or both (each
    /// run uploads through both; the load run uses the first).
    #[arg(long, default_value = "both")]
    observability: String,
    /// Where the temporary S3 folder goes (needs about twice the largest size free).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    work_dir: PathBuf,
    /// Measure memory under load instead of throughput: `--load-uploads` concurrent uploads
    /// of `--load-size-mib` plus one `--one-byte-chunks-bytes` upload in 1-byte chunks, all
    /// against one document-store at its default settings.
    #[arg(long)]
    load: bool,
    #[arg(long, default_value_t = 64)]
    load_uploads: usize,
    #[arg(long, default_value_t = 24)]
    load_size_mib: u64,
    #[arg(long, default_value_t = 8 * 1024 * 1024 + 1)]
    one_byte_chunks_bytes: u64,
    /// How often a shed upload of the load run retries after the server's RetryInfo delay
    /// (0: shed uploads are only counted).
    #[arg(long, default_value_t = 0)]
    load_retries: u32,
}

impl Args {
    fn modes(&self) -> anyhow::Result<Vec<Observability>> {
        Observability::parse_modes(&self.observability)
    }
}

/// Figures of one size: the direct uploads and those through document-store in each
/// observability mode.
pub struct SizeResult {
    size_mib: u64,
    direct: Vec<Sample>,
    through: Vec<(Observability, Vec<Sample>)>,
}

/// Figures of one upload.
#[derive(Debug, Clone, Copy)]
struct Sample {
    seconds: f64,
    /// CPU seconds the document-store child used during the upload (none for direct).
    child_cpu: Option<f64>,
    /// CPU seconds this process (client and S3 server) used during the upload.
    bench_cpu: f64,
    /// document-store's VmHWM after the upload, and its VmRSS once ready, in KiB.
    peak_rss_kib: Option<u64>,
    idle_rss_kib: Option<u64>,
    /// Median of document-store's VmRSS sampled every 50 ms during the upload, in KiB: the
    /// steady state, where VmHWM is the single worst moment.
    median_rss_kib: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.modes()?;
    ensure!(args.runs >= 1, "--runs must be at least 1");
    ensure!(
        args.part_size_mib >= 5,
        "--part-size-mib must be at least 5 (S3's minimum)"
    );
    ensure!(
        args.parts_in_flight >= 1,
        "--parts-in-flight must be at least 1"
    );
    ensure!(
        !args.sizes_mib.is_empty() && args.sizes_mib.iter().all(|&s| s >= 1),
        "--sizes-mib needs sizes of at least 1 MiB"
    );
    let binary = match &args.document_store_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .context("locate this program")?
            .with_file_name("document-store"),
    };
    ensure!(
        binary.is_file(),
        "no document-store binary at {} (build it with `cargo build --release -p document-store`, or pass --document-store-bin)",
        binary.display()
    );

    let bench = Bench::set_up(&args, binary).await?;
    if args.load {
        let result = tokio::select! {
            result = bench.run_load(&args) => result,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        };
        bench.tear_down().await;
        print_load_report(&args, &result?);
        return Ok(());
    }
    // Ctrl-C drops the running measurement (its child is killed on drop), then cleans up.
    let result = tokio::select! {
        result = bench.run_all(&args) => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    let spans = (bench.sink.spans(), bench.sink.trace_exports());
    bench.tear_down().await;
    let results = result?;
    print_report(&args, &results, spans);
    Ok(())
}

/// What every measurement shares: the S3 server, its folder and the database.
struct Bench {
    work: tempfile::TempDir,
    s3: S3Server,
    s3_client: aws_sdk_s3::Client,
    admin_url: String,
    database: String,
    database_url: String,
    binary: PathBuf,
    token: String,
    /// Where the deployed document-store exports its spans and metrics.
    sink: OtlpSink,
}

impl Bench {
    async fn set_up(args: &Args, binary: PathBuf) -> anyhow::Result<Bench> {
        std::fs::create_dir_all(&args.work_dir)
            .with_context(|| format!("create {}", args.work_dir.display()))?;
        let work = tempfile::Builder::new()
            .prefix("upload-bench-")
            .tempdir_in(&args.work_dir)
            .with_context(|| format!("make a folder in {}", args.work_dir.display()))?;
        check_free_space(
            work.path(),
            args.sizes_mib.iter().copied().max().unwrap_or(0),
        );

        let s3 = S3Server::start(&work.path().join("s3"), "127.0.0.1:0".parse()?).await?;
        let s3_client = s3.client(args.checksum_mode);
        s3_client
            .create_bucket()
            .bucket(BUCKET)
            .send()
            .await
            .context("create bucket")?;

        let token = service_kit::auth::mint_token(
            &SecretString::from(JWT_SECRET),
            "upload-bench",
            TENANT,
            &["documents:write", "documents:read"],
            harness::chrono::Duration::hours(24),
        )
        .context("mint token")?;

        // Last step: nothing after it can fail, so the database is always dropped.
        let admin_url = harness::admin_database_url();
        let database = format!("upload_bench_{}", uuid::Uuid::new_v4().simple());
        let sink = OtlpSink::start().await?;
        let database_url = harness::ensure_database(&admin_url, &database).await?;
        Ok(Bench {
            sink,
            work,
            s3,
            s3_client,
            admin_url,
            database,
            database_url,
            binary,
            token,
        })
    }

    async fn tear_down(self) {
        self.s3.stop().await;
        if let Err(error) = harness::drop_database(&self.admin_url, &self.database).await {
            eprintln!(
                "warning: could not drop database {}: {error:#}",
                self.database
            );
        }
        let path = self.work.path().to_owned();
        if let Err(error) = self.work.close() {
            eprintln!("warning: could not remove {}: {error}", path.display());
        }
    }

    /// Every size, `runs` times each way (direct, then document-store in each observability
    /// mode).
    async fn run_all(&self, args: &Args) -> anyhow::Result<Vec<SizeResult>> {
        let modes = args.modes()?;
        let mut results = Vec::new();
        for &size_mib in &args.sizes_mib {
            let content = Content::new(size_mib);
            let mut direct = Vec::new();
            let mut through: Vec<(Observability, Vec<Sample>)> =
                modes.iter().map(|&m| (m, Vec::new())).collect();
            for run in 1..=args.runs {
                // Alternate which goes first, so neither always gets the warmer page cache.
                let mut turns: Vec<Option<Observability>> =
                    modes.iter().copied().map(Some).collect();
                turns.insert(0, None);
                if run % 2 == 0 {
                    turns.reverse();
                }
                for turn in turns {
                    let sample = match turn {
                        None => self.upload_direct(args, &content).await?,
                        Some(mode) => {
                            self.upload_through_document_store(args, &content, run, mode)
                                .await?
                        }
                    };
                    self.delete_all_objects().await?;
                    let way = match turn {
                        None => "direct".to_owned(),
                        Some(mode) => format!("document-store (observability {})", mode.name()),
                    };
                    let mibs = size_mib as f64 / sample.seconds;
                    let rss = match (sample.peak_rss_kib, sample.median_rss_kib) {
                        (Some(peak), Some(p50)) => format!(
                            ", VmHWM {:.1} MiB, RSS p50 {:.1} MiB",
                            peak as f64 / 1024.0,
                            p50 as f64 / 1024.0
                        ),
                        _ => String::new(),
                    };
                    eprintln!(
                        "{size_mib} MiB run {run}/{} {way}: {mibs:.0} MiB/s{rss}",
                        args.runs
                    );
                    match turn {
                        None => direct.push(sample),
                        Some(mode) => {
                            if let Some((_, samples)) = through.iter_mut().find(|(m, _)| *m == mode)
                            {
                                samples.push(sample);
                            }
                        }
                    }
                }
            }
            results.push(SizeResult {
                size_mib,
                direct,
                through,
            });
        }
        Ok(results)
    }

    /// The baseline: the same bytes straight to S3, parts made on the fly, the same number
    /// of parts in flight as document-store.
    async fn upload_direct(&self, args: &Args, content: &Content) -> anyhow::Result<Sample> {
        let client = &self.s3_client;
        let key = format!("direct/{}", uuid::Uuid::new_v4());
        let part_mib = args.part_size_mib;
        let parts = content.size_mib.div_ceil(part_mib);
        let cpu_before = own_cpu_seconds()?;
        let started = Instant::now();
        let upload_id = client
            .create_multipart_upload()
            .bucket(BUCKET)
            .key(&key)
            .send()
            .await
            .context("create multipart upload")?
            .upload_id
            .context("no upload id")?;
        let uploaded: anyhow::Result<Vec<CompletedPart>> = stream::iter(0..parts)
            .map(|index| {
                let body = content.part(index * part_mib, part_mib);
                let part_number = i32::try_from(index + 1).context("too many parts");
                let (key, upload_id) = (&key, &upload_id);
                async move {
                    let part_number = part_number?;
                    let output = client
                        .upload_part()
                        .bucket(BUCKET)
                        .key(key)
                        .upload_id(upload_id)
                        .part_number(part_number)
                        .content_length(body.len() as i64)
                        .body(ByteStream::from(body))
                        .send()
                        .await
                        .with_context(|| format!("upload part {part_number}"))?;
                    Ok(CompletedPart::builder()
                        .part_number(part_number)
                        .set_e_tag(output.e_tag)
                        .set_checksum_crc32(output.checksum_crc32)
                        .build())
                }
            })
            .buffer_unordered(args.parts_in_flight)
            .try_collect()
            .await;
        let mut parts = match uploaded {
            Ok(parts) => parts,
            Err(error) => {
                let _ = client
                    .abort_multipart_upload()
                    .bucket(BUCKET)
                    .key(&key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                return Err(error);
            }
        };
        parts.sort_by_key(|p| p.part_number);
        client
            .complete_multipart_upload()
            .bucket(BUCKET)
            .key(&key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .context("complete multipart upload")?;
        let seconds = started.elapsed().as_secs_f64();
        Ok(Sample {
            seconds,
            child_cpu: None,
            bench_cpu: own_cpu_seconds()? - cpu_before,
            peak_rss_kib: None,
            idle_rss_kib: None,
            median_rss_kib: None,
        })
    }

    /// One upload through a fresh document-store child, so its VmHWM is this upload's.
    async fn upload_through_document_store(
        &self,
        args: &Args,
        content: &Content,
        run: usize,
        mode: Observability,
    ) -> anyhow::Result<Sample> {
        let log = self.work.path().join(format!(
            "document-store-{}mib-{run}-{}.log",
            content.size_mib,
            mode.name()
        ));
        let child = ChildService::start(self, args, Some(content.size_mib), mode, &log).await?;
        let measured = self.upload_grpc(child.addr, content, child.pid).await;
        let result = match measured {
            Ok(mut sample) => {
                // Read the peak before the child goes away.
                sample.peak_rss_kib = Some(proc_status_kib(child.pid, "VmHWM")?);
                sample.idle_rss_kib = Some(child.idle_rss_kib);
                Ok(sample)
            }
            Err(error) => Err(error.context(format!("see {}", tail(&log)))),
        };
        child.stop().await;
        result
    }

    async fn upload_grpc(
        &self,
        addr: SocketAddr,
        content: &Content,
        pid: u32,
    ) -> anyhow::Result<Sample> {
        let mut client = harness::documents_client(addr, Some(&self.token))
            .await
            .context("connect to document-store")?;

        let header = pb::UploadDocumentRequest {
            payload: Some(pb::upload_document_request::Payload::Header(
                pb::DocumentHeader {
                    filename: format!("bench-{}mib.pdf", content.size_mib),
                    content_type: "application/pdf".to_owned(),
                    ..Default::default()
                },
            )),
        };
        // Chunks are made as tonic asks for them: the file is never whole in memory.
        let generator = content.clone();
        let messages =
            stream::iter([header]).chain(stream::iter(0..content.size_mib).map(move |index| {
                pb::UploadDocumentRequest {
                    payload: Some(pb::upload_document_request::Payload::Chunk(
                        generator.chunk(index),
                    )),
                }
            }));

        let child_before = child_cpu_seconds(pid)?;
        let cpu_before = own_cpu_seconds()?;
        let sampling = tokio_util::sync::CancellationToken::new();
        let sampler = tokio::spawn(sample_rss(pid, sampling.clone()));
        let started = Instant::now();
        let response = client.upload_document(messages).await;
        let seconds = started.elapsed().as_secs_f64();
        sampling.cancel();
        let response = response.context("UploadDocument")?;
        let child_cpu = child_cpu_seconds(pid)? - child_before;
        let bench_cpu = own_cpu_seconds()? - cpu_before;
        let rss_samples = sampler.await.context("RSS sampler")?;

        let document = response
            .into_inner()
            .document
            .context("no document in the response")?;
        ensure!(
            document.size_bytes == (content.size_mib * MIB) as i64,
            "document-store stored {} bytes, expected {}",
            document.size_bytes,
            content.size_mib * MIB
        );
        Ok(Sample {
            seconds,
            child_cpu: Some(child_cpu),
            bench_cpu,
            peak_rss_kib: None,
            idle_rss_kib: None,
            median_rss_kib: median_kib(rss_samples),
        })
    }

    /// Keeps the disk use to one file at a time.
    async fn delete_all_objects(&self) -> anyhow::Result<()> {
        let listed = self
            .s3_client
            .list_objects_v2()
            .bucket(BUCKET)
            .send()
            .await
            .context("list objects")?;
        for object in listed.contents() {
            if let Some(key) = object.key() {
                self.s3_client
                    .delete_object()
                    .bucket(BUCKET)
                    .key(key)
                    .send()
                    .await
                    .with_context(|| format!("delete {key}"))?;
            }
        }
        Ok(())
    }
}

fn parse_env_pair(pair: &str) -> Result<(String, String), String> {
    match pair.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {pair:?}")),
    }
}

/// Warns (does not fail) when the work folder looks too small: a file can be on disk twice
/// while s3s-fs joins its parts.
fn check_free_space(dir: &Path, largest_mib: u64) {
    let free_kib = std::process::Command::new("df")
        .arg("-Pk")
        .arg(dir)
        .output()
        .ok()
        .and_then(|out| {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.lines()
                .nth(1)?
                .split_whitespace()
                .nth(3)?
                .parse::<u64>()
                .ok()
        });
    match free_kib {
        Some(free) if free < largest_mib * 1024 * 5 / 2 => eprintln!(
            "warning: {} has {} MiB free; a {largest_mib} MiB run needs about {} MiB",
            dir.display(),
            free / 1024,
            largest_mib * 5 / 2
        ),
        Some(_) => {}
        None => eprintln!("warning: could not check free space in {}", dir.display()),
    }
}
