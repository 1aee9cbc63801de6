//! [`ManualClock`]: time that moves only when a test says so, running (wall and elapsed
//! time together) or jumping (wall time alone, as a clock step does). Test machinery, built with the
//! `test-util` feature only (see `docs/ARCHITECTURE.md`): the daemon itself always runs on
//! [`super::SystemClock`].

use super::jump::ClockJump;
use super::{Clock, Sleep};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// A clock that moves only when [`ManualClock::advance`] or a jump is called. Tests use it to run
/// days of refreshes in milliseconds against a real (in-process) IMDS simulator.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<Reading>>,
    ticks: watch::Sender<Reading>,
    last_jump: Arc<Mutex<Option<ClockJump>>>,
}

/// The two times a [`ManualClock`] keeps: the wall clock, and the elapsed time delays are
/// measured on ([`Clock::elapsed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reading {
    wall: SystemTime,
    elapsed: Duration,
}

impl ManualClock {
    /// Starts at `start`.
    pub fn new(start: SystemTime) -> Self {
        let reading = Reading {
            wall: start,
            elapsed: Duration::ZERO,
        };
        let (ticks, _) = watch::channel(reading);
        ManualClock {
            now: Arc::new(Mutex::new(reading)),
            ticks,
            last_jump: Arc::new(Mutex::new(None)),
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

    /// Lets `by` pass (wall and elapsed time together) and wakes every sleeper whose
    /// deadline or delay is now reached.
    pub fn advance(&self, by: Duration) {
        self.moved(|r| {
            r.wall += by;
            r.elapsed += by;
        });
    }

    /// Jumps wall time forward by `by` while no elapsed time passes (a clock step ahead, or
    /// what a resume does to deadlines): wakes the deadline sleepers it gets past their
    /// deadline and no delay sleeper, and records the jump as the real clock's watcher
    /// would.
    pub fn jump_forward(&self, by: Duration) {
        self.moved(|r| r.wall += by);
        self.record_jump(by.as_secs() as i64);
    }

    /// Steps wall time back by `by` (an NTP step): no deadline sleeper wakes, since none is
    /// nearer its deadline, and delays run on unchanged; the jump is recorded.
    pub fn jump_back(&self, by: Duration) {
        self.moved(|r| r.wall -= by);
        self.record_jump(-(by.as_secs() as i64));
    }

    fn moved(&self, change: impl FnOnce(&mut Reading)) {
        let mut now = self.now.lock().expect("clock lock");
        change(&mut now);
        self.ticks.send_replace(*now);
    }

    /// Completes once the clock's reading satisfies `reached`.
    fn sleep_until_reading(
        &self,
        reached: impl Fn(&Reading) -> bool + Send + Sync + 'static,
    ) -> Sleep {
        let mut ticks = self.ticks.subscribe();
        let wait = async move {
            // The sender lives as long as the clock; if it is gone, nothing can wake us.
            let _ = ticks.wait_for(|r| reached(r)).await;
        };
        Box::pin(wait)
    }

    fn record_jump(&self, forward_secs: i64) {
        *self.last_jump.lock().expect("clock lock") = Some(ClockJump {
            noticed_at: self.now(),
            forward_secs,
        });
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        self.now.lock().expect("clock lock").wall
    }

    fn sleep_until(&self, deadline: SystemTime) -> Sleep {
        self.sleep_until_reading(move |r| r.wall >= deadline)
    }

    fn elapsed(&self) -> Duration {
        self.now.lock().expect("clock lock").elapsed
    }

    fn sleep_until_elapsed(&self, end: Duration) -> Sleep {
        self.sleep_until_reading(move |r| r.elapsed >= end)
    }

    fn last_jump(&self) -> Option<ClockJump> {
        *self.last_jump.lock().expect("clock lock")
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

    #[tokio::test]
    async fn a_jump_back_wakes_no_sleeper_and_both_jumps_are_recorded() {
        let clock = ManualClock::starting_now();
        let t0 = clock.now();
        let sleeper = tokio::spawn(clock.sleep_until(t0 + Duration::from_secs(60)));
        clock.jump_back(Duration::from_secs(3600));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        assert_eq!(clock.last_jump().unwrap().forward_secs, -3600);
        clock.jump_forward(Duration::from_secs(3 * 3600));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("sleeper woke")
            .unwrap();
        let jump = clock.last_jump().unwrap();
        assert_eq!(
            (jump.forward_secs, jump.noticed_at),
            (10_800, t0 + Duration::from_secs(7200))
        );
    }

    #[tokio::test]
    async fn a_jump_moves_deadlines_only_and_advance_moves_delays_too() {
        let clock = ManualClock::starting_now();
        let delay = tokio::spawn(clock.sleep_for(Duration::from_secs(5)));
        let due = clock.after(Duration::from_secs(5));
        clock.jump_back(Duration::from_secs(3600));
        clock.jump_forward(Duration::from_secs(7200));
        tokio::task::yield_now().await;
        assert!(!delay.is_finished(), "a jump elapses no delay");
        assert_eq!(
            clock.wall_time_of(due),
            clock.now() + Duration::from_secs(5),
            "a delay's wall time moves with the jump"
        );
        clock.advance(Duration::from_secs(5));
        tokio::time::timeout(Duration::from_secs(5), delay)
            .await
            .expect("the delay elapsed")
            .unwrap();
    }
}
