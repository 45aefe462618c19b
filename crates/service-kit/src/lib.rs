//! Pieces both services share at their edges: telemetry, W3C trace propagation over gRPC,
//! JWT auth, server bootstrap (health, reflection, graceful shutdown), periodic workers,
//! timestamps and google.rpc error details.
//!
//! The pure types the domains use (ids, violations, page tokens) live in `domain-kit`.

pub mod auth;
pub mod call_limit;
pub mod config;
pub mod database;
pub mod dependency;
pub mod errors;
pub mod metrics;
mod prometheus;
pub mod propagation;
pub mod readiness;
pub mod server;
pub mod telemetry;
pub mod time;
pub mod tls;
pub mod worker;

#[cfg(feature = "test-support")]
pub mod testing;
