//! Deadline arithmetic: network windows in calendar days, Regulation E in business days (US
//! federal holidays), Regulation Z in billing cycles. Pure date functions, no clock: callers
//! pass `now` or the start date.
//!
//! **One convention for every deadline.** A deadline *on day D* means "by the end of D", and is
//! represented by the first instant after it, `D + 1 00:00:00 UTC` ([`end_of_day`]). An action
//! is possible while `now < valid_until`, and a dispute is past due once `due_time <= now`
//! (the same test as `Dispute::is_past_due`). Days are UTC days.
//!
//! Windows (docs/lifecycle.md, "Timelines"):
//! - merchant side: the network's response window, counted from the day the event arrived
//!   (Visa 30, Mastercard 45, Amex 20, Discover 30, any other network 30 days); the same
//!   windows for answering a pre-arbitration; arbitration: Visa 10, Mastercard 45, others the
//!   response window;
//! - issuer side (Synctera's windows, rows I1, I8, I11): chargeback filing 120 days from the
//!   transaction (or, when its date is unknown, from the day the cardholder reported it);
//!   pre-arbitration 45 days after a representment arrives; arbitration 75 days after the
//!   pre-arbitration response arrives;
//! - Regulation E: provisional credit due 10 business days after the report (20 for new
//!   accounts); resolution 45 calendar days (90 for new accounts, POS and foreign-initiated
//!   transfers) when provisional credit was given, otherwise by the provisional-credit due
//!   date; reversal of a provisional credit is honored for 5 business days;
//! - Regulation Z: resolution within two complete billing cycles and never later than 90 days
//!   after the report; acknowledgment within 30 days.

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, NaiveTime, Utc, Weekday};

use super::enums::Network;

/// Issuer chargeback filing window in calendar days (Synctera, Checkout.com; row I1).
pub const ISSUER_CHARGEBACK_FILING_DAYS: u64 = 120;
/// Issuer pre-arbitration window after a representment, in calendar days (Synctera; row I8).
pub const ISSUER_PRE_ARBITRATION_DAYS: u64 = 45;
/// Issuer arbitration window after a pre-arbitration response, in calendar days (Synctera; I11).
pub const ISSUER_ARBITRATION_DAYS: u64 = 75;

/// Regulation E provisional credit: business days after the report (1005.11(c)(1)).
pub const REG_E_PROVISIONAL_CREDIT_BUSINESS_DAYS: u64 = 10;
/// Regulation E provisional credit for new accounts (1005.11(c)(3)(i)).
pub const REG_E_NEW_ACCOUNT_PROVISIONAL_CREDIT_BUSINESS_DAYS: u64 = 20;
/// Regulation E extended investigation, calendar days (1005.11(c)(2)).
pub const REG_E_RESOLUTION_DAYS: u64 = 45;
/// Regulation E extended investigation for new accounts, POS and foreign-initiated transfers.
pub const REG_E_EXTENDED_RESOLUTION_DAYS: u64 = 90;
/// Regulation E: after reversing a provisional credit, checks and preauthorized transfers are
/// honored for this many business days (1005.11(d)(2)).
pub const REG_E_REVERSAL_HONOR_BUSINESS_DAYS: u64 = 5;
/// Regulation Z acknowledgment, calendar days (1026.13(c)(1)).
pub const REG_Z_ACKNOWLEDGMENT_DAYS: u64 = 30;
/// Regulation Z resolution never takes longer than this many calendar days (1026.13(c)(2)).
pub const REG_Z_MAX_RESOLUTION_DAYS: u64 = 90;

/// The instant a deadline on `date` ends: the first instant of the next day, UTC.
pub fn end_of_day(date: NaiveDate) -> DateTime<Utc> {
    date.succ_opt()
        .unwrap_or(NaiveDate::MAX)
        .and_time(NaiveTime::MIN)
        .and_utc()
}

/// `date` plus `days` calendar days (saturating at the end of the calendar).
pub fn add_calendar_days(date: NaiveDate, days: u64) -> NaiveDate {
    date.checked_add_days(Days::new(days))
        .unwrap_or(NaiveDate::MAX)
}

