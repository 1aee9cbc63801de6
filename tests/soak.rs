//! A simulated week: the daemon in-process against the IMDS simulator on a manual clock,
//! with a `[[file]]` and an `[[env]]` sink on disk. The simulator issues 6 h credentials and
//! replaces them after 5 h, as EC2 does. The clock moves in 5-minute steps; after every step
//! the test checks what the daemon serves and what the two files on disk hold (read back
//! and parsed here, not through the daemon's code): valid now, a set the simulator really
//! issued, and not older than the refresh policy allows. One run has random faults on 20%
//! of requests; a fault-free run counts IMDS requests per refresh. Both end with a scan of
//! every trace-level log line for secrets.
#![allow(clippy::disallowed_methods)] // Tests and benches time real processes and servers.
#![cfg(unix)]

mod common;

use common::{Harness, HarnessOptions};
use imds_credd::clock::{Clock, ManualClock};
use imds_credd::config::Config;
use imds_credd::credentials::Credentials;
use imds_credd::health::metrics::Metrics;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const HOUR: Duration = Duration::from_secs(3600);
const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);
const STEP: Duration = Duration::from_secs(5 * 60);
const LIFETIME: Duration = Duration::from_secs(6 * 3600);
const ROTATE_EVERY: Duration = Duration::from_secs(5 * 3600);
const PROFILE: &str = "instance";
const CREDENTIALS_FILE: &str = "aws/credentials";
const ENV_FILE: &str = "env/aws.env";
/// `[refresh] max_interval`: the daemon asks IMDS at least this often.
const MAX_INTERVAL: Duration = HOUR;
/// How late past `max_interval` the daemon may pick up a rotation: one step (a refresh due
/// mid-step runs when the clock reaches it) plus up to three failed refresh attempts in a
/// row (each all of a request's retries faulted, each retried at the next step).
const RETRY_SLACK: Duration = Duration::from_secs(4 * 5 * 60);

/// What a credentials source on disk holds: the key id, secret, token (and nothing else).
#[derive(Debug, PartialEq, Eq)]
struct Held {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
}

impl Held {
    fn of(creds: &Credentials) -> Held {
        Held {
            access_key_id: creds.access_key_id.clone(),
            secret_access_key: creds.secret_access_key.expose().to_string(),
            session_token: creds.session_token.expose().to_string(),
        }
    }
}

/// The `[PROFILE]` section of a shared-credentials file, read the way an SDK reads it.
fn read_credentials_file(path: &Path) -> Option<Held> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut keys = BTreeMap::new();
    let mut in_ours = false;
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_ours = name.trim() == PROFILE;
        } else if in_ours && !line.starts_with('#') && !line.starts_with(';') {
            if let Some((key, value)) = line.split_once('=') {
                keys.insert(key.trim().to_string(), value.trim().to_string());
            }
        }
    }
    Some(Held {
        access_key_id: keys.remove("aws_access_key_id")?,
        secret_access_key: keys.remove("aws_secret_access_key")?,
        session_token: keys.remove("aws_session_token")?,
    })
}

/// The variables of an `sh` env file (`export NAME='value'`; our values hold no quotes).
fn read_env_file(path: &Path) -> Option<Held> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut vars = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line.strip_prefix("export ")?.split_once('=')?;
        let value = value.strip_prefix('\'')?.strip_suffix('\'')?;
        vars.insert(name.to_string(), value.to_string());
    }
    Some(Held {
        access_key_id: vars.remove("AWS_ACCESS_KEY_ID")?,
        secret_access_key: vars.remove("AWS_SECRET_ACCESS_KEY")?,
        session_token: vars.remove("AWS_SESSION_TOKEN")?,
    })
}

struct Week {
    h: Harness,
    credentials_file: PathBuf,
    env_file: PathBuf,
}

