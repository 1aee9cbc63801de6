//! Tells systemd how the daemon is doing (`Type=notify`): `READY=1` once the first refresh
//! has an outcome — credentials published, or a clear error when IMDS is not reachable yet,
//! so boot is never blocked on IMDS — then a `STATUS=` line on every change, watchdog pings,
//! and `STOPPING=1`. Without `NOTIFY_SOCKET` every call is a no-op.
//!
//! `WATCHDOG=1` means the daemon works, both halves of it: before each ping the refresher
//! must have checked in on schedule ([`Heartbeat`]), and a `GET /healthz` through the real
//! serving path (connect to the daemon's own socket, admission, routing, answer) must get
//! an answer, whatever its status, within [`HEALTH_CHECK_TIMEOUT`] (or the ping interval,
//! if shorter). A wedged server, a socket file removed from under the daemon or an overdue
//! refresher gets no ping, and systemd restarts the daemon after `WatchdogSec=`.

use crate::client::socket_client::SocketClient;
use crate::clock::SharedClock;
use crate::credentials::format_utc_timestamp;
use crate::health::heartbeat::Heartbeat;
use crate::health::SinkHealth;
use crate::refresh::state::{CredentialState, StateReceiver};
use sd_notify::NotifyState;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// How often the endpoints' health is looked at for `STATUS=` (it has no change signal).
const HEALTH_POLL: Duration = Duration::from_secs(5);

/// Longest wait for the daemon's own `/healthz` before a ping: it answers from memory in
/// milliseconds, so anything slower means the serving path is stuck.
pub const HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends notifications until `shutdown`, then `STOPPING=1`. `health` adds an endpoint that
/// is not serving (a `[container]` port someone else holds) to the `STATUS=` line; `socket`
/// is the daemon's own socket, asked before each watchdog ping.
pub async fn run(
    mut state: StateReceiver,
    health: SinkHealth,
    clock: SharedClock,
    heartbeat: Heartbeat,
    socket: PathBuf,
    shutdown: CancellationToken,
) {
    let watchdog = sd_notify::watchdog_enabled().map(|period| period / 2);
    let check_within = watchdog.map_or(HEALTH_CHECK_TIMEOUT, |p| p.min(HEALTH_CHECK_TIMEOUT));
    let own_socket = SocketClient::new(socket);
    let mut ping = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    let mut poll = tokio::time::interval(HEALTH_POLL);
    let mut ready = false;
    let mut sent = String::new();
    let mut withheld = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ping.tick(), if watchdog.is_some() => {
                let working = if heartbeat.is_overdue() {
                    Err("the refresher is overdue".to_string())
                } else {
                    serving_path_answers(&own_socket, check_within).await
                };
                match working {
                    Ok(()) => {
                        withheld = false;
                        send(&[NotifyState::Watchdog]);
                    }
                    Err(why) if !withheld => {
                        withheld = true;
                        tracing::error!(why, "withholding watchdog pings so that systemd restarts the daemon");
                    }
                    Err(_) => {}
                }
            }
            _ = poll.tick(), if ready => {
                let line = full_status_line(&state.borrow().clone(), &health, clock.now());
                if line != sent {
                    send(&[NotifyState::Status(&line)]);
                    sent = line;
                }
            }
            changed = state.changed() => {
                if changed.is_err() {
                    break;
                }
                let current = state.borrow_and_update().clone();
                let line = full_status_line(&current, &health, clock.now());
                if current.has_outcome() && !ready {
                    ready = true;
                    send(&[NotifyState::Ready, NotifyState::Status(&line)]);
                } else if ready {
                    send(&[NotifyState::Status(&line)]);
                }
                sent = line;
            }
        }
    }
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Whether `GET /healthz` on the daemon's own socket gets an answer (any status) within
/// `within`; otherwise why not.
async fn serving_path_answers(socket: &SocketClient, within: Duration) -> Result<(), String> {
    match tokio::time::timeout(within, socket.get("/healthz")).await {
        Ok(Ok(_answer)) => Ok(()),
        Ok(Err(error)) => Err(format!(
            "GET /healthz on the socket failed: {}",
            crate::error_chain::render(&error)
        )),
        Err(_) => Err(format!(
            "GET /healthz on the socket got no answer within {}",
            humantime::format_duration(within)
        )),
    }
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %crate::error_chain::render(&e), "cannot notify systemd");
    }
}

/// [`status_line`], then each endpoint that is not serving: `; container endpoint: cannot
/// listen on 127.0.0.1:28679 (…); retrying in 8s`.
pub fn full_status_line(state: &CredentialState, health: &SinkHealth, now: SystemTime) -> String {
    let mut line = status_line(state, now);
    for row in health.snapshot() {
        if let ("container", Some(error)) = (row.kind, &row.last_error) {
            line.push_str("; container endpoint: ");
            line.push_str(error);
        }
    }
    line
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
    use crate::credentials::secret::Secret;
    use crate::credentials::Credentials;
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
                account_id: None,
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

    #[test]
    fn an_endpoint_that_cannot_listen_is_added_to_the_status_line() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let state = CredentialState {
            last_error: Some("IMDS answered 503".into()),
            ..CredentialState::default()
        };
        let health = SinkHealth::default();
        let container = health.register("container", "127.0.0.1:28679".into());
        let _file = health.register("file", "/a/credentials".into());
        assert_eq!(
            full_status_line(&state, &health, now),
            status_line(&state, now)
        );
        container
            .failed("cannot listen on 127.0.0.1:28679 (Address in use); retrying in 2s".into());
        assert_eq!(
            full_status_line(&state, &health, now),
            "no valid credentials: IMDS answered 503; container endpoint: cannot listen on 127.0.0.1:28679 (Address in use); retrying in 2s"
        );
    }
}
