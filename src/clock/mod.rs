//! Wall-clock time, injected. Expiry decisions use UTC wall time (IMDS gives `Expiration` in
//! UTC); sleeping goes through the same clock so tests can move time forward by hours
//! without waiting, while the HTTP traffic underneath stays real.
//!
//! A sleep ends when the *wall* clock reaches its deadline, even when that happens by a
//! jump (a resume from suspend, an NTP step): see [`wall`] for how the real clock notices,
//! [`jump`] for how a jump is measured, `docs/clocks.md` for what operators see.

// The one place that reads the system clocks and sleeps on tokio's timer (`clippy.toml`).
#![allow(clippy::disallowed_methods)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

/// A boxed future that completes when the clock reaches a deadline.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The source of "now" for every expiry and scheduling decision.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> SystemTime;
    /// Completes once `now() >= deadline`, within [`wall::RECHECK`] of a jump that gets it
    /// there.
    fn sleep_until(&self, deadline: SystemTime) -> Sleep;
    /// The last jump of this clock noticed, for `status`; none for a clock that cannot jump.
    fn last_jump(&self) -> Option<jump::ClockJump> {
        None
    }
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
