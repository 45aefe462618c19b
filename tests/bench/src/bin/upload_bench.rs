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

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use clap::{Parser, ValueEnum};
use disputes_proto::documents_v1 as pb;
use document_store::store::s3::ChecksumMode;
use futures::{StreamExt, TryStreamExt, stream};
use harness::S3Server;
use harness::process::{Service, ServiceCommand};
use secrecy::SecretString;

const MIB: u64 = 1024 * 1024;
/// Bytes per gRPC chunk message, and the unit the content is generated in.
const CHUNK: usize = 1024 * 1024;
const BUCKET: &str = "upload-bench";
const TENANT: &str = "bench";
const JWT_SECRET: &str = "upload-bench-jwt-secret-0123456789abcdef";
/// The kernel reports process CPU times in USER_HZ ticks, 100 per second on Linux.
const TICKS_PER_SECOND: f64 = 100.0;

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
    bench.tear_down().await;
    let results = result?;
    print_report(&args, &results);
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
        let database_url = harness::ensure_database(&admin_url, &database).await?;
        Ok(Bench {
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

    /// Every size, `runs` times each way; returns (size, direct samples, document-store samples).
    async fn run_all(&self, args: &Args) -> anyhow::Result<Vec<(u64, Vec<Sample>, Vec<Sample>)>> {
        let mut results = Vec::new();
        for &size_mib in &args.sizes_mib {
            let content = Content::new(size_mib);
            let mut direct = Vec::new();
            let mut through = Vec::new();
            for run in 1..=args.runs {
                // Alternate which goes first, so neither always gets the warmer page cache.
                let direct_first = run % 2 == 1;
                for direct_turn in [direct_first, !direct_first] {
                    let sample = if direct_turn {
                        self.upload_direct(args, &content).await?
                    } else {
                        self.upload_through_document_store(args, &content, run)
                            .await?
                    };
                    self.delete_all_objects().await?;
                    let way = if direct_turn {
                        "direct"
                    } else {
                        "document-store"
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
                    if direct_turn {
                        direct.push(sample);
                    } else {
                        through.push(sample);
                    }
                }
            }
            results.push((size_mib, direct, through));
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
    ) -> anyhow::Result<Sample> {
        let log = self
            .work
            .path()
            .join(format!("document-store-{}mib-{run}.log", content.size_mib));
        let child = ChildService::start(self, args, Some(content.size_mib), &log).await?;
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

/// A document-store child process; killed when dropped, so errors and Ctrl-C leave none.
struct ChildService {
    process: tokio::process::Child,
    pid: u32,
    addr: SocketAddr,
    idle_rss_kib: u64,
}

impl ChildService {
    async fn start(
        bench: &Bench,
        args: &Args,
        // `None`: document-store's default upload settings.
        size_mib: Option<u64>,
        log: &Path,
    ) -> anyhow::Result<ChildService> {
        // The child binds the port itself; a just-freed port is a small, acceptable race.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let log_file = std::fs::File::create(log).context("create child log")?;
        let checksum_mode = args
            .checksum_mode
            .to_possible_value()
            .context("checksum mode name")?;
        let mut service = ServiceCommand::binary(Service::DocumentStore, &bench.binary);
        if let Some(size_mib) = size_mib {
            service = service
                .env(
                    "DOCUMENT_STORE_MAX_UPLOAD_BYTES",
                    ((size_mib + 1) * MIB).to_string(),
                )
                .env(
                    "DOCUMENT_STORE_PART_SIZE_BYTES",
                    (args.part_size_mib * MIB).to_string(),
                )
                .env(
                    "DOCUMENT_STORE_MAX_PARTS_IN_FLIGHT",
                    args.parts_in_flight.to_string(),
                );
        }
        let process = service
            .listen_addr(addr)
            .database_url(&bench.database_url)
            .s3(&bench.s3.endpoint, BUCKET)
            .env("DOCUMENT_STORE_S3_CHECKSUM_MODE", checksum_mode.get_name())
            .jwt_secret(JWT_SECRET)
            .envs(args.child_env.iter().cloned())
            .command()?
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {}", bench.binary.display()))?;
        let pid = process.id().context("child has no pid")?;
        let mut child = ChildService {
            process,
            pid,
            addr,
            idle_rss_kib: 0,
        };

        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.process.try_wait()? {
                bail!(
                    "document-store exited at start-up ({status}); see {}",
                    tail(log)
                );
            }
            if harness::tonic_health_client::health_check(addr)
                .await
                .unwrap_or(false)
            {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "document-store not serving after 30 s; see {}",
                tail(log)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        child.idle_rss_kib = proc_status_kib(pid, "VmRSS")?;
        Ok(child)
    }

    async fn stop(mut self) {
        let _ = self.process.kill().await;
    }
}

/// The file's bytes, made on demand from a fixed 1 MiB pseudo-random block with the chunk
/// index stamped in, so chunks differ and nothing expensive runs on the client path.
#[derive(Clone)]
struct Content {
    size_mib: u64,
    block: Bytes,
}

impl Content {
    fn new(size_mib: u64) -> Content {
        let mut block = Vec::with_capacity(CHUNK);
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        while block.len() < CHUNK {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            block.extend_from_slice(&state.to_le_bytes());
        }
        Content {
            size_mib,
            block: Bytes::from(block),
        }
    }

    /// Chunk `index` (1 MiB); chunk 0 starts with a PDF signature so document-store accepts it.
    fn chunk(&self, index: u64) -> Bytes {
        let mut chunk = BytesMut::from(&self.block[..]);
        chunk[16..24].copy_from_slice(&index.to_le_bytes());
        if index == 0 {
            chunk[..9].copy_from_slice(b"%PDF-1.7\n");
        }
        chunk.freeze()
    }

    /// `count` chunks from `first` on, as one multipart part (short at the end of the file).
    fn part(&self, first: u64, count: u64) -> Bytes {
        let last = (first + count).min(self.size_mib);
        let mut part = BytesMut::with_capacity(((last - first) * MIB) as usize);
        for index in first..last {
            part.extend_from_slice(&self.chunk(index));
        }
        part.freeze()
    }
}

/// VmRSS of `pid` every 50 ms until `stop`.
async fn sample_rss(pid: u32, stop: tokio_util::sync::CancellationToken) -> Vec<u64> {
    let mut samples = Vec::new();
    let mut every = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return samples,
            _ = every.tick() => {
                if let Ok(kib) = proc_status_kib(pid, "VmRSS") {
                    samples.push(kib);
                }
            }
        }
    }
}

fn median_kib(mut samples: Vec<u64>) -> Option<u64> {
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied()
}

fn parse_env_pair(pair: &str) -> Result<(String, String), String> {
    match pair.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {pair:?}")),
    }
}

/// A `kB` line of `/proc/<pid>/status`, in KiB.
fn proc_status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    line.trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("parse {field}: {line}"))
}

/// User plus system CPU seconds of a process, all threads.
fn child_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    cpu_seconds(&format!("/proc/{pid}/stat"))
}

