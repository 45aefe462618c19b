//! End-to-end tests: both services on 127.0.0.1:0 over real TCP, real PostgreSQL and a real
//! S3-protocol server (s3s-fs, checking signatures) over HTTP.

#![allow(clippy::unwrap_used)]

mod architecture;
mod auth;
mod contract_docs11;
mod contract_history;
mod contract_money;
mod contract_network;
mod contract_regulation;
mod contract_scopes;
mod contract_text;
mod dependencies;
mod disputes;
mod documents;
mod events_feed;
mod evidence;
mod faults;
mod fixtures;
mod hazards;
mod observability;
mod operability;
mod overload;
mod scenarios;
mod shutdown;
mod stack;
mod submission;
mod tls;
mod tracing_propagation;
mod upload_cancel;
mod webhooks;
mod webhooks_replicas;
mod workers;