/// The deadline `days` calendar days after the day of `from`.
pub fn calendar_deadline(from: DateTime<Utc>, days: u64) -> DateTime<Utc> {
    end_of_day(add_calendar_days(from.date_naive(), days))
}

/// Days the side we serve has to answer a first chargeback or a retrieval request.
pub fn network_response_days(network: Network) -> u64 {
    match network {
        Network::Visa => 30,
        Network::Mastercard => 45,
        Network::Amex => 20,
        Network::Discover => 30,
        Network::Jcb | Network::Unionpay | Network::Diners | Network::Other => 30,
    }
}

/// Days to answer a pre-arbitration: the same per-network windows (docs/lifecycle.md, RG5).
pub fn network_pre_arbitration_days(network: Network) -> u64 {
    network_response_days(network)
}

/// Days to answer in arbitration: Visa 10, Mastercard 45; other networks publish none we
/// rely on, so their response window applies.
pub fn network_arbitration_days(network: Network) -> u64 {
    match network {
        Network::Visa => 10,
        Network::Mastercard => 45,
        other => network_response_days(other),
    }
}

/// Merchant side: when a response to a retrieval request or chargeback arriving at `now` is due.
pub fn merchant_response_due(network: Network, now: DateTime<Utc>) -> DateTime<Utc> {
    calendar_deadline(now, network_response_days(network))
}

/// Merchant side: when a response to a pre-arbitration arriving at `now` is due.
pub fn merchant_pre_arbitration_due(network: Network, now: DateTime<Utc>) -> DateTime<Utc> {
    calendar_deadline(now, network_pre_arbitration_days(network))
}

/// Merchant side: when a response in arbitration opened at `now` is due.
pub fn merchant_arbitration_due(network: Network, now: DateTime<Utc>) -> DateTime<Utc> {
    calendar_deadline(now, network_arbitration_days(network))
}

/// Issuer side: the last moment to file a chargeback for a transaction of `start` (I1).
pub fn issuer_chargeback_filing_due(start: NaiveDate) -> DateTime<Utc> {
    end_of_day(add_calendar_days(start, ISSUER_CHARGEBACK_FILING_DAYS))
}

/// Issuer side: the last moment to file pre-arbitration after a representment at `now` (I8).
pub fn issuer_pre_arbitration_due(now: DateTime<Utc>) -> DateTime<Utc> {
    calendar_deadline(now, ISSUER_PRE_ARBITRATION_DAYS)
}

/// Issuer side: the last moment to file arbitration after a pre-arbitration response (I11).
pub fn issuer_arbitration_due(now: DateTime<Utc>) -> DateTime<Utc> {
    calendar_deadline(now, ISSUER_ARBITRATION_DAYS)
}

// ---------------------------------------------------------------------------------------------
// Business days

/// A holiday falling on a Saturday is observed the Friday before, one on a Sunday the Monday
/// after (5 U.S.C. 6103 and Executive Order 11582, as OPM publishes them).
fn observed(date: NaiveDate) -> NaiveDate {
    match date.weekday() {
        Weekday::Sat => date.pred_opt().unwrap_or(date),
        Weekday::Sun => date.succ_opt().unwrap_or(date),
        _ => date,
    }
}

fn nth_weekday(year: i32, month: u32, weekday: Weekday, n: u8) -> Option<NaiveDate> {
    NaiveDate::from_weekday_of_month_opt(year, month, weekday, n)
}

fn last_weekday(year: i32, month: u32, weekday: Weekday) -> Option<NaiveDate> {
    let first_of_next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)
    }?;
    let mut day = first_of_next.pred_opt()?;
    while day.weekday() != weekday {
        day = day.pred_opt()?;
    }
    Some(day)
}

/// The eleven US federal holidays of `year` on their actual dates (Juneteenth from 2021).
fn us_federal_holiday_dates(year: i32) -> Vec<NaiveDate> {
    let fixed = |month, day| NaiveDate::from_ymd_opt(year, month, day);
    let mut dates = vec![
        fixed(1, 1),                            // New Year's Day
        nth_weekday(year, 1, Weekday::Mon, 3),  // Birthday of Martin Luther King, Jr.
        nth_weekday(year, 2, Weekday::Mon, 3),  // Washington's Birthday
        last_weekday(year, 5, Weekday::Mon),    // Memorial Day
        fixed(7, 4),                            // Independence Day
        nth_weekday(year, 9, Weekday::Mon, 1),  // Labor Day
        nth_weekday(year, 10, Weekday::Mon, 2), // Columbus Day
        fixed(11, 11),                          // Veterans Day
        nth_weekday(year, 11, Weekday::Thu, 4), // Thanksgiving Day
        fixed(12, 25),                          // Christmas Day
    ];
    if year >= 2021 {
        dates.push(fixed(6, 19)); // Juneteenth National Independence Day
    }
    dates.into_iter().flatten().collect()
}

