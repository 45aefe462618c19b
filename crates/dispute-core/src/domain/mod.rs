//! Pure rules of dispute-core: no I/O, no tonic, no sqlx.
//!
//! Dependency order (a file uses only files before it; no cycles):
//! `enums`, `currency`, `error` → `deadlines`, `ledger` (money, balance transactions) →
//! `lifecycle/`: `inputs` → `state` → `errors` → `outcome` (the decisions, and
//! `DisputeEvent`: the one list of event types) → `amounts` → `change` →
//! `tenant_actions`, `network_events`, `deadline_sweep` → `opening` → `lifecycle/mod.rs` →
//! `dispute` (the stored dispute and its bridge to the lifecycle: `Dispute::lifecycle_state`,
//! `LifecycleState::from_dispute`, `Transition::apply_to_dispute`). `evidence` uses `enums`.
//! Then `webhooks/` (endpoints, deliveries and attempts; URL, retry and signature rules; it
//! uses `DisputeEvent`) → `requests/` (every RPC's request checked, by family; it uses all
//! of the above). `retention` (purge cutoffs) uses nothing.

pub mod currency;
pub mod deadlines;
pub mod dispute;
pub mod enums;
pub mod error;
pub mod evidence;
pub mod ledger;
pub mod lifecycle;
pub mod requests;
pub mod retention;
pub mod webhooks;

pub use currency::Currency;
pub use dispute::{
    ActionRecord, BalanceTransaction, Dispute, DisputeFilter, EnumInput, NewDispute,
    NewDisputeDraft,
};
pub use enums::*;
pub use error::DisputeError;
pub use ledger::{LedgerEntry, MoneyPolicy};
pub use lifecycle::{
    AvailableAction, Decision, DisputeEvent, LifecycleError, LifecycleState, NetworkEvent,
    NetworkEventKind, TenantAction, Transition, Trigger,
};
