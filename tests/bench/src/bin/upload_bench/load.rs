//! The load run (`--load`, issue 10 §2): memory under hostile load.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use bytes::Bytes;
use disputes_proto::documents_v1 as pb;
use futures::{StreamExt, stream};

use crate::child::{ChildService, tail};
use crate::content::Content;
use crate::measure::{median_kib, proc_status_kib, sample_rss};
use crate::{Args, Bench, MIB};

/// What became of one upload of the load run.
#[derive(Debug)]
pub enum Outcome {
    Stored {
        attempts: u32,
    },
    /// Refused with RESOURCE_EXHAUSTED on every attempt.
    Shed,
    Failed(String),
}

/// Figures of the load run.
pub struct LoadReport {
    pub outcomes: Vec<Outcome>,
    /// Shed answers seen over all attempts, and whether each carried a RetryInfo.
    pub shed_answers: usize,
    pub shed_without_retry_info: usize,
    pub one_byte: Result<f64, String>,
    pub seconds: f64,
    pub peak_rss_kib: u64,
    pub idle_rss_kib: u64,
    pub median_rss_kib: Option<u64>,
}

impl Bench {
    /// The load run against one document-store child at default settings.
    pub async fn run_load(&self, args: &Args) -> anyhow::Result<LoadReport> {
        let log = self.work.path().join("document-store-load.log");
        let child = ChildService::start(self, args, None, args.modes()?[0], &log).await?;
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
pub async fn load_upload(
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
pub async fn one_byte_chunk_upload(
    addr: SocketAddr,
    token: String,
    size: u64,
) -> anyhow::Result<f64> {
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
