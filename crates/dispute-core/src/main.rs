use clap::Parser;
use dispute_core::{Command, Config};
use service_kit::telemetry::init;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let telemetry = init(config.telemetry_options())?;
    if config.command == Some(Command::Migrate) {
        let result = dispute_core::migrate(&config).await;
        if let Err(error) = &result {
            tracing::error!(error = ?error, "dispute-core migrate failed");
        }
        telemetry.shutdown();
        return result;
    }
    let listener = tokio::net::TcpListener::bind(config.listen_addr).await?;
    let shutdown = CancellationToken::new();
    service_kit::server::cancel_on_signal(shutdown.clone());
    let result = dispute_core::run(config, listener, shutdown).await;
    if let Err(error) = &result {
        tracing::error!(error = ?error, "dispute-core failed");
    }
    telemetry.shutdown();
    result
}
