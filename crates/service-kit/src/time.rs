//! protobuf `Timestamp` ↔ `chrono` instants, the one conversion both services use.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

use crate::violation::Violation;

/// An instant as a protobuf timestamp.
pub fn timestamp(time: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: time.timestamp(),
        // Always below 2^31: chrono's sub-second nanos are < 2 * 10^9 (leap seconds).
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(i32::MAX),
    }
}

/// A protobuf timestamp as an instant, or a violation naming `field`.
pub fn instant(field: &str, ts: &Timestamp) -> Result<DateTime<Utc>, Violation> {
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
                seconds: i64::MAX,
                nanos: 0,
            },
            Timestamp {
                seconds: 0,
                nanos: 2_000_000_000,
            },
        ] {
            assert_eq!(
                instant("due_time", &bad),
                Err(Violation::new("due_time", "is not a valid timestamp"))
            );
        }
    }
}
