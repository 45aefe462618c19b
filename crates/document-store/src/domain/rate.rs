//! The minimum data rate of an upload: after a grace period, the bytes received over a
//! sliding window must average at least a floor. Clock-free: times are how long the upload
//! has been waiting for its client (the caller measures them), so tests give them
//! explicitly and time spent waiting on storage never counts against the client.

use std::collections::VecDeque;
use std::time::Duration;

/// The window is kept as this many buckets: memory is fixed, and the measured span is exact
/// to within one bucket.
const BUCKETS: u32 = 10;

/// The rule: `bytes_per_sec` (0 = no floor) averaged over `window`, from `grace` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateFloor {
    pub bytes_per_sec: u64,
    pub window: Duration,
    pub grace: Duration,
}

impl RateFloor {
    pub const DISABLED: RateFloor = RateFloor {
        bytes_per_sec: 0,
        window: Duration::from_secs(10),
        grace: Duration::from_secs(10),
    };

    pub fn is_enabled(&self) -> bool {
        self.bytes_per_sec > 0 && !self.window.is_zero()
    }
}

/// An upload below the floor: what it sent and what it had to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooSlow {
    pub measured_bytes_per_sec: u64,
    pub required_bytes_per_sec: u64,
    pub window: Duration,
}

/// Bytes received per bucket of the last window.
#[derive(Debug)]
pub struct RateWindow {
    floor: RateFloor,
    bucket_width: Duration,
    /// (bucket index, bytes), oldest first; only the buckets of the last window.
    buckets: VecDeque<(u64, u64)>,
}

impl RateWindow {
    pub fn new(floor: RateFloor) -> Self {
        let bucket_width = (floor.window / BUCKETS).max(Duration::from_millis(1));
        Self {
            floor,
            bucket_width,
            buckets: VecDeque::with_capacity(BUCKETS as usize + 1),
        }
    }

    /// How often the caller should check while no bytes arrive; `None` without a floor.
    pub fn check_interval(&self) -> Option<Duration> {
        self.floor.is_enabled().then_some(self.bucket_width)
    }

    fn bucket_of(&self, at: Duration) -> u64 {
        let index = at.as_nanos() / self.bucket_width.as_nanos();
        u64::try_from(index).unwrap_or(u64::MAX)
    }

    /// The first bucket still inside the window ending in bucket `now_index`.
    fn first_in_window(now_index: u64) -> u64 {
        now_index.saturating_sub(u64::from(BUCKETS) - 1)
    }

    /// `bytes` arrived at `at` (times never go backwards).
    pub fn record(&mut self, at: Duration, bytes: u64) {
        if !self.floor.is_enabled() {
            return;
        }
        let index = self.bucket_of(at);
        let first = Self::first_in_window(index);
        while self.buckets.front().is_some_and(|(i, _)| *i < first) {
            self.buckets.pop_front();
        }
        match self.buckets.back_mut() {
            Some((last, sum)) if *last == index => *sum = sum.saturating_add(bytes),
            _ => self.buckets.push_back((index, bytes)),
        }
    }

    /// The average rate over the window ending at `now`, in bytes per second.
    pub fn measured_bytes_per_sec(&self, now: Duration) -> u64 {
        let index = self.bucket_of(now);
        let first = Self::first_in_window(index);
        let bytes: u64 = self
            .buckets
            .iter()
            .filter(|(i, _)| *i >= first)
            .map(|(_, sum)| *sum)
            .sum();
        // From the start of the oldest bucket in the window (or of the upload) to now.
        let window_start = self
            .bucket_width
            .saturating_mul(u32::try_from(first).unwrap_or(u32::MAX));
        let span = now.saturating_sub(window_start).min(now);
        if span.is_zero() {
            return u64::MAX;
        }
        let rate = u128::from(bytes) * 1_000_000_000 / span.as_nanos();
        u64::try_from(rate).unwrap_or(u64::MAX)
    }

