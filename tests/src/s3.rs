//! An S3-protocol server (s3s-fs, checking SigV4 signatures) on a local folder.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use document_store::store::s3::{ChecksumMode, S3Settings, build_client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const S3_ACCESS_KEY: &str = "e2e-access-key";
pub const S3_SECRET_KEY: &str = "e2e-secret-key-0123456789";
pub const S3_REGION: &str = "us-east-1";

/// An s3s-fs server on a local folder.
pub struct S3Server {
    pub endpoint: String,
    pub root: PathBuf,
    shutdown: CancellationToken,
    /// `None` once stopped.
    task: Option<JoinHandle<()>>,
}

impl S3Server {
    /// Serves `root` on `addr` (port 0 picks a free one), requiring our access key.
    pub async fn start(root: &Path, addr: SocketAddr) -> anyhow::Result<S3Server> {
        std::fs::create_dir_all(root).context("create s3 root")?;
        let fs = s3s_fs::FileSystem::new(root)
            .map_err(|e| anyhow::anyhow!("open s3s-fs root: {e:?}"))?;
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(
            S3_ACCESS_KEY,
            S3_SECRET_KEY,
        ));
        let service = builder.build();

        let listener = TcpListener::bind(addr).await.context("bind s3 server")?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            loop {
                let socket = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((socket, _)) => socket,
                        Err(_) => continue,
                    },
                };
                let connection = http
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
        });
        Ok(S3Server {
            endpoint,
            root: root.to_owned(),
            shutdown,
            task: Some(task),
        })
    }

    pub fn settings(&self, bucket: &str, checksum_mode: ChecksumMode) -> S3Settings {
        S3Settings {
            endpoint: self.endpoint.clone(),
            region: S3_REGION.to_owned(),
            bucket: bucket.to_owned(),
            access_key_id: S3_ACCESS_KEY.to_owned(),
            secret_access_key: SecretString::from(S3_SECRET_KEY),
            force_path_style: true,
            checksum_mode,
            timeouts: Default::default(),
        }
    }

    /// A direct S3 client, to look at the server from outside document-store.
    pub fn client(&self, checksum_mode: ChecksumMode) -> aws_sdk_s3::Client {
        build_client(&self.settings("unused", checksum_mode))
    }

    /// Every object, part and multipart-upload record on disk. s3s-fs keeps per-object
    /// sidecar files (`.bucket-*.metadata.json`, `.internal.json`) after a delete; those are
    /// its own bookkeeping, not data, and are left out.
    pub fn files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for entry in entries.flatten() {
                    let path = entry.path();
                    let sidecar = path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(".bucket-"));
                    if path.is_dir() {
                        walk(&path, out);
                    } else if !sidecar {
                        out.push(path);
                    }
                }
            }
        }
        let mut files = Vec::new();
        walk(&self.root, &mut files);
        files.sort();
        files
    }

    pub async fn stop(mut self) {
        self.stop_serving().await;
    }

    pub(crate) async fn stop_serving(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for S3Server {
    /// Stops accepting connections even when nobody awaited `stop` (a panicking test).
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
