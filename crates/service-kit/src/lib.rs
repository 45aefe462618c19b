//! What both services share around their domains: the gRPC edge and the runtime wiring.
//!
//! - **gRPC edge**: server bootstrap with health, reflection (each service passes its own
//!   descriptor set) and a bounded drain ([`server`]), the unary call limit
//!   ([`call_limit`]) with each tenant's fair share of it ([`fair_share`]), JWT auth
//!   ([`auth`]), W3C trace propagation and the access log ([`propagation`]), google.rpc
//!   error details ([`errors`], [`dependency`]), TLS ([`tls`]) and timestamps ([`time`]).
//! - **Runtime wiring**: the flag groups both services take ([`config`]), telemetry
//!   ([`telemetry`]) and the kit's metrics ([`metrics`]), PostgreSQL pools and migrations
//!   ([`database`]), readiness ([`readiness`]) and periodic workers ([`worker`]).
//!
//! The kit knows no product proto and no service's own metrics. The pure types the domains
//! use (ids, violations, page tokens) live in `domain-kit`.

pub mod auth;
pub mod call_limit;
pub mod config;
pub mod database;
pub mod dependency;
pub mod errors;
pub mod fair_share;
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
