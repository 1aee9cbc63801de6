//! How far the instance clock is from AWS's, as the `Date` header of IMDS and STS answers
//! tells it (the IMDS client measures it for `status` and `/metrics`; the refresh engine
//! judges each set by the `Date` of the answer that brought it).
//! Credentials expire on AWS's clock; an instance clock that is off by more than
//! [`SKEW_THRESHOLD`] would otherwise serve an expired set as valid (clock slow) or judge a
//! fresh set as about to expire and refresh in a loop (clock fast). Past the threshold the
//! daemon warns and moves each `Expiration` onto the local clock, but only when the `Date`
//! agrees with its own answer (not before the set was issued, not after it expires) and the
//! skew is under [`MAX_CORRECTED_SKEW`] ([`judge`]): a `Date` that contradicts its answer
//! must not keep a set alive past its `Expiration`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

/// A skew larger than this is reported and corrected. Under it the refresh margin
/// (`before_expiry`, 15 min by default) absorbs the difference, and expiry times stay as
/// IMDS wrote them.
pub const SKEW_THRESHOLD: Duration = Duration::from_secs(5 * 60);

/// The largest skew corrected. No set lives longer than 12 hours (STS's longest session;
/// IMDS's sets live about 6): a `Date` further than that from the local clock says that
/// one of the two clocks is not merely drifting but wrong (a clock never set, a replayed
/// or forged answer), and moving every expiry by it would let one header decide for days
/// whether a set is served. Past it the set is judged on the local clock and the skew is
/// reported.
pub const MAX_CORRECTED_SKEW: Duration = Duration::from_secs(12 * 3600);

/// IMDS time minus local time, in whole seconds (a `Date` header has 1 s resolution).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockSkew {
    /// Seconds IMDS's clock is ahead of the instance's (negative: behind).
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

    /// `local` as AWS's clock reads it: the time to sign a request with.
    pub fn to_aws(self, local: SystemTime) -> SystemTime {
        let offset = Duration::from_secs(self.imds_ahead_secs.unsigned_abs());
        if self.imds_ahead_secs >= 0 {
            local + offset
        } else {
            local - offset
        }
    }

    /// "the instance clock is 20m behind IMDS; expiry is judged on IMDS time".
    pub fn describe(self) -> String {
        format!("{}; expiry is judged on IMDS time", self.against("IMDS"))
    }

    /// "the instance clock is 20m behind STS".
    pub fn against(self, service: &str) -> String {
        let by =
            humantime::format_duration(Duration::from_secs(self.imds_ahead_secs.unsigned_abs()));
        let direction = if self.imds_ahead_secs >= 0 {
            "behind"
        } else {
            "ahead of"
        };
        format!("the instance clock is {by} {direction} {service}")
    }
}

/// The times an answer carrying a credential set gives about itself: its `Date` header and,
/// when it says, when the set was issued (IMDS's `LastUpdated`; for STS, the `Expiration`
/// less the session length asked for).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnswerTimes {
    /// The answer's `Date` header.
    pub date: SystemTime,
    /// When the set was issued, if the answer says.
    pub issued: Option<SystemTime>,
}

/// Why a skew past the threshold was not corrected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkewRefusal {
    /// The `Date` is before the set was issued.
    BeforeIssue,
    /// The `Date` is after the set's `Expiration`.
    AfterExpiration,
    /// Past [`MAX_CORRECTED_SKEW`].
    BeyondBound,
}

/// What the `Date` of a set's answer does to its expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkewVerdict {
    /// Within [`SKEW_THRESHOLD`]: the expiry stays as written.
    Tolerated(ClockSkew),
    /// Past the threshold and consistent: the expiry is moved onto the local clock.
    Corrected(ClockSkew),
    /// Past the threshold but not to be believed: the expiry stays as written, on the local
    /// clock, and the skew is reported.
    Refused(ClockSkew, SkewRefusal),
}