/// The days of `year` on which US federal holidays are observed, sorted. Includes December 31
/// when the next New Year's Day falls on a Saturday (e.g. 2027-12-31 for 2028-01-01).
///
/// These are the OPM observance rules. The Federal Reserve does not move Saturday holidays
/// to the Friday before; an institution following its calendar would count those Fridays as
/// business days.
pub fn us_federal_holidays(year: i32) -> Vec<NaiveDate> {
    let mut days: Vec<NaiveDate> = us_federal_holiday_dates(year)
        .into_iter()
        .chain(us_federal_holiday_dates(year + 1).into_iter().take(1))
        .map(observed)
        .filter(|day| day.year() == year)
        .collect();
    days.sort_unstable();
    days
}

pub fn is_us_federal_holiday(date: NaiveDate) -> bool {
    // Counting business days asks this for every day it passes: the observed holidays of
    // the years a deadline can fall in are computed once.
    const FIRST_YEAR: i32 = 2000;
    const YEARS: usize = 101;
    static TABLE: std::sync::OnceLock<Vec<Vec<NaiveDate>>> = std::sync::OnceLock::new();
    let year = date.year();
    match usize::try_from(year - FIRST_YEAR) {
        Ok(index) if index < YEARS => TABLE.get_or_init(|| {
            (FIRST_YEAR..)
                .take(YEARS)
                .map(us_federal_holidays)
                .collect()
        })[index]
            .contains(&date),
        _ => us_federal_holidays(year).contains(&date),
    }
}

/// Monday to Friday and not an observed US federal holiday.
pub fn is_business_day(date: NaiveDate) -> bool {
    !matches!(date.weekday(), Weekday::Sat | Weekday::Sun) && !is_us_federal_holiday(date)
}

/// The `n`-th business day after `start` (`start` itself never counts).
pub fn add_business_days(start: NaiveDate, n: u64) -> NaiveDate {
    let mut day = start;
    let mut counted = 0;
    while counted < n {
        let Some(next) = day.succ_opt() else {
            return NaiveDate::MAX;
        };
        day = next;
        if is_business_day(day) {
            counted += 1;
        }
    }
    day
}

// ---------------------------------------------------------------------------------------------
// Regulation E and Z

/// What makes Regulation E's longer windows apply to a dispute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegulationEFacts {
    /// The account was opened within 30 days before the error (1005.11(c)(3)(i)).
    pub new_account: bool,
    /// A point-of-sale debit card transaction or a foreign-initiated transfer (1005.11(c)(3)(ii)).
    pub pos_or_foreign: bool,
}

/// Regulation E due dates for a dispute reported on a given day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegulationEDeadlines {
    /// Provisional credit must be given by this day to take the longer investigation.
    pub provisional_credit_due: NaiveDate,
    /// Without provisional credit, the investigation ends by the same day.
    pub resolution_due_without_credit: NaiveDate,
    /// With provisional credit given in time, the investigation may run until this day.
    pub resolution_due_with_credit: NaiveDate,
}

impl RegulationEDeadlines {
    pub fn resolution_due(&self, provisional_credit_given: bool) -> NaiveDate {
        if provisional_credit_given {
            self.resolution_due_with_credit
        } else {
            self.resolution_due_without_credit
        }
    }
}

