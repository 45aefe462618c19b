//! The money a dispute moves: balance-transaction entries, their running totals, and the
//! rules that keep them consistent with the dispute's status.
//!
//! **Signs** are those of `BalanceTransaction.amount` on the wire: from the side we serve,
//! negative takes money away.
//! - *Merchant side*, the merchant's balance: `WITHDRAWAL` −amount when the chargeback lands,
//!   `DISPUTE_FEE` −fee with it (+fee when refunded), `REINSTATEMENT` +amount when funds come
//!   back.
//! - *Issuer side*, the cardholder's account that the issuer tenant keeps ("won" means the
//!   cardholder keeps the money): `PROVISIONAL_CREDIT` +credit, `PROVISIONAL_CREDIT_REVERSAL`
//!   −credit, `WRITE_OFF` +credit the issuer funds itself (final), `REINSTATEMENT` +credit
//!   recovered through the network and never advanced provisionally (final). A provisional
//!   credit that becomes final moves no money: the credit status says FINAL.
//!
//! **Consistency**, with `lost` = `amount_lost` (the lifecycle's tests check these after every
//! transition, in `lifecycle/tests/ledger_rules.rs`):
//! - merchant, open: 0 ≤ funds withdrawn ≤ amount, fee charged ≥ 0;
//! - merchant, WON or LOST: funds withdrawn = `lost`; LOST also carries the fee; a WON dispute
//!   nets at least −`lost` − fee (a full win nets −fee, or 0 when the fee is refunded);
//! - merchant, CLOSED: nothing moved (net 0);
//! - issuer, open: the cardholder holds exactly the outstanding provisional credit;
//! - issuer, WON or LOST: the cardholder holds exactly `amount_won`, and the credit status is
//!   FINAL when that is positive, else REVERSED after a provisional credit, else NONE.

use chrono::{DateTime, Utc};

use super::enums::BalanceTransactionType;

/// The largest amount a dispute may carry, in minor units.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000_000;

/// A money movement caused by a dispute, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct BalanceTransaction {
    pub id: String,
    pub kind: BalanceTransactionType,
    pub amount: i64,
    pub currency: String,
    pub create_time: DateTime<Utc>,
    pub description: String,
}

/// Money rules the tenant configures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MoneyPolicy {
    /// Fee charged with a merchant-side chargeback withdrawal, in the dispute's minor units.
    pub dispute_fee: i64,
    /// Whether a WON merchant dispute gets its fee back (only some schemes do, e.g. Visa
    /// compliance cases; docs/lifecycle.md, ST3).
    pub refund_fee_on_win: bool,
}

/// One money movement to append, with a signed amount (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub kind: BalanceTransactionType,
    pub amount: i64,
    pub description: String,
}

impl LedgerEntry {
    fn new(kind: BalanceTransactionType, amount: i64, description: impl Into<String>) -> Self {
        LedgerEntry {
            kind,
            amount,
            description: description.into(),
        }
    }
}

/// Sums of a dispute's entries by type: all the lifecycle needs to know about its money.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerTotals {
    pub withdrawal: i64,
    pub dispute_fee: i64,
    pub reinstatement: i64,
    pub provisional_credit: i64,
    pub provisional_credit_reversal: i64,
    pub write_off: i64,
    /// How many WITHDRAWAL entries exist (a chargeback has landed at least once).
    pub withdrawals: u32,
    /// How many PROVISIONAL_CREDIT entries exist (the credit is given once, H5).
    pub provisional_credits: u32,
}

impl LedgerTotals {
    pub fn from_entries<I>(entries: I) -> LedgerTotals
    where
        I: IntoIterator<Item = (BalanceTransactionType, i64)>,
    {
        let mut totals = LedgerTotals::default();
        for (kind, amount) in entries {
            totals.add(kind, amount);
        }
        totals
    }

    pub fn from_balance_transactions(transactions: &[BalanceTransaction]) -> LedgerTotals {
        LedgerTotals::from_entries(transactions.iter().map(|t| (t.kind, t.amount)))
    }

