//! Tells systemd how the daemon is doing (`Type=notify`): `READY=1` once the first refresh
//! has an outcome — credentials published, or a clear error when IMDS is not reachable yet,
//! so boot is never blocked on IMDS — then a `STATUS=` line on every change, watchdog pings,
//! and `STOPPING=1`. Without `NOTIFY_SOCKET` every call is a no-op.
//!
//! `WATCHDOG=1` means the daemon works: it is sent only while the refresher checks in on
//! schedule ([`Heartbeat`]), from a task on the runtime that serves the requests (a wedged
//! runtime sends nothing). An overdue refresher gets no ping, and systemd restarts the
//! daemon after `WatchdogSec=`.

use crate::clock::SharedClock;
use crate::credentials::format_utc_timestamp;
use crate::heartbeat::Heartbeat;
use crate::state::{CredentialState, StateReceiver};
use sd_notify::NotifyState;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// Sends notifications until `shutdown`, then `STOPPING=1`.
pub async fn run(
    mut state: StateReceiver,
    clock: SharedClock,
    heartbeat: Heartbeat,
    shutdown: CancellationToken,
) {
    let watchdog = sd_notify::watchdog_enabled().map(|period| period / 2);
    let mut ping = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    let mut ready = false;
    let mut withheld = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ping.tick(), if watchdog.is_some() => {
                if !heartbeat.is_overdue() {
                    withheld = false;
                    send(&[NotifyState::Watchdog]);
                } else if !withheld {
                    withheld = true;
                    tracing::error!("the refresher is overdue; withholding watchdog pings so that systemd restarts the daemon");
                }
            }
            changed = state.changed() => {
                if changed.is_err() {
                    break;
                }
                let current = state.borrow_and_update().clone();
                let line = status_line(&current, clock.now());
                if current.has_outcome() && !ready {
                    ready = true;
                    send(&[NotifyState::Ready, NotifyState::Status(&line)]);
                } else if ready {
                    send(&[NotifyState::Status(&line)]);
                }
            }
        }
    }
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// What `systemctl status` shows, e.g. `role web-server; credentials expire in 5h 59m
/// (2026-11-23T09:00:00Z)` or `no valid credentials: <last error>`.
pub fn status_line(state: &CredentialState, now: SystemTime) -> String {
    match (state.valid_credentials(now), &state.role) {
        (Some(creds), role) => {
            let left = creds.expiration.duration_since(now).unwrap_or_default();
            let left = Duration::from_secs(left.as_secs() / 60 * 60);
            let mut line = format!(
                "role {}; credentials expire in {} ({})",
                role.as_deref().unwrap_or("?"),
                humantime::format_duration(left),
                format_utc_timestamp(creds.expiration)
            );
            if let Some(error) = &state.last_error {
                line.push_str("; last refresh failed: ");
                line.push_str(error);
            }
            line
        }
        (None, _) => format!(
            "no valid credentials: {}",
            state.last_error.as_deref().unwrap_or("waiting for IMDS")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Credentials;
    use crate::secret::Secret;
    use std::sync::Arc;

    #[test]
    fn status_line_shows_role_and_expiry_in_words_or_the_error() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut state = CredentialState {
            role: Some("web".into()),
            credentials: Some(Arc::new(Credentials {
                access_key_id: "ASIA".into(),
                secret_access_key: Secret::new("s".into()),
                session_token: Secret::new("t".into()),
                expiration: now + Duration::from_secs(4 * 3600 + 12 * 60 + 30),
            })),
            ..CredentialState::default()
        };
        let line = status_line(&state, now);
        assert!(
            line.starts_with("role web; credentials expire in 4h 12m ("),
            "{line}"
        );
        state.credentials = None;
        state.last_error = Some("IMDS answered 503".into());
        assert_eq!(
            status_line(&state, now),
            "no valid credentials: IMDS answered 503"
        );
    }
}