pub fn regulation_e_deadlines(
    reported: NaiveDate,
    facts: RegulationEFacts,
) -> RegulationEDeadlines {
    let credit_days = if facts.new_account {
        REG_E_NEW_ACCOUNT_PROVISIONAL_CREDIT_BUSINESS_DAYS
    } else {
        REG_E_PROVISIONAL_CREDIT_BUSINESS_DAYS
    };
    let resolution_days = if facts.new_account || facts.pos_or_foreign {
        REG_E_EXTENDED_RESOLUTION_DAYS
    } else {
        REG_E_RESOLUTION_DAYS
    };
    let provisional_credit_due = add_business_days(reported, credit_days);
    RegulationEDeadlines {
        provisional_credit_due,
        resolution_due_without_credit: provisional_credit_due,
        resolution_due_with_credit: add_calendar_days(reported, resolution_days),
    }
}

/// The last day a reversed provisional credit is honored for checks and preauthorized
/// transfers: five business days after the debit (1005.11(d)(2)).
pub fn regulation_e_reversal_honored_until(debit_date: NaiveDate) -> NaiveDate {
    add_business_days(debit_date, REG_E_REVERSAL_HONOR_BUSINESS_DAYS)
}

/// Regulation Z due dates for a billing-error notice received on a given day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegulationZDeadlines {
    pub acknowledgment_due: NaiveDate,
    /// The end of the second complete billing cycle after the notice, capped at 90 days.
    pub resolution_due: NaiveDate,
}

/// The closing day of the billing cycle in a month, clamped to the month's length.
fn cycle_closing_date(year: i32, month: u32, closing_day: u32) -> Option<NaiveDate> {
    (1..=closing_day.clamp(1, 31))
        .rev()
        .find_map(|day| NaiveDate::from_ymd_opt(year, month, day))
}

/// Regulation Z deadlines. Cycles are monthly and close on `billing_cycle_closing_day`
/// (1–31, clamped to short months). When it is unknown we assume the cycle closes on the
/// report date's day of month: the notice arrives on a closing day, so the two complete
/// cycles after it end on the same day two months later.
pub fn regulation_z_deadlines(
    reported: NaiveDate,
    billing_cycle_closing_day: Option<u32>,
) -> RegulationZDeadlines {
    let closing_day = billing_cycle_closing_day.unwrap_or(reported.day());
    let month_start = reported.with_day(1).unwrap_or(reported);
    // Closing dates from the report's month on; the first one on or after the report closes
    // the cycle the notice arrived in, and two more complete cycles follow it.
    let closings = (0..4u32).filter_map(|offset| {
        let month = month_start.checked_add_months(Months::new(offset))?;
        cycle_closing_date(month.year(), month.month(), closing_day)
    });
    let second_complete_cycle_end = closings
        .filter(|closing| *closing >= reported)
        .nth(2)
        .unwrap_or(NaiveDate::MAX);
    RegulationZDeadlines {
        acknowledgment_due: add_calendar_days(reported, REG_Z_ACKNOWLEDGMENT_DAYS),
        resolution_due: second_complete_cycle_end
            .min(add_calendar_days(reported, REG_Z_MAX_RESOLUTION_DAYS)),
    }
}

/// Default lead time of `dispute.due_soon` before `due_by` (`--due-soon-lead-secs`).
pub const DEFAULT_DUE_SOON_LEAD_SECS: u64 = 48 * 3600;

