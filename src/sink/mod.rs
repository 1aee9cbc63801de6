//! File sinks: the `[[file]]` credentials-file profile and the `[[env]]` environment file,
//! and the driver that keeps each of them in step with the refresher.
//!
//! Each sink is its own task ([`run_sink`]) reading the refresher's watch channel, so a slow
//! or failing disk never holds back another sink or the refresher. On every change it
//! publishes the credentials that are valid at that moment, or withdraws them (credentials
//! gone, or expired at `clock.now()`: the task also wakes at the expiry itself, so a file
//! never outlives its credentials even if the refresher stays silent).
//!
//! Faults, and what the task does about them:
//! - A failed write (disk full, read-only folder, permissions changed, folder replaced by a
//!   file…) is logged, shown in the sink's [`crate::health`] row with the path and errno, and
//!   retried with backoff from [`RETRY_MIN`] to [`RETRY_MAX`], at once when a newer state
//!   arrives. Nothing half-written is ever visible (see [`atomic`]).
//! - A write still running after [`STUCK_AFTER`] (a hung disk or network file system) shows
//!   as the sink's error in `status` while it is still awaited on the blocking pool: it
//!   never holds an async thread, and the next write never races it.
//! - Every [`RESYNC_INTERVAL`] the task checks its file again and rewrites it if it no longer
//!   holds what it should (deleted or edited under us, mode or owner changed); a check that
//!   finds the file right writes nothing.
//! - After a crash (even `kill -9` mid-write) the file is the whole old or the whole new
//!   version; the next run republishes at once and sweeps the temp file left behind.
//! - Until the refresher's first word (a state with credentials, a refresh time or an error),
//!   a sink leaves its file alone: a restart does not withdraw the previous run's still-valid
//!   credentials before the first fetch.
//!
//! The retry and the resync are delays, waited out in real elapsed time; the expiry is a
//! deadline on the wall clock ([`crate::clock::Due`]): after a clock step back a failed
//! write is still retried on time, and a set is still withdrawn when it expires.
//!
//! On a clean stop the files are left as they are: the credentials in them stay usable until
//! they expire, and a restarted daemon takes over the same files. To remove them, stop the
//! daemon and delete the env file or the profile section.

pub mod atomic;
pub(crate) mod credentials_file;
pub mod env_file;
pub mod hooks;
#[cfg(target_os = "linux")]
pub mod pid_file;

pub use credentials_file::{merge_section, CredentialsFileSink};
pub use env_file::EnvFileSink;

use crate::clock::{Due, SharedClock, Sleep};
use crate::config::SinkConfig;
use crate::credentials::Credentials;
use crate::failure::Fault;
use crate::health::SinkReporter;
use crate::refresh::state::{CredentialState, StateReceiver};
use crate::sink::hooks::RotationHooks;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

/// How often a sink checks that its file still holds what it should.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(60);
/// First retry delay after a failed write; it doubles per failure up to [`RETRY_MAX`].
pub const RETRY_MIN: Duration = Duration::from_secs(1);
/// Longest retry delay: a fixed disk is noticed within a minute.
pub const RETRY_MAX: Duration = Duration::from_secs(60);
/// How long a write or removal may take before the sink reports itself stuck; local
/// writes of a few KiB with two fsyncs take milliseconds.
pub const STUCK_AFTER: Duration = Duration::from_secs(10);

/// Why a sink could not publish or withdraw. Messages name paths and fields, never values.
#[derive(Debug, Error)]
pub enum SinkError {
    /// The file could not be read or replaced.
    #[error(transparent)]
    File(#[from] atomic::FileError),
    /// The file is not UTF-8.
    #[error("{}: not UTF-8 text; refusing to rewrite it", .path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
    },
    /// A credential value would break a line of the file.
    #[error("credential field `{field}` is empty or holds a control character or edge space; not written")]
    UnsafeValue {
        /// The field (never its value).
        field: &'static str,
    },
    /// The write task panicked.
    #[error("{}: the write task panicked", .path.display())]
    Panicked {
        /// The file.
        path: PathBuf,
    },
    /// A write is still running.
    #[error("{}: a write has not finished after {} (a hung disk or network file system?); still waiting for it", .path.display(), humantime::format_duration(*.after))]
    Stuck {
        /// The file.
        path: PathBuf,
        /// How long it has run.
        after: Duration,
    },
}

