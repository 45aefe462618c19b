//! Pure types the services' domain code shares: typed ids, field violations and page tokens.
//!
//! This crate depends on no transport, storage or runtime crate (Cargo.toml says so), so a
//! domain that uses it stays pure; service-kit holds the gRPC edge and runtime wiring.

pub mod ids;
pub mod page_token;
pub mod violation;
