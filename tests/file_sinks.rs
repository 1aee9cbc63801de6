//! The file sinks against real files, real folders and real AWS clients: atomic rewrites
//! under concurrent readers, modes and owners, refusal of links and foreign files, the sink
//! task end to end (publish, rotate, withdraw, expire, fail and recover), and the AWS CLI,
//! boto3 and a shell signing requests with exactly the credentials we wrote.
#![allow(clippy::disallowed_methods)]
// Tests and benches time real processes and servers.
// These tests drive the Linux build (unix socket, signals, file modes); the Windows
// build is checked by `windows_wine.rs`.
#![cfg(unix)]
#![cfg(unix)]

mod common;

use common::aws_clients::python_bin;
use common::recorder::Recorder;
use common::sink_config::{env_sink, file_sink};
use common::{wait_until, LogCapture};
use imds_credd::clock::{Clock, ManualClock, SharedClock};
use imds_credd::config::{EnvFormat, FileSinkConfig};
use imds_credd::credentials::render::EnvSyntax;
use imds_credd::credentials::secret::Secret;
use imds_credd::credentials::Credentials;
use imds_credd::health::SinkHealth;
use imds_credd::refresh::state::CredentialState;
use imds_credd::sink::atomic::FileError;
use imds_credd::sink::env_file::render_env_file;
use imds_credd::sink::hooks::RotationHooks;
use imds_credd::sink::{
    merge_section, run_sink, CredentialsFileSink, EnvFileSink, Publish, SinkError,
};
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::instrument::WithSubscriber as _;

const PROFILE: &str = "instance";

fn creds(n: u32, expiration: SystemTime) -> Credentials {
    Credentials {
        access_key_id: format!("ASIATESTKEY{n:09}"),
        secret_access_key: Secret::new(format!("wJalrXUtn/FEMI+K7MDENG{n}bPxRfiCYSECRET")),
        session_token: Secret::new(format!("IQoJb3JpZ2luX2Vj/SESSIONTOKEN+{n}/xyz==")),
        expiration,
        account_id: None,
    }
}

fn in_an_hour() -> SystemTime {
    SystemTime::now() + Duration::from_secs(3600)
}

fn file_config(path: &Path, mode: u32) -> FileSinkConfig {
    file_sink(path, PROFILE, mode)
}

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

fn temp_files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".imds-credd-tmp"))
        .collect()
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

const OTHERS: &str = "# my own profiles\n[default]\naws_access_key_id = AKIADEFAULTNOTOURS\naws_secret_access_key = notours\n\n; work account\n[work]\nregion = eu-west-1\n";

/// Which version `n` of `OTHERS` plus our section the text claims to be, after checking that
/// it is exactly that whole version (not torn, not empty, not a mix of two).
fn whole_version(text: &str, expiration: SystemTime) -> u32 {
    let n: u32 = text
        .split("aws_access_key_id = ASIATESTKEY")
        .nth(1)
        .and_then(|rest| rest.get(..9))
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("no version in {text:?}"));
    let expected = merge_section(OTHERS, PROFILE, Some(&creds(n, expiration)));
    assert_eq!(text, expected, "not the whole version {n}");
    n
}

