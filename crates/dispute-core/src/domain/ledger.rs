//! The money a dispute moves: balance-transaction entries, their fees, their running totals,
//! and the rules that keep them consistent with the dispute's status.
//!
//! **Signs** are those of `BalanceTransaction.amount` on the wire: from the side we serve,
//! negative takes money away. An entry's `fee` is what the fees on it cost our side
//! (positive when charged, negative when refunded) and `net` = `amount` − `fee` (seed 004: a
//! withdrawal of −50 with a 1500 dispute fee reads amount −50, fee 1500, net −1550).
//! - *Merchant side*, the merchant's balance: `WITHDRAWAL` −amount when the chargeback lands,
//!   carrying the dispute fee (fee +fee) the first time; `REINSTATEMENT` +amount when funds
//!   come back, carrying the fee refund (fee −fee) when the fee is refunded with it. A fee
//!   charged or refunded while no funds move is a `DISPUTE_FEE` entry of amount 0.
//! - *Issuer side*, the cardholder's account that the issuer tenant keeps ("won" means the
//!   cardholder keeps the money): `PROVISIONAL_CREDIT` +credit, `PROVISIONAL_CREDIT_REVERSAL`
//!   −credit, `WRITE_OFF` +credit the issuer funds itself (final), `REINSTATEMENT` +credit
//!   recovered through the network and never advanced provisionally (final). A provisional
//!   credit that becomes final moves no money: the credit status says FINAL. The cardholder
//!   holds the sum of the `amount`s; fees are the issuer's own cost, never the cardholder's.
//! - *Both sides*: `ARBITRATION_FEE`, amount 0, fee +the network's arbitration fee when the
//!   dispute enters ARBITRATION (M12, I12), and fee −the same when the network decides it for
//!   us (the losing party bears it).
//!
//! **Consistency**, with `lost` = `amount_lost` (the lifecycle's tests check these after every
//! transition, in `lifecycle/tests/ledger_rules.rs`):
//! - merchant, open: 0 ≤ funds withdrawn ≤ amount, fee charged ≥ 0;
//! - merchant, WON or LOST: funds withdrawn = `lost`; LOST also carries the fee; a WON dispute
//!   nets at least −`lost` − fee (a full win nets −fee, or 0 when the fee is refunded);
//!   net = −`lost` − dispute fee − arbitration fee;
//! - merchant, CLOSED: nothing moved (net 0);
//! - issuer, open: the cardholder holds exactly the outstanding provisional credit;
//! - issuer, WON or LOST: the cardholder holds exactly `amount_won`, and the credit status is
//!   FINAL when that is positive, else REVERSED after a provisional credit, else NONE;
//! - both: the arbitration fee charged is 0 or the configured one, and is charged only in
//!   ARBITRATION; the issuer side never carries a dispute fee.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use super::currency::{Currency, format_minor_units};
use super::enums::{BalanceTransactionStatus, BalanceTransactionType, FeeType};

/// The largest amount a dispute may carry, in minor units.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000_000;

/// One fee on a balance transaction (seed 004's `fee_details`), in the entry's currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeDetail {
    pub kind: FeeType,
    /// Positive when charged, negative when refunded.
    pub amount: i64,
    pub description: String,
}

/// A money movement caused by a dispute, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct BalanceTransaction {
    pub id: String,
    pub kind: BalanceTransactionType,
    pub amount: i64,
    pub fee_details: Vec<FeeDetail>,
    pub currency: String,
    pub create_time: DateTime<Utc>,
    pub description: String,
    /// PENDING until `available_on`, then AVAILABLE (as read).
    pub status: BalanceTransactionStatus,
    /// `dispute`, `dispute_reversal`, `fee` or `issuing_dispute`; see [`reporting_category`].
    pub reporting_category: String,
    pub available_on: DateTime<Utc>,
}

impl BalanceTransaction {
    /// What the fees cost our side (negative when refunded).
    pub fn fee(&self) -> i64 {
        self.fee_details.iter().map(|detail| detail.amount).sum()
    }

    /// `amount` − `fee`: what the entry does to our side's balance.
    pub fn net(&self) -> i64 {
        self.amount - self.fee()
    }
}

/// Stripe's reporting category of an entry: merchant withdrawals `dispute`, reinstatements
/// `dispute_reversal`, fee-only entries `fee`; every issuer-side entry `issuing_dispute`.
pub fn reporting_category(issuer_side: bool, kind: BalanceTransactionType) -> &'static str {
    match (issuer_side, kind) {
        (_, BalanceTransactionType::DisputeFee | BalanceTransactionType::ArbitrationFee) => "fee",
        (true, _) => "issuing_dispute",
        (false, BalanceTransactionType::Reinstatement) => "dispute_reversal",
        (false, _) => "dispute",
    }
}

