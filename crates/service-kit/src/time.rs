//! protobuf `Timestamp` ↔ `chrono` instants, the one conversion both services use.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

use domain_kit::violation::Violation;

/// An instant as a protobuf timestamp.
pub fn timestamp(time: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: time.timestamp(),
        // Always below 2^31: chrono's sub-second nanos are < 2 * 10^9 (leap seconds).
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(i32::MAX),
    }
}

/// 0001-01-01T00:00:00Z, the first instant a request may carry.
pub const MIN_REQUEST_SECONDS: i64 = -62_135_596_800;
/// 9999-12-31T23:59:59Z, the last second a request may carry.
pub const MAX_REQUEST_SECONDS: i64 = 253_402_300_799;

/// A protobuf timestamp as an instant, or a violation naming `field`. Only years 1 to 9999
/// are accepted (the range of `google.protobuf.Timestamp`, and well inside PostgreSQL's
/// `timestamptz`), so no request instant can make the database fail.
pub fn instant(field: &str, ts: &Timestamp) -> Result<DateTime<Utc>, Violation> {
    if !(MIN_REQUEST_SECONDS..=MAX_REQUEST_SECONDS).contains(&ts.seconds) {
        return Err(Violation::new(
            field,
            "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z",
        ));
    }
    u32::try_from(ts.nanos)
        .ok()
        .and_then(|nanos| DateTime::from_timestamp(ts.seconds, nanos))
        .ok_or_else(|| Violation::new(field, "is not a valid timestamp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_round_trip() {
        let now = DateTime::from_timestamp(1_764_000_000, 123_456_789).unwrap_or_default();
        assert_eq!(instant("t", &timestamp(now)), Ok(now));
    }

    #[test]
    fn out_of_range_timestamps_name_the_field() {
        for bad in [
            Timestamp {
                seconds: 0,
                nanos: -1,
            },
            Timestamp {
                seconds: 0,
                nanos: 2_000_000_000,
            },
        ] {
            assert_eq!(
                instant("due_by", &bad),
                Err(Violation::new("due_by", "is not a valid timestamp"))
            );
        }
    }

    #[test]
    fn only_years_1_to_9999_are_accepted() {
        let at = |seconds| Timestamp { seconds, nanos: 0 };
        assert!(instant("t", &at(MIN_REQUEST_SECONDS)).is_ok());
        assert!(instant("t", &at(MAX_REQUEST_SECONDS)).is_ok());
        assert_eq!(
            instant("t", &at(MIN_REQUEST_SECONDS)).map(|t| t.to_rfc3339()),
            Ok("0001-01-01T00:00:00+00:00".to_owned())
        );
        assert_eq!(
            instant("t", &at(MAX_REQUEST_SECONDS)).map(|t| t.to_rfc3339()),
            Ok("9999-12-31T23:59:59+00:00".to_owned())
        );
        for seconds in [
            MIN_REQUEST_SECONDS - 1,
            MAX_REQUEST_SECONDS + 1,
            i64::MIN,
            i64::MAX,
        ] {
            let refused = instant("created_after", &at(seconds)).unwrap_err();
            assert_eq!(refused.field, "created_after");
        }
    }
}