#[test]
fn concurrent_readers_never_see_a_torn_or_empty_file() {
    // On tmpfs where there is one: what a reader sees across a rename is the VFS's doing, the
    // same on every file system, while two fsyncs per write made this test take 12 s on disk.
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let path = dir.path().join("credentials");
    std::fs::write(&path, OTHERS).unwrap();
    let sink = CredentialsFileSink::new(&file_config(&path, 0o600)).unwrap();
    let expiration = in_an_hour();
    sink.publish(&creds(0, expiration)).unwrap();

    const REWRITES: u32 = 2000;
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (path, stop, reads) = (path.clone(), Arc::clone(&stop), Arc::clone(&reads));
            std::thread::spawn(move || {
                let mut last_seen = 0;
                while !stop.load(Ordering::Relaxed) {
                    let text = std::fs::read_to_string(&path).expect("file always there");
                    let n = whole_version(&text, expiration);
                    assert!(n >= last_seen, "went back from {last_seen} to {n}");
                    last_seen = n;
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for n in 1..=REWRITES {
        assert_eq!(
            sink.publish(&creds(n, expiration)).unwrap(),
            imds_credd::sink::Change::Written
        );
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.join().expect("reader saw only whole files");
    }
    println!(
        "{REWRITES} rewrites, {} whole reads",
        reads.load(Ordering::Relaxed)
    );
    assert!(reads.load(Ordering::Relaxed) > 0);
    let last = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        last,
        merge_section(OTHERS, PROFILE, Some(&creds(REWRITES, expiration)))
    );
    assert!(temp_files_in(dir.path()).is_empty());
}

/// Where the crash test's child process writes, set only in that child.
const CRASH_CHILD_ENV: &str = "IMDS_CREDD_TEST_CRASH_WRITER";
/// A fixed expiry, so parent and child render the same bytes for version `n`.
fn crash_expiry() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000)
}

/// The writer of the crash test below, run in a child process that it kills. Not a test of
/// its own: ignored in a normal run, the crash test runs it with `--ignored`.
#[test]
#[ignore = "helper of kill_9_mid_rewrite_leaves_a_whole_file_and_the_next_write_cleans_up"]
fn crash_writer_child() {
    let target = std::env::var_os(CRASH_CHILD_ENV)
        .unwrap_or_else(|| panic!("a helper: run by the crash test, with {CRASH_CHILD_ENV} set"));
    let start: u32 = std::env::var("IMDS_CREDD_TEST_CRASH_START")
        .unwrap()
        .parse()
        .unwrap();
    let sink = CredentialsFileSink::new(&file_config(Path::new(&target), 0o600)).unwrap();
    for n in start.. {
        sink.publish(&creds(n, crash_expiry())).unwrap();
    }
}

#[test]
fn kill_9_mid_rewrite_leaves_a_whole_file_and_the_next_write_cleans_up() {
    // On disk (not tmpfs): the fsyncs make each write last long enough to be killed inside.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("credentials");
    std::fs::write(&path, OTHERS).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut versions_seen = std::collections::BTreeSet::new();
    let mut rounds_with_leftovers = 0;
    for round in 1..=30u32 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_writer_child",
                "--ignored",
                "--test-threads=1",
            ])
            .env(CRASH_CHILD_ENV, &path)
            .env(
                "IMDS_CREDD_TEST_CRASH_START",
                (round * 1_000_000).to_string(),
            )
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(fastrand::u64(30..120)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let text = std::fs::read_to_string(&path).expect("the file survives a kill");
        if text == OTHERS {
            continue; // killed before its first rename
        }
        versions_seen.insert(whole_version(&text, crash_expiry()));
        if !temp_files_in(dir.path()).is_empty() {
            rounds_with_leftovers += 1;
        }
    }
    println!(
        "{} versions seen after kills, {rounds_with_leftovers} kills left a temp file",
        versions_seen.len()
    );
    assert!(
        versions_seen.len() >= 2,
        "the child never got to write: the test proved nothing"
    );
    // The restarted writer republishes and sweeps what the kills left.
    CredentialsFileSink::new(&file_config(&path, 0o600))
        .unwrap()
        .publish(&creds(1, crash_expiry()))
        .unwrap();
    assert!(temp_files_in(dir.path()).is_empty());
}

#[test]
fn files_get_the_configured_mode_and_leave_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let expiration = in_an_hour();
    for mode in [0o600, 0o640, 0o644, 0o400] {
        let path = dir.path().join(format!("credentials-{mode:o}"));
        // An existing file with another mode gets ours.
        std::fs::write(&path, OTHERS).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let sink = CredentialsFileSink::new(&file_config(&path, mode)).unwrap();
        sink.publish(&creds(1, expiration)).unwrap();
        assert_eq!(mode_of(&path), mode, "credentials file");

        let env_path = dir.path().join(format!("env-{mode:o}"));
        let env = EnvFileSink::new(&env_sink(&env_path, EnvFormat::Sh, mode)).unwrap();
        env.publish(&creds(1, expiration)).unwrap();
        assert_eq!(mode_of(&env_path), mode, "env file");
    }
    assert_eq!(temp_files_in(dir.path()), Vec::<String>::new());
}