/// Fees by currency, in each currency's minor units (JPY in yen). A currency without an
/// entry has no fee. Written and parsed as `USD=1500,EUR=1500,JPY=2000`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeeSchedule(BTreeMap<String, i64>);

impl FeeSchedule {
    /// The fee for a currency; `None` when none is configured.
    pub fn fee(&self, currency: &str) -> Option<i64> {
        self.0.get(currency).copied()
    }
}

impl FromStr for FeeSchedule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut fees = BTreeMap::new();
        for item in text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            let (code, amount) = item
                .split_once('=')
                .ok_or_else(|| format!("`{item}`: expected CURRENCY=AMOUNT"))?;
            let currency = Currency::parse(code)
                .ok_or_else(|| format!("`{code}` is not an ISO 4217 currency code"))?;
            let amount: i64 = amount.trim().parse().map_err(|_| {
                format!("`{item}`: the fee is a whole number of the currency's minor units")
            })?;
            if !(0..=MAX_AMOUNT).contains(&amount) {
                return Err(format!(
                    "`{item}`: the fee must be between 0 and {MAX_AMOUNT}"
                ));
            }
            if fees.insert(currency.as_str().to_owned(), amount).is_some() {
                return Err(format!("{} is given twice", currency.as_str()));
            }
        }
        Ok(FeeSchedule(fees))
    }
}

impl fmt::Display for FeeSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self
            .0
            .iter()
            .map(|(code, amount)| format!("{code}={amount}"))
            .collect();
        f.write_str(&items.join(","))
    }
}

/// Default dispute fees (`--dispute-fees`): USD 15.00 and its usual equivalents; JPY 2000
/// is two thousand yen (no decimals).
pub const DEFAULT_DISPUTE_FEES: &str = "USD=1500,EUR=1500,GBP=1500,CAD=1500,AUD=1500,JPY=2000";
/// Default arbitration fees (`--arbitration-fees`): USD 500.00 (SY5) and equivalents.
pub const DEFAULT_ARBITRATION_FEES: &str =
    "USD=50000,EUR=50000,GBP=50000,CAD=50000,AUD=50000,JPY=75000";

/// Money rules the tenant configures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoneyPolicy {
    /// Fee charged with a merchant-side chargeback withdrawal, per currency. A currency
    /// without one is charged no fee (the history says so).
    pub dispute_fees: FeeSchedule,
    /// The network's arbitration fee, per currency (M12, I12); none when not configured.
    pub arbitration_fees: FeeSchedule,
    /// Whether a WON merchant dispute gets its fee back (only some schemes do, e.g. Visa
    /// compliance cases; docs/lifecycle.md, ST3).
    pub refund_fee_on_win: bool,
    /// Days after the day of an entry until its money is available (`available_on`).
    pub settlement_days: u32,
}

/// Default of `--balance-settlement-days` (seed 004: created on the 21st, available on the
/// 28th at midnight UTC).
pub const DEFAULT_SETTLEMENT_DAYS: u32 = 7;

/// When an entry's money becomes available: midnight UTC, `settlement_days` after the UTC day
/// it was created.
pub fn available_on(created: DateTime<Utc>, settlement_days: u32) -> DateTime<Utc> {
    let day = created.date_naive() + chrono::Days::new(u64::from(settlement_days));
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

impl MoneyPolicy {
    /// One dispute fee for one currency, no arbitration fee (tests and small setups).
    pub fn with_dispute_fee(currency: &str, fee: i64) -> MoneyPolicy {
        let mut fees = BTreeMap::new();
        fees.insert(currency.to_owned(), fee);
        MoneyPolicy {
            dispute_fees: FeeSchedule(fees),
            arbitration_fees: FeeSchedule::default(),
            refund_fee_on_win: false,
            settlement_days: DEFAULT_SETTLEMENT_DAYS,
        }
    }
}

impl Default for MoneyPolicy {
    /// The flags' defaults.
    fn default() -> Self {
        MoneyPolicy {
            dispute_fees: FeeSchedule::from_str(DEFAULT_DISPUTE_FEES).unwrap_or_default(),
            arbitration_fees: FeeSchedule::from_str(DEFAULT_ARBITRATION_FEES).unwrap_or_default(),
            refund_fee_on_win: false,
            settlement_days: DEFAULT_SETTLEMENT_DAYS,
        }
    }
}

/// One money movement to append, with a signed amount and its fees (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub kind: BalanceTransactionType,
    pub amount: i64,
    pub fee_details: Vec<FeeDetail>,
    pub description: String,
}

