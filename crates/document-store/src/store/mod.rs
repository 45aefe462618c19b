//! Storage: metadata in PostgreSQL, bytes in S3-compatible object storage.

pub mod postgres;
pub mod s3;