#[test]
fn missing_folders_are_created_with_traverse_rights_for_the_readers_only() {
    let dir = tempfile::tempdir().unwrap();
    let expiration = in_an_hour();
    let deep = dir.path().join("a/b/credentials");
    CredentialsFileSink::new(&file_config(&deep, 0o600))
        .unwrap()
        .publish(&creds(1, expiration))
        .unwrap();
    assert_eq!(mode_of(&dir.path().join("a")), 0o700);
    assert_eq!(mode_of(&dir.path().join("a/b")), 0o700);
    let shared = dir.path().join("shared/credentials.env");
    EnvFileSink::new(&env_sink(&shared, EnvFormat::Systemd, 0o644))
        .unwrap()
        .publish(&creds(1, expiration))
        .unwrap();
    assert_eq!(mode_of(&dir.path().join("shared")), 0o755);
    let group = dir.path().join("group/credentials.env");
    EnvFileSink::new(&env_sink(&group, EnvFormat::Sh, 0o640))
        .unwrap()
        .publish(&creds(1, expiration))
        .unwrap();
    assert_eq!(mode_of(&dir.path().join("group")), 0o750);
}

#[test]
fn a_symlink_at_the_target_is_refused_and_what_it_points_to_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "root's file\n").unwrap();
    let link = dir.path().join("credentials");
    std::os::unix::fs::symlink(&victim, &link).unwrap();

    let sink = CredentialsFileSink::new(&file_config(&link, 0o600)).unwrap();
    let err = sink.publish(&creds(1, in_an_hour())).unwrap_err();
    assert!(
        matches!(err, SinkError::File(FileError::Symlink { .. })),
        "{err}"
    );
    assert!(
        err.to_string().contains(&link.display().to_string()),
        "{err}"
    );
    assert!(sink.withdraw().is_err());

    let env = EnvFileSink::new(&env_sink(&link, EnvFormat::Sh, 0o600)).unwrap();
    assert!(env.publish(&creds(1, in_an_hour())).is_err());
    // Withdrawal does not delete through (or instead of) a link we did not make.
    assert!(env.withdraw().is_err());
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's file\n");
    assert!(temp_files_in(dir.path()).is_empty());
}

#[test]
fn folder_links_are_followed_only_when_root_or_the_daemon_owns_them() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let path = link.join("credentials");
    let sink = CredentialsFileSink::new(&file_config(&path, 0o600)).unwrap();
    // Our own link (as `/var/run → /run` is root's): followed.
    sink.publish(&creds(1, in_an_hour())).unwrap();
    assert!(std::fs::read_to_string(real.join("credentials"))
        .unwrap()
        .contains("ASIATESTKEY000000001"));
    if !common::require::root("chown a link for the foreign-link half") {
        return;
    }
    let nobody = nix::unistd::Uid::from_raw(65534);
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        &link,
        Some(nobody),
        None,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .unwrap();
    let err = sink.publish(&creds(2, in_an_hour())).unwrap_err();
    assert!(
        matches!(
            err,
            SinkError::File(FileError::UntrustedLink { uid: 65534, .. })
        ),
        "{err}"
    );
    assert!(std::fs::read_to_string(real.join("credentials"))
        .unwrap()
        .contains("ASIATESTKEY000000001"));
}

