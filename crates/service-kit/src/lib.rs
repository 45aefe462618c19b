//! Pieces both services share: telemetry, W3C trace propagation over gRPC, JWT auth,
//! server bootstrap (health, reflection, graceful shutdown), periodic workers, typed ids,
//! paging, timestamps and google.rpc error details.
//!
//! `violation`, `ids`, `page_token` are pure (no tonic, sqlx or I/O): the services' domain
//! code may use them. Everything else is transport or runtime plumbing.

pub mod auth;
pub mod call_limit;
pub mod database;
pub mod dependency;
pub mod errors;
pub mod ids;
pub mod metrics;
pub mod page_token;
mod prometheus;
pub mod propagation;
pub mod readiness;
pub mod server;
pub mod telemetry;
pub mod time;
pub mod tls;
pub mod violation;
pub mod worker;

#[cfg(feature = "test-support")]
pub mod testing;
