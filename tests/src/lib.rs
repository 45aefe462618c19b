//! A whole dispute platform in one process, on real parts: an S3-protocol server (s3s-fs,
//! checking SigV4 signatures) over HTTP, PostgreSQL databases, and both gRPC services on
//! TCP. The end-to-end tests and the `local-stack` command both use it.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use disputes_proto::disputes_v1::dispute_service_client::DisputeServiceClient;
use disputes_proto::documents_v1::document_service_client::DocumentServiceClient;
use document_store::store::s3::{ChecksumMode, S3Settings, build_client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use secrecy::SecretString;
use sqlx::Connection;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

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

    async fn stop_serving(&mut self) {
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

/// A TCP proxy that can cut every connection at once, like a client that crashes or loses
/// its network mid-call.
pub struct CuttableProxy {
    pub addr: SocketAddr,
    cut: CancellationToken,
}

impl CuttableProxy {
    pub async fn start(target: SocketAddr) -> anyhow::Result<CuttableProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cut = CancellationToken::new();
        let stop = cut.clone();
        tokio::spawn(async move {
            loop {
                let (mut inbound, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(_) => return,
                    },
                };
                let stop = stop.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                    // Both sockets drop here: the connection ends mid-stream.
                });
            }
        });
        Ok(CuttableProxy { addr, cut })
    }

    /// Drops every proxied connection.
    pub fn cut(&self) {
        self.cut.cancel();
    }
}