#[test]
fn a_world_writable_folder_needs_the_sticky_bit() {
    let dir = tempfile::tempdir().unwrap();
    let open = common::folder_with_mode(dir.path().join("open"), 0o777);
    let sink = CredentialsFileSink::new(&file_config(&open.join("credentials"), 0o600)).unwrap();
    let err = sink.publish(&creds(1, in_an_hour())).unwrap_err();
    assert!(
        matches!(err, SinkError::File(FileError::UnsafeFolder { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("writable by everyone"), "{err}");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    sink.publish(&creds(1, in_an_hour())).unwrap();
}

#[test]
fn owner_and_group_are_set_and_foreign_files_refused() {
    if !common::require::root("set another owner") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("home/.aws/credentials");
    std::fs::create_dir(dir.path().join("home")).unwrap();
    let mut config = file_config(&path, 0o600);
    config.sink.owner = Some("nobody".into());
    config.sink.group = Some("65534".into());
    let sink = CredentialsFileSink::new(&config).unwrap();
    sink.publish(&creds(1, in_an_hour())).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), mode_of(&path)),
        (65534, 65534, 0o600)
    );
    let folder = std::fs::metadata(dir.path().join("home/.aws")).unwrap();
    assert_eq!((folder.uid(), folder.gid()), (65534, 65534));
    assert_eq!(mode_of(&dir.path().join("home/.aws")), 0o700);
    // A file the configured owner owns is ours to rewrite.
    sink.publish(&creds(2, in_an_hour())).unwrap();

    // Without that owner configured, the same file is someone else's: refused, kept.
    let plain = CredentialsFileSink::new(&file_config(&path, 0o600)).unwrap();
    let err = plain.publish(&creds(3, in_an_hour())).unwrap_err();
    assert!(
        matches!(
            err,
            SinkError::File(FileError::ForeignOwner { uid: 65534, .. })
        ),
        "{err}"
    );
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .contains("ASIATESTKEY000000002"));

    // An unknown user is a clear error, and nothing is written.
    let mut unknown = file_config(&dir.path().join("x/credentials"), 0o600);
    unknown.sink.owner = Some("no-such-user-imds-credd".into());
    let err = CredentialsFileSink::new(&unknown)
        .unwrap()
        .publish(&creds(1, in_an_hour()))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "owner \"no-such-user-imds-credd\": no such user"
    );
    assert!(!dir.path().join("x").exists());
}

#[test]
fn temp_files_left_by_a_crash_are_swept_on_the_next_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("credentials");
    let leftover = dir
        .path()
        .join(".credentials.0123456789abcdef.imds-credd-tmp");
    let unrelated = dir.path().join(".credentials.notours");
    let other_sink = dir.path().join(".other.0123456789abcdef.imds-credd-tmp");
    for p in [&leftover, &unrelated, &other_sink] {
        std::fs::write(p, "x").unwrap();
    }
    CredentialsFileSink::new(&file_config(&path, 0o600))
        .unwrap()
        .publish(&creds(1, in_an_hour()))
        .unwrap();
    assert!(!leftover.exists());
    assert!(unrelated.exists() && other_sink.exists());
}

