//! Sleeping on the real clocks, for the whole process: one watcher thread notices when the
//! wall clock jumps (or the machine resumes) and wakes every sleeper to look at the time
//! again, whether it waits for a wall-clock deadline or for a delay to elapse ([`elapsed`]).
//!
//! tokio's timers count monotonic time, which stops while the machine is suspended and
//! ignores clock steps; a wait computed once from a wall-clock deadline would oversleep a
//! resume by the time asleep. So a sleep here waits at most [`RECHECK`] of monotonic time
//! at a stretch, or until the watcher says the clock was set, and compares the wall clock
//! with its deadline again each time.
//!
//! The watcher (Linux) blocks on a `CLOCK_REALTIME` timerfd armed with
//! `TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET`, which the kernel cancels on
//! `settimeofday`, an NTP step and a resume; it also wakes every [`RECHECK`], since
//! libfaketime moves the wall clock without telling the kernel and Windows has no such
//! timer (there the bound is the mechanism). Each time it compares the wall/monotonic
//! offset with the last one ([`super::jump`]); a jump is logged once and kept for `status`.
//! It is a plain thread, not a task: it serves every runtime in the process (the daemon's,
//! a client command's, each test's) and nothing it does blocks one.

use super::jump::{ClockJump, WallOffset};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;

/// The longest stretch of monotonic time a sleeper or the watcher waits before looking at
/// the wall clock again: the bound on how late a deadline is noticed after a jump the
/// kernel did not report.
pub const RECHECK: Duration = Duration::from_secs(30);

/// The process's watcher: the last jump it saw, and the channel that wakes sleepers.
struct Watcher {
    /// Bumped after every jump or clock-set notification.
    wakes: watch::Sender<u64>,
    last_jump: Mutex<Option<ClockJump>>,
}

fn watcher() -> &'static Watcher {
    static WATCHER: OnceLock<Watcher> = OnceLock::new();
    WATCHER.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("wall-clock".into())
            .spawn(watch_clock);
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot start the wall-clock watcher; clock jumps are noticed within 30 s and not reported");
        }
        Watcher {
            wakes: watch::channel(0).0,
            last_jump: Mutex::new(None),
        }
    })
}

/// Completes once the wall clock reads `deadline` or later, however it got there.
pub(super) async fn sleep_until(deadline: SystemTime) {
    sleep_while(|| deadline.duration_since(SystemTime::now()).ok()).await;
}

/// Completes once [`elapsed`] reads `end` or later.
pub(super) async fn sleep_until_elapsed(end: Duration) {
    sleep_while(|| end.checked_sub(elapsed())).await;
}

/// Waits while `left` says time is left, looking again at least every [`RECHECK`] and
/// whenever the watcher wakes sleepers: the one loop both kinds of wait share.
async fn sleep_while(left: impl Fn() -> Option<Duration>) {
    let mut wakes = watcher().wakes.subscribe();
    loop {
        let left = match left() {
            Some(left) if !left.is_zero() => left,
            _ => return,
        };
        tokio::select! {
            () = tokio::time::sleep(left.min(RECHECK)) => {}
            // The sender is static: `changed` fails only if it were dropped.
            changed = wakes.changed() => if changed.is_err() {
                tokio::time::sleep(left.min(RECHECK)).await;
            },
        }
    }
}

/// Real time elapsed since boot, counting suspend: `CLOCK_BOOTTIME`. A delay is measured on
/// it rather than on `CLOCK_MONOTONIC` (tokio's timers), which stops while the machine is
/// suspended: a 5 s retry that spans a 2 h hibernation is then over at resume (the kernel
/// reports the resume to the watcher, which wakes the sleeper) instead of 5 s after it,
/// and a 5-minute resync is not put off by the time asleep. Neither clock moves with a
/// wall-clock step.
#[cfg(target_os = "linux")]
pub fn elapsed() -> Duration {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME) {
        Ok(now) => Duration::from(now),
        // Not on any kernel since 2.6.39; monotonic time is the next best.
        Err(_) => process_elapsed(),
    }
}

/// Real time elapsed since a fixed point: `Instant` (Windows counts suspend in it).
#[cfg(not(target_os = "linux"))]
pub fn elapsed() -> Duration {
    process_elapsed()
}

/// Monotonic time since this was first asked for.
fn process_elapsed() -> Duration {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed()
}

