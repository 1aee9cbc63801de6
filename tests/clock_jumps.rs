//! Wall-clock jumps (a resume from hibernation, an NTP step) and `Date` headers that
//! contradict their answers, as clients see them.
//!
//! In process, on a [`ManualClock`] that jumps wall time while no monotonic time passes:
//! the engine, both file sinks, the socket, `status` and an `[[assume]]` profile, forward
//! and backward (a retry after a step back still comes after its delay); the clock-skew
//! correction refusing a `Date` that contradicts its set (IMDS and STS); `AssumeRole`
//! signed with the corrected time on a skewed instance.
//!
//! The real binary across a jump: the daemon runs under libfaketime, whose
//! timestamp file the test rewrites to move the daemon's wall clock while its monotonic clock
//! runs on (`FAKETIME_DONT_FAKE_MONOTONIC=1`), which is what a resume from hibernation does.
//! The simulated IMDS (in this process) jumps by the same amount at the same moment, as AWS's
//! time has really passed. The clients (`credential-process`, `status`) run under the same
//! file: after a resume every process on the box sees the new time.
//!
//! Each test asserts what clients see within 60 s of the jump: the socket's answer, the
//! `[[file]]` and `[[env]]` files, `imds-credd status`; and prints the time from the jump to
//! the new set in each sink (`cargo test --test clock_jumps -- --nocapture`). A step back
//! of the daemon's clock while IMDS fails shows the retry is not put off by the step.
#![allow(clippy::disallowed_methods)] // Tests and benches time real processes and servers.
#![cfg(target_os = "linux")]

mod common;

use common::daemon_process::{assert_success, text, Sandbox};
use common::require;
use common::skewed_clock::SkewedClock;
use common::sts::StsServer;
use common::{Harness, HarnessOptions};
use imds_credd::clock::skew::SkewVerdict;
use imds_credd::clock::{Clock, ManualClock, SharedClock, Sleep, SystemClock};
use imds_credd::credentials::{format_utc_timestamp, Credentials};
use imds_credd::demo::simulator::{Fault, SimulatorOptions, Target};
use imds_credd::refresh::state::CredentialState;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
/// What the issue asks: every sink holds the new set within this long of the jump.
const WITHIN: Duration = Duration::from_secs(60);

/// The simulated IMDS's clock: the host's, plus the jumps the test made.
#[derive(Debug, Clone, Default)]
struct JumpedClock {
    ahead_secs: Arc<AtomicU64>,
}

impl JumpedClock {
    fn ahead(&self) -> Duration {
        Duration::from_secs(self.ahead_secs.load(Ordering::SeqCst))
    }
}

impl Clock for JumpedClock {
    fn now(&self) -> SystemTime {
        SystemTime::now() + self.ahead()
    }

    fn sleep_until(&self, deadline: SystemTime) -> Sleep {
        SystemClock.sleep_until(deadline - self.ahead())
    }
}

/// The daemon under libfaketime with a file and an env sink, against a simulator issuing
/// one-hour sets rotated after 40 minutes.
struct Jumping {
    sandbox: Sandbox,
    sim_clock: JumpedClock,
    faketime_file: PathBuf,
    credentials_file: PathBuf,
    env_file: PathBuf,
}

impl Jumping {
    fn start() -> Option<Jumping> {
        if !Path::new(LIBFAKETIME).exists()
            && !require::unavailable(&format!("needs libfaketime ({LIBFAKETIME})"))
        {
            return None;
        }
        let sim_clock = JumpedClock::default();
        let mut sandbox = Sandbox::simulator(SimulatorOptions {
            clock: Arc::new(sim_clock.clone()),
            credential_lifetime: 60 * MINUTE,
            rotate_every: 40 * MINUTE,
            ..SimulatorOptions::default()
        });
        let faketime_file = sandbox.path("faketime");
        std::fs::write(&faketime_file, "+0\n").unwrap();
        let credentials_file = sandbox.path("credentials");
        let env_file = sandbox.path("credentials.env");
        let file = format!("path={},profile=default", credentials_file.display());
        let env = format!("path={}", env_file.display());
        let faked = faketime_env(&faketime_file);
        sandbox.start_daemon_with_env(&["--file", &file, "--env", &env], &faked);
        let jumping = Jumping {
            sandbox,
            sim_clock,
            faketime_file,
            credentials_file,
            env_file,
        };
        let first = jumping.sandbox.current();
        jumping.wait_for_every_sink(&first, "the first set");
        Some(jumping)
    }

