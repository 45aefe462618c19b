//! An S3-protocol server (s3s-fs, checking SigV4 signatures) on a local folder.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
        Self::serve(root, addr, None).await
    }

    /// Like [`S3Server::start`], but every other CreateMultipartUpload (the 1st, 3rd, …)
    /// answers 500 InternalError without running, and runs just before the next one: a
    /// request whose answer was lost and that reached the server late, after its client
    /// had cleaned up and retried. Two servers may share one `root`.
    pub async fn start_with_late_creates(
        root: &Path,
        addr: SocketAddr,
    ) -> anyhow::Result<S3Server> {
        Self::serve(root, addr, Some(Arc::new(LateCreates::default()))).await
    }

    async fn serve(
        root: &Path,
        addr: SocketAddr,
        late_creates: Option<Arc<LateCreates>>,
    ) -> anyhow::Result<S3Server> {
        std::fs::create_dir_all(root).context("create s3 root")?;
        let fs = s3s_fs::FileSystem::new(root)
            .map_err(|e| anyhow::anyhow!("open s3s-fs root: {e:?}"))?;
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(
            S3_ACCESS_KEY,
            S3_SECRET_KEY,
        ));
        builder.set_route(ListMultipartUploads {
            root: root.to_owned(),
        });
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
                let service = service.clone();
                let late_creates = late_creates.clone();
                let handler = hyper::service::service_fn(move |request| {
                    let service = service.clone();
                    let late_creates = late_creates.clone();
                    // A request the server has received runs to its end even when its
                    // connection drops, as on a real S3 server. Run inside hyper's call,
                    // s3s-fs would stop between the steps of an operation: a
                    // CreateMultipartUpload cut off after writing its upload record but
                    // before the key it belongs to leaves an upload no client can list
                    // or abort (the fault scenario found such records).
                    let call = tokio::spawn(async move {
                        match late_creates {
                            Some(late) => late.handle(&service, request).await,
                            None => service.call(request.map(s3s::Body::from)).await,
                        }
                    });
                    async move { call.await.map_err(|e| s3s::HttpError::new(Box::new(e)))? }
                });
                let connection = http
                    .serve_connection(TokioIo::new(socket), handler)
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

/// See [`S3Server::start_with_late_creates`]: the CreateMultipartUpload held back, if any.
#[derive(Default)]
struct LateCreates {
    held: tokio::sync::Mutex<Option<s3s::HttpRequest>>,
}

impl LateCreates {
    async fn handle(
        &self,
        service: &s3s::service::S3Service,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> Result<hyper::Response<s3s::Body>, s3s::HttpError> {
        let is_create = request.method() == hyper::Method::POST
            && query_param(request.uri(), "uploads").is_some();
        if !is_create {
            return service.call(request.map(s3s::Body::from)).await;
        }
        let (parts, body) = request.into_parts();
        let body = http_body_util::BodyExt::collect(body)
            .await
            .map_err(|e| s3s::HttpError::new(Box::new(e)))?
            .to_bytes();
        let request = hyper::Request::from_parts(parts, s3s::Body::from(body));
        let mut held = self.held.lock().await;
        match held.take() {
            Some(late) => {
                let _ = service.call(late).await;
                drop(held);
                service.call(request).await
            }
            None => {
                *held = Some(request);
                let mut answer = hyper::Response::new(s3s::Body::from(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code><Message>answer lost</Message></Error>".to_owned(),
                ));
                *answer.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
                Ok(answer)
            }
        }
    }
}

impl Drop for S3Server {
    /// Stops accepting connections even when nobody awaited `stop` (a panicking test).
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// ListMultipartUploads, which s3s-fs lacks, answered from its folder: an open upload is an
/// `.upload-<id>.json` record with a `.bucket-<b64>.object-<b64>.upload-<id>.metadata.json`
/// sidecar naming its bucket and key. Handles `GET /<bucket>?uploads[&prefix=…]`
/// (path-style), signed like any other request; every upload fits in one page.
struct ListMultipartUploads {
    root: PathBuf,
}

impl ListMultipartUploads {
    /// `(key, upload id)` of every open upload in `bucket` whose key starts with `prefix`.
    fn open_uploads(&self, bucket: &str, prefix: &str) -> Vec<(String, String)> {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let decode = |s: &str| {
            URL_SAFE_NO_PAD
                .decode(s)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
        };
        let mut uploads = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return uploads;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name
                .strip_prefix(".bucket-")
                .and_then(|r| r.strip_suffix(".metadata.json"))
            else {
                continue;
            };
            let Some((encoded_bucket, rest)) = rest.split_once(".object-") else {
                continue;
            };
            let Some((encoded_key, upload_id)) = rest.split_once(".upload-") else {
                continue;
            };
            let open = self.root.join(format!(".upload-{upload_id}.json")).exists();
            if let (Some(b), Some(key)) = (decode(encoded_bucket), decode(encoded_key))
                && open
                && b == bucket
                && key.starts_with(prefix)
            {
                uploads.push((key, upload_id.to_owned()));
            }
        }
        uploads.sort();
        uploads
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn query_param(uri: &hyper::Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| percent_decode(value))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex_pair = bytes
            .get(i + 1..i + 3)
            .and_then(|pair| std::str::from_utf8(pair).ok())
            .and_then(|pair| u8::from_str_radix(pair, 16).ok());
        match (bytes[i], hex_pair) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[async_trait::async_trait]
impl s3s::route::S3Route for ListMultipartUploads {
    fn is_match(
        &self,
        method: &hyper::Method,
        uri: &hyper::Uri,
        _headers: &hyper::HeaderMap,
        _extensions: &mut hyper::http::Extensions,
    ) -> bool {
        let bucket_only = uri.path().trim_matches('/').split('/').count() == 1;
        method == hyper::Method::GET
            && bucket_only
            && uri
                .query()
                .is_some_and(|q| q.split('&').any(|p| p == "uploads" || p == "uploads="))
    }

    async fn call(
        &self,
        req: s3s::S3Request<s3s::Body>,
    ) -> s3s::S3Result<s3s::S3Response<s3s::Body>> {
        let bucket = req.uri.path().trim_matches('/').to_owned();
        let prefix = query_param(&req.uri, "prefix").unwrap_or_default();
        let mut xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
             <ListMultipartUploadsResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <Bucket>{}</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>\
             <Prefix>{}</Prefix><MaxUploads>10000</MaxUploads><IsTruncated>false</IsTruncated>",
            xml_escape(&bucket),
            xml_escape(&prefix)
        );
        for (key, upload_id) in self.open_uploads(&bucket, &prefix) {
            xml.push_str(&format!(
                "<Upload><Key>{}</Key><UploadId>{}</UploadId></Upload>",
                xml_escape(&key),
                xml_escape(&upload_id)
            ));
        }
        xml.push_str("</ListMultipartUploadsResult>");
        let mut response = s3s::S3Response::new(s3s::Body::from(xml));
        response.headers.insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/xml"),
        );
        Ok(response)
    }
}
