//! The connection cap against the open-files limit (Linux): the soft `RLIMIT_NOFILE` raised
//! as far as the configured `max_connections` needs and the hard limit permits, and the cap
//! lowered, with a warning, when it cannot be (see the module doc of `serve::server`).

/// File descriptors kept free beyond the connection cap: the listener, IMDS connections,
/// sink files, logs and the programs the daemon runs.
const SPARE_FDS: u64 = 64;

/// The connection cap that the open-files limit allows, after raising the soft limit as far
/// as needed and permitted (see the module doc).
pub(super) fn fit_fd_limit(wanted: usize) -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return wanted;
    };
    let (new_soft, _) = connection_cap(wanted, soft, hard);
    let soft = if new_soft != soft {
        match setrlimit(Resource::RLIMIT_NOFILE, new_soft, hard) {
            Ok(()) => new_soft,
            Err(error) => {
                tracing::warn!(error = %crate::error_chain::render(&error), "cannot raise the open-files limit");
                soft
            }
        }
    } else {
        soft
    };
    // The cap that the limit in force allows (the raise may have been refused).
    let (_, cap) = connection_cap(wanted, soft, soft);
    if cap < wanted {
        tracing::warn!(
            wanted,
            cap,
            open_files_limit = soft,
            "the open-files limit allows fewer socket connections than configured"
        );
    }
    cap
}

/// Pure part of [`fit_fd_limit`]: the soft limit to ask for and the cap it allows.
fn connection_cap(wanted: usize, soft: u64, hard: u64) -> (u64, usize) {
    let needed = (wanted as u64).saturating_add(SPARE_FDS);
    let new_soft = if soft >= needed {
        soft
    } else {
        needed.min(hard)
    };
    let allowed = new_soft.saturating_sub(SPARE_FDS).max(1);
    let cap = usize::try_from(allowed).unwrap_or(usize::MAX).min(wanted);
    (new_soft, cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_low_soft_limit_is_raised_toward_the_hard_one() {
        assert_eq!(
            connection_cap(1024, 1024, 524_288),
            (1024 + SPARE_FDS, 1024)
        );
    }

    #[test]
    fn a_sufficient_soft_limit_is_left_alone() {
        assert_eq!(connection_cap(1024, 20_000, 20_000), (20_000, 1024));
    }

    #[test]
    fn a_low_hard_limit_lowers_the_cap() {
        assert_eq!(
            connection_cap(1024, 256, 512),
            (512, 512 - SPARE_FDS as usize)
        );
        assert_eq!(connection_cap(1024, 10, 10), (10, 1));
    }
}