fn own_cpu_seconds() -> anyhow::Result<f64> {
    cpu_seconds("/proc/self/stat")
}

fn cpu_seconds(path: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(path).with_context(|| format!("read {path}"))?;
    // The command name may contain spaces; the fields after it are fixed (utime is the
    // 14th field of the line, the 12th after the name).
    let after_name = stat
        .rsplit_once(')')
        .with_context(|| format!("parse {path}"))?
        .1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .with_context(|| format!("parse {path}"))?
            .parse::<u64>()? as f64)
    };
    Ok((ticks(11)? + ticks(12)?) / TICKS_PER_SECOND)
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

/// The last lines of a child's log, for error messages.
fn tail(log: &Path) -> String {
    match std::fs::read_to_string(log) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(10);
            format!(
                "the end of {}:\n{}",
                log.display(),
                lines[start..].join("\n")
            )
        }
        Err(_) => format!("{} (unreadable)", log.display()),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn print_report(args: &Args, results: &[(u64, Vec<Sample>, Vec<Sample>)]) {
    let checksum_mode = args
        .checksum_mode
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default();
    let mib_per_s = |size_mib: u64, samples: &[Sample]| {
        median(
            samples
                .iter()
                .map(|s| size_mib as f64 / s.seconds)
                .collect(),
        )
    };
    let kib_to_mib = |kib: Option<u64>| kib.unwrap_or(0) as f64 / 1024.0;

    println!();
    println!(
        "upload-bench: part size {} MiB, {} parts in flight, checksum mode {checksum_mode}, {} run(s) per size",
        args.part_size_mib, args.parts_in_flight, args.runs
    );
    println!(
        "throughput, CPU and RSS p50 are medians of the runs; VmHWM is the largest of the runs"
    );
    println!(
        "{:>9} {:>13} {:>13} {:>6} {:>11} {:>11} {:>11} {:>12} {:>16}",
        "size",
        "docstore",
        "direct",
        "ratio",
        "VmHWM",
        "RSS p50",
        "idle RSS",
        "docstore CPU",
        "bench CPU ds/dir"
    );
    let mut headline_ratio = None;
    let mut peaks = Vec::new();
    for (size_mib, direct, through) in results {
        let through_mibs = mib_per_s(*size_mib, through);
        let direct_mibs = mib_per_s(*size_mib, direct);
        let ratio = through_mibs / direct_mibs;
        let peak_mib = kib_to_mib(through.iter().filter_map(|s| s.peak_rss_kib).max());
        let steady_mib = median(
            through
                .iter()
                .map(|s| kib_to_mib(s.median_rss_kib))
                .collect(),
        );
        let idle_mib = kib_to_mib(through.iter().filter_map(|s| s.idle_rss_kib).max());
        // Cores busy during the upload: 1.0 is one core flat out.
        let child_cores = median(
            through
                .iter()
                .filter_map(|s| s.child_cpu.map(|c| c / s.seconds))
                .collect(),
        );
        let bench_cores = median(through.iter().map(|s| s.bench_cpu / s.seconds).collect());
        let direct_cores = median(direct.iter().map(|s| s.bench_cpu / s.seconds).collect());
        println!(
            "{size_mib:>5} MiB {through_mibs:>7.0} MiB/s {direct_mibs:>7.0} MiB/s {ratio:>6.2} {peak_mib:>7.1} MiB {steady_mib:>7.1} MiB {idle_mib:>7.1} MiB {child_cores:>6.2} cores {bench_cores:>5.2}/{direct_cores:.2} cores",
        );
        if *size_mib == 1024 {
            headline_ratio = Some(ratio);
        }
        peaks.push((*size_mib, peak_mib));
    }
    println!(
        "(bench CPU = this process, i.e. client + s3s-fs server, during the document-store / the direct upload)"
    );
    println!();
    match headline_ratio {
        Some(ratio) => println!("ratio_1gib={ratio:.2} (goal >= 0.60)"),
        None => println!("ratio_1gib=n/a (1024 MiB not among --sizes-mib)"),
    }
    let peak_line: Vec<String> = peaks
        .iter()
        .map(|(size, peak)| {
            let name = if size % 1024 == 0 {
                format!("{}gib", size / 1024)
            } else {
                format!("{size}mib")
            };
            format!("peak_rss_{name}={peak:.1}MiB")
        })
        .collect();
    println!("{}", peak_line.join(" "));
}