#[test]
fn a_file_that_is_not_text_is_refused_not_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("credentials");
    std::fs::write(&path, b"[default]\n\xff\xfe\n").unwrap();
    let err = CredentialsFileSink::new(&file_config(&path, 0o600))
        .unwrap()
        .publish(&creds(1, in_an_hour()))
        .unwrap_err();
    assert!(matches!(err, SinkError::NotUtf8 { .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"[default]\n\xff\xfe\n");
}

fn assert_no_secrets(text: &str, issued: &[Credentials]) {
    for c in issued {
        assert!(
            !text.contains(c.secret_access_key.expose())
                && !text.contains(c.session_token.expose()),
            "a secret leaked into: {text}"
        );
    }
}

/// Sink tasks fed by hand: a watch channel standing in for the refresher, a manual clock,
/// the health table and the shutdown token, as the daemon wires them.
struct Harness {
    clock: ManualClock,
    health: SinkHealth,
    shutdown: CancellationToken,
    state: watch::Sender<CredentialState>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    logs: LogCapture,
    _log_guard: tracing::subscriber::DefaultGuard,
}

impl Harness {
    fn new() -> Harness {
        let logs = LogCapture::default();
        Harness {
            _log_guard: logs.install(),
            logs,
            clock: ManualClock::starting_now(),
            health: SinkHealth::default(),
            shutdown: CancellationToken::new(),
            state: watch::channel(CredentialState::default()).0,
            tasks: Vec::new(),
        }
    }

    fn spawn<P: Publish>(&mut self, sink: P) {
        let clock: SharedClock = Arc::new(self.clock.clone());
        let reporter = self
            .health
            .register(P::KIND, sink.target().display().to_string());
        let hooks = RotationHooks::new("test sink", None, None).unwrap();
        // The capture is this thread's; the task carries it to whichever worker polls it.
        let task = tokio::spawn(
            run_sink(
                sink,
                self.state.subscribe(),
                clock,
                reporter,
                hooks,
                self.shutdown.clone(),
            )
            .with_current_subscriber(),
        );
        self.tasks.push(task);
    }

    /// Publishes like the refresher: a set, or a withdrawal with an error.
    fn send(&self, credentials: Option<&Credentials>) {
        self.state.send_replace(CredentialState {
            role: Some("test-role".into()),
            last_refresh: Some(self.clock.now()),
            last_error: credentials.is_none().then(|| "role removed".to_string()),
            credentials: credentials.cloned().map(Arc::new),
            next_refresh: None,
            clock_skew: None,
        });
    }

    fn in_secs(&self, secs: u64) -> SystemTime {
        self.clock.now() + Duration::from_secs(secs)
    }

    fn report(&self, index: usize) -> imds_credd::health::SinkReport {
        self.health.snapshot()[index].clone()
    }

    /// Cancels and waits (every task must end; a panic would surface here), checks that no
    /// secret of `issued` reached the logs, and returns them.
    async fn stop(self, issued: &[Credentials]) -> String {
        self.shutdown.cancel();
        for task in self.tasks {
            task.await.expect("sink task ends cleanly");
        }
        let text = self.logs.text();
        assert!(
            text.contains("published credentials"),
            "the capture missed the sink tasks' logs, so the secret scan would see nothing"
        );
        assert_no_secrets(&text, issued);
        text
    }
}

#[tokio::test]
async fn credentials_file_task_publishes_rotates_withdraws_and_expires() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("credentials");
    std::fs::write(&path, OTHERS).unwrap();
    let mut h = Harness::new();
    h.spawn(CredentialsFileSink::new(&file_config(&path, 0o600)).unwrap());

    let read = || std::fs::read_to_string(&path).unwrap();
    let issued = [
        creds(1, h.in_secs(3600)),
        creds(2, h.in_secs(3600)),
        creds(3, h.in_secs(600)),
    ];
    h.send(Some(&issued[0]));
    wait_until("first set written", || {
        read().contains("ASIATESTKEY000000001")
    })
    .await;
    assert_eq!(read(), merge_section(OTHERS, PROFILE, Some(&issued[0])));

    h.send(Some(&issued[1]));
    wait_until("rotation written", || {
        read().contains("ASIATESTKEY000000002")
    })
    .await;
    assert_eq!(read(), merge_section(OTHERS, PROFILE, Some(&issued[1])));

    h.send(None);
    wait_until("section withdrawn", || !read().contains("[instance]")).await;
    assert_eq!(read(), format!("{OTHERS}\n"));

    h.send(Some(&issued[2]));
    wait_until("short-lived set written", || {
        read().contains("ASIATESTKEY000000003")
    })
    .await;
    // No new state comes; the set expires on the clock and the sink drops it by itself.
    h.clock.advance(Duration::from_secs(601));
    wait_until("expired set withdrawn", || !read().contains("[instance]")).await;
    assert_eq!(read(), format!("{OTHERS}\n"));

    let report = h.report(0);
    assert_eq!((report.kind, report.last_error.as_deref()), ("file", None));
    assert!(report.last_success.is_some());
    let logs = h.stop(&issued).await;
    // A clean stop leaves the file as it is.
    assert_eq!(read(), format!("{OTHERS}\n"));
    assert!(
        logs.contains("published credentials") && logs.contains("withdrew credentials"),
        "{logs}"
    );
}