    pub fn add(&mut self, kind: BalanceTransactionType, amount: i64) {
        match kind {
            BalanceTransactionType::Withdrawal => {
                self.withdrawal += amount;
                self.withdrawals += 1;
            }
            BalanceTransactionType::DisputeFee => self.dispute_fee += amount,
            BalanceTransactionType::Reinstatement => self.reinstatement += amount,
            BalanceTransactionType::ProvisionalCredit => {
                self.provisional_credit += amount;
                self.provisional_credits += 1;
            }
            BalanceTransactionType::ProvisionalCreditReversal => {
                self.provisional_credit_reversal += amount
            }
            BalanceTransactionType::WriteOff => self.write_off += amount,
        }
    }

    /// Sum of every entry.
    pub fn net(&self) -> i64 {
        self.withdrawal
            + self.dispute_fee
            + self.reinstatement
            + self.provisional_credit
            + self.provisional_credit_reversal
            + self.write_off
    }

    /// Merchant side: disputed funds currently held back (withdrawn and not reinstated).
    pub fn funds_withdrawn(&self) -> i64 {
        -(self.withdrawal + self.reinstatement)
    }

    /// Merchant side: dispute fee currently charged (charged and not refunded).
    pub fn fee_charged(&self) -> i64 {
        -self.dispute_fee
    }

    pub fn has_withdrawal(&self) -> bool {
        self.withdrawals > 0
    }

    /// Issuer side: provisional credit the cardholder holds now.
    pub fn provisional_credit_outstanding(&self) -> i64 {
        self.provisional_credit + self.provisional_credit_reversal
    }

    pub fn provisional_credit_given(&self) -> bool {
        self.provisional_credits > 0
    }

    /// Issuer side: final credits (write-off and recovered funds).
    pub fn final_credit(&self) -> i64 {
        self.write_off + self.reinstatement
    }
}

/// Merchant side: the entries that bring withdrawn funds and the charged fee to the targets.
pub(crate) fn merchant_settlement(
    totals: &LedgerTotals,
    target_withdrawn: i64,
    target_fee: i64,
    withdrawal_description: &str,
    reinstatement_description: &str,
) -> Vec<LedgerEntry> {
    let mut entries = Vec::new();
    let withdrawn = totals.funds_withdrawn();
    if target_withdrawn > withdrawn {
        entries.push(LedgerEntry::new(
            BalanceTransactionType::Withdrawal,
            withdrawn - target_withdrawn,
            withdrawal_description,
        ));
    } else if target_withdrawn < withdrawn {
        entries.push(LedgerEntry::new(
            BalanceTransactionType::Reinstatement,
            withdrawn - target_withdrawn,
            reinstatement_description,
        ));
    }
    let fee = totals.fee_charged();
    if target_fee > fee {
        entries.push(LedgerEntry::new(
            BalanceTransactionType::DisputeFee,
            fee - target_fee,
            "dispute fee",
        ));
    } else if target_fee < fee {
        entries.push(LedgerEntry::new(
            BalanceTransactionType::DisputeFee,
            fee - target_fee,
            "dispute fee refunded",
        ));
    }
    entries
}

/// Issuer side: the entries that leave the cardholder holding `target_credit`. Excess
/// provisional credit is reversed; a shortfall is credited as `final_credit_kind` (WRITE_OFF
/// when the issuer absorbs it, REINSTATEMENT when the network recovered it).
pub(crate) fn issuer_settlement(
    totals: &LedgerTotals,
    target_credit: i64,
    final_credit_kind: BalanceTransactionType,
    final_credit_description: &str,
) -> Vec<LedgerEntry> {
    let held = totals.net();
    if target_credit < held {
        vec![LedgerEntry::new(
            BalanceTransactionType::ProvisionalCreditReversal,
            target_credit - held,
            "provisional credit reversed",
        )]
    } else if target_credit > held {
        vec![LedgerEntry::new(
            final_credit_kind,
            target_credit - held,
            final_credit_description,
        )]
    } else {
        Vec::new()
    }
}

