//! Pieces both services share: telemetry, W3C trace propagation over gRPC, JWT auth,
//! server bootstrap (health, reflection, graceful shutdown), ids, page tokens and
//! google.rpc error details.

pub mod auth;
pub mod database;
pub mod errors;
pub mod ids;
pub mod page_token;
pub mod propagation;
pub mod server;
pub mod telemetry;