impl SinkError {
    /// Whose move it is: a file the config names wrongly is the operator's.
    pub fn fault(&self) -> Fault {
        match self {
            SinkError::File(file) => file.fault(),
            SinkError::NotUtf8 { .. }
            | SinkError::UnsafeValue { .. }
            | SinkError::Panicked { .. }
            | SinkError::Stuck { .. } => Fault::Unavailable,
        }
    }
}

/// The file a sink's table names, written with the table's mode, owner and group.
fn managed_file(config: &SinkConfig) -> Result<atomic::ManagedFile, SinkError> {
    Ok(atomic::ManagedFile::new(
        &config.path,
        config.mode.0,
        config.owner.clone(),
        config.group.clone(),
    )?)
}

/// What a publish or withdraw did to the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The file was written.
    Written,
    /// The file already was as wanted: nothing was written.
    Unchanged,
}

impl Change {
    fn from_written(written: bool) -> Change {
        if written {
            Change::Written
        } else {
            Change::Unchanged
        }
    }
}

/// One output that can hold or drop credentials. Calls are blocking (file I/O); the driver
/// runs them off the async threads.
pub trait Publish: Send + Sync + 'static {
    /// `file` or `env`, the sink kind in the status table.
    const KIND: &'static str;
    /// The file it writes, for the status table and logs.
    fn target(&self) -> &Path;
    /// Makes the output hold `creds`, refusing values that would break a line first: every
    /// sink writes a line-based file.
    fn publish(&self, creds: &Credentials) -> Result<Change, SinkError> {
        check_values(creds)?;
        self.publish_checked(creds)
    }
    /// Makes the output hold `creds`, whose values `check_values` accepted.
    fn publish_checked(&self, creds: &Credentials) -> Result<Change, SinkError>;
    /// Makes the output hold no credentials.
    fn withdraw(&self) -> Result<Change, SinkError>;
}

/// Values go into line-based files: a line break or control character would corrupt them
/// (or smuggle extra lines in), and edge spaces would be trimmed by readers.
fn check_values(creds: &Credentials) -> Result<(), SinkError> {
    let fields = [
        ("aws_access_key_id", creds.access_key_id.as_str()),
        ("aws_secret_access_key", creds.secret_access_key.expose()),
        ("aws_session_token", creds.session_token.expose()),
    ];
    for (field, value) in fields {
        if value.is_empty() || value.trim() != value || value.chars().any(char::is_control) {
            return Err(SinkError::UnsafeValue { field });
        }
    }
    Ok(())
}

/// What the sink should hold for a state at `now`.
#[derive(Clone)]
enum Wanted {
    /// The refresher has not spoken yet: leave the file as the last run left it.
    Nothing,
    Publish(Arc<Credentials>),
    Withdraw,
}

fn wanted(state: &CredentialState, now: SystemTime) -> Wanted {
    if let Some(creds) = state.valid_credentials(now) {
        Wanted::Publish(Arc::clone(creds))
    } else if state.credentials.is_none()
        && state.last_refresh.is_none()
        && state.last_error.is_none()
    {
        Wanted::Nothing
    } else {
        Wanted::Withdraw
    }
}

/// Delay before retry number `failures` (1-based): 1 s, 2 s, 4 s … capped at a minute.
pub fn retry_delay(failures: u32) -> Duration {
    crate::backoff::ceiling(RETRY_MIN, RETRY_MAX, failures)
}

/// Keeps `sink` in step with `state` until `shutdown` (see the module doc). Never panics and
/// never returns an error: failures go to the log and to `reporter`. `hooks` run once per
/// new credential set written (not on a resync rewrite of the same set).
pub async fn run_sink<P: Publish>(
    sink: P,
    mut state: StateReceiver,
    clock: SharedClock,
    reporter: SinkReporter,
    hooks: RotationHooks,
    shutdown: CancellationToken,
) {
    let sink = Arc::new(sink);
    let reporter = Arc::new(reporter);
    let mut failures: u32 = 0;
    let mut refresher_alive = true;
    let mut last_hooked: Option<String> = None;
    loop {
        let now = clock.now();
        let wanted = wanted(&state.borrow_and_update(), now);
        let (next_check, expiry) = match wanted {
            Wanted::Nothing => (None, None),
            Wanted::Publish(_) | Wanted::Withdraw => {
                let outcome = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    outcome = apply(&sink, wanted.clone(), &reporter, STUCK_AFTER) => outcome,
                };
                let done_at = clock.now();
                let delay = match outcome {
                    Ok(change) => {
                        log_success(sink.as_ref(), &wanted, change, failures);
                        if let (Wanted::Publish(creds), Change::Written) = (&wanted, change) {
                            if last_hooked.as_deref() != Some(creds.access_key_id.as_str()) {
                                hooks.after_publish_reporting(Arc::clone(&reporter));
                                last_hooked = Some(creds.access_key_id.clone());
                            }
                        }
                        failures = 0;
                        reporter.succeeded(done_at);
                        RESYNC_INTERVAL
                    }
                    Err(error) => {
                        failures = failures.saturating_add(1);
                        let delay = retry_delay(failures);
                        let error = crate::error_chain::render(&error);
                        tracing::warn!(
                            sink = P::KIND,
                            path = %sink.target().display(),
                            %error,
                            retry_in = ?delay,
                            "could not update credentials sink"
                        );
                        reporter.failed(error);
                        delay
                    }
                };
                let expiry = match &wanted {
                    Wanted::Publish(creds) => Some(Due::At(creds.expiration)),
                    _ => None,
                };
                (Some(clock.after(delay)), expiry)
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = state.changed(), if refresher_alive => {
                // The refresher is gone (the daemon is stopping): keep honouring expiry.
                refresher_alive = changed.is_ok();
            }
            _ = sleep_until(&clock, next_check) => {}
            _ = sleep_until(&clock, expiry) => {}
        }
    }
}

