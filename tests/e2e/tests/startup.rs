//! How the binaries start, as the Kubernetes setup relies on it:
//! - `dispute-core migrate` / `document-store migrate` bring a schema up to date, and with
//!   migrate-on-start off a replica serves with a role that has no DDL rights, but refuses
//!   to start on a schema that lacks one of its migrations;
//! - document-store started before its bucket exists waits out of rotation (readiness
//!   NOT_SERVING, the process up) and turns ready once the bucket appears, instead of
//!   crash-looping.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use document_store::store::s3::ChecksumMode;
use harness::S3Server;
use harness::tonic_health_client::health_check_service;
use sqlx::Connection;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "operability-test-secret-0123456789abcdef";

/// A database of its own (dropped at the end), named after the test.
async fn fresh_database(name: &str) -> String {
    let admin = harness::admin_database_url();
    let database = format!("ops_{name}_{}", std::process::id());
    harness::drop_database(&admin, &database).await.unwrap();
    harness::ensure_database(&admin, &database).await.unwrap()
}

async fn drop_fresh_database(url: &str) {
    let database = url
        .rsplit('/')
        .next()
        .and_then(|tail| tail.split('?').next())
        .unwrap();
    harness::drop_database(&harness::admin_database_url(), database)
        .await
        .unwrap();
}

/// `url` with `user:password` as its credentials.
fn url_as(url: &str, user: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let host_and_path = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}:{password}@{host_and_path}")
}

async fn wait_for_health(addr: SocketAddr, service: &str, serving: bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if health_check_service(addr, service)
            .await
            .is_ok_and(|s| s == serving)
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "health of {service:?} on {addr} did not become serving={serving}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn dispute_core_config(database_url: &str, migrate_on_start: bool) -> dispute_core::Config {
    dispute_core::Config::try_parse_from([
        "dispute-core",
        "--database-url",
        database_url,
        "--migrate-on-start",
        if migrate_on_start { "true" } else { "false" },
        "--jwt-secret",
        SECRET,
        "--webhook-secret-keys",
        harness::process::TEST_WEBHOOK_SECRET_KEYS,
        // Never called here: the channel connects lazily.
        "--document-store-url",
        "http://127.0.0.1:9",
    ])
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_subcommand_then_a_dml_only_role_serves() {
    let url = fresh_database("migrate").await;
    let role = format!("ops_app_{}", std::process::id());
    let password = "ops-app-test-pw";

    // Without migrations and with migrate-on-start off, the replica refuses to start.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = dispute_core::run(
        dispute_core_config(&url, false),
        listener,
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(
        format!("{refused:#}").contains("run `dispute-core migrate`"),
        "{refused:#}"
    );

    // `dispute-core migrate`, twice (a re-run Job changes nothing).
    let parsed = dispute_core::Config::try_parse_from([
        "dispute-core",
        "--database-url",
        url.as_str(),
        "migrate",
    ])
    .unwrap();
    assert_eq!(parsed.command, Some(dispute_core::Command::Migrate));
    dispute_core::migrate(&parsed).await.unwrap();
    dispute_core::migrate(&parsed).await.unwrap();

    // A role with data rights only (PostgreSQL 15: no CREATE on schema public).
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    for statement in [
        format!("drop role if exists {role}"),
        format!("create role {role} login password '{password}'"),
        format!("grant usage on schema public to {role}"),
        format!("grant select, insert, update, delete on all tables in schema public to {role}"),
        format!("grant usage, select on all sequences in schema public to {role}"),
    ] {
        sqlx::query(&statement).execute(&mut admin).await.unwrap();
    }
    let app_url = url_as(&url, &role, password);
    let mut app = sqlx::PgConnection::connect(&app_url).await.unwrap();
    let ddl = sqlx::query("create table ops_probe (id int)")
        .execute(&mut app)
        .await
        .unwrap_err();
    assert!(ddl.to_string().contains("permission denied"), "{ddl}");
    app.close().await.unwrap();

    // That role serves once the schema is complete.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn(dispute_core::run(
        dispute_core_config(&app_url, false),
        listener,
        shutdown.clone(),
    ));
    wait_for_health(addr, "disputes.v1.DisputeService", true).await;
    let token = service_kit::auth::mint_token(
        &secrecy::SecretString::from(SECRET),
        "ops-test",
        "acme",
        &["disputes:read"],
        chrono::Duration::hours(1),
    )
    .unwrap();
    let mut disputes = disputes_proto::disputes::v1::dispute_service_client::DisputeServiceClient::with_interceptor(
        harness::connect(addr).await.unwrap(),
        harness::Bearer::new(Some(&token)).unwrap(),
    );
    let listed = disputes
        .list_disputes(disputes_proto::disputes::v1::ListDisputesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.disputes.is_empty());
    shutdown.cancel();
    serving.await.unwrap().unwrap();

    drop_fresh_database(&url).await;
    let mut admin = sqlx::PgConnection::connect(&harness::admin_database_url())
        .await
        .unwrap();
    sqlx::query(&format!("drop role if exists {role}"))
        .execute(&mut admin)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_store_waits_for_its_bucket() {
    let url = fresh_database("bucket").await;
    let s3_root = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(s3_root.path(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let config = document_store::Config::try_parse_from([
        "document-store",
        "--database-url",
        url.as_str(),
        "--jwt-secret",
        SECRET,
        "--s3-endpoint",
        s3.endpoint.as_str(),
        "--s3-bucket",
        "created-later",
        "--s3-access-key-id",
        harness::S3_ACCESS_KEY,
        "--s3-secret-access-key",
        harness::S3_SECRET_KEY,
        "--s3-checksum-mode",
        "when-required",
        "--health-probe-interval-ms",
        "100",
    ])
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn(document_store::run(config, listener, shutdown.clone()));

    // Up (liveness) but out of rotation (readiness) while the bucket is missing.
    wait_for_health(addr, "", true).await;
    wait_for_health(addr, "documents.v1.DocumentService", false).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !serving.is_finished(),
        "document-store exited without its bucket"
    );

    s3.client(ChecksumMode::WhenRequired)
        .create_bucket()
        .bucket("created-later")
        .send()
        .await
        .unwrap();
    wait_for_health(addr, "documents.v1.DocumentService", true).await;

    shutdown.cancel();
    serving.await.unwrap().unwrap();
    s3.stop().await;
    drop_fresh_database(&url).await;
}
