//! Noticing that the wall clock jumped: a resume from suspend or hibernation (monotonic time
//! does not count the time asleep, wall time does), an NTP step, `settimeofday`. The
//! difference between wall and monotonic time stays put while both run; a change in it is a
//! jump, by exactly that much. Pure arithmetic here; [`super::wall`] samples the clocks.

use std::time::{Duration, SystemTime};

/// A change in the wall/monotonic difference smaller than this is not reported: NTP slews at
/// most 0.5 ms/s, so between two samples 30 s apart it moves the difference by 15 ms, and
/// IMDS and STS timestamps have one-second resolution anyway.
pub const JUMP_TOLERANCE: Duration = Duration::from_secs(1);

/// Wall time minus monotonic time, in milliseconds: constant while no jump happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallOffset(pub i128);

impl WallOffset {
    /// The offset of wall time `wall` sampled when `monotonic` had passed since some fixed
    /// instant.
    pub fn sample(wall: SystemTime, monotonic: Duration) -> WallOffset {
        let wall_ms = match wall.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(after) => after.as_millis() as i128,
            Err(before) => -(before.duration().as_millis() as i128),
        };
        WallOffset(wall_ms - monotonic.as_millis() as i128)
    }
}

/// One jump of the wall clock, as `status` and the log report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockJump {
    /// When it was noticed, on the wall clock after the jump.
    pub noticed_at: SystemTime,
    /// How far the wall clock moved against monotonic time, in whole seconds: positive
    /// forward (a resume, a step ahead), negative backward.
    pub forward_secs: i64,
}

impl ClockJump {
    /// The jump between two offsets, noticed at `now`; `None` within [`JUMP_TOLERANCE`].
    pub fn between(before: WallOffset, after: WallOffset, now: SystemTime) -> Option<ClockJump> {
        let moved_ms = after.0 - before.0;
        if moved_ms.unsigned_abs() < JUMP_TOLERANCE.as_millis() {
            return None;
        }
        let forward_secs = (moved_ms as f64 / 1000.0).round() as i64;
        Some(ClockJump {
            noticed_at: now,
            forward_secs,
        })
    }

    /// The size of the jump, without its direction.
    pub fn size(&self) -> Duration {
        Duration::from_secs(self.forward_secs.unsigned_abs())
    }

    /// `forward` or `backward`.
    pub fn direction(&self) -> &'static str {
        if self.forward_secs >= 0 {
            "forward"
        } else {
            "backward"
        }
    }

    /// "the wall clock jumped 3h forward (a resume from suspend, or a clock step)".
    pub fn describe(&self) -> String {
        let cause = if self.forward_secs >= 0 {
            "a resume from suspend or hibernation, or a clock step"
        } else {
            "a clock step"
        };
        format!(
            "the wall clock jumped {} {} ({cause})",
            humantime::format_duration(self.size()),
            self.direction()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000)
    }

    #[test]
    fn both_clocks_running_together_is_no_jump() {
        let before = WallOffset::sample(t0(), Duration::from_secs(100));
        let after =
            WallOffset::sample(t0() + 30 * Duration::from_secs(1), Duration::from_secs(130));
        assert_eq!(before, after);
        assert_eq!(ClockJump::between(before, after, t0()), None);
        // An NTP slew's few milliseconds are not a jump either.
        let slewed = WallOffset(before.0 + 15);
        assert_eq!(ClockJump::between(before, slewed, t0()), None);
    }

    #[test]
    fn a_suspend_is_a_forward_jump_of_the_time_asleep() {
        let before = WallOffset::sample(t0(), Duration::from_secs(100));
        // Three hours asleep: wall time moved, monotonic time did not.
        let after = WallOffset::sample(
            t0() + 3 * HOUR + Duration::from_secs(5),
            Duration::from_secs(105),
        );
        let jump = ClockJump::between(before, after, t0() + 3 * HOUR).unwrap();
        assert_eq!(jump.forward_secs, 3 * 3600);
        assert_eq!(jump.direction(), "forward");
        assert_eq!(jump.noticed_at, t0() + 3 * HOUR);
        assert!(
            jump.describe()
                .starts_with("the wall clock jumped 3h forward"),
            "{}",
            jump.describe()
        );
    }

    #[test]
    fn a_step_back_is_a_backward_jump() {
        let before = WallOffset::sample(t0(), Duration::from_secs(100));
        let after = WallOffset::sample(
            t0() - HOUR + Duration::from_secs(10),
            Duration::from_secs(110),
        );
        let jump = ClockJump::between(before, after, t0()).unwrap();
        assert_eq!(jump.forward_secs, -3600);
        assert_eq!(jump.size(), HOUR);
        assert_eq!(
            jump.describe(),
            "the wall clock jumped 1h backward (a clock step)"
        );
        let just = WallOffset(before.0 - 1000);
        assert_eq!(
            ClockJump::between(before, just, t0()).unwrap().forward_secs,
            -1
        );
    }
}
