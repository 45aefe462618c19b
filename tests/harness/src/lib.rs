//! A whole dispute platform in one process, on real parts: an S3-protocol server (s3s-fs,
//! checking SigV4 signatures) over HTTP, PostgreSQL databases, and both gRPC services on
//! TCP. The end-to-end tests and the `local-stack` command both use it.

#![allow(clippy::unwrap_used)]

mod clients;
mod database;
pub mod fault_proxy;
pub mod figures;
pub mod jwks_server;
pub mod otlp_sink;
pub mod private_postgres;
pub mod process;
mod proxy;
mod s3;
mod stack;
pub mod storage;
pub mod webhook_receiver;

pub use clients::{
    Bearer, DisputesClient, DocumentsClient, connect, documents_client, tonic_health_client,
};
pub use database::{
    admin_database_url, database_exists, database_url_for, drop_database, drop_databases_blocking,
    ensure_database,
};
pub use proxy::CuttableProxy;
pub use s3::{S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY, S3Server};
pub use stack::{DEFAULT_DISPUTE_FEE, Stack, StackOptions, full_scope_token, test_webhook_flags};

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
        prometheus_addr: None,
    })
    .ok()
}

pub use chrono;