/// What became of one upload of the load run.
#[derive(Debug)]
enum Outcome {
    Stored {
        attempts: u32,
    },
    /// Refused with RESOURCE_EXHAUSTED on every attempt.
    Shed,
    Failed(String),
}

/// Figures of the load run.
struct LoadReport {
    outcomes: Vec<Outcome>,
    /// Shed answers seen over all attempts, and whether each carried a RetryInfo.
    shed_answers: usize,
    shed_without_retry_info: usize,
    one_byte: Result<f64, String>,
    seconds: f64,
    peak_rss_kib: u64,
    idle_rss_kib: u64,
    median_rss_kib: Option<u64>,
}

impl Bench {
    /// The load run against one document-store child at default settings.
    async fn run_load(&self, args: &Args) -> anyhow::Result<LoadReport> {
        let log = self.work.path().join("document-store-load.log");
        let child = ChildService::start(self, args, None, &log).await?;
        let measured = self.load(args, child.addr, child.pid).await;
        let result = match measured {
            Ok(mut report) => {
                report.peak_rss_kib = proc_status_kib(child.pid, "VmHWM")?;
                report.idle_rss_kib = child.idle_rss_kib;
                Ok(report)
            }
            Err(error) => Err(error.context(format!("see {}", tail(&log)))),
        };
        child.stop().await;
        result
    }

