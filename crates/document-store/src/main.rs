use clap::Parser;
use document_store::{Command, Config};
use service_kit::telemetry::init;
use tokio_util::sync::CancellationToken;

// Uploads allocate and free megabytes of part buffers on many threads; glibc keeps freed
// memory in per-thread arenas, so its peak RSS grew with the file (docs/performance.md,
// "Upload memory"). mimalloc returns freed pages to the system.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let telemetry = init(config.telemetry_options())?;
    if config.command == Some(Command::Migrate) {
        let result = document_store::migrate(&config).await;
        if let Err(error) = &result {
            tracing::error!(error = ?error, "document-store migrate failed");
        }
        telemetry.shutdown();
        return result;
    }
    let listener = tokio::net::TcpListener::bind(config.listen_addr).await?;
    let shutdown = CancellationToken::new();
    service_kit::server::cancel_on_signal(shutdown.clone());
    let result = document_store::run(config, listener, shutdown).await;
    if let Err(error) = &result {
        tracing::error!(error = ?error, "document-store failed");
    }
    telemetry.shutdown();
    result
}
