//! Wall-clock time, injected. Expiry decisions use UTC wall time (IMDS gives `Expiration` in
//! UTC); sleeping goes through the same clock so tests can move time forward by hours
//! without waiting, while the HTTP traffic underneath stays real.
//!
//! Two kinds of wait, each with its own sleep ([`Due`]):
//! - a *deadline* on the wall clock (a set's expiry, `Expiration - before_expiry`) ends
//!   when the wall clock reaches it, even when that happens by a jump (a resume from
//!   suspend, an NTP step forward);
//! - a *delay* measured from now (a retry after a failure, a backoff, a periodic resync or
//!   re-check) ends when that much real time has elapsed, whatever the wall clock does: a
//!   step back of an hour does not make a 5 s retry an hour late.
//!
//! See [`wall`] for how the real clock notices jumps, [`jump`] for how a jump is measured,
//! `docs/clocks.md` for what operators see.

// The one place that reads the system clocks and sleeps on tokio's timer (`clippy.toml`).
#![allow(clippy::disallowed_methods)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A boxed future that completes when the clock reaches a deadline.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The source of "now" for every expiry and scheduling decision.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
    /// Completes once `now() >= deadline`, within [`wall::RECHECK`] of a jump that gets it
    /// there.
    fn sleep_until(&self, deadline: SystemTime) -> Sleep;
    /// Real time elapsed since a fixed point, what a delay is measured on: it never jumps,
    /// and counts time the machine was suspended (see [`wall::elapsed`] for why).
    /// Provided: the real elapsed clock, for clocks that only serve deadlines.
    fn elapsed(&self) -> Duration {
        wall::elapsed()
    }
    /// Completes once `elapsed() >= end`. Provided: the real elapsed clock.
    fn sleep_until_elapsed(&self, end: Duration) -> Sleep {
        Box::pin(wall::sleep_until_elapsed(end))
    }
    /// A delay of `delay` from now.
    fn after(&self, delay: Duration) -> Due {
        Due::Elapsed(self.elapsed() + delay)
    }
    /// Completes when `due` is reached, on the wall clock or the elapsed one.
    fn sleep_until_due(&self, due: Due) -> Sleep {
        match due {
            Due::At(deadline) => self.sleep_until(deadline),
            Due::Elapsed(end) => self.sleep_until_elapsed(end),
        }
    }
    /// Completes after `delay` of real elapsed time.
    fn sleep_for(&self, delay: Duration) -> Sleep {
        self.sleep_until_due(self.after(delay))
    }
    /// When `due` falls on the wall clock as it reads now, for `status` and comparisons
    /// with an expiry (a delay's wall time moves with every jump).
    fn wall_time_of(&self, due: Due) -> SystemTime {
        match due {
            Due::At(deadline) => deadline,
            Due::Elapsed(end) => self.now() + end.saturating_sub(self.elapsed()),
        }
    }
    /// The last jump of this clock noticed, for `status`; none for a clock that cannot jump.
    fn last_jump(&self) -> Option<jump::ClockJump> {
        None
    }
}

/// When a wait ends: the two kinds of wait the daemon has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// A deadline: when the wall clock reads this (a set's expiry, its refresh time).
    At(SystemTime),
    /// A delay: when [`Clock::elapsed`] reads this (made by [`Clock::after`]).
    Elapsed(Duration),
}

/// Shared handle to a clock.
pub type SharedClock = Arc<dyn Clock>;

pub mod jump;
pub mod skew;
pub mod wall;

#[cfg(feature = "test-util")]
mod manual;
#[cfg(feature = "test-util")]
pub use manual::ManualClock;

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn sleep_until(&self, deadline: SystemTime) -> Sleep {
        Box::pin(wall::sleep_until(deadline))
    }

    fn last_jump(&self) -> Option<jump::ClockJump> {
        wall::last_jump()
    }
}