    /// Moves the daemon's and the simulator's wall clocks `by` forward, together.
    fn jump(&self, by: Duration) -> Instant {
        let ahead = self.sim_clock.ahead() + by;
        std::fs::write(&self.faketime_file, format!("+{}\n", ahead.as_secs())).unwrap();
        self.sim_clock
            .ahead_secs
            .store(ahead.as_secs(), Ordering::SeqCst);
        Instant::now()
    }

    /// Steps the daemon's wall clock (and its clients') `by` back, IMDS's staying: an NTP
    /// step on the instance.
    fn step_daemon_back(&self, by: Duration) -> Instant {
        let offset = self.sim_clock.ahead().as_secs() as i64 - by.as_secs() as i64;
        std::fs::write(&self.faketime_file, format!("{offset:+}\n")).unwrap();
        Instant::now()
    }

    /// `imds-credd COMMAND` under the daemon's faked clock.
    fn client(&self, command: &str, args: &[&str]) -> std::process::Command {
        let mut client = self.sandbox.client(command, args);
        client.envs(faketime_env(&self.faketime_file));
        client
    }

    fn socket_key(&self) -> Option<String> {
        let output = self.client("credential-process", &[]).output().unwrap();
        Credentials::from_process_json(&output.stdout)
            .ok()
            .map(|c| c.access_key_id)
    }

    fn status(&self) -> (String, Option<i32>) {
        let output = self.client("status", &[]).output().unwrap();
        (text(&output.stdout), output.status.code())
    }

    /// Waits until the socket, both files and `status` show `set`; returns how long each
    /// took, in that order, from `since`.
    fn wait_for_every_sink(&self, set: &Credentials, what: &str) -> [Duration; 4] {
        self.wait_for_every_sink_since(set, what, Instant::now())
    }

