//! The simulated IMDS's own clock: the test's [`ManualClock`] moved by a fixed offset, so
//! IMDS (and AWS) time can run ahead of or behind the daemon's clock, as on an instance
//! whose time sync is broken.

use imds_credd::clock::{Clock, ManualClock, Sleep};
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone)]
pub struct SkewedClock {
    base: ManualClock,
    offset: Duration,
    imds_ahead: bool,
}

impl SkewedClock {
    /// IMDS time is `base` plus `offset`: the instance clock is that much slow.
    pub fn ahead_of(base: &ManualClock, offset: Duration) -> SkewedClock {
        SkewedClock {
            base: base.clone(),
            offset,
            imds_ahead: true,
        }
    }

    /// IMDS time is `base` minus `offset`: the instance clock is that much fast.
    pub fn behind(base: &ManualClock, offset: Duration) -> SkewedClock {
        SkewedClock {
            base: base.clone(),
            offset,
            imds_ahead: false,
        }
    }

    /// `base` time as this clock reads it.
    fn skew(&self, base_time: SystemTime) -> SystemTime {
        if self.imds_ahead {
            base_time + self.offset
        } else {
            base_time - self.offset
        }
    }
}

impl Clock for SkewedClock {
    fn now(&self) -> SystemTime {
        self.skew(self.base.now())
    }

    fn sleep_until(&self, deadline: SystemTime) -> Sleep {
        let base_deadline = if self.imds_ahead {
            deadline - self.offset
        } else {
            deadline + self.offset
        };
        self.base.sleep_until(base_deadline)
    }
}
