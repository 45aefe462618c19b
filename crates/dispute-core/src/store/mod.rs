//! Storage in PostgreSQL, one module per table or concern. Functions take
//! `&mut PgConnection` so callers compose transactions; every query filters by tenant
//! (except the sweeper's claim, which works across tenants).

pub mod deadlines;
pub mod disputed_totals;
pub mod disputes;
pub mod events;
pub mod evidence_texts;
pub mod history;
pub mod idempotency;
pub mod ledger;
pub mod lock_intents;
pub mod network;
pub mod retention;
pub mod round_notice;
mod rows;
pub mod staged_holds;
pub mod webhooks;