/// The PostgreSQL server tests and the local stack use (`DATABASE_ADMIN_URL`, default the
/// local trust-auth server).
pub fn admin_database_url() -> String {
    std::env::var("DATABASE_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Replaces the database name of a URL.
pub fn database_url_for(admin_url: &str, database: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let base = match base.rsplit_once('/') {
        Some((server, _))
            if server.contains("://") && server.len() > server.find("://").unwrap() + 3 =>
        {
            server
        }
        _ => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// Creates `database` unless it exists; returns its URL.
pub async fn ensure_database(admin_url: &str, database: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        database
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        "database names are [A-Za-z0-9_]"
    );
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .with_context(|| "connect to PostgreSQL (is it running? see README)".to_string())?;
    if !database_exists_on(&mut conn, database).await? {
        sqlx::query(&format!("create database \"{database}\""))
            .execute(&mut conn)
            .await?;
    }
    conn.close().await?;
    Ok(database_url_for(admin_url, database))
}

/// Whether the server of `admin_url` has a database named `database`.
pub async fn database_exists(admin_url: &str, database: &str) -> anyhow::Result<bool> {
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    let exists = database_exists_on(&mut conn, database).await?;
    conn.close().await?;
    Ok(exists)
}

async fn database_exists_on(conn: &mut sqlx::PgConnection, database: &str) -> anyhow::Result<bool> {
    Ok(
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(database)
            .fetch_one(conn)
            .await?,
    )
}

/// Drops `database` if it exists, ending the sessions still connected to it.
pub async fn drop_database(admin_url: &str, database: &str) -> anyhow::Result<()> {
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::query(&format!(
        "drop database if exists \"{database}\" with (force)"
    ))
    .execute(&mut conn)
    .await?;
    conn.close().await?;
    Ok(())
}

/// `drop_database` for each of `databases`, from synchronous code that may run inside a tokio
/// runtime (a `Drop` during a panic, in a current-thread or multi-thread test): the work runs
/// on a thread of its own with its own small runtime, and this call waits for it.
pub fn drop_databases_blocking(admin_url: &str, databases: &[String]) -> anyhow::Result<()> {
    let admin_url = admin_url.to_owned();
    let databases = databases.to_vec();
    std::thread::spawn(move || -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            for database in &databases {
                drop_database(&admin_url, database)
                    .await
                    .with_context(|| format!("drop database {database}"))?;
            }
            Ok(())
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the thread dropping the databases panicked"))?
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(pub Option<MetadataValue<tonic::metadata::Ascii>>);

impl Bearer {
    /// Sends `token`, or no `authorization` header for `None`.
    pub fn new(token: Option<&str>) -> anyhow::Result<Bearer> {
        let value = token
            .map(|t| MetadataValue::try_from(format!("Bearer {t}")))
            .transpose()
            .context("a token is header-safe ASCII")?;
        Ok(Bearer(value))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type DisputesClient = DisputeServiceClient<InterceptedService<Channel, Bearer>>;
pub type DocumentsClient = DocumentServiceClient<InterceptedService<Channel, Bearer>>;

/// A channel to the server on `addr`, with HTTP/2 windows large enough for multi-MiB uploads.
pub async fn connect(addr: SocketAddr) -> anyhow::Result<Channel> {
    Ok(
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .initial_stream_window_size(Some(8 * 1024 * 1024))
            .initial_connection_window_size(Some(16 * 1024 * 1024))
            .connect()
            .await?,
    )
}

/// A DocumentService client of the server on `addr`, sending `token` (or no token).
pub async fn documents_client(
    addr: SocketAddr,
    token: Option<&str>,
) -> anyhow::Result<DocumentsClient> {
    Ok(
        DocumentServiceClient::with_interceptor(connect(addr).await?, Bearer::new(token)?)
            .max_decoding_message_size(8 * 1024 * 1024),
    )
}

/// The fee dispute-core withdraws with a merchant-side chargeback, unless
/// `StackOptions::dispute_fee` says otherwise.
pub const DEFAULT_DISPUTE_FEE: i64 = 1500;

/// How to start the stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub checksum_mode: ChecksumMode,
    pub max_upload_bytes: u64,
    pub part_size_bytes: usize,
    /// Fixed addresses for the local stack; `None` picks free ports.
    pub dispute_core_addr: Option<SocketAddr>,
    pub document_store_addr: Option<SocketAddr>,
    pub s3_addr: Option<SocketAddr>,
    /// Folder of the S3 server; `None` uses a fresh temporary folder.
    pub s3_root: Option<PathBuf>,
    /// Database names; `None` makes fresh uniquely named ones, dropped by `Stack::stop` or,
    /// failing that, when the stack is dropped.
    pub databases: Option<(String, String)>,
    pub jwt_secret: String,
    pub drain_timeout_secs: u64,
    pub chunk_idle_timeout_secs: u64,
    /// Fee withdrawn with a merchant-side chargeback.
    pub dispute_fee: i64,
    /// Deadline sweeper interval of dispute-core.
    pub sweep_interval_secs: u64,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            checksum_mode: ChecksumMode::WhenRequired,
            max_upload_bytes: 25 * 1024 * 1024,
            part_size_bytes: document_store::config::MIN_PART_SIZE,
            dispute_core_addr: None,
            document_store_addr: None,
            s3_addr: None,
            s3_root: None,
            databases: None,
            jwt_secret: "e2e-jwt-secret-that-is-long-enough-0123456789".to_owned(),
            drain_timeout_secs: 5,
            chunk_idle_timeout_secs: 60,
            dispute_fee: DEFAULT_DISPUTE_FEE,
            sweep_interval_secs: 1,
        }
    }
}

/// Both services, their databases and the S3 server.
///
/// `stop` shuts it all down in order. A stack dropped without `stop` (a test that panics)
/// still cancels both services and the S3 server and drops the databases it created.
pub struct Stack {
    pub s3: S3Server,
    pub bucket: String,
    pub dispute_core_addr: SocketAddr,
    pub document_store_addr: SocketAddr,
    pub dispute_db_url: String,
    pub document_db_url: String,
    pub jwt_secret: SecretString,
    database_names: [String; 2],
    shutdown: CancellationToken,
    services: Vec<JoinHandle<anyhow::Result<()>>>,
    // Fields drop in this order, after `Drop for Stack` cancelled the services: the S3
    // server above, then its folder, then the databases.
    _temp_dir: Option<tempfile::TempDir>,
    owned_databases: OwnedDatabases,
}

/// The databases a stack created for itself. They are dropped by `Stack::stop`, or else when
/// this is dropped, so a panicking test leaves none behind.
struct OwnedDatabases {
    admin_url: String,
    /// Empty once dropped, and for databases the stack was given.
    names: Vec<String>,
}

impl OwnedDatabases {
    async fn drop_now(&mut self) {
        for name in std::mem::take(&mut self.names) {
            if let Err(error) = drop_database(&self.admin_url, &name).await {
                eprintln!("warning: could not drop test database {name}: {error:#}");
            }
        }
    }
}

impl Drop for OwnedDatabases {
    fn drop(&mut self) {
        if self.names.is_empty() {
            return;
        }
        // Never panic here: this may run while a failing test unwinds.
        if let Err(error) = drop_databases_blocking(&self.admin_url, &self.names) {
            eprintln!(
                "warning: could not drop test databases {:?}: {error:#}",
                self.names
            );
        }
    }
}

impl Stack {
    pub async fn start(options: StackOptions) -> anyhow::Result<Stack> {
        let admin_url = admin_database_url();
        let (temp_dir, s3_root) = match &options.s3_root {
            Some(root) => (None, root.clone()),
            None => {
                let dir = tempfile::tempdir()?;
                let root = dir.path().join("s3");
                (Some(dir), root)
            }
        };
        let s3 = S3Server::start(
            &s3_root,
            options
                .s3_addr
                .unwrap_or_else(|| "127.0.0.1:0".parse().unwrap()),
        )
        .await?;
        let bucket = "dispute-documents".to_owned();

        let (dispute_db, document_db) = match &options.databases {
            Some((d, o)) => (d.clone(), o.clone()),
            None => {
                let suffix = uuid::Uuid::new_v4().simple().to_string();
                (
                    format!("e2e_disputes_{suffix}"),
                    format!("e2e_documents_{suffix}"),
                )
            }
        };
        // Armed before the databases exist: a start-up that fails later drops them too.
        let owned_databases = OwnedDatabases {
            admin_url: admin_url.clone(),
            names: match options.databases {
                Some(_) => Vec::new(),
                None => vec![dispute_db.clone(), document_db.clone()],
            },
        };
        let dispute_db_url = ensure_database(&admin_url, &dispute_db).await?;
        let document_db_url = ensure_database(&admin_url, &document_db).await?;

        let bind = |addr: Option<SocketAddr>| async move {
            TcpListener::bind(addr.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap()))
                .await
                .context("bind service port")
        };
        let document_listener = bind(options.document_store_addr).await?;
        let dispute_listener = bind(options.dispute_core_addr).await?;
        let document_store_addr = document_listener.local_addr()?;
        let dispute_core_addr = dispute_listener.local_addr()?;

        let shutdown = CancellationToken::new();
        let document_config = document_store::Config {
            listen_addr: document_store_addr,
            database_url: SecretString::from(document_db_url.clone()),
            db_max_connections: 10,
            s3_endpoint: s3.endpoint.clone(),
            s3_region: S3_REGION.to_owned(),
            s3_bucket: bucket.clone(),
            s3_access_key_id: S3_ACCESS_KEY.to_owned(),
            s3_secret_access_key: SecretString::from(S3_SECRET_KEY),
            s3_force_path_style: true,
            s3_checksum_mode: options.checksum_mode,
            s3_create_bucket: true,
            max_upload_bytes: options.max_upload_bytes,
            part_size_bytes: options.part_size_bytes,
            max_parts_in_flight: 2,
            chunk_idle_timeout_secs: options.chunk_idle_timeout_secs,
            drain_timeout_secs: options.drain_timeout_secs,
            jwt_secret: SecretString::from(options.jwt_secret.clone()),
        };
        let dispute_config = dispute_core::Config {
            listen_addr: dispute_core_addr,
            database_url: SecretString::from(dispute_db_url.clone()),
            db_max_connections: 10,
            document_store_url: format!("http://{document_store_addr}"),
            drain_timeout_secs: options.drain_timeout_secs,
            dispute_fee: options.dispute_fee,
            refund_fee_on_win: false,
            sweep_interval_secs: options.sweep_interval_secs,
            jwt_secret: SecretString::from(options.jwt_secret.clone()),
        };
        let services = vec![
            tokio::spawn(document_store::run(
                document_config,
                document_listener,
                shutdown.clone(),
            )),
            tokio::spawn(dispute_core::run(
                dispute_config,
                dispute_listener,
                shutdown.clone(),
            )),
        ];
        let stack = Stack {
            s3,
            bucket,
            dispute_core_addr,
            document_store_addr,
            dispute_db_url,
            document_db_url,
            jwt_secret: SecretString::from(options.jwt_secret.clone()),
            database_names: [dispute_db, document_db],
            shutdown,
            services,
            _temp_dir: temp_dir,
            owned_databases,
        };
        stack.wait_until_serving().await?;
        Ok(stack)
    }

    /// Waits for both health endpoints, failing fast if a service died.
    async fn wait_until_serving(&self) -> anyhow::Result<()> {
        use tonic_health_client::*;
        for addr in [self.document_store_addr, self.dispute_core_addr] {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(finished) = self.services.iter().find(|s| s.is_finished()) {
                    anyhow::bail!(
                        "a service stopped during start-up ({finished:?}); run with TEST_LOG=1"
                    );
                }
                if health_check(addr).await.is_ok_and(|serving| serving) {
                    break;
                }
                anyhow::ensure!(
                    tokio::time::Instant::now() < deadline,
                    "service on {addr} not serving after 30 s"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    pub fn token(&self, tenant: &str, scopes: &[&str]) -> String {
        service_kit::auth::mint_token(
            &self.jwt_secret,
            "e2e",
            tenant,
            scopes,
            chrono_duration_hours(1),
        )
        .unwrap()
    }

    /// A token with every scope.
    pub fn full_token(&self, tenant: &str) -> String {
        let scopes: Vec<&str> = service_kit::auth::Scope::ALL
            .iter()
            .map(|s| s.as_str())
            .collect();
        self.token(tenant, &scopes)
    }

    /// A DisputeService client sending `token` (or no token).
    pub async fn disputes(&self, token: Option<&str>) -> DisputesClient {
        DisputeServiceClient::with_interceptor(
            connect(self.dispute_core_addr).await.unwrap(),
            Bearer::new(token).unwrap(),
        )
    }

    /// A DisputeService client of `tenant` with every scope.
    pub async fn disputes_of(&self, tenant: &str) -> DisputesClient {
        self.disputes(Some(&self.full_token(tenant))).await
    }

    /// A DocumentService client of `tenant` with every scope.
    pub async fn documents_of(&self, tenant: &str) -> DocumentsClient {
        self.documents(Some(&self.full_token(tenant))).await
    }

    /// A DocumentService client sending `token` (or no token).
    pub async fn documents(&self, token: Option<&str>) -> DocumentsClient {
        documents_client(self.document_store_addr, token)
            .await
            .unwrap()
    }

    /// Names of dispute-core's and document-store's databases.
    pub fn database_names(&self) -> [&str; 2] {
        [&self.database_names[0], &self.database_names[1]]
    }

    /// Stops both services (SIGTERM path) and waits for them, stops the S3 server, and drops
    /// the databases the stack created. Dropping the stack afterwards has nothing left to do.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        for service in std::mem::take(&mut self.services) {
            let _ = service.await;
        }
        self.s3.stop_serving().await;
        self.owned_databases.drop_now().await;
    }

    /// Cancels the services without waiting (for shutdown tests).
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for Stack {
    /// Without `stop` (a panicking test): cancel the services; the fields' own `Drop`s then
    /// stop the S3 server and drop the databases.
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn chrono_duration_hours(hours: i64) -> chrono::Duration {
    chrono::Duration::hours(hours)
}

/// A tiny grpc.health.v1 client over the generated code in tonic-health.
pub mod tonic_health_client {
    use std::net::SocketAddr;

    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    /// Whether the server on `addr` reports SERVING for the whole server.
    pub async fn health_check(addr: SocketAddr) -> anyhow::Result<bool> {
        health_check_service(addr, "").await
    }

    pub async fn health_check_service(addr: SocketAddr, service: &str) -> anyhow::Result<bool> {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .connect()
            .await?;
        let mut client = HealthClient::new(channel);
        let response = client
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await?;
        Ok(response.into_inner().status == ServingStatus::Serving as i32)
    }
}

/// Installs telemetry for a test process: silent unless `TEST_LOG=1`; spans go to `otlp`
/// when given. nextest runs each test in its own process, so each test may call this. Only
/// the first call in a process installs anything (a later call would replace the global
/// tracer provider before failing); later calls return `None`.
pub fn init_test_telemetry(otlp: Option<String>) -> Option<service_kit::telemetry::TelemetryGuard> {
    static INSTALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if INSTALLED.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return None;
    }
    service_kit::telemetry::init(service_kit::telemetry::TelemetryOptions {
        service_name: "e2e".to_owned(),
        json_logs: std::env::var("TEST_LOG").is_ok_and(|v| v == "1"),
        otlp_endpoint: otlp,
    })
    .ok()
}

pub use chrono;
