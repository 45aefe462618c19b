//! ISO 4217 currency codes. Input is accepted in any case; the wire and the database hold
//! upper case.

/// Active ISO 4217 alphabetic codes, sorted (binary search).
const ISO_4217_CODES: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD",
    "CAD", "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUP", "CVE",
    "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL",
    "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR",
    "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD",
    "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK",
    "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN", "NIO",
    "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON",
    "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD",
    "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD",
    "TZS", "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES", "VND", "VUV",
    "WST", "XAF", "XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XCD", "XCG", "XDR", "XOF", "XPD",
    "XPF", "XPT", "XSU", "XTS", "XUA", "XXX", "YER", "ZAR", "ZMW", "ZWG",
];

/// A validated ISO 4217 currency code, upper case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Currency(String);

impl Currency {
    pub fn parse(code: &str) -> Option<Currency> {
        let upper = code.trim().to_ascii_uppercase();
        ISO_4217_CODES
            .binary_search(&upper.as_str())
            .ok()
            .map(|_| Currency(upper))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// ISO 4217 codes whose minor unit is the major unit (no decimals): an amount in JPY is in
/// yen. Sorted (binary search).
const ZERO_DECIMAL_CODES: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
    "VUV", "XAF", "XOF", "XPF",
];

/// ISO 4217 codes with three decimals. Sorted (binary search).
const THREE_DECIMAL_CODES: &[&str] = &["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];

/// How many decimals the currency's minor unit has (ISO 4217): 0 for JPY, 3 for KWD, else 2.
/// Amounts are always in minor units; this only says how to read them.
pub fn minor_unit_exponent(code: &str) -> u32 {
    if ZERO_DECIMAL_CODES.binary_search(&code).is_ok() {
        0
    } else if THREE_DECIMAL_CODES.binary_search(&code).is_ok() {
        3
    } else {
        2
    }
}

/// An amount in minor units as people read it: `USD 15.00`, `JPY 2000`, `KWD 1.500`.
pub fn format_minor_units(amount: i64, code: &str) -> String {
    let exponent = minor_unit_exponent(code);
    if exponent == 0 {
        return format!("{code} {amount}");
    }
    let scale = 10_i64.pow(exponent);
    let sign = if amount < 0 { "-" } else { "" };
    let magnitude = amount.unsigned_abs();
    let scale = scale.unsigned_abs();
    format!(
        "{code} {sign}{}.{:0width$}",
        magnitude / scale,
        magnitude % scale,
        width = exponent as usize
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_sorted_for_binary_search() {
        assert!(ISO_4217_CODES.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn known_codes_parse_in_any_case() {
        assert_eq!(Currency::parse("usd").map(|c| c.0), Some("USD".to_owned()));
        assert_eq!(Currency::parse("EUR").map(|c| c.0), Some("EUR".to_owned()));
        assert_eq!(Currency::parse("jpy").map(|c| c.0), Some("JPY".to_owned()));
    }

    #[test]
    fn decimal_tables_are_sorted_known_codes() {
        for table in [ZERO_DECIMAL_CODES, THREE_DECIMAL_CODES] {
            assert!(table.windows(2).all(|w| w[0] < w[1]));
            assert!(table.iter().all(|code| Currency::parse(code).is_some()));
        }
    }

    #[test]
    fn zero_decimal_amounts_are_whole_units() {
        assert_eq!(minor_unit_exponent("JPY"), 0);
        assert_eq!(minor_unit_exponent("USD"), 2);
        assert_eq!(minor_unit_exponent("KWD"), 3);
        assert_eq!(format_minor_units(2000, "JPY"), "JPY 2000");
        assert_eq!(format_minor_units(1500, "USD"), "USD 15.00");
        assert_eq!(format_minor_units(-5, "EUR"), "EUR -0.05");
        assert_eq!(format_minor_units(1500, "KWD"), "KWD 1.500");
    }

    #[test]
    fn unknown_codes_are_rejected() {
        for bad in ["", "US", "USDD", "ABC", "XYZ", "U$D", "123"] {
            assert!(Currency::parse(bad).is_none(), "{bad}");
        }
    }
}