#[tokio::test]
async fn env_file_task_writes_and_deletes_on_withdrawal_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/credentials.env");
    let mut h = Harness::new();
    h.spawn(EnvFileSink::new(&env_sink(&path, EnvFormat::Systemd, 0o600)).unwrap());

    let issued = [creds(1, h.in_secs(3600)), creds(2, h.in_secs(7200))];
    let read = || std::fs::read_to_string(&path).ok();
    h.send(Some(&issued[0]));
    wait_until("env file written", || read().is_some()).await;
    assert_eq!(
        read().unwrap(),
        *render_env_file(&issued[0], EnvSyntax::Systemd)
    );
    assert_eq!(mode_of(&path), 0o600);

    h.send(None);
    wait_until("env file deleted on withdrawal", || read().is_none()).await;

    h.send(Some(&issued[1]));
    wait_until("env file back", || read().is_some()).await;
    assert_eq!(
        read().unwrap(),
        *render_env_file(&issued[1], EnvSyntax::Systemd)
    );
    h.clock.advance(Duration::from_secs(7200));
    wait_until("env file deleted at expiry", || read().is_none()).await;

    h.stop(&issued).await;
    assert!(temp_files_in(&dir.path().join("run")).is_empty());
}

#[tokio::test]
async fn a_failing_sink_is_reported_retried_and_recovers_without_holding_back_others() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file where the folder should be: fails with ENOTDIR for root too.
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, "not a folder").unwrap();
    let broken_path = blocker.join("credentials");
    let good_path = dir.path().join("credentials.env");
    let mut h = Harness::new();
    h.spawn(CredentialsFileSink::new(&file_config(&broken_path, 0o600)).unwrap());
    h.spawn(EnvFileSink::new(&env_sink(&good_path, EnvFormat::Sh, 0o600)).unwrap());
    let issued = [creds(1, h.in_secs(3600))];
    h.send(Some(&issued[0]));

    wait_until("failure reported", || h.report(0).last_error.is_some()).await;
    let message = h.report(0).last_error.unwrap();
    assert_eq!(message, format!("{}: is not a folder", blocker.display()));
    wait_until("the other sink published", || good_path.exists()).await;
    assert!(h.report(1).last_error.is_none());

    // The cause goes away; the next retry (1 s later on the sink's clock) succeeds.
    std::fs::remove_file(&blocker).unwrap();
    h.clock.advance(Duration::from_secs(1));
    wait_until("recovered", || broken_path.exists()).await;
    wait_until("error cleared", || h.report(0).last_error.is_none()).await;
    assert!(std::fs::read_to_string(&broken_path)
        .unwrap()
        .contains("ASIATESTKEY000000001"));

    let logs = h.stop(&issued).await;
    assert!(
        logs.contains("could not update credentials sink") && logs.contains("recovered"),
        "{logs}"
    );
}

#[tokio::test]
async fn a_file_deleted_or_loosened_under_us_is_restored_on_the_next_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("credentials");
    let mut h = Harness::new();
    h.spawn(CredentialsFileSink::new(&file_config(&path, 0o600)).unwrap());
    let issued = creds(1, h.in_secs(6 * 3600));
    h.send(Some(&issued));
    // Each check is due a minute after the last success on the sink's clock.
    let checked_now = || h.report(0).last_success == Some(h.clock.now());
    wait_until("written", checked_now).await;

    std::fs::remove_file(&path).unwrap();
    h.clock.advance(imds_credd::sink::RESYNC_INTERVAL);
    wait_until("restored after deletion", checked_now).await;
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        merge_section("", PROFILE, Some(&issued))
    );

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    h.clock.advance(imds_credd::sink::RESYNC_INTERVAL);
    wait_until("mode restored", || mode_of(&path) == 0o600).await;
    h.stop(&[issued]).await;
}

/// A small tmpfs mounted for one test (root only), unmounted when dropped.
struct SmallFileSystem {
    path: PathBuf,
}

