//! Runs the whole platform on this machine: an S3-protocol server (s3s-fs on a local
//! folder), PostgreSQL databases (created if missing), and both services; prints a dev
//! token and grpcurl examples. Ctrl-C stops everything gracefully.
//!
//! `--services none` starts only the S3 server and the databases and writes the settings the
//! real `dispute-core` and `document-store` binaries need (used by the grpcurl smoke test).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use document_store::store::s3::ChecksumMode;
use harness::{S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY, S3Server, Stack, StackOptions};

#[derive(Parser)]
#[command(about = "run the dispute platform locally on real parts")]
struct Args {
    /// Where the S3 server keeps objects and where the dev JWT key and webhook secret key
    /// are kept.
    #[arg(long, default_value = ".local")]
    data_dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:50051")]
    dispute_core_addr: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:50052")]
    document_store_addr: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:9000")]
    s3_addr: SocketAddr,
    /// Tenant of the printed dev token.
    #[arg(long, default_value = "acme")]
    tenant: String,
    #[arg(long, value_enum, default_value = "when-required")]
    checksum_mode: ChecksumMode,
    /// `in-process` runs both services here; `none` only S3 and the databases.
    #[arg(long, value_enum, default_value = "in-process")]
    services: Services,
    /// Written once everything serves: shell `KEY=value` lines with the addresses and settings.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Database names.
    #[arg(long, default_value = "disputes")]
    dispute_database: String,
    #[arg(long, default_value = "documents")]
    document_database: String,
    /// Drop both databases on exit (throwaway runs such as the smoke test).
    #[arg(long)]
    drop_databases_on_exit: bool,
    /// Start from nothing: drop both databases and empty the S3 folder first.
    #[arg(long)]
    reset: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Services {
    InProcess,
    None,
}

/// The dev signing key: AUTH_JWT_SECRET if set, else one generated once and kept in the
/// data folder so tokens survive restarts.
fn dev_jwt_secret(data_dir: &std::path::Path) -> anyhow::Result<String> {
    if let Ok(secret) = std::env::var("AUTH_JWT_SECRET")
        && !secret.is_empty()
    {
        return Ok(secret);
    }
    let path = data_dir.join("jwt-secret");
    if let Ok(secret) = std::fs::read_to_string(&path) {
        return Ok(secret.trim().to_owned());
    }
    let secret = format!(
        "dev-{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    std::fs::write(&path, &secret).context("write dev jwt secret")?;
    Ok(secret)
}

/// The dev keyring sealing webhook signing secrets: DISPUTE_CORE_WEBHOOK_SECRET_KEYS if set,
/// else one key generated once and kept in the data folder, so that endpoints made in one
/// run still sign in the next.
fn dev_webhook_secret_keys(data_dir: &std::path::Path) -> anyhow::Result<String> {
    use base64::Engine;
    if let Ok(keys) = std::env::var("DISPUTE_CORE_WEBHOOK_SECRET_KEYS")
        && !keys.is_empty()
    {
        return Ok(keys);
    }
    let path = data_dir.join("webhook-secret-keys");
    if let Ok(keys) = std::fs::read_to_string(&path) {
        return Ok(keys.trim().to_owned());
    }
    // 32 bytes from two random UUIDs: enough for a dev key.
    let mut key = Vec::with_capacity(32);
    key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    let keys = format!(
        "dev:{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    std::fs::write(&path, &keys).context("write dev webhook secret keys")?;
    Ok(keys)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.data_dir).context("create data dir")?;
    let telemetry = service_kit::telemetry::init(
        service_kit::telemetry::TelemetryOptions::for_service("local-stack"),
    )?;
    let jwt_secret = dev_jwt_secret(&args.data_dir)?;
    let webhook_secret_keys = dev_webhook_secret_keys(&args.data_dir)?;
    let s3_root = args.data_dir.join("s3");
    let admin_url = harness::admin_database_url();

    if args.reset {
        harness::drop_database(&admin_url, &args.dispute_database).await?;
        harness::drop_database(&admin_url, &args.document_database).await?;
        if s3_root.exists() {
            std::fs::remove_dir_all(&s3_root).context("empty the S3 folder")?;
        }
    }

    let shutdown = tokio_util::sync::CancellationToken::new();
    service_kit::server::cancel_on_signal(shutdown.clone());

    let (lines, running) = match args.services {
        Services::InProcess => {
            let stack = Stack::start(StackOptions {
                checksum_mode: args.checksum_mode,
                dispute_core_addr: Some(args.dispute_core_addr),
                document_store_addr: Some(args.document_store_addr),
                s3_addr: Some(args.s3_addr),
                s3_root: Some(s3_root),
                databases: Some((
                    args.dispute_database.clone(),
                    args.document_database.clone(),
                )),
                jwt_secret: jwt_secret.clone(),
                drain_timeout_secs: 10,
                part_size_bytes: 8 * 1024 * 1024,
                webhooks: dispute_core::config::WebhookFlags {
                    webhook_secret_keys: webhook_secret_keys
                        .parse()
                        .context("DISPUTE_CORE_WEBHOOK_SECRET_KEYS")?,
                    ..harness::test_webhook_flags()
                },
                ..Default::default()
            })
            .await?;
            let lines = vec![
                format!("DISPUTE_CORE_ADDR={}", stack.dispute_core_addr),
                format!("DOCUMENT_STORE_ADDR={}", stack.document_store_addr),
                format!("S3_ENDPOINT={}", stack.s3.endpoint),
            ];
            (lines, Running::Stack(Box::new(stack)))
        }
        Services::None => {
            let s3 = S3Server::start(&s3_root, args.s3_addr).await?;
            std::fs::create_dir_all(s3_root.join("dispute-documents"))?;
            let dispute_db = harness::ensure_database(&admin_url, &args.dispute_database).await?;
            let document_db = harness::ensure_database(&admin_url, &args.document_database).await?;
            let lines = vec![
                format!("S3_ENDPOINT={}", s3.endpoint),
                format!("DISPUTE_CORE_DATABASE_URL={dispute_db}"),
                format!("DISPUTE_CORE_WEBHOOK_SECRET_KEYS={webhook_secret_keys}"),
                format!("DOCUMENT_STORE_DATABASE_URL={document_db}"),
                format!("DOCUMENT_STORE_S3_ENDPOINT={}", s3.endpoint),
                "DOCUMENT_STORE_S3_BUCKET=dispute-documents".to_owned(),
                format!("DOCUMENT_STORE_S3_REGION={S3_REGION}"),
                format!("DOCUMENT_STORE_S3_ACCESS_KEY_ID={S3_ACCESS_KEY}"),
                format!("DOCUMENT_STORE_S3_SECRET_ACCESS_KEY={S3_SECRET_KEY}"),
            ];
            (lines, Running::S3Only(s3))
        }
    };
    let token = service_kit::auth::mint_token(
        &secrecy::SecretString::from(jwt_secret.clone()),
        "local-dev",
        &args.tenant,
        &service_kit::auth::Scope::ALL.map(|s| s.as_str()),
        chrono::Duration::hours(24),
    )?;

    if let Some(path) = &args.ready_file {
        let mut file = std::fs::File::create(path).context("write ready file")?;
        for line in &lines {
            writeln!(file, "{line}")?;
        }
        writeln!(file, "AUTH_JWT_SECRET={jwt_secret}")?;
        writeln!(file, "TOKEN={token}")?;
    }
    if args.services == Services::InProcess {
        print_banner(&args, &token);
    }

    shutdown.cancelled().await;
    match running {
        Running::Stack(stack) => stack.stop().await,
        Running::S3Only(s3) => s3.stop().await,
    }
    if args.drop_databases_on_exit {
        harness::drop_database(&admin_url, &args.dispute_database).await?;
        harness::drop_database(&admin_url, &args.document_database).await?;
    }
    telemetry.shutdown();
    Ok(())
}

enum Running {
    Stack(Box<Stack>),
    S3Only(S3Server),
}

fn print_banner(args: &Args, token: &str) {
    let core = args.dispute_core_addr;
    let docs = args.document_store_addr;
    println!(
        r#"
dispute platform running
  dispute-core    grpc://{core}   (disputes.v1.DisputeService)
  document-store  grpc://{docs}   (documents.v1.DocumentService)
  S3 (s3s-fs)     http://{s3}     folder {data}/s3, bucket dispute-documents
  PostgreSQL      databases {ddb} and {odb} on {pg}

dev token for tenant {tenant} (all scopes, 24 h):
export TOKEN={token}

try:
  grpcurl -plaintext {core} list
  grpcurl -plaintext {core} grpc.health.v1.Health/Check
  grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d '{{"side":"DISPUTE_SIDE_MERCHANT","stage":"DISPUTE_STAGE_CHARGEBACK","amount":"12500","currency":"usd","charge":"ch_123","network":"CARD_NETWORK_VISA","reason":"DISPUTE_REASON_FRAUDULENT"}}' {core} disputes.v1.DisputeService/CreateDispute
  grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d '{{"charge":"ch_123"}}' {core} disputes.v1.DisputeService/ListDisputes

Ctrl-C stops everything.
"#,
        s3 = args.s3_addr,
        data = args.data_dir.display(),
        ddb = args.dispute_database,
        odb = args.document_database,
        pg = harness::admin_database_url()
            .rsplit('@')
            .next()
            .and_then(|host| host.split('/').next())
            .unwrap_or_default(),
        tenant = args.tenant,
    );
}
