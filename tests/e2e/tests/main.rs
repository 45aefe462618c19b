//! End-to-end tests: both services on 127.0.0.1:0 over real TCP, real PostgreSQL and a real
//! S3-protocol server (s3s-fs, checking signatures) over HTTP.

#![allow(clippy::unwrap_used)]

mod architecture;
mod auth;
mod background_credential;
mod card_network;
mod concurrency;
mod dependency_failures;
mod disputes;
mod document_locking;
mod documents;
mod events_feed;
mod evidence;
mod fair_admission;
mod faults;
mod field_formats;
mod fixtures;
mod hazards;
mod history_paging;
mod idempotency;
mod identity_provider;
mod money;
mod observability;
mod overload;
mod quiet_writers;
mod regulation;
mod request_limits;
mod retention;
mod scenarios;
mod scopes;
mod sequencer_stall;
mod shutdown;
mod stack_cleanup;
mod startup;
mod storage_growth;
mod stream_limits;
mod submission;
mod tls;
mod tracing_propagation;
mod upload_cleaner;
mod uploads;
mod validation;
mod webhook_fairness;
mod webhook_secrets;
mod webhook_ssrf;
mod webhooks;
mod webhooks_replicas;