/// `dispute.due_soon`: the `due_by` to announce now, if any. It is announced once the
/// response is due within `lead` (and not yet past), once per deadline: `sent_for` is the
/// `due_by` the last one was sent for, so a deadline that moves is announced again. A lead
/// of zero announces nothing.
pub fn due_soon_to_announce(
    due_time: Option<DateTime<Utc>>,
    sent_for: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    lead: chrono::Duration,
) -> Option<DateTime<Utc>> {
    let due = due_time?;
    let announce =
        lead > chrono::Duration::zero() && due > now && due - lead <= now && sent_for != Some(due);
    announce.then_some(due)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    fn instant(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn federal_holidays_2026_with_independence_day_on_a_saturday() {
        let expected = [
            "2026-01-01", // Thursday
            "2026-01-19",
            "2026-02-16",
            "2026-05-25",
            "2026-06-19", // Juneteenth, a Friday
            "2026-07-03", // July 4 is a Saturday: observed Friday
            "2026-09-07",
            "2026-10-12",
            "2026-11-11",
            "2026-11-26", // Thanksgiving, fourth Thursday
            "2026-12-25",
        ];
        assert_eq!(
            us_federal_holidays(2026),
            expected.iter().map(|d| day(d)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn federal_holidays_2027_with_saturday_and_sunday_observance() {
        let expected = [
            "2027-01-01", // New Year's Day on a Friday
            "2027-01-18",
            "2027-02-15",
            "2027-05-31",
            "2027-06-18", // Juneteenth is a Saturday: observed Friday
            "2027-07-05", // July 4 is a Sunday: observed Monday
            "2027-09-06",
            "2027-10-11",
            "2027-11-11",
            "2027-11-25",
            "2027-12-24", // Christmas is a Saturday: observed Friday
            "2027-12-31", // New Year's Day 2028 is a Saturday: observed in 2027
        ];
        assert_eq!(
            us_federal_holidays(2027),
            expected.iter().map(|d| day(d)).collect::<Vec<_>>()
        );
        // ...and 2028 therefore has no New Year holiday of its own.
        assert!(!is_us_federal_holiday(day("2028-01-01")));
        assert_eq!(us_federal_holidays(2028)[0], day("2028-01-17"));
    }

    #[test]
    fn juneteenth_only_from_2021() {
        assert!(!us_federal_holidays(2020).contains(&day("2020-06-19")));
        assert!(us_federal_holidays(2021).contains(&day("2021-06-18"))); // a Saturday in 2021
    }

    #[test]
    fn business_days_skip_weekends_and_holidays() {
        assert!(is_business_day(day("2026-11-25")));
        assert!(!is_business_day(day("2026-11-26"))); // Thanksgiving
        assert!(!is_business_day(day("2026-11-28"))); // Saturday
        assert!(!is_business_day(day("2027-12-24"))); // Christmas observed
        assert_eq!(add_business_days(day("2026-11-25"), 1), day("2026-11-27"));
        assert_eq!(add_business_days(day("2026-11-27"), 0), day("2026-11-27"));
        // Friday before a Monday holiday: MLK day 2027 is skipped
        assert_eq!(add_business_days(day("2027-01-15"), 1), day("2027-01-19"));
        // New Year 2027 on a Friday
        assert_eq!(add_business_days(day("2026-12-30"), 2), day("2027-01-04"));
    }

    #[test]
    fn regulation_e_provisional_credit_over_thanksgiving() {
        // Reported Friday 2026-11-20; Thanksgiving (26th) does not count.
        let due = regulation_e_deadlines(day("2026-11-20"), RegulationEFacts::default());
        assert_eq!(due.provisional_credit_due, day("2026-12-07"));
        assert_eq!(due.resolution_due(false), day("2026-12-07"));
        assert_eq!(due.resolution_due(true), day("2027-01-04")); // 45 calendar days
    }

    #[test]
    fn regulation_e_over_christmas_and_new_year_observed_on_fridays() {
        // 2027-12-24 (Christmas observed) and 2027-12-31 (New Year 2028 observed) are skipped.
        let due = regulation_e_deadlines(day("2027-12-20"), RegulationEFacts::default());
        assert_eq!(due.provisional_credit_due, day("2028-01-05"));
    }

    #[test]
    fn regulation_e_new_accounts_and_pos_get_longer_windows() {
        let reported = day("2026-06-15");
        let new_account = regulation_e_deadlines(
            reported,
            RegulationEFacts {
                new_account: true,
                pos_or_foreign: false,
            },
        );
        // 20 business days, skipping Juneteenth (19th) and July 3 (Independence Day observed)
        assert_eq!(new_account.provisional_credit_due, day("2026-07-15"));
        assert_eq!(new_account.resolution_due_with_credit, day("2026-09-13"));
        let pos = regulation_e_deadlines(
            reported,
            RegulationEFacts {
                new_account: false,
                pos_or_foreign: true,
            },
        );
        assert_eq!(pos.provisional_credit_due, day("2026-06-30"));
        assert_eq!(pos.resolution_due_with_credit, day("2026-09-13"));
    }

    #[test]
    fn regulation_e_reversal_is_honored_for_five_business_days() {
        // Debited Tuesday 2026-06-16; Juneteenth (Friday 19th) does not count.
        assert_eq!(
            regulation_e_reversal_honored_until(day("2026-06-16")),
            day("2026-06-24")
        );
        // Debited Wednesday 2027-12-22: Christmas observed on Friday the 24th.
        assert_eq!(
            regulation_e_reversal_honored_until(day("2027-12-22")),
            day("2027-12-30")
        );
    }

    #[test]
    fn regulation_z_two_cycles_on_the_report_day_by_default() {
        let due = regulation_z_deadlines(day("2026-03-10"), None);
        assert_eq!(due.resolution_due, day("2026-05-10"));
        assert_eq!(due.acknowledgment_due, day("2026-04-09"));
        // Month ends clamp: cycles close on the 31st, i.e. Feb 28 in 2027.
        let due = regulation_z_deadlines(day("2027-01-31"), None);
        assert_eq!(due.resolution_due, day("2027-03-31"));
    }

    #[test]
    fn regulation_z_never_takes_more_than_90_days() {
        // Notice the day after a closing on the 9th: the current cycle closes April 9, the two
        // complete ones after it on June 9, past the 90-day cap (June 8).
        let due = regulation_z_deadlines(day("2026-03-10"), Some(9));
        assert_eq!(due.resolution_due, day("2026-06-08"));
        // Closing on the 25th: cycles close March 25, April 25, May 25.
        let due = regulation_z_deadlines(day("2026-03-10"), Some(25));
        assert_eq!(due.resolution_due, day("2026-05-25"));
    }

    #[test]
    fn network_windows_in_calendar_days() {
        let now = instant("2026-03-02T10:00:00Z");
        assert_eq!(
            merchant_response_due(Network::Visa, now),
            instant("2026-04-02T00:00:00Z")
        );
        assert_eq!(
            merchant_response_due(Network::Mastercard, now),
            instant("2026-04-17T00:00:00Z")
        );
        assert_eq!(
            merchant_response_due(Network::Amex, now),
            instant("2026-03-23T00:00:00Z")
        );
        assert_eq!(network_response_days(Network::Discover), 30);
        assert_eq!(network_response_days(Network::Jcb), 30);
        assert_eq!(
            merchant_pre_arbitration_due(Network::Amex, now),
            instant("2026-03-23T00:00:00Z")
        );
        assert_eq!(
            merchant_arbitration_due(Network::Visa, now),
            instant("2026-03-13T00:00:00Z")
        );
        assert_eq!(network_arbitration_days(Network::Mastercard), 45);
        assert_eq!(network_arbitration_days(Network::Amex), 20);
    }

    #[test]
    fn issuer_windows_follow_synctera() {
        // Synctera's example: a transaction of 2024-04-25 may be charged back through 08-23.
        assert_eq!(
            issuer_chargeback_filing_due(day("2024-04-25")),
            instant("2024-08-24T00:00:00Z")
        );
        let now = instant("2026-05-01T08:00:00Z");
        assert_eq!(
            issuer_pre_arbitration_due(now),
            instant("2026-06-16T00:00:00Z")
        );
        assert_eq!(issuer_arbitration_due(now), instant("2026-07-16T00:00:00Z"));
    }

    #[test]
    fn end_of_day_is_the_next_midnight() {
        assert_eq!(
            end_of_day(day("2026-12-31")),
            instant("2027-01-01T00:00:00Z")
        );
    }

    #[test]
    fn due_soon_is_announced_once_per_deadline() {
        let now = instant("2026-03-02T10:00:00Z");
        let lead = chrono::Duration::hours(48);
        let due = instant("2026-03-03T00:00:00Z");
        let far = instant("2026-03-10T00:00:00Z");
        assert_eq!(due_soon_to_announce(Some(due), None, now, lead), Some(due));
        assert_eq!(due_soon_to_announce(Some(due), Some(due), now, lead), None);
        // The deadline moved: announced again (if it is still within the lead).
        let moved = instant("2026-03-04T00:00:00Z");
        assert_eq!(
            due_soon_to_announce(Some(moved), Some(due), now, lead),
            Some(moved)
        );
        assert_eq!(due_soon_to_announce(Some(far), None, now, lead), None);
        assert_eq!(due_soon_to_announce(Some(now), None, now, lead), None); // already due
        assert_eq!(due_soon_to_announce(None, None, now, lead), None);
        let off = chrono::Duration::zero();
        assert_eq!(due_soon_to_announce(Some(due), None, now, off), None);
    }
}