/// Runs the blocking publish/withdraw on the blocking pool: an fsync stuck on a slow disk
/// must not stall the async threads that serve the socket. Past `stuck_after` the sink's
/// row says so (see the module doc).
async fn apply<P: Publish>(
    sink: &Arc<P>,
    wanted: Wanted,
    reporter: &SinkReporter,
    stuck_after: Duration,
) -> Result<Change, SinkError> {
    let task_sink = Arc::clone(sink);
    let mut task = tokio::task::spawn_blocking(move || match wanted {
        Wanted::Publish(creds) => task_sink.publish(&creds),
        Wanted::Withdraw | Wanted::Nothing => task_sink.withdraw(),
    });
    let joined = match tokio::time::timeout(stuck_after, &mut task).await {
        Ok(joined) => joined,
        Err(_elapsed) => {
            let stuck = SinkError::Stuck {
                path: sink.target().to_path_buf(),
                after: stuck_after,
            };
            tracing::warn!(sink = P::KIND, error = %stuck, "credentials sink is stuck");
            reporter.failed(stuck.to_string());
            task.await
        }
    };
    joined.unwrap_or_else(|_| {
        Err(SinkError::Panicked {
            path: sink.target().to_path_buf(),
        })
    })
}

fn sleep_until(clock: &SharedClock, due: Option<Due>) -> Sleep {
    match due {
        Some(due) => clock.sleep_until_due(due),
        None => Box::pin(std::future::pending()),
    }
}