/// The verdict on a set expiring at `expiration` (as its answer wrote it), whose answer
/// gave `times`, received at `local_now`.
pub fn judge(times: AnswerTimes, expiration: SystemTime, local_now: SystemTime) -> SkewVerdict {
    let skew = ClockSkew::measure(times.date, local_now);
    if !skew.is_significant() {
        return SkewVerdict::Tolerated(skew);
    }
    // `Date` and the answer's own times have one-second resolution.
    let rounding = Duration::from_secs(1);
    let refusal = if times
        .issued
        .is_some_and(|issued| times.date + rounding < issued)
    {
        Some(SkewRefusal::BeforeIssue)
    } else if times.date > expiration + rounding {
        Some(SkewRefusal::AfterExpiration)
    } else if skew.imds_ahead_secs.unsigned_abs() > MAX_CORRECTED_SKEW.as_secs() {
        Some(SkewRefusal::BeyondBound)
    } else {
        None
    };
    match refusal {
        Some(refusal) => SkewVerdict::Refused(skew, refusal),
        None => SkewVerdict::Corrected(skew),
    }
}

impl SkewVerdict {
    /// The time to sign an AWS request with at `local`: AWS's, when this verdict corrected
    /// the skew (the SDKs do the same after a clock-skew error); else the local clock's.
    pub fn signing_time(self, local: SystemTime) -> SystemTime {
        match self {
            SkewVerdict::Corrected(skew) => skew.to_aws(local),
            SkewVerdict::Tolerated(_) | SkewVerdict::Refused(..) => local,
        }
    }

    /// The expiry to judge the set by, on the local clock.
    pub fn local_expiration(self, expiration: SystemTime) -> SystemTime {
        match self {
            SkewVerdict::Corrected(skew) => skew.to_local(expiration),
            SkewVerdict::Tolerated(_) | SkewVerdict::Refused(..) => expiration,
        }
    }

    /// For `status` and the log, past the threshold: "the instance clock is 30h ahead of
    /// IMDS's Date header, which is before the set was issued; not corrected: expiry is
    /// judged on the local clock". `None` within the threshold.
    pub fn describe(self, service: &str) -> Option<String> {
        match self {
            SkewVerdict::Tolerated(_) => None,
            SkewVerdict::Corrected(skew) => Some(format!(
                "{}; expiry is judged on {service} time",
                skew.against(service)
            )),
            SkewVerdict::Refused(skew, refusal) => {
                let why = match refusal {
                    SkewRefusal::BeforeIssue => "that Date is before the set was issued",
                    SkewRefusal::AfterExpiration => "that Date is after the set's Expiration",
                    SkewRefusal::BeyondBound => "that is more than the 12h correction bound",
                };
                Some(format!(
                    "{} by its Date header, but {why}; not corrected: expiry is judged on the local clock",
                    skew.against(service)
                ))
            }
        }
    }

    /// Same kind of verdict (the log says so once per change, not per set).
    pub fn same_kind(self, other: SkewVerdict) -> bool {
        match (self, other) {
            (SkewVerdict::Tolerated(_), SkewVerdict::Tolerated(_)) => true,
            (SkewVerdict::Corrected(_), SkewVerdict::Corrected(_)) => true,
            (SkewVerdict::Refused(_, a), SkewVerdict::Refused(_, b)) => a == b,
            _ => false,
        }
    }
}

/// Reads an HTTP `Date` header value (`Tue, 01 Dec 2026 22:38:07 GMT`).
pub fn parse_date(value: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(value).ok()
}

