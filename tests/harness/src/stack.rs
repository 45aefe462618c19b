//! Both services, their databases and the S3 server, in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use dispute_core::domain::MoneyPolicy;
use dispute_core::domain::ledger::FeeSchedule;
use disputes_proto::disputes_v1::dispute_service_client::DisputeServiceClient;
use document_store::store::s3::ChecksumMode;
use secrecy::SecretString;
use service_kit::config::{AuthFlags, DatabaseFlags, ResilienceFlags};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clients::{Bearer, DisputesClient, DocumentsClient, connect, documents_client};
use crate::database::{OwnedDatabases, admin_database_url, ensure_database};
use crate::s3::{S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY, S3Server};

/// The USD fee dispute-core withdraws with a merchant-side chargeback (its default
/// `--dispute-fees`), unless `StackOptions::dispute_fees` says otherwise.
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
    /// Token verification of both services; `None`: HS256 with `jwt_secret` (what
    /// `Stack::token` signs with).
    pub auth: Option<AuthFlags>,
    pub drain_timeout_secs: u64,
    pub chunk_idle_timeout_secs: u64,
    pub upload_header_timeout_secs: u64,
    pub upload_deadline_secs: u64,
    pub max_concurrent_uploads: usize,
    /// Fees withdrawn with a merchant-side chargeback, per currency (dispute-core's default).
    pub dispute_fees: FeeSchedule,
    /// Arbitration fees per currency (dispute-core's default).
    pub arbitration_fees: FeeSchedule,
    /// Give the dispute fee back when a merchant-side dispute is won (default false).
    pub refund_fee_on_win: bool,
    /// Deadline sweeper interval of dispute-core.
    pub sweep_interval_secs: u64,
    /// StreamEvents heartbeat interval of dispute-core (its default, 15 s).
    pub event_stream_heartbeat_ms: u64,
    /// Lead time of `dispute.due_soon`; the stack's default 0 records none, so that tests
    /// with near deadlines see only the events they expect.
    pub due_soon_lead_secs: u64,
    /// Overload and dependency-failure settings of each service (call limit, timeouts,
    /// readiness probe); the stack's default probes every 100 ms.
    pub dispute_core_resilience: dispute_core::config::Resilience,
    pub document_store_resilience: document_store::config::Resilience,
    /// Where the services reach PostgreSQL (e.g. a proxy in front of it); `None`: directly.
    /// The stack itself still creates and drops the databases directly.
    pub database_addr: Option<SocketAddr>,
    /// S3 endpoint document-store uses (e.g. a proxy in front of the S3 server); `None`:
    /// the S3 server itself.
    pub document_store_s3_endpoint: Option<String>,
    /// TLS of each gRPC server (default: plaintext). With a document-store certificate,
    /// dispute-core calls it at `https://localhost:<port>` trusting
    /// `dispute_core_tls.document_store_ca_file`.
    pub dispute_core_tls: dispute_core::config::Tls,
    pub document_store_tls: document_store::config::Tls,
    /// dispute-core's webhook flags; the stack's default allows http and private
    /// addresses (receivers on 127.0.0.1) and divides delays by 1000.
    pub webhooks: dispute_core::config::WebhookFlags,
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
            auth: None,
            drain_timeout_secs: 5,
            chunk_idle_timeout_secs: 60,
            upload_header_timeout_secs: 10,
            upload_deadline_secs: 600,
            // Tests run several uploads at once; the admission limit has tests of its own.
            max_concurrent_uploads: 64,
            dispute_fees: MoneyPolicy::default().dispute_fees,
            arbitration_fees: MoneyPolicy::default().arbitration_fees,
            refund_fee_on_win: false,
            sweep_interval_secs: 1,
            event_stream_heartbeat_ms: dispute_core::app::DEFAULT_STREAM_HEARTBEAT_MS,
            due_soon_lead_secs: 0,
            dispute_core_resilience: dispute_core::config::Resilience {
                health_probe_interval_ms: 100,
                ..Default::default()
            },
            document_store_resilience: document_store::config::Resilience {
                common: ResilienceFlags {
                    health_probe_interval_ms: 100,
                    ..Default::default()
                },
                ..Default::default()
            },
            database_addr: None,
            document_store_s3_endpoint: None,
            dispute_core_tls: Default::default(),
            document_store_tls: Default::default(),
            webhooks: test_webhook_flags(),
        }
    }
}