fn log_success<P: Publish>(sink: &P, wanted: &Wanted, change: Change, failures: u32) {
    let path = sink.target().display();
    if failures > 0 {
        tracing::info!(sink = P::KIND, %path, failures, "credentials sink recovered");
    }
    match (wanted, change) {
        (Wanted::Publish(creds), Change::Written) => tracing::info!(
            sink = P::KIND,
            %path,
            expires = %creds.expiration_rfc3339(),
            "published credentials"
        ),
        (Wanted::Withdraw, Change::Written) => {
            tracing::info!(sink = P::KIND, %path, "withdrew credentials")
        }
        (_, _) => tracing::debug!(sink = P::KIND, %path, "sink already up to date"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::secret::Secret;

    fn creds(token: &str) -> Credentials {
        Credentials {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: Secret::new("secret".into()),
            session_token: Secret::new(token.into()),
            expiration: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000),
            account_id: None,
        }
    }

    #[test]
    fn retry_delay_doubles_from_one_second_to_a_minute() {
        let delays: Vec<u64> = (1..=9).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_delay(u32::MAX), RETRY_MAX);
    }

    #[test]
    fn values_that_would_break_a_line_are_refused_by_field_name_only() {
        assert!(check_values(&creds("tok/en+=")).is_ok());
        for bad in ["QZX\nQZX", "QZX\r", " QZX", "", "QZX\0"] {
            let err = check_values(&creds(bad)).unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(shown.contains("`aws_session_token`"), "{shown}");
            assert!(!shown.contains("QZX"), "{shown}");
        }
    }

    /// A sink whose writes block until the test lets them go.
    struct Blocked(std::sync::Mutex<std::sync::mpsc::Receiver<()>>);

    impl Publish for Blocked {
        const KIND: &'static str = "file";
        fn target(&self) -> &Path {
            Path::new("/mnt/hung/credentials")
        }
        fn publish_checked(&self, _: &Credentials) -> Result<Change, SinkError> {
            self.0.lock().unwrap().recv().unwrap();
            Ok(Change::Written)
        }
        fn withdraw(&self) -> Result<Change, SinkError> {
            unreachable!("the test only publishes")
        }
    }

    #[tokio::test]
    async fn a_write_that_hangs_is_reported_stuck_and_still_awaited() {
        let (release, blocked) = std::sync::mpsc::channel();
        let sink = Arc::new(Blocked(std::sync::Mutex::new(blocked)));
        let health = crate::health::SinkHealth::default();
        let reporter = health.register("file", "/mnt/hung/credentials".into());
        let wanted = Wanted::Publish(Arc::new(creds("t")));
        let write = apply(&sink, wanted, &reporter, Duration::from_millis(50));
        let check = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let error = health.snapshot()[0].last_error.clone().unwrap();
            assert!(
                error.contains("/mnt/hung/credentials: a write has not finished after 50ms"),
                "{error}"
            );
            release.send(()).unwrap();
        };
        let (outcome, ()) = tokio::join!(write, check);
        assert_eq!(outcome.unwrap(), Change::Written, "the write's own outcome");
    }

    #[test]
    fn a_state_before_the_first_refresh_asks_for_nothing() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_794_000_000);
        let fresh = CredentialState::default();
        assert!(matches!(wanted(&fresh, now), Wanted::Nothing));
        let failed = CredentialState {
            last_error: Some("IMDS unreachable".into()),
            ..CredentialState::default()
        };
        assert!(matches!(wanted(&failed, now), Wanted::Withdraw));
        let valid = CredentialState {
            credentials: Some(Arc::new(creds("t"))),
            ..CredentialState::default()
        };
        assert!(matches!(wanted(&valid, now), Wanted::Publish(_)));
        let later = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert!(matches!(wanted(&valid, later), Wanted::Withdraw));
    }

    /// A sink whose first `fail` publishes fail; counts the attempts.
    struct Flaky {
        fail: usize,
        attempts: std::sync::atomic::AtomicUsize,
    }

    impl Publish for Flaky {
        const KIND: &'static str = "file";
        fn target(&self) -> &Path {
            Path::new("/run/flaky/credentials")
        }
        fn publish_checked(&self, _: &Credentials) -> Result<Change, SinkError> {
            let attempt = self
                .attempts
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if attempt < self.fail {
                return Err(SinkError::Panicked {
                    path: self.target().into(),
                });
            }
            Ok(Change::Written)
        }
        fn withdraw(&self) -> Result<Change, SinkError> {
            unreachable!("the set stays valid")
        }
    }

    /// A write fails, then the wall clock steps an hour back: the retry is a delay, so it
    /// comes a second later (its backoff), not an hour and a second later.
    #[cfg(feature = "test-util")]
    #[tokio::test]
    async fn a_failed_write_is_retried_after_its_delay_across_a_step_back() {
        use crate::clock::{Clock, ManualClock};
        let clock = ManualClock::starting_now();
        let sink = Flaky {
            fail: 1,
            attempts: Default::default(),
        };
        let health = crate::health::SinkHealth::default();
        let reporter = health.register("file", "/run/flaky/credentials".into());
        let hooks = RotationHooks::new("file /run/flaky/credentials", None, None).unwrap();
        let (state, receiver) = crate::refresh::state_channel();
        let mut set = creds("t");
        set.expiration = clock.now() + Duration::from_secs(6 * 3600);
        state.send_modify(|s| s.credentials = Some(Arc::new(set)));
        let stop = CancellationToken::new();
        let shared: SharedClock = Arc::new(clock.clone());
        let task = tokio::spawn(run_sink(
            sink,
            receiver,
            shared,
            reporter,
            hooks,
            stop.clone(),
        ));
        let report = || health.snapshot()[0].clone();
        wait_for("the first write to fail", || report().last_error.is_some()).await;

        clock.jump_back(Duration::from_secs(3600));
        clock.advance(Duration::from_secs(1));
        wait_for("the retry a second after the failure", || {
            report().last_error.is_none() && report().last_success.is_some()
        })
        .await;
        stop.cancel();
        task.await.unwrap();
    }

    /// Waits (real time, at most 5 s) for `done`.
    #[cfg(feature = "test-util")]
    async fn wait_for(what: &str, done: impl Fn() -> bool) {
        for _ in 0..1000 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("timed out waiting for {what}");
    }
}