/// The last jump of the wall clock the watcher saw, if any.
pub(super) fn last_jump() -> Option<ClockJump> {
    *watcher()
        .last_jump
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The watcher thread: waits for a clock-set notification or [`RECHECK`], then compares
/// the wall/monotonic offset with the last one.
fn watch_clock() {
    let origin = Instant::now();
    let offset = || WallOffset::sample(SystemTime::now(), origin.elapsed());
    let mut notice = ClockSetNotice::new();
    let mut before = offset();
    loop {
        let clock_was_set = notice.wait(RECHECK);
        let after = offset();
        let jump = ClockJump::between(before, after, SystemTime::now());
        before = after;
        if let Some(jump) = jump {
            note(jump);
        }
        if clock_was_set || jump.is_some() {
            watcher().wakes.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// Logs a jump and keeps it for `status`.
fn note(jump: ClockJump) {
    if jump.forward_secs >= 0 {
        tracing::warn!(
            forward_secs = jump.forward_secs,
            "{}; expiry and refresh times are checked again now",
            jump.describe()
        );
    } else {
        tracing::warn!(
            forward_secs = jump.forward_secs,
            "{}; expiry and refresh times stay on the wall clock",
            jump.describe()
        );
    }
    *watcher()
        .last_jump
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(jump);
}

/// The kernel's word that the wall clock was set (Linux), or only the bound (elsewhere).
struct ClockSetNotice {
    #[cfg(target_os = "linux")]
    timer: Option<nix::sys::timerfd::TimerFd>,
}

#[cfg(target_os = "linux")]
impl ClockSetNotice {
    fn new() -> ClockSetNotice {
        let timer = arm_cancel_on_set();
        if let Err(error) = &timer {
            tracing::warn!(%error, "cannot watch for wall-clock steps (timerfd); clock jumps are noticed within 30 s");
        }
        ClockSetNotice { timer: timer.ok() }
    }

    /// Waits up to `bound`; true when the kernel said the clock was set.
    fn wait(&mut self, bound: Duration) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let Some(timer) = &self.timer else {
            std::thread::sleep(bound);
            return false;
        };
        let timeout = PollTimeout::try_from(bound).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(timer.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => false,
            Ok(_) => {
                // Readable: cancelled by a clock set (the read fails with ECANCELED, which
                // `wait` takes as done) or, a day on, expired. Either way arm it again.
                let _ = timer.wait();
                self.timer = arm_cancel_on_set()
                    .inspect_err(|error| tracing::warn!(%error, "cannot re-arm the wall-clock timerfd; clock jumps are noticed within 30 s"))
                    .ok();
                true
            }
            Err(error) => {
                tracing::warn!(%error, "cannot wait on the wall-clock timerfd; clock jumps are noticed within 30 s");
                self.timer = None;
                false
            }
        }
    }
}

/// A `CLOCK_REALTIME` timerfd due a day from now, cancelled by any clock set before.
#[cfg(target_os = "linux")]
fn arm_cancel_on_set() -> nix::Result<nix::sys::timerfd::TimerFd> {
    use nix::sys::time::TimeSpec;
    use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
    let timer = TimerFd::new(ClockId::CLOCK_REALTIME, TimerFlags::TFD_CLOEXEC)?;
    let due = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        + Duration::from_secs(24 * 3600);
    timer.set(
        Expiration::OneShot(TimeSpec::from_duration(due)),
        TimerSetTimeFlags::TFD_TIMER_ABSTIME | TimerSetTimeFlags::TFD_TIMER_CANCEL_ON_SET,
    )?;
    Ok(timer)
}

#[cfg(not(target_os = "linux"))]
impl ClockSetNotice {
    fn new() -> ClockSetNotice {
        ClockSetNotice {}
    }

    /// No notification to wait for: only the bound.
    fn wait(&mut self, bound: Duration) -> bool {
        std::thread::sleep(bound);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_deadline_passed_completes_at_once_and_a_near_one_on_time() {
        tokio::time::timeout(
            Duration::from_secs(1),
            sleep_until(SystemTime::now() - RECHECK),
        )
        .await
        .expect("a past deadline does not wait");
        let started = Instant::now();
        sleep_until(SystemTime::now() + Duration::from_millis(200)).await;
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(190), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
    }

    #[tokio::test]
    async fn a_delay_elapses_on_time_and_an_elapsed_end_completes_at_once() {
        let before = elapsed();
        tokio::time::timeout(Duration::from_secs(1), sleep_until_elapsed(before))
            .await
            .expect("an end already reached does not wait");
        let started = Instant::now();
        sleep_until_elapsed(elapsed() + Duration::from_millis(200)).await;
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(190), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        assert!(elapsed() >= before + Duration::from_millis(190));
    }
}
