//! Pure rules of dispute-core: no I/O, no tonic, no sqlx.

pub mod currency;
pub mod deadlines;
pub mod dispute;
pub mod enums;
pub mod error;
pub mod evidence;
pub mod ledger;
pub mod lifecycle;
pub mod requests;

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