impl SmallFileSystem {
    fn mount(path: &Path) -> Result<SmallFileSystem, String> {
        if !is_root() {
            return Err("mounting a small file system needs root".into());
        }
        std::fs::create_dir(path).unwrap();
        let path_text = path.to_str().unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                "size=64k,mode=0755",
                "tmpfs",
                path_text,
            ])
            .status()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({status}): no CAP_SYS_ADMIN here?"
            ));
        }
        Ok(SmallFileSystem {
            path: path.to_path_buf(),
        })
    }

    fn remount(&self, option: &str) {
        let status = Command::new("mount")
            .args([
                "-o",
                &format!("remount,{option}"),
                self.path.to_str().unwrap(),
            ])
            .status()
            .unwrap();
        assert!(status.success(), "remount {option}");
    }

    /// Writes a filler file until the file system is full.
    fn fill(&self) -> PathBuf {
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = [0u8; 4096];
        loop {
            match file.write_all(&block) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
                Err(e) => panic!("filling: {e}"),
            }
        }
        filler
    }
}

impl Drop for SmallFileSystem {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .args(["-l", self.path.to_str().unwrap()])
            .status();
    }
}

#[tokio::test]
async fn disk_full_and_read_only_are_reported_and_recovered_while_other_sinks_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let small = match SmallFileSystem::mount(&dir.path().join("small")) {
        Ok(small) => small,
        Err(reason) => {
            let _ = common::require::unavailable(&reason);
            return;
        }
    };
    let path = small.path.join("credentials");
    let other_path = dir.path().join("credentials.env");
    let mut h = Harness::new();
    h.spawn(CredentialsFileSink::new(&file_config(&path, 0o600)).unwrap());
    h.spawn(EnvFileSink::new(&env_sink(&other_path, EnvFormat::Sh, 0o600)).unwrap());
    let issued: Vec<Credentials> = (1..=3).map(|n| creds(n, h.in_secs(6 * 3600))).collect();
    let read = || std::fs::read_to_string(&path).unwrap_or_default();
    let other = || std::fs::read_to_string(&other_path).unwrap_or_default();
    h.send(Some(&issued[0]));
    wait_until("first set written", || {
        read().contains("ASIATESTKEY000000001")
    })
    .await;

    // Disk full: the old file stays whole, no temp file is left, the error names ENOSPC.
    let filler = small.fill();
    h.send(Some(&issued[1]));
    wait_until("ENOSPC reported", || h.report(0).last_error.is_some()).await;
    let error = h.report(0).last_error.unwrap();
    assert!(
        error.contains(&path.display().to_string()) && error.contains("ENOSPC"),
        "{error}"
    );
    assert_eq!(read(), merge_section("", PROFILE, Some(&issued[0])));
    assert!(temp_files_in(&small.path).is_empty());
    wait_until("other sink went on", || {
        other().contains("ASIATESTKEY000000002")
    })
    .await;
    std::fs::remove_file(filler).unwrap();
    h.clock.advance(Duration::from_secs(1));
    wait_until("recovered from ENOSPC", || {
        read().contains("ASIATESTKEY000000002")
    })
    .await;
    wait_until("error cleared", || h.report(0).last_error.is_none()).await;

    // Read-only file system (refuses root too).
    small.remount("ro");
    h.send(Some(&issued[2]));
    wait_until("EROFS reported", || h.report(0).last_error.is_some()).await;
    let error = h.report(0).last_error.unwrap();
    assert!(error.contains("EROFS"), "{error}");
    wait_until("other sink went on", || {
        other().contains("ASIATESTKEY000000003")
    })
    .await;
    small.remount("rw");
    // The retry is due 1 s after the failure on the sink's clock.
    h.clock.advance(Duration::from_secs(1));
    wait_until("recovered from EROFS", || {
        read().contains("ASIATESTKEY000000003")
    })
    .await;
    assert_eq!(read(), merge_section("", PROFILE, Some(&issued[2])));
    h.stop(&issued).await;
}

// ---- Real clients: the AWS CLI, boto3 and a shell read what we wrote ----