impl Week {
    async fn start(fault_probability: f64, seed: u64) -> Week {
        let clock = ManualClock::starting_now();
        let mut options = HarnessOptions::new(&clock);
        options.sim.credential_lifetime = LIFETIME;
        options.sim.rotate_every = ROTATE_EVERY;
        options.configure = Box::new(move |config| {
            // The harness's temporary folder, which holds the socket.
            let dir = config.socket.path.parent().unwrap().to_path_buf();
            config.refresh.max_interval = MAX_INTERVAL;
            // The sinks as a user writes them in the config file.
            let sinks = format!(
                "[[file]]\npath = {:?}\nprofile = {PROFILE:?}\n\n[[env]]\npath = {:?}\nformat = \"sh\"\n",
                dir.join(CREDENTIALS_FILE),
                dir.join(ENV_FILE),
            );
            let parsed = Config::parse(&sinks, Path::new("soak.toml")).expect("sinks parse");
            config.files = parsed.files;
            config.envs = parsed.envs;
        });
        options.prepare = Box::new(move |sim| sim.set_random_faults(fault_probability, seed));
        let h = Harness::start_with(clock, options).await;
        let credentials_file = h.dir.path().join(CREDENTIALS_FILE);
        let env_file = h.dir.path().join(ENV_FILE);
        let week = Week {
            h,
            credentials_file,
            env_file,
        };
        let first = Held::of(&week.h.served().expect("first credentials"));
        week.files_catch_up(&first).await;
        week
    }

    fn now(&self) -> SystemTime {
        Clock::now(&self.h.clock)
    }

    /// Waits (real time, bounded) until both files hold the set the daemon serves.
    async fn files_catch_up(&self, served: &Held) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let file = read_credentials_file(&self.credentials_file);
            let env = read_env_file(&self.env_file);
            if file.as_ref() == Some(served) && env.as_ref() == Some(served) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the files never caught up with the daemon\nfile: {file:?}\nenv: {env:?}\nlogs:\n{}",
                self.h.logs.text()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The issued set `held` is, checked valid at `now` and fresh enough against the
    /// simulator's current set.
    fn check(&self, what: &str, held: &Held, issued: &[Credentials], current: &Credentials) {
        let now = self.now();
        let set = issued
            .iter()
            .find(|c| Held::of(c) == *held)
            .unwrap_or_else(|| panic!("{what} holds a set the simulator never issued"));
        assert!(
            set.is_valid_at(now),
            "{what} holds credentials expired at {:?} (now {now:?})",
            set.expiration
        );
        if set != current {
            let current_issued = current.expiration - LIFETIME;
            let stale_for = now.duration_since(current_issued).unwrap_or_default();
            assert!(
                stale_for <= MAX_INTERVAL + RETRY_SLACK,
                "{what} holds an older set {stale_for:?} after the simulator rotated"
            );
        }
    }

    /// One step: move the clock, let the daemon act, and check the state and both files
    /// as they are at that instant and again once the sinks have caught up.
    async fn step(&self) {
        let state = self.h.advance_and_settle(STEP).await;
        let now = self.now();
        let current = self
            .h
            .sim
            .current_credentials()
            .expect("a role is attached");
        let issued = self.h.sim.issued_credentials();
        let served = state
            .valid_credentials(now)
            .unwrap_or_else(|| panic!("nothing valid served at {now:?}: {state:?}"));
        self.check("the daemon's state", &Held::of(served), &issued, &current);
        // Right after the clock moved the sinks may not have rewritten yet: what is on disk
        // at this instant must still be valid.
        let on_disk = [
            (
                "the credentials file",
                read_credentials_file(&self.credentials_file),
            ),
            ("the env file", read_env_file(&self.env_file)),
        ];
        for (what, held) in on_disk {
            let held = held.unwrap_or_else(|| panic!("{what} holds no credentials at {now:?}"));
            self.check(what, &held, &issued, &current);
        }
        let served = Held::of(served);
        self.files_catch_up(&served).await;
    }
}

