//! [`ManualClock`]: time that moves only when a test says so. Test machinery, built with the
//! `test-util` feature only (see `docs/ARCHITECTURE.md`): the daemon itself always runs on
//! [`super::SystemClock`].

use super::{Clock, Sleep};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// A clock that moves only when [`ManualClock::advance`] is called. Tests use it to run
/// days of refreshes in milliseconds against a real (in-process) IMDS simulator.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<SystemTime>>,
    ticks: watch::Sender<SystemTime>,
}

impl ManualClock {
    /// Starts at `start`.
    pub fn new(start: SystemTime) -> Self {
        let (ticks, _) = watch::channel(start);
        ManualClock {
            now: Arc::new(Mutex::new(start)),
            ticks,
        }
    }

    /// Starts at the current wall time, truncated to whole seconds like IMDS timestamps.
    pub fn starting_now() -> Self {
        let secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        Self::new(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
    }

    /// Moves time forward by `by` and wakes every sleeper whose deadline is now reached.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().expect("clock lock");
        *now += by;
        self.ticks.send_replace(*now);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().expect("clock lock")
    }

    fn sleep_until(&self, deadline: SystemTime) -> Sleep {
        let mut ticks = self.ticks.subscribe();
        Box::pin(async move {
            // The sender lives as long as the clock; if it is gone, nothing can wake us.
            let _ = ticks.wait_for(|now| *now >= deadline).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_only_when_advanced_past_deadline() {
        let clock = ManualClock::starting_now();
        let deadline = clock.now() + Duration::from_secs(3600);
        let sleeper = tokio::spawn(clock.sleep_until(deadline));
        clock.advance(Duration::from_secs(1800));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_secs(1800));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("sleeper woke")
            .unwrap();
    }
}
