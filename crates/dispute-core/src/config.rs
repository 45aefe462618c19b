//! Flags with environment fallbacks; defaults run on a dev box.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "dispute-core",
    about = "disputes.v1.DisputeService: dispute lifecycle, evidence and events"
)]
pub struct Config {
    /// Address the gRPC server listens on.
    #[arg(
        long,
        env = "DISPUTE_CORE_LISTEN_ADDR",
        default_value = "127.0.0.1:50051"
    )]
    pub listen_addr: SocketAddr,
    /// PostgreSQL URL of dispute-core's own database.
    #[arg(
        long,
        env = "DISPUTE_CORE_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/disputes",
        hide_env_values = true
    )]
    pub database_url: SecretString,
    #[arg(long, env = "DISPUTE_CORE_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,
    /// gRPC URL of document-store.
    #[arg(
        long,
        env = "DISPUTE_CORE_DOCUMENT_STORE_URL",
        default_value = "http://127.0.0.1:50052"
    )]
    pub document_store_url: String,
    /// How long in-flight calls may run after SIGTERM.
    #[arg(long, env = "DISPUTE_CORE_DRAIN_TIMEOUT_SECS", default_value_t = 20)]
    pub drain_timeout_secs: u64,
    /// How long shutdown waits, after the drain, for a background worker run (deadline
    /// sweeper, key purger) to finish; a run still going then is cut off and its
    /// transaction rolls back. preStop + drain + this must fit in the pod's grace period.
    #[arg(
        long,
        env = "DISPUTE_CORE_WORKER_STOP_TIMEOUT_SECS",
        default_value_t = 5
    )]
    pub worker_stop_timeout_secs: u64,
    /// Fee charged with a merchant-side chargeback withdrawal, in the dispute's minor units.
    #[arg(long, env = "DISPUTE_CORE_DISPUTE_FEE", default_value_t = 1500)]
    pub dispute_fee: i64,
    /// Give the dispute fee back when a merchant-side dispute is won.
    #[arg(long, env = "DISPUTE_CORE_REFUND_FEE_ON_WIN", default_value_t = false, action = clap::ArgAction::Set)]
    pub refund_fee_on_win: bool,
    /// How often the deadline sweeper looks for passed deadlines.
    #[arg(long, env = "DISPUTE_CORE_SWEEP_INTERVAL_SECS", default_value_t = 30)]
    pub sweep_interval_secs: u64,
    /// HS256 key shared with document-store (at least 32 bytes).
    #[arg(long, env = "AUTH_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: SecretString,
}

impl Config {
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }

    pub fn worker_stop_timeout(&self) -> Duration {
        Duration::from_secs(self.worker_stop_timeout_secs)
    }
}