    fn wait_for_every_sink_since(
        &self,
        set: &Credentials,
        what: &str,
        since: Instant,
    ) -> [Duration; 4] {
        let key = set.access_key_id.as_str();
        let expiration = set.expiration_rfc3339();
        let holds = |path: &Path| std::fs::read_to_string(path).is_ok_and(|t| t.contains(key));
        let check = |sink: usize| match sink {
            0 => self.socket_key().as_deref() == Some(key),
            1 => holds(&self.credentials_file),
            2 => holds(&self.env_file),
            _ => {
                let (shown, code) = self.status();
                code == Some(0)
                    && shown.contains("credentials:   valid, expire in")
                    && shown.contains(&expiration)
            }
        };
        let mut seen: [Option<Duration>; 4] = [None; 4];
        loop {
            for (sink, slot) in seen.iter_mut().enumerate() {
                if slot.is_none() && check(sink) {
                    *slot = Some(since.elapsed());
                }
            }
            if let [Some(a), Some(b), Some(c), Some(d)] = seen {
                return [a, b, c, d];
            }
            assert!(
                since.elapsed() < WITHIN,
                "{what}: not in every sink within {WITHIN:?} (socket, file, env, status: \
                 {seen:?}); status:\n{}\ndaemon log:\n{}",
                self.status().0,
                self.sandbox.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The jump, as `status` shows it.
    fn assert_jump_shown(&self, words: &str, since: Instant) {
        let wanted = format!("clock jump:    the wall clock jumped {words} forward");
        while !self.status().0.contains(&wanted) {
            assert!(
                since.elapsed() < WITHIN,
                "status does not show {wanted:?}:\n{}",
                self.status().0
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let log = self.sandbox.daemon_log();
        let lines = log
            .lines()
            .filter(|l| l.contains(&format!("the wall clock jumped {words} forward")))
            .count();
        assert_eq!(lines, 1, "the jump is logged once:\n{log}");
        common::assert_no_secrets(&log, &self.sandbox.sim, "the daemon log");
    }
}

fn faketime_env(file: &Path) -> Vec<(String, String)> {
    [
        ("LD_PRELOAD", LIBFAKETIME.to_string()),
        ("FAKETIME_TIMESTAMP_FILE", file.display().to_string()),
        ("FAKETIME_NO_CACHE", "1".to_string()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect()
}

fn report(jump: &str, took: [Duration; 4]) {
    let [socket, file, env, status] = took.map(|d| d.as_secs_f64());
    eprintln!(
        "clock jump {jump}: new set after socket {socket:.1}s, file {file:.1}s, env {env:.1}s, status {status:.1}s"
    );
}

/// +50 min: the one-hour set is still valid but now inside the 15-minute refresh margin,
/// and the daemon's refresh timer (set for about 45 min of monotonic time) is far from
/// firing. The refresh runs within the 30 s re-check, and every sink gets the new set.
#[test]
fn fifty_minutes_forward_refreshes_a_set_inside_the_margin_within_a_minute() {
    let Some(jumping) = Jumping::start() else {
        return;
    };
    let old = jumping.sandbox.current();
    let jumped = jumping.jump(50 * MINUTE);
    let new = jumping.sandbox.current();
    assert_ne!(new.access_key_id, old.access_key_id, "IMDS rotated");
    let took = jumping.wait_for_every_sink_since(&new, "the set after +50 min", jumped);
    report("+50 min", took);
    jumping.assert_jump_shown("50m", jumped);
    let (status, code) = jumping.status();
    assert_eq!(code, Some(0), "{status}");
}

/// +3 h: the held set expired an hour and a half ago on the new wall clock. The socket
/// refuses it at once; within a minute both files and `status` have left it behind and a
/// refresh has published the set IMDS hands out now.
#[test]
fn three_hours_forward_withdraws_the_expired_set_and_publishes_a_new_one_within_a_minute() {
    let Some(jumping) = Jumping::start() else {
        return;
    };
    let old = jumping.sandbox.current();
    let jumped = jumping.jump(3 * 60 * MINUTE);
    let new = jumping.sandbox.current();
    assert!(new.expiration > old.expiration + 2 * 60 * MINUTE);
    let socket = jumping.client("credential-process", &[]).output().unwrap();
    if socket.status.success() {
        let served = Credentials::from_process_json(&socket.stdout).unwrap();
        assert_ne!(
            served.access_key_id, old.access_key_id,
            "an expired set served"
        );
    }
    let took = jumping.wait_for_every_sink_since(&new, "the set after +3 h", jumped);
    report("+3 h", took);
    for path in [&jumping.credentials_file, &jumping.env_file] {
        let held = std::fs::read_to_string(path).unwrap();
        assert!(!held.contains(&old.access_key_id), "{}", path.display());
    }
    jumping.assert_jump_shown("3h", jumped);
    let output = jumping.client("status", &["--json"]).output().unwrap();
    let doc: serde_json::Value = serde_json::from_str(&assert_success(&output, "status")).unwrap();
    assert_eq!(doc["clock_jump"]["forward_seconds"], 3 * 3600, "{doc}");
}

/// An hour back while IMDS is failing: the refresh due after +50 min fails, the
/// instance's clock steps an hour back before the retry, IMDS recovers. The retry is a
/// delay, so the new set reaches the socket and both files within its backoff (seconds),
/// not an hour later. (IMDS's clock is then an hour ahead: `status` shows the set with its
/// expiry corrected for that skew, so it is not compared here.)
#[test]
fn an_hour_back_while_imds_fails_still_retries_after_the_backoff() {
    let Some(jumping) = Jumping::start() else {
        return;
    };
    let old = jumping.sandbox.current();
    // The next three credential requests get 500: the refresh fails, a retry is pending.
    jumping
        .sandbox
        .sim
        .inject(Target::Credentials, Fault::Status(500), 3);
    let jumped = jumping.jump(50 * MINUTE);
    let failed = |log: &str| log.contains("refresh failed; still serving");
    while !failed(&jumping.sandbox.daemon_log()) {
        assert!(
            jumped.elapsed() < WITHIN,
            "no failed refresh after +50 min:\n{}",
            jumping.sandbox.daemon_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let stepped = jumping.step_daemon_back(HOUR);
    let holds =
        |path: &Path, key: &str| std::fs::read_to_string(path).is_ok_and(|t| t.contains(key));
    loop {
        let served = jumping.socket_key();
        if let Some(key) = served.filter(|k| *k != old.access_key_id) {
            if holds(&jumping.credentials_file, &key) && holds(&jumping.env_file, &key) {
                break;
            }
        }
        assert!(
            stepped.elapsed() < WITHIN,
            "no new set in the socket and both files within {WITHIN:?} of the step back; \
             daemon log:\n{}",
            jumping.sandbox.daemon_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = stepped.elapsed();
    eprintln!(
        "clock step -1 h while IMDS fails: new set everywhere after {:.1}s",
        took.as_secs_f64()
    );
    assert!(
        took < Duration::from_secs(20),
        "{took:?}: later than the backoff"
    );
    assert_eq!(
        Some(jumping.sandbox.current().access_key_id),
        jumping.socket_key()
    );
}

// --- In process: a manual clock that jumps -----------------------------------------------

const PROFILE: &str = "audit";

/// The daemon in process with both file sinks and an `[[assume]]` profile against a
/// loopback STS, all on one manual clock; IMDS issues one-hour sets rotated after 40 min.
async fn in_process() -> (Harness, StsServer) {
    let clock = ManualClock::starting_now();
    let sts = StsServer::start(Arc::new(clock.clone()) as SharedClock, "us-east-1").await;
    let mut options = HarnessOptions::new(&clock);
    options.file_sinks = true;
    options.sim.credential_lifetime = HOUR;
    options.sim.rotate_every = 40 * MINUTE;
    options.prepare = sts.attach();
    options.configure = assume_profile(&sts);
    let h = Harness::start_with(clock, options).await;
    wait_profile(&h, "the first chained set", |s| s.credentials.is_some()).await;
    (h, sts)
}

/// The config step adding the one-hour `[[assume]]` profile [`PROFILE`] against `sts`.
fn assume_profile(sts: &StsServer) -> Box<dyn FnOnce(&mut imds_credd::config::Config)> {
    let assume = sts.profile(PROFILE, "arn:aws:iam::222222222222:role/efgh");
    Box::new(move |config| config.assumes.push(assume))
}

async fn wait_profile(h: &Harness, what: &str, condition: impl FnMut(&CredentialState) -> bool) {
    let mut state = h.daemon.profiles[PROFILE].clone();
    let waited = tokio::time::timeout(Duration::from_secs(10), state.wait_for(condition)).await;
    assert!(
        matches!(waited, Ok(Ok(_))),
        "timed out waiting for {what}; logs:\n{}",
        h.logs.text()
    );
}

/// What clients see before a jump: the instance set (checked in every sink), the chained
/// set's key, and how many `AssumeRole` calls were made so far.
async fn held_before_jump(h: &Harness, sts: &StsServer) -> (Credentials, String, usize) {
    let first = h.sim.current_credentials().unwrap();
    h.assert_clients_see(Some(&first), "before the jump").await;
    let chained = profile_key(h).unwrap();
    (first, chained, sts.requests().len())
}

/// Waits until the daemon holds the set IMDS hands out now, which is not `old`; returns it.
async fn wait_for_imds_rotation(h: &Harness, old: &Credentials, what: &str) -> Credentials {
    let new = h.sim.current_credentials().unwrap();
    assert_ne!(new.access_key_id, old.access_key_id, "IMDS rotated");
    h.wait_for(what, |s| {
        s.credentials
            .as_ref()
            .is_some_and(|c| c.access_key_id == new.access_key_id)
    })
    .await;
    new
}

fn profile_key(h: &Harness) -> Option<String> {
    let state = h.daemon.profiles[PROFILE].borrow();
    state
        .valid_credentials(h.clock.now())
        .map(|c| c.access_key_id.clone())
}

/// +3 h while the one-hour sets are held: the instance set is withdrawn and replaced by
/// IMDS's current one in the socket, both files and `status`; the chained set is replaced
/// too; `status` shows the jump.
#[tokio::test]
async fn a_forward_jump_past_expiry_replaces_every_set_and_status_shows_it() {
    let (h, sts) = in_process().await;
    let (first, chained, assumed) = held_before_jump(&h, &sts).await;

    h.clock.jump_forward(3 * HOUR);
    let new = wait_for_imds_rotation(&h, &first, "the new set").await;
    let view = h.assert_clients_see(Some(&new), "after +3 h").await;
    assert_eq!(
        view.status_doc["clock_jump"]["forward_seconds"], 10_800,
        "{view:#?}"
    );
    assert!(
        view.status_text
            .contains("clock jump:    the wall clock jumped 3h forward"),
        "{}",
        view.status_text
    );
    wait_profile(&h, "a new chained set", |s| {
        s.credentials
            .as_ref()
            .is_some_and(|c| c.access_key_id != chained)
    })
    .await;
    assert!(profile_key(&h).is_some(), "the new chained set is valid");
    assert!(sts.requests().len() > assumed);
    h.finish().await;
}

/// An hour back: nothing is due sooner, so nothing is asked for and nothing withdrawn
/// early, for the instance role and the profile alike; the refresh comes when the wall
/// clock reaches its time again.
#[tokio::test]
async fn a_backward_jump_neither_refreshes_nor_withdraws() {
    let (h, sts) = in_process().await;
    let (first, chained, assumed) = held_before_jump(&h, &sts).await;
    let gets = h.sim.counts().credential_gets;

    h.clock.jump_back(HOUR);
    h.advance_and_settle(50 * MINUTE).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let view = h
        .assert_clients_see(Some(&first), "an hour back, 50 min on")
        .await;
    assert!(
        view.status_text
            .contains("clock jump:    the wall clock jumped 1h backward (a clock step)"),
        "{}",
        view.status_text
    );
    assert_eq!(h.sim.counts().credential_gets, gets, "no refresh storm");
    assert_eq!(sts.requests().len(), assumed, "no AssumeRole");
    assert_eq!(profile_key(&h).as_deref(), Some(chained.as_str()));

    // The wall clock reaches the planned refresh (about 45 min after the first set) again.
    h.advance_and_settle(HOUR).await;
    let new = wait_for_imds_rotation(&h, &first, "the refreshed set").await;
    h.assert_clients_see(Some(&new), "at the refresh time")
        .await;
    h.finish().await;
}

// --- The clock-skew correction and a Date that contradicts its answer ---------------------

/// Issue 18 item 6: IMDS's `Date` 30 h behind the set's own `LastUpdated`. The correction
/// would have moved the expiry 30 h on; the `Date` contradicts its answer, so the set is
/// judged on the local clock: served with the `Expiration` it came with, withdrawn then
/// once IMDS fails, and `status` says why the skew was not corrected.
#[tokio::test]
async fn a_date_before_last_updated_does_not_keep_a_set_past_its_expiration() {
    let clock = ManualClock::starting_now();
    let local_now = clock.now();
    let mut options = HarnessOptions::new(&clock);
    options.file_sinks = true;
    // IMDS's clock (and so its `Date`) 30 h behind; its sets live 36 h on that clock, so
    // `Expiration` is 6 h ahead of the local clock, and `LastUpdated` is rewritten to now.
    options.sim.clock = Arc::new(SkewedClock::behind(&clock, 30 * HOUR));
    options.sim.credential_lifetime = 36 * HOUR;
    options.sim.rotate_every = 35 * HOUR;
    let last_updated = format_utc_timestamp(local_now);
    options.prepare = Box::new(move |sim| {
        sim.inject(
            Target::Credentials,
            Fault::Field {
                name: "LastUpdated",
                value: last_updated,
            },
            usize::MAX,
        )
    });
    let h = Harness::start_with(clock, options).await;
    let served = h.served().expect("a set is served");
    assert!(
        served.expiration <= local_now + 6 * HOUR + MINUTE,
        "expiry as written"
    );
    let view = h
        .assert_clients_see(Some(&served), "a contradicting Date")
        .await;
    let warning = view.status_doc["clock_skew_warning"].as_str().unwrap_or("");
    assert!(warning.contains("before the set was issued"), "{view:#?}");
    assert!(
        view.status_text
            .contains("clock skew:    WARNING the instance clock is 1day 6h ahead of IMDS"),
        "{}",
        view.status_text
    );
    assert!(
        view.status_text
            .contains("credentials:   valid, expire in 6h ("),
        "{}",
        view.status_text
    );
    let refusals = h.logs.text().matches("before the set was issued").count();
    assert_eq!(refusals, 1, "logged once:\n{}", h.logs.text());

    h.sim.clear_faults();
    h.sim.inject(Target::Any, Fault::Status(503), usize::MAX);
    while h.clock.now() + 30 * MINUTE < served.expiration {
        h.advance_and_settle(30 * MINUTE).await;
    }
    let step = served.expiration.duration_since(h.clock.now()).unwrap() + Duration::from_secs(1);
    h.clock.advance(step);
    h.wait_for("the withdrawal at Expiration", |s| s.credentials.is_none())
        .await;
    h.assert_clients_see(None, "past Expiration").await;
    h.finish().await;
}

/// What `/v1/status` says of the profile's clock skew.
async fn profile_skew_shown(h: &Harness) -> String {
    let status = common::unix_http::get(&h.daemon_socket, "/v1/status")
        .await
        .json();
    status["profiles"][PROFILE]["clock_skew"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// The correction covers `[[assume]]` profiles: STS's `Date` 10 min ahead (the instance
/// clock is slow) moves the chained set's expiry 10 min earlier; a `Date` 30 h behind
/// contradicts its set (before the session began) and is refused.
#[tokio::test]
async fn an_assume_profile_is_judged_by_its_sts_date() {
    let (h, sts) = in_process().await;
    let as_issued = || sts.issued().last().unwrap().expiration;
    let held = || h.daemon.profiles[PROFILE].borrow().expiration().unwrap();
    assert_eq!(held(), as_issued(), "no skew: expiry as STS wrote it");

    sts.date_answers_off_by(10 * 60);
    let before = sts.issued().len();
    h.clock.jump_forward(3 * HOUR);
    wait_profile(&h, "a set dated 10 min ahead", |s| {
        s.clock_skew
            .is_some_and(|v| matches!(v, SkewVerdict::Corrected(_)))
    })
    .await;
    assert!(sts.issued().len() > before);
    assert_eq!(held(), as_issued() - 10 * MINUTE);
    let said = profile_skew_shown(&h).await;
    assert!(
        said.starts_with("the instance clock is 10m behind STS"),
        "{said}"
    );

    sts.date_answers_off_by(-30 * 3600);
    h.clock.jump_forward(3 * HOUR);
    wait_profile(&h, "a set dated 30 h behind", |s| {
        s.clock_skew
            .is_some_and(|v| matches!(v, SkewVerdict::Refused(..)))
    })
    .await;
    assert_eq!(held(), as_issued(), "refused: expiry as STS wrote it");
    let said = profile_skew_shown(&h).await;
    assert!(said.contains("before the set was issued"), "{said}");
    h.finish().await;
}

/// An instance clock 20 min slow, IMDS and STS on AWS's time: the instance role's skew,
/// measured from IMDS's `Date` and corrected, also sets the time `AssumeRole` is signed
/// with, so STS (which refuses a signature more than 5 min off) accepts it and the profile
/// gets its chained set.
#[tokio::test]
async fn assume_role_is_signed_with_the_corrected_time_on_a_slow_instance_clock() {
    let clock = ManualClock::starting_now();
    let aws_clock = SkewedClock::ahead_of(&clock, 20 * MINUTE);
    let sts = StsServer::start(Arc::new(aws_clock.clone()) as SharedClock, "us-east-1").await;
    let mut options = HarnessOptions::new(&clock);
    options.sim.clock = Arc::new(aws_clock.clone());
    options.sim.credential_lifetime = 6 * HOUR;
    options.prepare = sts.attach();
    options.configure = assume_profile(&sts);
    let h = Harness::start_with(clock, options).await;
    wait_profile(&h, "the chained set", |s| s.credentials.is_some()).await;
    let requests = sts.requests();
    let accepted = requests.last().expect("an AssumeRole");
    assert_eq!(accepted.rejected, None, "{requests:#?}");
    let off = accepted
        .signed_at
        .duration_since(aws_clock.now() - MINUTE)
        .expect("signed on AWS's time, not 20 min behind it");
    assert!(off <= 2 * MINUTE, "{off:?}");
    assert!(profile_key(&h).is_some(), "the chained set is served");
    h.finish().await;
}
