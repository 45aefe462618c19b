//! Pure rules of dispute-core: no I/O, no tonic, no sqlx.

pub mod currency;
pub mod dispute;
pub mod enums;
pub mod error;
pub mod evidence;

pub use currency::Currency;
pub use dispute::{
    ActionRecord, BalanceTransaction, Dispute, DisputeFilter, EnumInput, NewDispute,
    NewDisputeDraft,
};
pub use enums::*;
pub use error::DisputeError;
