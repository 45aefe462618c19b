//! The outbound clients: document-store over gRPC (`documents`), and the HTTP client that
//! POSTs webhook deliveries to receivers (`webhook_http`, with the resolver that keeps
//! private addresses out).

pub mod documents;
pub mod webhook_http;