/// H7 refused: the disputes of one charge would exceed its original amount. The lifecycle
/// turns it into `LifecycleError::ExceedsOriginalAmount` (FAILED_PRECONDITION,
/// AMOUNT_EXCEEDS_ORIGINAL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExceedsOriginalAmount {
    pub original_amount: i64,
    pub already_disputed: i64,
    pub amount: i64,
}

/// H7: several disputes on one charge or transaction never exceed its original amount when
/// it is known. `already_disputed` is the sum of the other disputes' amounts that are still
/// open or were lost (the application sums them inside its transaction).
pub fn check_within_original_amount(
    original_amount: Option<i64>,
    already_disputed: i64,
    amount: i64,
) -> Result<(), ExceedsOriginalAmount> {
    match original_amount {
        Some(original) if already_disputed.saturating_add(amount) > original => {
            Err(ExceedsOriginalAmount {
                original_amount: original,
                already_disputed,
                amount,
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BalanceTransactionType::*;

    #[test]
    fn totals_sum_by_type() {
        let totals = LedgerTotals::from_entries([
            (Withdrawal, -1000),
            (DisputeFee, -1500),
            (Reinstatement, 1000),
            (DisputeFee, 1500),
        ]);
        assert_eq!(totals.funds_withdrawn(), 0);
        assert_eq!(totals.fee_charged(), 0);
        assert_eq!(totals.net(), 0);
        assert!(totals.has_withdrawal());
        assert!(!totals.provisional_credit_given());
    }

    #[test]
    fn merchant_settlement_moves_only_the_difference() {
        let none = LedgerTotals::default();
        let entries = merchant_settlement(&none, 1000, 1500, "chargeback withdrawal", "x");
        assert_eq!(
            entries,
            vec![
                LedgerEntry::new(Withdrawal, -1000, "chargeback withdrawal"),
                LedgerEntry::new(DisputeFee, -1500, "dispute fee"),
            ]
        );
        let withdrawn = LedgerTotals::from_entries([(Withdrawal, -1000), (DisputeFee, -1500)]);
        assert!(merchant_settlement(&withdrawn, 1000, 1500, "w", "r").is_empty());
        let won = merchant_settlement(&withdrawn, 0, 0, "w", "funds reinstated");
        assert_eq!(
            won,
            vec![
                LedgerEntry::new(Reinstatement, 1000, "funds reinstated"),
                LedgerEntry::new(DisputeFee, 1500, "dispute fee refunded"),
            ]
        );
        // partial: 400 stays withdrawn
        let partial = merchant_settlement(&withdrawn, 400, 1500, "w", "r");
        assert_eq!(partial, vec![LedgerEntry::new(Reinstatement, 600, "r")]);
    }

    #[test]
    fn issuer_settlement_reverses_excess_or_credits_the_shortfall() {
        let credited = LedgerTotals::from_entries([(ProvisionalCredit, 1000)]);
        assert_eq!(
            issuer_settlement(&credited, 0, WriteOff, "w"),
            vec![LedgerEntry::new(
                ProvisionalCreditReversal,
                -1000,
                "provisional credit reversed"
            )]
        );
        assert_eq!(
            issuer_settlement(&credited, 600, Reinstatement, "r"),
            vec![LedgerEntry::new(
                ProvisionalCreditReversal,
                -400,
                "provisional credit reversed"
            )]
        );
        assert!(issuer_settlement(&credited, 1000, WriteOff, "w").is_empty());
        assert_eq!(
            issuer_settlement(&LedgerTotals::default(), 1000, WriteOff, "written off"),
            vec![LedgerEntry::new(WriteOff, 1000, "written off")]
        );
    }

    #[test]
    fn original_amount_caps_the_disputes_of_a_charge() {
        assert!(check_within_original_amount(None, 5000, 5000).is_ok());
        assert!(check_within_original_amount(Some(10_000), 6000, 4000).is_ok());
        assert_eq!(
            check_within_original_amount(Some(10_000), 6000, 4001),
            Err(ExceedsOriginalAmount {
                original_amount: 10_000,
                already_disputed: 6000,
                amount: 4001
            })
        );
    }
}