#[tokio::test]
async fn a_week_with_faults_on_a_fifth_of_requests_always_serves_fresh_valid_credentials() {
    let week = Week::start(0.2, 0x50a6_2026).await;
    let end = week.now() + WEEK;
    let mut steps = 0;
    while week.now() < end {
        week.step().await;
        steps += 1;
    }
    let counts = week.h.sim.counts();
    let successes = Metrics::get(&week.h.daemon.metrics.refresh_successes);
    let failures = Metrics::get(&week.h.daemon.metrics.refresh_failures);
    eprintln!(
        "soak with faults: {steps} steps, {successes} refreshes, {failures} failed attempts, \
         {} faults injected, {} credential sets issued, {counts:?}",
        counts.faults_injected,
        week.h.sim.issued_credentials().len()
    );
    // The run is only a proof if the faults really happened and the daemon lived through
    // many rotations.
    assert!(counts.faults_injected >= 50, "{counts:?}");
    assert!(
        successes >= 7 * 24,
        "one refresh an hour at least: {successes}"
    );
    assert!(week.h.sim.issued_credentials().len() >= 7 * 24 / 5);
    week.h.finish().await;
}

#[tokio::test]
async fn a_quiet_week_costs_at_most_three_imds_requests_per_refresh() {
    let week = Week::start(0.0, 0).await;
    let start = week.now();
    let end = start + WEEK;
    while week.now() < end {
        week.step().await;
    }
    let counts = week.h.sim.counts();
    let refreshes = Metrics::get(&week.h.daemon.metrics.refresh_successes) as usize;
    let failures = Metrics::get(&week.h.daemon.metrics.refresh_failures);
    let requests = counts.token_puts + counts.role_lists + counts.credential_gets;
    let rotations = week.h.sim.issued_credentials().len();
    eprintln!(
        "quiet week: {requests} IMDS requests ({counts:?}) for {refreshes} refreshes \
         ({:.2} per refresh) and {rotations} credential sets ({:.2} per set)",
        requests as f64 / refreshes as f64,
        requests as f64 / rotations as f64,
    );
    assert_eq!(failures, 0, "nothing fails in a quiet week");
    assert_eq!(counts.faults_injected, 0);
    assert!(refreshes >= 7 * 24, "{refreshes}");
    assert!(
        requests <= 3 * refreshes,
        "{requests} requests for {refreshes} refreshes"
    );
    // The session token is reused for its 6 h life: far fewer PUTs than refreshes.
    assert!(counts.token_puts * 5 <= refreshes, "{counts:?}");
    week.h.finish().await;
}

#[test]
fn the_file_readers_here_read_what_the_sinks_write() {
    // The checks above are only as good as these parsers: they must see through comments,
    // other sections and quoting exactly as an SDK or a shell would.
    let creds = Credentials {
        access_key_id: "ASIAREADERCHECK00001".into(),
        secret_access_key: imds_credd::credentials::secret::Secret::new("se/cr+et".into()),
        session_token: imds_credd::credentials::secret::Secret::new("to/ken+==".into()),
        expiration: SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000),
        account_id: None,
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("credentials");
    let other = "[default]\naws_access_key_id = OTHER\n\n# next\n[work]\nk = v\n";
    let merged = imds_credd::sink::merge_section(other, PROFILE, Some(&creds));
    std::fs::write(&file, merged).unwrap();
    assert_eq!(read_credentials_file(&file), Some(Held::of(&creds)));
    std::fs::write(&file, other).unwrap();
    assert_eq!(read_credentials_file(&file), None);

    let env = dir.path().join("env");
    let text = imds_credd::sink::env_file::render_env_file(
        &creds,
        imds_credd::credentials::render::EnvSyntax::Sh,
    );
    std::fs::write(&env, text).unwrap();
    assert_eq!(read_env_file(&env), Some(Held::of(&creds)));
    assert_eq!(read_env_file(&dir.path().join("missing")), None);
}