    async fn load(&self, args: &Args, addr: SocketAddr, pid: u32) -> anyhow::Result<LoadReport> {
        let sampling = tokio_util::sync::CancellationToken::new();
        let sampler = tokio::spawn(sample_rss(pid, sampling.clone()));
        let started = Instant::now();

        // The 1-byte-chunk upload goes first and holds a slot before the flood arrives.
        let one_byte = tokio::spawn(one_byte_chunk_upload(
            addr,
            self.token.clone(),
            args.one_byte_chunks_bytes,
        ));
        let pool = sqlx::PgPool::connect(&self.database_url).await?;
        let admitted = Instant::now() + Duration::from_secs(30);
        loop {
            let pending: i64 =
                sqlx::query_scalar("select count(*) from documents where state = 'pending'")
                    .fetch_one(&pool)
                    .await?;
            if pending > 0 || one_byte.is_finished() {
                break;
            }
            ensure!(
                Instant::now() < admitted,
                "the 1-byte upload was not admitted in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        pool.close().await;

        // One connection per upload, all connected before any starts, so they arrive at once.
        let mut clients = Vec::with_capacity(args.load_uploads);
        for _ in 0..args.load_uploads {
            clients.push(harness::documents_client(addr, Some(&self.token)).await?);
        }
        let content = Content::new(args.load_size_mib);
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(args.load_uploads));
        let mut uploads = tokio::task::JoinSet::new();
        for (index, client) in clients.into_iter().enumerate() {
            let content = content.clone();
            let start = start.clone();
            let retries = args.load_retries;
            uploads.spawn(async move {
                start.wait().await;
                load_upload(client, index, &content, retries).await
            });
        }
        let mut outcomes = Vec::new();
        let mut shed_answers = 0;
        let mut shed_without_retry_info = 0;
        while let Some(joined) = uploads.join_next().await {
            let (outcome, shed, without_retry_info) = joined.context("upload task")?;
            shed_answers += shed;
            shed_without_retry_info += without_retry_info;
            outcomes.push(outcome);
        }
        let one_byte = one_byte
            .await
            .context("1-byte upload task")?
            .map_err(|e| format!("{e:#}"));
        let seconds = started.elapsed().as_secs_f64();
        sampling.cancel();
        let rss_samples = sampler.await.context("RSS sampler")?;
        self.delete_all_objects().await?;
        Ok(LoadReport {
            outcomes,
            shed_answers,
            shed_without_retry_info,
            one_byte,
            seconds,
            peak_rss_kib: 0,
            idle_rss_kib: 0,
            median_rss_kib: median_kib(rss_samples),
        })
    }
}

/// One upload of the load run, retried up to `retries` times after a shed answer's
/// RetryInfo delay. Returns the outcome, the shed answers and those without RetryInfo.
async fn load_upload(
    mut client: harness::DocumentsClient,
    index: usize,
    content: &Content,
    retries: u32,
) -> (Outcome, usize, usize) {
    use tonic_types::StatusExt;

    let mut shed = 0;
    let mut without_retry_info = 0;
    for attempt in 1..=retries + 1 {
        let header = pb::UploadDocumentRequest {
            payload: Some(pb::upload_document_request::Payload::Header(
                pb::DocumentHeader {
                    filename: format!("load-{index}.pdf"),
                    content_type: "application/pdf".to_owned(),
                    expected_size_bytes: content.size_mib * MIB,
                    ..Default::default()
                },
            )),
        };
        let generator = content.clone();
        let messages =
            stream::iter([header]).chain(stream::iter(0..content.size_mib).map(move |i| {
                pb::UploadDocumentRequest {
                    payload: Some(pb::upload_document_request::Payload::Chunk(
                        generator.chunk(i),
                    )),
                }
            }));
        match client.upload_document(messages).await {
            Ok(response) => {
                let stored = response
                    .into_inner()
                    .document
                    .map(|d| d.size_bytes)
                    .unwrap_or_default();
                let outcome = if stored == (content.size_mib * MIB) as i64 {
                    Outcome::Stored { attempts: attempt }
                } else {
                    Outcome::Failed(format!("stored {stored} bytes"))
                };
                return (outcome, shed, without_retry_info);
            }
            Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                shed += 1;
                let delay = status
                    .get_error_details()
                    .retry_info()
                    .and_then(|r| r.retry_delay);
                if delay.is_none() {
                    without_retry_info += 1;
                }
                if attempt <= retries {
                    tokio::time::sleep(delay.unwrap_or(Duration::from_secs(1))).await;
                }
            }
            Err(status) => {
                return (
                    Outcome::Failed(format!("{:?}: {}", status.code(), status.message())),
                    shed,
                    without_retry_info,
                );
            }
        }
    }
    (Outcome::Shed, shed, without_retry_info)
}