/// The time an answer's `Date` header gives, if it has a readable one.
pub fn date_header(headers: &http::HeaderMap) -> Option<SystemTime> {
    headers
        .get(http::header::DATE)
        .and_then(|value| value.to_str().ok())
        .and_then(parse_date)
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
    /// Records the latest measured skew.
    pub fn set(&self, skew: ClockSkew) {
        self.0.store(skew.imds_ahead_secs, Ordering::Relaxed);
    }

    /// The latest measured skew; `None` before the first measurement.
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

    const HOUR: Duration = Duration::from_secs(3600);

    fn local() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000)
    }

    #[test]
    fn a_date_inside_its_sets_life_corrects_the_expiry() {
        let issued = local() + 20 * MINUTE;
        let times = AnswerTimes {
            date: issued + MINUTE,
            issued: Some(issued),
        };
        let verdict = judge(times, issued + 6 * HOUR, local());
        assert!(matches!(verdict, SkewVerdict::Corrected(s) if s.imds_ahead_secs == 1260));
        assert_eq!(
            verdict.local_expiration(issued + 6 * HOUR),
            issued + 6 * HOUR - 21 * MINUTE
        );
        assert!(verdict
            .describe("IMDS")
            .unwrap()
            .ends_with("expiry is judged on IMDS time"));
        let near = AnswerTimes {
            date: local() + 4 * MINUTE,
            issued: None,
        };
        let tolerated = judge(near, local() + HOUR, local());
        assert!(matches!(tolerated, SkewVerdict::Tolerated(_)));
        assert_eq!(tolerated.local_expiration(local() + HOUR), local() + HOUR);
        assert_eq!(tolerated.describe("IMDS"), None);
    }

    /// Issue 18 item 6: a `Date` 30 h behind `LastUpdated` would have moved the expiry 30 h
    /// on; it is refused and the set keeps the `Expiration` it came with.
    #[test]
    fn a_date_before_its_set_was_issued_is_refused() {
        let issued = local();
        let expiration = issued + 6 * HOUR;
        let times = AnswerTimes {
            date: issued - 30 * HOUR,
            issued: Some(issued),
        };
        let verdict = judge(times, expiration, local());
        assert_eq!(
            verdict,
            SkewVerdict::Refused(
                ClockSkew {
                    imds_ahead_secs: -30 * 3600
                },
                SkewRefusal::BeforeIssue
            )
        );
        assert_eq!(verdict.local_expiration(expiration), expiration);
        let said = verdict.describe("IMDS").unwrap();
        assert!(
            said.starts_with("the instance clock is 1day 6h ahead of IMDS"),
            "{said}"
        );
        assert!(said.contains("before the set was issued"), "{said}");
        assert!(
            said.ends_with("expiry is judged on the local clock"),
            "{said}"
        );
    }

    #[test]
    fn a_date_after_the_expiration_or_past_the_bound_is_refused() {
        let expiration = local() + HOUR;
        let late = AnswerTimes {
            date: expiration + 2 * HOUR,
            issued: Some(local()),
        };
        assert_eq!(
            judge(late, expiration, local()),
            SkewVerdict::Refused(
                ClockSkew {
                    imds_ahead_secs: 3 * 3600
                },
                SkewRefusal::AfterExpiration
            )
        );
        // A set issued and dated 13 h ahead of the local clock agrees with itself, but a
        // 13 h correction is past the bound.
        let far = local() + 13 * HOUR;
        let times = AnswerTimes {
            date: far,
            issued: Some(far),
        };
        let verdict = judge(times, far + 6 * HOUR, local());
        assert!(matches!(
            verdict,
            SkewVerdict::Refused(_, SkewRefusal::BeyondBound)
        ));
        assert_eq!(verdict.local_expiration(far + 6 * HOUR), far + 6 * HOUR);
        // Just inside the bound, it is corrected.
        let inside = local() + 12 * HOUR;
        let times = AnswerTimes {
            date: inside,
            issued: Some(inside),
        };
        assert!(matches!(
            judge(times, inside + HOUR, local()),
            SkewVerdict::Corrected(_)
        ));
        // The same second as LastUpdated is not "before" it.
        let same = AnswerTimes {
            date: far - Duration::from_millis(900),
            issued: Some(far),
        };
        assert!(!matches!(
            judge(same, far + HOUR, local() + 6 * HOUR),
            SkewVerdict::Refused(_, SkewRefusal::BeforeIssue)
        ));
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

    #[test]
    fn only_a_corrected_skew_moves_the_signing_time() {
        let local = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        let slow = ClockSkew::measure(local + Duration::from_secs(1200), local);
        assert_eq!(
            SkewVerdict::Corrected(slow).signing_time(local),
            local + Duration::from_secs(1200)
        );
        let fast = ClockSkew::measure(local - Duration::from_secs(1200), local);
        assert_eq!(
            SkewVerdict::Corrected(fast).signing_time(local),
            local - Duration::from_secs(1200)
        );
        assert_eq!(SkewVerdict::Tolerated(slow).signing_time(local), local);
        let refused = SkewVerdict::Refused(slow, SkewRefusal::BeforeIssue);
        assert_eq!(refused.signing_time(local), local);
    }
}