impl LedgerEntry {
    pub(crate) fn new(
        kind: BalanceTransactionType,
        amount: i64,
        description: impl Into<String>,
    ) -> Self {
        LedgerEntry {
            kind,
            amount,
            fee_details: Vec::new(),
            description: description.into(),
        }
    }

    fn with_fee(mut self, fee: Option<FeeDetail>) -> Self {
        self.fee_details.extend(fee);
        self
    }

    pub fn fee(&self) -> i64 {
        self.fee_details.iter().map(|detail| detail.amount).sum()
    }

    pub fn net(&self) -> i64 {
        self.amount - self.fee()
    }
}

/// Sums of a dispute's entries by type: all the lifecycle needs to know about its money.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerTotals {
    pub withdrawal: i64,
    pub reinstatement: i64,
    pub provisional_credit: i64,
    pub provisional_credit_reversal: i64,
    pub write_off: i64,
    /// Sum of every entry's `amount` (fee-only entries move none).
    pub funds: i64,
    /// Dispute fee charged and not refunded (sum of the `dispute_fee` fee details).
    pub dispute_fee: i64,
    /// Arbitration fee charged and not refunded.
    pub arbitration_fee: i64,
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
        let mut totals = LedgerTotals::default();
        for transaction in transactions {
            totals.add(transaction.kind, transaction.amount);
            for detail in &transaction.fee_details {
                totals.add_fee(detail.kind, detail.amount);
            }
        }
        totals
    }

    /// Counts an entry's amount.
    pub fn add(&mut self, kind: BalanceTransactionType, amount: i64) {
        self.funds += amount;
        match kind {
            BalanceTransactionType::Withdrawal => {
                self.withdrawal += amount;
                self.withdrawals += 1;
            }
            BalanceTransactionType::Reinstatement => self.reinstatement += amount,
            BalanceTransactionType::ProvisionalCredit => {
                self.provisional_credit += amount;
                self.provisional_credits += 1;
            }
            BalanceTransactionType::ProvisionalCreditReversal => {
                self.provisional_credit_reversal += amount
            }
            BalanceTransactionType::WriteOff => self.write_off += amount,
            BalanceTransactionType::DisputeFee | BalanceTransactionType::ArbitrationFee => {}
        }
    }

    /// Counts one fee detail (positive charged, negative refunded).
    pub fn add_fee(&mut self, kind: FeeType, amount: i64) {
        match kind {
            FeeType::DisputeFee => self.dispute_fee += amount,
            FeeType::ArbitrationFee => self.arbitration_fee += amount,
        }
    }

    pub fn add_entry(&mut self, entry: &LedgerEntry) {
        self.add(entry.kind, entry.amount);
        for detail in &entry.fee_details {
            self.add_fee(detail.kind, detail.amount);
        }
    }

    /// Sum of every entry's `net`: funds moved minus fees charged.
    pub fn net(&self) -> i64 {
        self.funds - self.dispute_fee - self.arbitration_fee
    }

    /// Merchant side: disputed funds currently held back (withdrawn and not reinstated).
    pub fn funds_withdrawn(&self) -> i64 {
        -(self.withdrawal + self.reinstatement)
    }

    /// Merchant side: dispute fee currently charged (charged and not refunded).
    pub fn fee_charged(&self) -> i64 {
        self.dispute_fee
    }

    /// Arbitration fee currently charged (charged and not refunded).
    pub fn arbitration_fee_charged(&self) -> i64 {
        self.arbitration_fee
    }

    pub fn has_withdrawal(&self) -> bool {
        self.withdrawals > 0
    }

    /// Issuer side: what the cardholder holds (every entry's amount; fees are the issuer's).
    pub fn cardholder_holds(&self) -> i64 {
        self.funds
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

/// A dispute-fee change as a fee detail (`delta` > 0 charges, < 0 refunds), `None` for 0.
fn dispute_fee_detail(delta: i64, currency: &str) -> Option<FeeDetail> {
    let shown = format_minor_units(delta.abs(), currency);
    match delta {
        0 => None,
        charged if charged > 0 => Some(FeeDetail {
            kind: FeeType::DisputeFee,
            amount: charged,
            description: format!("dispute fee ({shown})"),
        }),
        refunded => Some(FeeDetail {
            kind: FeeType::DisputeFee,
            amount: refunded,
            description: format!("dispute fee refunded ({shown})"),
        }),
    }
}

/// Merchant side: the entries that bring withdrawn funds and the charged fee to the targets.
/// The fee change rides on the funds movement (seed 004); alone, it is a DISPUTE_FEE entry.
pub(crate) fn merchant_settlement(
    totals: &LedgerTotals,
    target_withdrawn: i64,
    target_fee: i64,
    currency: &str,
    withdrawal_description: &str,
    reinstatement_description: &str,
) -> Vec<LedgerEntry> {
    let withdrawn = totals.funds_withdrawn();
    let fee = dispute_fee_detail(target_fee - totals.fee_charged(), currency);
    let entry = match withdrawn - target_withdrawn {
        0 => fee.map(|fee| {
            let description = fee.description.clone();
            LedgerEntry::new(BalanceTransactionType::DisputeFee, 0, description).with_fee(Some(fee))
        }),
        taken if taken < 0 => Some(
            LedgerEntry::new(
                BalanceTransactionType::Withdrawal,
                taken,
                withdrawal_description,
            )
            .with_fee(fee),
        ),
        given => Some(
            LedgerEntry::new(
                BalanceTransactionType::Reinstatement,
                given,
                reinstatement_description,
            )
            .with_fee(fee),
        ),
    };
    entry.into_iter().collect()
}

/// Both sides: the entry that brings the arbitration fee charged to `target` (charge when the
/// dispute enters arbitration, refund when the network decides it for us).
pub(crate) fn arbitration_fee_settlement(
    totals: &LedgerTotals,
    target: i64,
    currency: &str,
) -> Option<LedgerEntry> {
    let delta = target - totals.arbitration_fee_charged();
    let shown = format_minor_units(delta.abs(), currency);
    let description = match delta {
        0 => return None,
        charged if charged > 0 => format!("arbitration fee ({shown})"),
        _ => format!("arbitration fee refunded ({shown})"),
    };
    Some(
        LedgerEntry::new(
            BalanceTransactionType::ArbitrationFee,
            0,
            description.clone(),
        )
        .with_fee(Some(FeeDetail {
            kind: FeeType::ArbitrationFee,
            amount: delta,
            description,
        })),
    )
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
    let held = totals.cardholder_holds();
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

    fn totals_of(entries: &[LedgerEntry]) -> LedgerTotals {
        let mut totals = LedgerTotals::default();
        for entry in entries {
            totals.add_entry(entry);
        }
        totals
    }

    #[test]
    fn totals_sum_by_type_and_fee() {
        let mut totals = LedgerTotals::from_entries([(Withdrawal, -1000), (Reinstatement, 1000)]);
        totals.add_fee(FeeType::DisputeFee, 1500);
        assert_eq!(totals.funds_withdrawn(), 0);
        assert_eq!(totals.fee_charged(), 1500);
        assert_eq!(totals.net(), -1500);
        totals.add_fee(FeeType::DisputeFee, -1500);
        assert_eq!(totals.net(), 0);
        assert!(totals.has_withdrawal());
        assert!(!totals.provisional_credit_given());
    }

    #[test]
    fn a_withdrawal_carries_the_fee_as_seed_004_shows() {
        // amount -50 with a 1500 dispute fee: fee 1500, net -1550
        let entries = merchant_settlement(
            &LedgerTotals::default(),
            50,
            1500,
            "USD",
            "chargeback withdrawal",
            "x",
        );
        assert_eq!(entries.len(), 1);
        let withdrawal = &entries[0];
        assert_eq!(withdrawal.kind, Withdrawal);
        assert_eq!(
            (withdrawal.amount, withdrawal.fee(), withdrawal.net()),
            (-50, 1500, -1550)
        );
        assert_eq!(
            withdrawal.fee_details,
            vec![FeeDetail {
                kind: FeeType::DisputeFee,
                amount: 1500,
                description: "dispute fee (USD 15.00)".into(),
            }]
        );
    }

    #[test]
    fn merchant_settlement_moves_only_the_difference() {
        let first = merchant_settlement(&LedgerTotals::default(), 1000, 1500, "USD", "w", "r");
        let withdrawn = totals_of(&first);
        assert_eq!(
            (withdrawn.funds_withdrawn(), withdrawn.fee_charged()),
            (1000, 1500)
        );
        assert!(merchant_settlement(&withdrawn, 1000, 1500, "USD", "w", "r").is_empty());
        // won with the fee refunded: the reinstatement carries fee -1500, net +2500
        let won = merchant_settlement(&withdrawn, 0, 0, "USD", "w", "funds reinstated");
        assert_eq!(won.len(), 1);
        assert_eq!(won[0].kind, Reinstatement);
        assert_eq!(
            (won[0].amount, won[0].fee(), won[0].net()),
            (1000, -1500, 2500)
        );
        assert_eq!(
            won[0].fee_details[0].description,
            "dispute fee refunded (USD 15.00)"
        );
        // partial: 400 stays withdrawn, the fee stays
        let partial = merchant_settlement(&withdrawn, 400, 1500, "USD", "w", "r");
        assert_eq!(partial, vec![LedgerEntry::new(Reinstatement, 600, "r")]);
        // the fee alone (funds already back): a DISPUTE_FEE entry of amount 0
        let mut reinstated = withdrawn;
        for entry in merchant_settlement(&withdrawn, 0, 1500, "USD", "w", "r") {
            reinstated.add_entry(&entry);
        }
        assert_eq!(
            (reinstated.funds_withdrawn(), reinstated.fee_charged()),
            (0, 1500)
        );
        let refund = merchant_settlement(&reinstated, 0, 0, "USD", "w", "r");
        assert_eq!(refund.len(), 1);
        assert_eq!(refund[0].kind, DisputeFee);
        assert_eq!((refund[0].amount, refund[0].net()), (0, 1500));
    }

    #[test]
    fn zero_decimal_fees_are_whole_yen() {
        let entries = merchant_settlement(&LedgerTotals::default(), 3000, 2000, "JPY", "w", "r");
        assert_eq!(
            (entries[0].amount, entries[0].fee(), entries[0].net()),
            (-3000, 2000, -5000)
        );
        assert_eq!(
            entries[0].fee_details[0].description,
            "dispute fee (JPY 2000)"
        );
    }

    #[test]
    fn arbitration_fee_is_charged_once_and_refunded() {
        let none = LedgerTotals::default();
        let charge = arbitration_fee_settlement(&none, 50_000, "USD").unwrap();
        assert_eq!(charge.kind, ArbitrationFee);
        assert_eq!(
            (charge.amount, charge.fee(), charge.net()),
            (0, 50_000, -50_000)
        );
        let charged = totals_of(std::slice::from_ref(&charge));
        assert_eq!(charged.arbitration_fee_charged(), 50_000);
        assert_eq!(charged.cardholder_holds(), 0);
        assert!(arbitration_fee_settlement(&charged, 50_000, "USD").is_none());
        let refund = arbitration_fee_settlement(&charged, 0, "USD").unwrap();
        assert_eq!((refund.fee(), refund.net()), (-50_000, 50_000));
    }

    #[test]
    fn fee_schedules_parse_per_currency() {
        let fees: FeeSchedule = "usd=1500, EUR=1500,JPY=2000".parse().unwrap();
        assert_eq!(fees.fee("USD"), Some(1500));
        assert_eq!(fees.fee("JPY"), Some(2000));
        assert_eq!(fees.fee("CHF"), None);
        assert_eq!(fees.to_string(), "EUR=1500,JPY=2000,USD=1500");
        assert_eq!("".parse::<FeeSchedule>().unwrap(), FeeSchedule::default());
        for bad in ["USD", "XYZ=1", "USD=-1", "USD=1.5", "USD=1,usd=2"] {
            assert!(bad.parse::<FeeSchedule>().is_err(), "{bad}");
        }
        let defaults = MoneyPolicy::default();
        assert_eq!(defaults.dispute_fees.fee("USD"), Some(1500));
        assert_eq!(defaults.dispute_fees.fee("JPY"), Some(2000));
        assert_eq!(defaults.arbitration_fees.fee("USD"), Some(50_000));
    }

    #[test]
    fn money_is_available_at_midnight_after_the_settlement_days() {
        // seed 004: created 1716283111 (2024-05-21T09:18:31Z), available_on 1716854400
        let created = DateTime::from_timestamp(1_716_283_111, 0).unwrap();
        assert_eq!(available_on(created, 7).timestamp(), 1_716_854_400);
        assert_eq!(
            available_on(created, 0),
            created
                .date_naive()
                .and_time(chrono::NaiveTime::MIN)
                .and_utc()
        );
    }

    #[test]
    fn reporting_categories_follow_the_side_and_type() {
        assert_eq!(reporting_category(false, Withdrawal), "dispute");
        assert_eq!(reporting_category(false, Reinstatement), "dispute_reversal");
        assert_eq!(reporting_category(false, DisputeFee), "fee");
        assert_eq!(reporting_category(true, ArbitrationFee), "fee");
        assert_eq!(reporting_category(true, Reinstatement), "issuing_dispute");
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
