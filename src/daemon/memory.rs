//! The daemon's allocator settings (glibc): its memory should fall back after a burst of
//! connections, not stay at the peak. glibc gives each thread that allocates under
//! contention an arena of its own and keeps freed memory in each arena for reuse; a daemon
//! whose steady state is a few KiB per request gains nothing from either. So: at most
//! [`ARENAS`] arenas (unless the operator set `MALLOC_ARENA_MAX`), and every
//! [`TRIM_EVERY`] the free memory the arenas hold, once it is more than [`TRIM_ABOVE`],
//! goes back to the system (`malloc_trim`). musl's allocator returns memory by itself.

use std::time::Duration;

/// Arenas for the whole process: one per runtime worker.
const ARENAS: i32 = 2;
/// How often the free memory the arenas hold is looked at.
pub(super) const TRIM_EVERY: Duration = Duration::from_secs(1);
/// Free memory the arenas may keep for the next burst without giving it back.
const TRIM_ABOVE: usize = 256 * 1024;

/// Caps the number of malloc arenas; call before any thread is started.
pub(super) fn limit_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes glibc's allocator parameters, and is called before
        // the runtime starts any thread.
        unsafe { nix::libc::mallopt(nix::libc::M_ARENA_MAX, ARENAS) };
    }
}

/// Gives free memory back to the system while the arenas hold more than [`TRIM_ABOVE`];
/// returns how many bytes were free before. Cheap when there is nothing to give.
pub(super) fn trim_if_worth_it() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    let free = unsafe { nix::libc::mallinfo2() }.fordblks;
    if free > TRIM_ABOVE {
        // SAFETY: malloc_trim releases unused pages of the heap; no live allocation moves.
        unsafe { nix::libc::malloc_trim(0) };
    }
    free
}

/// Runs [`trim_if_worth_it`] every [`TRIM_EVERY`], for as long as the runtime runs.
pub(super) async fn trim_periodically() {
    let mut ticks = tokio::time::interval(TRIM_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        trim_if_worth_it();
    }
}