/// Webhook flags for tests: http and private addresses allowed, time divided by 1000,
/// short attempt timeout and lease, and the test keyring sealing signing secrets
/// ([`TEST_WEBHOOK_SECRET_KEYS`](crate::process::TEST_WEBHOOK_SECRET_KEYS)). Workers wake
/// on new deliveries and sleep exactly until the next retry or lease end, so the poll is
/// only a fallback.
pub fn test_webhook_flags() -> dispute_core::config::WebhookFlags {
    dispute_core::config::WebhookFlags {
        webhook_allow_http: true,
        webhook_allow_private_addresses: true,
        webhook_time_scale: 1000.0,
        webhook_attempt_timeout_ms: 2_000,
        webhook_lease_ms: 5_000,
        webhook_poll_interval_ms: 250,
        webhook_secret_keys: crate::process::TEST_WEBHOOK_SECRET_KEYS
            .parse()
            .expect("the test webhook keyring parses"),
        ..Default::default()
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
        let service_db_url = |url: &str| match options.database_addr {
            Some(addr) => via_address(url, addr),
            None => Ok(url.to_owned()),
        };
        let auth = options.auth.clone().unwrap_or_else(|| {
            AuthFlags::shared_secret(SecretString::from(options.jwt_secret.clone()))
        });
        let document_config = document_store::Config {
            telemetry: Default::default(),
            listen_addr: document_store_addr,
            database: DatabaseFlags {
                database_url: SecretString::from(service_db_url(&document_db_url)?),
                db_max_connections: 10,
                migrate_on_start: true,
                service: Default::default(),
            },
            command: None,
            s3_endpoint: options
                .document_store_s3_endpoint
                .clone()
                .unwrap_or_else(|| s3.endpoint.clone()),
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
            upload_header_timeout_secs: options.upload_header_timeout_secs,
            upload_deadline_secs: options.upload_deadline_secs,
            max_concurrent_uploads: options.max_concurrent_uploads,
            drain_timeout_secs: options.drain_timeout_secs,
            upload_cleanup_timeout_secs: 5,
            auth: auth.clone(),
            resilience: options.document_store_resilience.clone(),
            tls: options.document_store_tls.clone(),
        };
        let dispute_config = dispute_core::Config {
            telemetry: Default::default(),
            listen_addr: dispute_core_addr,
            database: DatabaseFlags {
                database_url: SecretString::from(service_db_url(&dispute_db_url)?),
                db_max_connections: 10,
                migrate_on_start: true,
                service: Default::default(),
            },
            command: None,
            document_store_url: match options.document_store_tls.tls_cert_file {
                Some(_) => format!("https://localhost:{}", document_store_addr.port()),
                None => format!("http://{document_store_addr}"),
            },
            drain_timeout_secs: options.drain_timeout_secs,
            worker_stop_timeout_secs: 5,
            dispute_fees: options.dispute_fees.clone(),
            arbitration_fees: options.arbitration_fees.clone(),
            balance_settlement_days: dispute_core::domain::ledger::DEFAULT_SETTLEMENT_DAYS,
            refund_fee_on_win: options.refund_fee_on_win,
            sweep_interval_secs: options.sweep_interval_secs,
            event_stream_heartbeat_ms: options.event_stream_heartbeat_ms,
            due_soon_lead_secs: options.due_soon_lead_secs,
            auth: auth.clone(),
            background_token_file: None,
            resilience: options.dispute_core_resilience.clone(),
            tls: options.dispute_core_tls.clone(),
            webhooks: options.webhooks.clone(),
            event_streams: Default::default(),
            retention: Default::default(),
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
        // Health over plaintext only: a TLS server's first call is the test's own.
        let plaintext: Vec<SocketAddr> = [
            (
                stack.document_store_addr,
                &options.document_store_tls.tls_cert_file,
            ),
            (
                stack.dispute_core_addr,
                &options.dispute_core_tls.server.tls_cert_file,
            ),
        ]
        .into_iter()
        .filter(|(_, cert)| cert.is_none())
        .map(|(addr, _)| addr)
        .collect();
        stack.wait_until_serving(&plaintext).await?;
        Ok(stack)
    }

    /// Waits for both health endpoints, failing fast if a service died.
    async fn wait_until_serving(&self, addrs: &[SocketAddr]) -> anyhow::Result<()> {
        use crate::clients::tonic_health_client::health_check;
        for &addr in addrs {
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
        full_scope_token(&self.jwt_secret, "e2e", tenant)
    }

    /// document-store's bucket on the stack's S3 server, reached directly (not through
    /// `document_store_s3_endpoint`).
    pub fn object_store(&self) -> document_store::store::s3::ObjectStore {
        document_store::store::s3::ObjectStore::new(
            document_store::store::s3::build_client(
                &self.s3.settings(&self.bucket, ChecksumMode::WhenRequired),
            ),
            self.bucket.clone(),
        )
    }

    /// A further dispute-core replica in this process on the stack's databases, with
    /// `webhooks` and `extra_args` (flags) on top of the stack's settings; returns once it
    /// serves. It stops when `shutdown` is cancelled.
    pub async fn start_dispute_core_replica(
        &self,
        webhooks: dispute_core::config::WebhookFlags,
        extra_args: &[&str],
        shutdown: &CancellationToken,
    ) -> anyhow::Result<(SocketAddr, JoinHandle<anyhow::Result<()>>)> {
        use clap::Parser;
        use secrecy::ExposeSecret;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let document_store_url = format!("http://{}", self.document_store_addr);
        let mut args = vec![
            "dispute-core",
            "--database-url",
            &self.dispute_db_url,
            "--jwt-secret",
            self.jwt_secret.expose_secret(),
            "--document-store-url",
            &document_store_url,
            "--drain-timeout-secs",
            "1",
        ];
        args.extend_from_slice(extra_args);
        let mut config = dispute_core::Config::try_parse_from(args)?;
        config.webhooks = webhooks;
        let handle = tokio::spawn(dispute_core::run(config, listener, shutdown.clone()));
        while !crate::tonic_health_client::health_check(addr)
            .await
            .unwrap_or(false)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok((addr, handle))
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

/// A token of `tenant` with every scope, signed with `secret`, valid for an hour.
pub fn full_scope_token(secret: &SecretString, issuer: &str, tenant: &str) -> String {
    let scopes: Vec<&str> = service_kit::auth::Scope::ALL
        .iter()
        .map(|s| s.as_str())
        .collect();
    service_kit::auth::mint_token(secret, issuer, tenant, &scopes, chrono_duration_hours(1))
        .unwrap()
}

/// `url` with its host and port replaced by `addr`.
fn via_address(url: &str, addr: SocketAddr) -> anyhow::Result<String> {
    use sqlx::ConnectOptions;
    let options: sqlx::postgres::PgConnectOptions = url.parse().context("parse database url")?;
    Ok(options
        .host(&addr.ip().to_string())
        .port(addr.port())
        .to_url_lossy()
        .to_string())
}

fn chrono_duration_hours(hours: i64) -> chrono::Duration {
    chrono::Duration::hours(hours)
}