/// A PDF of `size` bytes sent as `size` 1-byte chunks, its size and SHA-256 declared;
/// returns the seconds it took.
async fn one_byte_chunk_upload(addr: SocketAddr, token: String, size: u64) -> anyhow::Result<f64> {
    use sha2::Digest;

    let byte_at = |i: u64| -> u8 {
        const SIGNATURE: &[u8] = b"%PDF-1.7\n";
        match SIGNATURE.get(i as usize) {
            Some(b) => *b,
            None => (i.wrapping_mul(2_654_435_761) >> 13) as u8,
        }
    };
    let mut hasher = sha2::Sha256::new();
    for i in 0..size {
        hasher.update([byte_at(i)]);
    }
    let sha256 = hex::encode(hasher.finalize());
    let mut client = harness::documents_client(addr, Some(&token)).await?;
    let header = pb::UploadDocumentRequest {
        payload: Some(pb::upload_document_request::Payload::Header(
            pb::DocumentHeader {
                filename: "one-byte-chunks.pdf".to_owned(),
                content_type: "application/pdf".to_owned(),
                expected_size_bytes: size,
                expected_sha256: sha256.clone(),
                ..Default::default()
            },
        )),
    };
    let messages = stream::iter([header]).chain(stream::iter(0..size).map(move |i| {
        pb::UploadDocumentRequest {
            payload: Some(pb::upload_document_request::Payload::Chunk(
                Bytes::copy_from_slice(&[byte_at(i)]),
            )),
        }
    }));
    let started = Instant::now();
    let document = client
        .upload_document(messages)
        .await
        .context("UploadDocument in 1-byte chunks")?
        .into_inner()
        .document
        .context("no document in the response")?;
    ensure!(
        document.size_bytes == size as i64 && document.sha256 == sha256,
        "stored {} bytes with sha256 {}, expected {size} and {sha256}",
        document.size_bytes,
        document.sha256
    );
    Ok(started.elapsed().as_secs_f64())
}

fn print_load_report(args: &Args, report: &LoadReport) {
    let stored: Vec<u32> = report
        .outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Stored { attempts } => Some(*attempts),
            _ => None,
        })
        .collect();
    let shed = report
        .outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Shed))
        .count();
    let failed: Vec<&String> = report
        .outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Failed(why) => Some(why),
            _ => None,
        })
        .collect();
    let kib_to_mib = |kib: u64| kib as f64 / 1024.0;
    println!();
    println!(
        "upload-bench --load: document-store at default settings; {} concurrent {} MiB uploads (one connection each, {} retr{} after RetryInfo) while one {} B upload is sent in 1-byte chunks",
        args.load_uploads,
        args.load_size_mib,
        args.load_retries,
        if args.load_retries == 1 { "y" } else { "ies" },
        args.one_byte_chunks_bytes
    );
    println!(
        "stored={} shed={} failed={} shed_answers={} shed_without_retry_info={}",
        stored.len(),
        shed,
        failed.len(),
        report.shed_answers,
        report.shed_without_retry_info
    );
    if let Some(max_attempts) = stored.iter().max() {
        println!("most attempts for a stored upload: {max_attempts}");
    }
    for why in failed.iter().take(5) {
        println!("failed: {why}");
    }
    match &report.one_byte {
        Ok(seconds) => println!(
            "one_byte_chunks=stored ({} B, size and sha256 verified) in {seconds:.1} s",
            args.one_byte_chunks_bytes
        ),
        Err(error) => println!("one_byte_chunks=FAILED: {error}"),
    }
    println!(
        "peak_rss_vmhwm={:.1}MiB idle_rss={:.1}MiB rss_p50={:.1}MiB wall={:.1}s",
        kib_to_mib(report.peak_rss_kib),
        kib_to_mib(report.idle_rss_kib),
        kib_to_mib(report.median_rss_kib.unwrap_or(0)),
        report.seconds
    );
}
