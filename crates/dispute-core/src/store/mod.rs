//! Storage in PostgreSQL.

pub mod postgres;