/// A child environment with nothing of ours: no AWS_* variables, a HOME without `.aws`, an
/// empty config file, IMDS disabled so no SDK falls back to it.
fn client_command(program: &str, home: &Path, credentials_file: &Path) -> tokio::process::Command {
    let bin = python_bin();
    let empty_config = home.join("empty-config");
    std::fs::write(&empty_config, "").unwrap();
    let mut command = tokio::process::Command::new(program);
    command
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("HOME", home)
        .env("LANG", "C.UTF-8")
        .env("AWS_CONFIG_FILE", &empty_config)
        .env("AWS_SHARED_CREDENTIALS_FILE", credentials_file)
        .env("AWS_EC2_METADATA_DISABLED", "true");
    command
}

async fn run_ok(mut command: tokio::process::Command) -> String {
    let output = command.output().await.expect("client runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{:?} failed: {}\n{stdout}\n{}",
        command.as_std(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

const BOTO3_CALL: &str = "import boto3, sys
session = boto3.Session(profile_name=sys.argv[2]) if len(sys.argv) > 2 else boto3.Session()
sts = session.client('sts', endpoint_url=sys.argv[1], region_name='us-east-1')
print(sts.get_caller_identity()['Account'])";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_and_boto3_sign_with_the_credentials_file_we_wrote() {
    let recorder = Recorder::start().await;
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join(".aws/credentials");
    std::fs::create_dir(home.path().join(".aws")).unwrap();
    // A CRLF file with a `[default]` that must not be used, and a stale token key in ours.
    let existing = "[default]\r\naws_access_key_id = AKIADEFAULTNOTOURS\r\naws_secret_access_key = x\r\n\r\n[instance]\r\naws_security_token = STALE\r\n";
    std::fs::write(&path, existing).unwrap();
    let mut h = Harness::new();
    h.spawn(CredentialsFileSink::new(&file_config(&path, 0o600)).unwrap());
    let hour = h.in_secs(3600);
    let url = recorder.url();
    let issued_sets = [creds(1, hour), creds(2, hour)];
    for issued in &issued_sets {
        let key = issued.access_key_id.clone();
        h.send(Some(issued));
        wait_until("file written", || {
            std::fs::read_to_string(&path).unwrap().contains(&key)
        })
        .await;

        let mut aws = client_command("aws", home.path(), &path);
        aws.args(["sts", "get-caller-identity", "--endpoint-url", &url])
            .args([
                "--region",
                "us-east-1",
                "--profile",
                PROFILE,
                "--output",
                "text",
            ]);
        let out = run_ok(aws).await;
        assert!(out.contains("123456789012"), "{out}");
        recorder.assert_last_signed_with(issued, "aws cli");

        let mut boto3 = client_command("python", home.path(), &path);
        boto3.args(["-c", BOTO3_CALL, &url, PROFILE]);
        assert_eq!(run_ok(boto3).await.trim(), "123456789012");
        recorder.assert_last_signed_with(issued, "boto3");
    }
    h.stop(&issued_sets).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_sourcing_the_env_file_signs_with_our_credentials() {
    let recorder = Recorder::start().await;
    let home = tempfile::tempdir().unwrap();
    let env_path = home.path().join("credentials.env");
    let issued = creds(7, in_an_hour());
    EnvFileSink::new(&env_sink(&env_path, EnvFormat::Sh, 0o600))
        .unwrap()
        .publish(&issued)
        .unwrap();
    let no_file = home.path().join("no-credentials-file");
    let url = recorder.url();

    let mut aws = client_command("sh", home.path(), &no_file);
    aws.args(["-c", ". \"$0\" && exec aws sts get-caller-identity --endpoint-url \"$1\" --region us-east-1 --output text"])
        .arg(&env_path)
        .arg(&url);
    assert!(run_ok(aws).await.contains("123456789012"));
    recorder.assert_last_signed_with(&issued, "aws cli in a sourcing shell");

    let mut boto3 = client_command("sh", home.path(), &no_file);
    boto3
        .args(["-c", ". \"$0\" && exec python -c \"$1\" \"$2\""])
        .arg(&env_path)
        .arg(BOTO3_CALL)
        .arg(&url);
    assert_eq!(run_ok(boto3).await.trim(), "123456789012");
    recorder.assert_last_signed_with(&issued, "boto3 in a sourcing shell");
}
