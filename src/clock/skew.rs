//! How far the instance clock is from AWS's, as the `Date` header of IMDS answers tells it
//! (the IMDS client measures it; the refresher, `status` and `/metrics` use it).
//! Credentials expire on AWS's clock; an instance clock that is off by more than
//! [`SKEW_THRESHOLD`] would otherwise serve an expired set as valid (clock slow) or judge a
//! fresh set as about to expire and refresh in a loop (clock fast). Past the threshold the
//! daemon warns and moves each `Expiration` onto the local clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

/// A skew larger than this is reported and corrected. Under it the refresh margin
/// (`before_expiry`, 15 min by default) absorbs the difference, and expiry times stay as
/// IMDS wrote them.
pub const SKEW_THRESHOLD: Duration = Duration::from_secs(5 * 60);

/// IMDS time minus local time, in whole seconds (a `Date` header has 1 s resolution).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockSkew {
    pub imds_ahead_secs: i64,
}

impl ClockSkew {
    /// The skew of an answer dated `imds_date` that arrived at `local_now`.
    pub fn measure(imds_date: SystemTime, local_now: SystemTime) -> ClockSkew {
        let imds_ahead_secs = match imds_date.duration_since(local_now) {
            Ok(ahead) => ahead.as_secs_f64().round() as i64,
            Err(behind) => -(behind.duration().as_secs_f64().round() as i64),
        };
        ClockSkew { imds_ahead_secs }
    }

    /// Past [`SKEW_THRESHOLD`] either way.
    pub fn is_significant(self) -> bool {
        self.imds_ahead_secs.unsigned_abs() > SKEW_THRESHOLD.as_secs()
    }

    /// `imds_time` as the local clock reads it.
    pub fn to_local(self, imds_time: SystemTime) -> SystemTime {
        let offset = Duration::from_secs(self.imds_ahead_secs.unsigned_abs());
        if self.imds_ahead_secs >= 0 {
            imds_time - offset
        } else {
            imds_time + offset
        }
    }

    /// "the instance clock is 20m behind IMDS; expiry is judged on IMDS time".
    pub fn describe(self) -> String {
        let by =
            humantime::format_duration(Duration::from_secs(self.imds_ahead_secs.unsigned_abs()));
        let direction = if self.imds_ahead_secs >= 0 {
            "behind"
        } else {
            "ahead of"
        };
        format!("the instance clock is {by} {direction} IMDS; expiry is judged on IMDS time")
    }
}

/// Reads an HTTP `Date` header value (`Tue, 01 Dec 2026 22:38:07 GMT`).
pub fn parse_date(value: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(value).ok()
}

/// The latest skew measured, shared by the IMDS client (which measures it), the refresher
/// (which corrects expiry with it) and `status` and `/metrics` (which report it).
#[derive(Debug)]
pub struct ClockSkewGauge(AtomicI64);

/// No answer with a `Date` header yet.
const UNMEASURED: i64 = i64::MIN;

impl Default for ClockSkewGauge {
    fn default() -> Self {
        ClockSkewGauge(AtomicI64::new(UNMEASURED))
    }
}

impl ClockSkewGauge {
    pub fn set(&self, skew: ClockSkew) {
        self.0.store(skew.imds_ahead_secs, Ordering::Relaxed);
    }

    pub fn get(&self) -> Option<ClockSkew> {
        let imds_ahead_secs = self.0.load(Ordering::Relaxed);
        (imds_ahead_secs != UNMEASURED).then_some(ClockSkew { imds_ahead_secs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn a_slow_instance_clock_moves_expiry_earlier_and_a_fast_one_later() {
        let local = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        let slow = ClockSkew::measure(local + 20 * MINUTE, local);
        assert_eq!(slow.imds_ahead_secs, 1200);
        assert!(slow.is_significant());
        assert_eq!(slow.to_local(local + 60 * MINUTE), local + 40 * MINUTE);
        assert!(
            slow.describe().contains("20m behind IMDS"),
            "{}",
            slow.describe()
        );

        let fast = ClockSkew::measure(local - 20 * MINUTE, local);
        assert_eq!(fast.imds_ahead_secs, -1200);
        assert_eq!(fast.to_local(local + 60 * MINUTE), local + 80 * MINUTE);
        assert!(
            fast.describe().contains("20m ahead of IMDS"),
            "{}",
            fast.describe()
        );
    }

    #[test]
    fn five_minutes_is_tolerated_and_a_second_more_is_not() {
        let local = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        assert!(!ClockSkew::measure(local + 5 * MINUTE, local).is_significant());
        assert!(!ClockSkew::measure(local - 5 * MINUTE, local).is_significant());
        let over = Duration::from_secs(301);
        assert!(ClockSkew::measure(local + over, local).is_significant());
    }

    #[test]
    fn the_gauge_is_empty_until_measured_and_dates_parse() {
        let gauge = ClockSkewGauge::default();
        assert_eq!(gauge.get(), None);
        gauge.set(ClockSkew {
            imds_ahead_secs: -7,
        });
        assert_eq!(
            gauge.get(),
            Some(ClockSkew {
                imds_ahead_secs: -7
            })
        );
        let parsed = parse_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            parsed,
            SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777)
        );
        assert_eq!(parse_date("yesterday"), None);
    }
}