    /// Whether the upload keeps up with the floor at `now`: always within the grace period
    /// or without a floor.
    pub fn check(&self, now: Duration) -> Result<(), TooSlow> {
        if !self.floor.is_enabled() || now < self.floor.grace {
            return Ok(());
        }
        let measured = self.measured_bytes_per_sec(now);
        if measured < self.floor.bytes_per_sec {
            return Err(TooSlow {
                measured_bytes_per_sec: measured,
                required_bytes_per_sec: self.floor.bytes_per_sec,
                window: self.floor.window,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const KIB: u64 = 1024;

    fn floor() -> RateFloor {
        RateFloor {
            bytes_per_sec: 16 * KIB,
            window: Duration::from_secs(10),
            grace: Duration::from_secs(10),
        }
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn a_trickle_is_refused_after_the_grace_period_with_its_rate() {
        let mut window = RateWindow::new(floor());
        // One byte every 5 s, the attack the floor is for.
        for at in [0.0, 5.0, 10.0] {
            window.record(secs(at), 1);
        }
        assert_eq!(window.check(secs(9.9)), Ok(()), "within the grace period");
        let slow = window.check(secs(10.0)).unwrap_err();
        assert_eq!(slow.required_bytes_per_sec, 16 * KIB);
        assert_eq!(slow.measured_bytes_per_sec, 0);
        assert_eq!(slow.window, Duration::from_secs(10));
    }

    #[test]
    fn a_steady_upload_at_the_floor_passes() {
        let mut window = RateWindow::new(floor());
        for tenth in 0..600 {
            let at = secs(f64::from(tenth) / 10.0);
            window.record(at, 16 * KIB / 10 + 1);
            assert_eq!(window.check(at), Ok(()), "at {at:?}");
        }
    }

    #[test]
    fn a_burst_then_silence_is_refused_once_the_burst_leaves_the_window() {
        let mut window = RateWindow::new(floor());
        window.record(secs(1.5), 10 * 1024 * KIB);
        assert_eq!(window.check(secs(10.0)), Ok(()));
        assert_eq!(window.check(secs(10.9)), Ok(()));
        let slow = window.check(secs(11.0)).unwrap_err();
        assert_eq!(slow.measured_bytes_per_sec, 0);
    }

    #[test]
    fn the_rate_is_measured_over_the_window_not_the_whole_upload() {
        let mut window = RateWindow::new(floor());
        // 1 MiB/s for 20 s, then 1 KiB/s: the average since the start stays high, the
        // window's falls below the floor.
        for s in 0..20 {
            window.record(secs(f64::from(s)), 1024 * KIB);
        }
        for s in 20..40 {
            window.record(secs(f64::from(s)), KIB);
        }
        let slow = window.check(secs(40.0)).unwrap_err();
        assert!(
            (900..=1200).contains(&slow.measured_bytes_per_sec),
            "{slow:?}"
        );
    }

    #[test]
    fn a_floor_of_zero_never_refuses() {
        let mut window = RateWindow::new(RateFloor::DISABLED);
        window.record(secs(1.0), 1);
        assert_eq!(window.check(secs(1000.0)), Ok(()));
        assert_eq!(window.check_interval(), None);
        assert!(
            window.buckets.is_empty(),
            "nothing recorded without a floor"
        );
    }

    #[test]
    fn a_grace_shorter_than_the_window_measures_since_the_start() {
        let mut window = RateWindow::new(RateFloor {
            grace: secs(2.0),
            ..floor()
        });
        window.record(secs(0.1), 40 * KIB);
        // 40 KiB in 2 s = 20 KiB/s, above the floor; by 3 s it is 13.3 KiB/s.
        assert_eq!(window.check(secs(2.0)), Ok(()));
        assert!(window.check(secs(3.0)).is_err());
    }

    proptest! {
        /// Memory stays at one window of buckets, and an upload sending at least twice the
        /// floor in every bucket is never refused, whatever its chunk sizes.
        #[test]
        fn steady_uploads_pass_and_memory_is_bounded(chunks in prop::collection::vec(1u64..8, 1..400)) {
            let mut window = RateWindow::new(floor());
            let mut at = Duration::ZERO;
            for pieces in chunks {
                // One bucket (1 s) at a time, at 32 KiB/s cut into `pieces` chunks.
                for _ in 0..pieces {
                    window.record(at, 32 * KIB / pieces + 1);
                }
                at += Duration::from_secs(1);
                prop_assert!(window.buckets.len() <= BUCKETS as usize);
                prop_assert_eq!(window.check(at), Ok(()));
            }
        }
    }
}
