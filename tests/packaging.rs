//! The operator-facing install pieces: the generated man pages and completions, the systemd
//! units (`systemd-analyze verify` and the security exposure score), the example config,
//! the daemon's system calls against the unit's filter (under strace), the unit's capability
//! set (the daemon run as another user with exactly those capabilities, and one fewer),
//! and the .deb/.rpm that `packaging/build-packages.sh` makes from this test's own build of
//! the binary (a release build takes minutes; the package layout is the same).
//!
//! Every check runs the real tools. A test whose tool is missing on this machine prints
//! one `SKIPPED` line and returns, except in CI, where it fails (`common::require`).
#![allow(clippy::disallowed_methods)]
// Tests and benches time real processes and servers.
// These tests drive the Linux build (unix socket, signals, file modes); the Windows
// build is checked by `windows_wine.rs`.
#![cfg(unix)]
#![cfg(target_os = "linux")]

mod common;

use clap::CommandFactory;
use common::reachable::reachable_binary;
use common::require::has_tool;
use common::unit_user::{as_daemon_user, unit_capabilities, APP_UID, DAEMON_UID};
use imds_credd::cli::Cli;
use imds_credd::config::Config;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const BINARY: &str = env!("CARGO_BIN_EXE_imds-credd");
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The exposure target the issue sets for `systemd-analyze security`.
const MAX_EXPOSURE: f64 = 2.0;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout_of(command: &mut Command) -> String {
    String::from_utf8(run(command).stdout).expect("tool output is UTF-8")
}

/// `imds-credd-<sub>` for every subcommand an operator sees, plus the main page.
fn expected_man_pages() -> Vec<String> {
    let cli = Cli::command();
    let mut pages = vec!["imds-credd.1".to_string()];
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages.push(format!("imds-credd-{}.1", sub.get_name()));
    }
    pages.sort();
    pages
}

fn generate_assets(out: &Path) {
    run(Command::new(BINARY)
        .args(["generate-assets", "--out"])
        .arg(out));
}

#[test]
fn generate_assets_writes_man_pages_and_completions_that_do_not_mention_it() {
    let out = tempfile::tempdir().unwrap();
    generate_assets(out.path());

    let mut pages: Vec<String> = std::fs::read_dir(out.path().join("man"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    pages.sort();
    assert_eq!(pages, expected_man_pages());
    let main_page = std::fs::read_to_string(out.path().join("man/imds-credd.1")).unwrap();
    assert!(main_page.contains("\n.TH imds-credd 1 "), "{main_page}");
    assert!(main_page.contains("check\\-config"), "subcommands listed");
    for section in [
        ".SH \"EXIT STATUS\"",
        ".SH FILES",
        ".SH ENVIRONMENT",
        ".SH \"SEE ALSO\"",
    ] {
        assert!(main_page.contains(section), "main page lacks {section}");
    }

    for (name, config_flag) in [
        ("imds-credd.bash", "--config"),
        ("_imds-credd", "--config"),
        ("imds-credd.fish", "-l config"),
    ] {
        let script = std::fs::read_to_string(out.path().join("completions").join(name)).unwrap();
        assert!(
            script.contains("check-config"),
            "{name} completes subcommands"
        );
        assert!(script.contains(config_flag), "{name} completes flags");
    }
    // The packager's command stays out of everything an operator reads or completes.
    for folder in ["man", "completions"] {
        for entry in std::fs::read_dir(out.path().join(folder)).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                !text.contains("generate-assets") && !text.contains("generate\\-assets"),
                "{} mentions the hidden command",
                path.display()
            );
        }
    }
}

#[test]
fn generated_completions_parse_in_their_shells() {
    let out = tempfile::tempdir().unwrap();
    generate_assets(out.path());
    let mut checked = 0;
    for (shell, file) in [
        ("bash", "imds-credd.bash"),
        ("zsh", "_imds-credd"),
        ("fish", "imds-credd.fish"),
    ] {
        if !common::require::tool(shell) {
            continue;
        }
        run(Command::new(shell)
            .arg("-n")
            .arg(out.path().join("completions").join(file)));
        checked += 1;
    }
    assert!(
        checked > 0 || !has_tool("bash"),
        "bash is present but nothing was checked"
    );
}

#[test]
fn generated_man_page_renders_with_man() {
    if !common::require::tool("man") {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    generate_assets(out.path());
    let render = |page: &str| {
        stdout_of(
            Command::new("man")
                .env("MANPAGER", "cat")
                .env("MANWIDTH", "100")
                .arg("-l")
                .arg(out.path().join("man").join(page)),
        )
    };
    let rendered = render("imds-credd-check-config.1");
    assert!(rendered.contains("NAME"), "{rendered}");
    assert!(rendered.contains("imds-credd-check-config"), "{rendered}");
    assert!(rendered.contains("--config <FILE>"), "{rendered}");

    let main_page = render("imds-credd.1");
    assert!(
        main_page.contains("/etc/imds-credd/config.toml"),
        "{main_page}"
    );
    assert!(
        main_page.contains("/run/imds-credd/credentials.sock"),
        "{main_page}"
    );
}

#[test]
fn generate_assets_names_a_folder_it_cannot_create() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "").unwrap();
    let output = Command::new(BINARY)
        .args(["generate-assets", "--out"])
        .arg(&blocker)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot create folder {}",
            blocker.join("man").display()
        )),
        "{stderr}"
    );
}

/// Copies the units into a temp folder with ExecStart pointing at this build (verify wants
/// the binary to exist) and the man pages where `man` finds them (verify checks
/// `Documentation=man:…`).
fn units_for_verify(dir: &Path) -> (PathBuf, PathBuf) {
    let man_root = dir.join("man");
    generate_assets(&dir.join("assets"));
    std::fs::create_dir_all(man_root.join("man1")).unwrap();
    for entry in std::fs::read_dir(dir.join("assets/man")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, man_root.join("man1").join(path.file_name().unwrap())).unwrap();
    }
    for unit in [
        "imds-credd.service",
        "imds-credd.socket",
        "imds-credd-container.socket",
    ] {
        let text = std::fs::read_to_string(repo().join("systemd").join(unit)).unwrap();
        std::fs::write(dir.join(unit), text.replace("/usr/bin/imds-credd", BINARY)).unwrap();
    }
    (dir.join("imds-credd.service"), man_root)
}

#[test]
fn units_pass_systemd_analyze_verify_without_warnings() {
    if !common::require::tool("systemd-analyze") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (service, man_root) = units_for_verify(dir.path());
    let output = run(Command::new("systemd-analyze")
        .env("MANPATH", &man_root)
        .current_dir(dir.path())
        .args(["verify", "imds-credd.socket", "imds-credd-container.socket"])
        .arg(service.file_name().unwrap()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.trim().is_empty(), "verify warned:\n{stderr}");
}

#[test]
fn service_unit_exposure_is_at_most_two() {
    if !common::require::tool("systemd-analyze") {
        return;
    }
    let report = stdout_of(
        Command::new("systemd-analyze")
            .args(["security", "--offline=true"])
            .arg(repo().join("systemd/imds-credd.service")),
    );
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no score in:\n{report}"));
    let score: f64 = line
        .split(": ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"));
    eprintln!("{line}");
    assert!(score <= MAX_EXPOSURE, "{line}\n{report}");
}

/// The system calls in a `systemd-analyze syscall-filter` set, groups expanded.
fn syscalls_in(set: &str) -> BTreeSet<String> {
    let listing = stdout_of(Command::new("systemd-analyze").args(["syscall-filter", set]));
    let mut calls = BTreeSet::new();
    // The first line names the set; then comments, calls and nested @groups.
    for item in listing.lines().skip(1).map(str::trim) {
        if item.is_empty() || item.starts_with('#') {
            continue;
        }
        if item.starts_with('@') {
            calls.extend(syscalls_in(item));
        } else {
            calls.insert(item.to_string());
        }
    }
    calls
}

/// What the unit's `SystemCallFilter=` lines allow: the first allow list, then each `~`
/// line taking calls away and each further plain line adding them.
fn unit_allowed_syscalls() -> BTreeSet<String> {
    let unit = std::fs::read_to_string(repo().join("systemd/imds-credd.service")).unwrap();
    let mut allowed = BTreeSet::new();
    for value in unit
        .lines()
        .filter_map(|l| l.strip_prefix("SystemCallFilter="))
    {
        let (deny, sets) = match value.strip_prefix('~') {
            Some(rest) => (true, rest),
            None => (false, value),
        };
        for set in sets.split_whitespace() {
            let calls = if set.starts_with('@') {
                syscalls_in(set)
            } else {
                BTreeSet::from([set.to_string()])
            };
            if deny {
                allowed.retain(|call| !calls.contains(call));
            } else {
                allowed.extend(calls);
            }
        }
    }
    allowed
}

/// `1234  name(args…` and `1234  <... name resumed>…`: the call's name; signals and exits
/// (`---`, `+++`) have none.
fn syscall_name(strace_line: &str) -> Option<&str> {
    let rest = strace_line
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .trim_start();
    let rest = rest.strip_prefix("<... ").unwrap_or(rest);
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
    (end > 0).then(|| &rest[..end])
}

#[test]
fn every_system_call_and_mapping_of_the_daemon_is_allowed_by_the_unit() {
    if !common::require::tool("strace") || !common::require::tool("systemd-analyze") {
        return;
    }
    // The demo runs the real daemon (IMDS client, refresher, file and env sinks) against
    // the simulator in the same process: a superset of what the service does.
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    run(Command::new("strace")
        .args(["-f", "-qq", "-o"])
        .arg(&trace)
        .arg(BINARY)
        .args(["demo", "--run-for", "3s"]));
    let trace = std::fs::read_to_string(&trace).unwrap();
    let used: BTreeSet<&str> = trace.lines().filter_map(syscall_name).collect();
    assert!(
        used.contains("renameat") || used.contains("renameat2"),
        "sinks wrote: {used:?}"
    );
    let allowed = unit_allowed_syscalls();
    assert!(
        allowed.contains("chown") && !allowed.contains("setrlimit"),
        "filter parsed"
    );
    let refused: Vec<&&str> = used
        .iter()
        .filter(|call| !allowed.contains(**call))
        .collect();
    assert!(
        refused.is_empty(),
        "the unit's SystemCallFilter= refuses {refused:?}"
    );

    // MemoryDenyWriteExecute= refuses writable+executable mappings and any mprotect that
    // adds PROT_EXEC.
    let wx: Vec<&str> = trace
        .lines()
        .filter(|line| match syscall_name(line) {
            Some("mmap") => line.contains("PROT_WRITE|PROT_EXEC"),
            Some("mprotect" | "pkey_mprotect") => line.contains("PROT_EXEC"),
            _ => false,
        })
        .collect();
    assert!(
        wx.is_empty(),
        "MemoryDenyWriteExecute= would refuse: {wx:#?}"
    );
}

/// Runs `imds-credd run` as [`DAEMON_UID`] holding exactly `caps` (ambient, inheritable and
/// bounding, no new privileges: what systemd does for the unit's `User=` and capability
/// lines), with a [[file]] sink in `~app/.aws` (0700, owned by [`APP_UID`]). Returns the
/// credentials file's metadata once written, or the daemon's log if the sink failed.
fn write_app_credentials_with(
    caps: &[String],
    endpoint: &str,
) -> Result<std::fs::Metadata, String> {
    let dir = tempfile::tempdir().unwrap();
    let aws = dir.path().join("home/app/.aws");
    std::fs::create_dir_all(&aws).unwrap();
    for folder in [aws.parent().unwrap(), aws.as_path()] {
        std::os::unix::fs::chown(folder, Some(APP_UID), Some(APP_UID)).unwrap();
        std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    // The daemon's own folder (RuntimeDirectory= in the unit) for its socket.
    let run_dir = dir.path().join("run");
    std::fs::create_dir(&run_dir).unwrap();
    std::os::unix::fs::chown(&run_dir, Some(DAEMON_UID), Some(DAEMON_UID)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

    let target = aws.join("credentials");
    let log_path = dir.path().join("daemon.log");
    let mut daemon = as_daemon_user(caps)
        .arg(reachable_binary())
        .args([
            "run",
            "--config",
            "/dev/null",
            "--imds-endpoint",
            endpoint,
            "--socket",
        ])
        .arg(run_dir.join("credentials.sock"))
        .arg("--file")
        .arg(format!(
            "path={},profile=instance,owner={APP_UID},group={APP_UID},mode=0600",
            target.display()
        ))
        .env_remove("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .env_remove("AWS_EC2_METADATA_DISABLED")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let outcome = loop {
        let log = std::fs::read_to_string(&log_path).unwrap();
        if let Ok(meta) = std::fs::metadata(&target) {
            break Ok(meta);
        }
        if log.contains("could not update credentials sink") {
            break Err(log);
        }
        if let Some(status) = daemon.try_wait().unwrap() {
            break Err(format!("daemon exited ({status}):\n{log}"));
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no outcome in:\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let pid = nix::unistd::Pid::from_raw(daemon.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).ok();
    daemon.wait().unwrap();
    if let Ok(meta) = &outcome {
        let text = std::fs::read_to_string(&target).unwrap();
        assert!(text.contains("[instance]"), "{text}");
        assert!(meta.len() > 0);
    }
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_units_capabilities_let_a_non_root_daemon_write_another_users_file_and_each_is_needed()
{
    if !common::unit_user::can_switch_users() {
        return;
    }
    let sim = imds_credd::demo::simulator::ImdsSimulator::start(Default::default())
        .await
        .unwrap();
    let endpoint = sim.endpoint();
    let caps = unit_capabilities();

    let meta = write_app_credentials_with(&caps, &endpoint)
        .unwrap_or_else(|log| panic!("with {caps:?} the sink failed:\n{log}"));
    assert_eq!((meta.uid(), meta.gid()), (APP_UID, APP_UID));
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);

    // Each file capability is needed: without it the same write is refused. (CAP_KILL is
    // for a sink's `signal`, which this sink does not use.)
    for (needed, refused_step) in [
        ("chown", "setting owner of temp file"),
        // Refused at start now: the folder check cannot look into app's 0700 folders.
        ("dac_override", "Permission denied"),
        ("fowner", "setting mode of temp file"),
    ] {
        assert!(caps.iter().any(|c| c == needed), "the unit grants {needed}");
        let fewer: Vec<String> = caps.iter().filter(|c| *c != needed).cloned().collect();
        match write_app_credentials_with(&fewer, &endpoint) {
            Ok(_) => panic!("the sink wrote without CAP_{}", needed.to_uppercase()),
            Err(log) => assert!(log.contains(refused_step), "without {needed}: {log}"),
        }
    }
    sim.shutdown().await;
}

#[test]
fn example_config_holds_the_defaults_and_passes_check_config() {
    let path = repo().join("packaging/config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let parsed = Config::parse(&text, &path).unwrap();
    // The file's own claim: its active keys are the defaults. Only the socket group is
    // spelled out (the default picks that group when it exists, which the packages ensure).
    let mut expected = Config::default();
    expected.socket.group = Some("imds-credd".into());
    assert_eq!(parsed, expected);

    let output = run(Command::new(BINARY)
        .args(["check-config", "--config"])
        .arg(&path));
    assert!(String::from_utf8_lossy(&output.stdout).contains("configuration is valid"));
}

#[test]
fn every_commented_example_in_the_config_is_valid_once_uncommented() {
    let text = std::fs::read_to_string(repo().join("packaging/config.toml")).unwrap();
    // Examples are "#key = …" and "#[table]" (no space); prose is "# …".
    let uncommented: String = text
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest)
                if rest.starts_with('[') || rest.starts_with(|c: char| c.is_ascii_lowercase()) =>
            {
                rest
            }
            _ => line,
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, &uncommented).unwrap();
    let config = Config::parse(&uncommented, &path).unwrap();
    assert_eq!(config.files.len(), 1, "the [[file]] example is active");
    assert_eq!(config.envs.len(), 1, "the [[env]] example is active");
    assert_eq!(config.assumes.len(), 1, "the [[assume]] example is active");
    assert!(
        config.container.is_some(),
        "the [container] example is active"
    );
    run(Command::new(BINARY)
        .args(["check-config", "--config"])
        .arg(&path));
}

/// The packages, built once from this test's binary and shared by the tests below.
struct Packages {
    _dir: tempfile::TempDir,
    deb: PathBuf,
    rpm: Option<PathBuf>,
}

fn packages() -> Option<&'static Packages> {
    static PACKAGES: OnceLock<Option<Packages>> = OnceLock::new();
    PACKAGES
        .get_or_init(|| {
            if !common::require::tool("dpkg-deb") {
                return None;
            }
            // Without rpmbuild the script would install it, which needs root and apt-get.
            let rpm = has_tool("rpmbuild") || (is_root() && has_tool("apt-get"));
            let dir = tempfile::tempdir().unwrap();
            let mut command = Command::new(repo().join("packaging/build-packages.sh"));
            command
                .arg("--binary")
                .arg(BINARY)
                .arg("--out")
                .arg(dir.path());
            if !rpm {
                let _ = common::require::unavailable(
                    "needs rpmbuild, which is missing and cannot be installed (no root)",
                );
                command.arg("--no-rpm");
            }
            run(&mut command);
            let arch = host_deb_arch();
            let deb = dir
                .path()
                .join(format!("imds-credd_{VERSION}-1_{arch}.deb"));
            let rpm = rpm.then(|| {
                dir.path().join(format!(
                    "imds-credd-{VERSION}-1.{}.rpm",
                    std::env::consts::ARCH
                ))
            });
            Some(Packages {
                _dir: dir,
                deb,
                rpm,
            })
        })
        .as_ref()
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn host_deb_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("no Debian architecture for {other}"),
    }
}

/// Every regular file a package must hold, with its mode. `unit_dir` and `zsh_dir` are
/// where the distribution family keeps those.
fn expected_files(unit_dir: &str, zsh_dir: &str) -> BTreeMap<String, u32> {
    let mut files = BTreeMap::from([
        ("/usr/bin/imds-credd".to_string(), 0o755),
        (format!("{unit_dir}/imds-credd.service"), 0o644),
        (format!("{unit_dir}/imds-credd.socket"), 0o644),
        (format!("{unit_dir}/imds-credd-container.socket"), 0o644),
        ("/etc/imds-credd/config.toml".to_string(), 0o644),
        (
            "/usr/share/bash-completion/completions/imds-credd".to_string(),
            0o644,
        ),
        (format!("{zsh_dir}/_imds-credd"), 0o644),
        (
            "/usr/share/fish/vendor_completions.d/imds-credd.fish".to_string(),
            0o644,
        ),
        ("/usr/share/doc/imds-credd/copyright".to_string(), 0o644),
    ]);
    for page in expected_man_pages() {
        files.insert(format!("/usr/share/man/man1/{page}.gz"), 0o644);
    }
    files
}

/// `-rwxr-xr-x` → 0o755 (regular files only).
fn mode_of(listing_mode: &str) -> u32 {
    listing_mode[1..]
        .chars()
        .enumerate()
        .filter(|(_, c)| *c != '-')
        .map(|(i, _)| 1 << (8 - i))
        .sum()
}

#[test]
fn deb_lists_every_file_with_its_mode_owned_by_root() {
    let Some(packages) = packages() else { return };
    let listing = stdout_of(Command::new("dpkg-deb").arg("-c").arg(&packages.deb));
    let mut files = BTreeMap::new();
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[1], "root/root", "{line}");
        let path = fields[5].trim_start_matches('.').to_string();
        if fields[0].starts_with('d') {
            assert_eq!(fields[0], "drwxr-xr-x", "{line}");
        } else {
            assert!(fields[0].starts_with('-'), "only files and folders: {line}");
            files.insert(path, mode_of(fields[0]));
        }
    }
    assert_eq!(
        files,
        expected_files("/lib/systemd/system", "/usr/share/zsh/vendor-completions")
    );
}

#[test]
fn deb_control_names_version_arch_dependencies_conffile_and_scripts() {
    let Some(packages) = packages() else { return };
    let field = |name: &str| {
        stdout_of(
            Command::new("dpkg-deb")
                .arg("-f")
                .arg(&packages.deb)
                .arg(name),
        )
        .trim()
        .to_string()
    };
    assert_eq!(field("Package"), "imds-credd");
    assert_eq!(field("Version"), format!("{VERSION}-1"));
    assert_eq!(field("Architecture"), host_deb_arch());
    let depends = field("Depends");
    assert!(depends.contains("passwd"), "{depends}");
    assert!(depends.contains("libc6 (>= 2."), "{depends}");

    let control = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb")
        .arg("-e")
        .arg(&packages.deb)
        .arg(control.path().join("DEBIAN")));
    let debian = control.path().join("DEBIAN");
    assert_eq!(
        std::fs::read_to_string(debian.join("conffiles")).unwrap(),
        "/etc/imds-credd/config.toml\n"
    );
    for script in ["postinst", "prerm", "postrm"] {
        let path = debian.join(script);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "{script}");
        run(Command::new("sh").arg("-n").arg(&path));
    }
    let postinst = std::fs::read_to_string(debian.join("postinst")).unwrap();
    assert!(
        postinst.contains("groupadd \"$@\" --system imds-credd"),
        "user snippet inlined"
    );
    assert!(!postinst.contains("#CREATE_USER#"));
}

/// A root for `dpkg --root` with an empty package database and the account files that
/// groupadd/useradd edit there.
fn throwaway_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let dpkg = root.path().join("var/lib/dpkg");
    std::fs::create_dir_all(dpkg.join("info")).unwrap();
    std::fs::create_dir_all(dpkg.join("updates")).unwrap();
    std::fs::write(dpkg.join("status"), "").unwrap();
    std::fs::write(dpkg.join("available"), "").unwrap();
    let etc = root.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(etc.join("group"), "root:x:0:\n").unwrap();
    std::fs::write(etc.join("shadow"), "").unwrap();
    std::fs::write(etc.join("gshadow"), "").unwrap();
    root
}

fn dpkg_in(root: &Path) -> Command {
    let mut command = Command::new("dpkg");
    command
        .arg(format!("--root={}", root.display()))
        // Maintainer scripts run on the host with DPKG_ROOT set; they act only inside it.
        .args(["--force-script-chrootless", "--log=/dev/null"])
        // The empty root has no libc6/passwd packages to satisfy Depends.
        .arg("--force-depends");
    command
}

#[test]
fn deb_installs_into_a_throwaway_root_and_purges_cleanly() {
    let Some(packages) = packages() else { return };
    if !common::require::root("install with dpkg --root (files are chowned)")
        || !common::require::tool("dpkg")
        || !common::require::tool("deb-systemd-helper")
    {
        return;
    }
    let host_accounts = (
        std::fs::read("/etc/group").unwrap(),
        std::fs::read("/etc/passwd").unwrap(),
    );
    let root = throwaway_root();
    let r = root.path();
    run(dpkg_in(r).arg("-i").arg(&packages.deb));

    for (path, mode) in expected_files("/lib/systemd/system", "/usr/share/zsh/vendor-completions") {
        let meta = std::fs::symlink_metadata(r.join(path.trim_start_matches('/')))
            .unwrap_or_else(|e| panic!("{path} not installed: {e}"));
        assert!(meta.is_file(), "{path}");
        assert_eq!(meta.permissions().mode() & 0o7777, mode, "{path}");
        assert_eq!((meta.uid(), meta.gid()), (0, 0), "{path}");
    }
    let config_dir = std::fs::metadata(r.join("etc/imds-credd")).unwrap();
    assert_eq!(config_dir.permissions().mode() & 0o7777, 0o755);

    // postinst made the daemon's user and group inside the root, and enabled the unit.
    let group = std::fs::read_to_string(r.join("etc/group")).unwrap();
    let passwd = std::fs::read_to_string(r.join("etc/passwd")).unwrap();
    let gid = group
        .lines()
        .find_map(|l| l.strip_prefix("imds-credd:x:"))
        .unwrap_or_else(|| panic!("no imds-credd group in {group}"))
        .trim_end_matches(':')
        .to_string();
    let user = passwd
        .lines()
        .find(|l| l.starts_with("imds-credd:"))
        .unwrap_or_else(|| panic!("no imds-credd user in {passwd}"));
    let fields: Vec<&str> = user.split(':').collect();
    assert_eq!(fields[3], gid, "the user's primary group is imds-credd");
    assert_eq!(fields[6], "/usr/sbin/nologin");
    let wants = r.join("etc/systemd/system/multi-user.target.wants/imds-credd.service");
    assert_eq!(
        std::fs::read_link(&wants).unwrap(),
        Path::new("/lib/systemd/system/imds-credd.service")
    );
    // ... and touched nothing of the running system.
    assert_eq!(
        host_accounts,
        (
            std::fs::read("/etc/group").unwrap(),
            std::fs::read("/etc/passwd").unwrap()
        )
    );

    // The installed files work together: the binary runs and accepts the installed config.
    let installed = r.join("usr/bin/imds-credd");
    let version = stdout_of(Command::new(&installed).arg("--version"));
    assert_eq!(version.trim(), format!("imds-credd {VERSION}"));
    run(Command::new(&installed)
        .args(["check-config", "--config"])
        .arg(r.join("etc/imds-credd/config.toml")));

    // A second configure (reinstall/upgrade path) finds the user and group and keeps them.
    run(dpkg_in(r).arg("-i").arg(&packages.deb));
    let group_again = std::fs::read_to_string(r.join("etc/group")).unwrap();
    assert_eq!(
        group_again.matches("imds-credd:").count(),
        1,
        "{group_again}"
    );

    run(dpkg_in(r).args(["--purge", "imds-credd"]));
    assert!(!r.join("usr/bin/imds-credd").exists());
    assert!(
        !r.join("etc/imds-credd/config.toml").exists(),
        "purge removes the conffile"
    );
    assert!(
        std::fs::symlink_metadata(&wants).is_err(),
        "purge disables the unit"
    );
    let group_after = std::fs::read_to_string(r.join("etc/group")).unwrap();
    assert!(
        group_after.contains("imds-credd:"),
        "the group outlives the package"
    );
}

#[test]
fn rpm_lists_every_file_with_its_mode_config_and_scriptlets() {
    let Some(packages) = packages() else { return };
    let Some(rpm) = &packages.rpm else {
        let _ = common::require::unavailable("needs the .rpm, which was not built");
        return;
    };
    // `rpm -qlvp`: "-rwxr-xr-x 1 root root 123 date time /usr/bin/imds-credd".
    let listing = stdout_of(Command::new("rpm").arg("-qlvp").arg(rpm));
    let mut files = BTreeMap::new();
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!((fields[2], fields[3]), ("root", "root"), "{line}");
        if fields[0].starts_with('-') {
            files.insert(fields[fields.len() - 1].to_string(), mode_of(fields[0]));
        }
    }
    assert_eq!(
        files,
        expected_files("/usr/lib/systemd/system", "/usr/share/zsh/site-functions")
    );
    let config = stdout_of(Command::new("rpm").arg("-qpc").arg(rpm));
    assert_eq!(config.trim(), "/etc/imds-credd/config.toml");
    let scripts = stdout_of(Command::new("rpm").args(["-qp", "--scripts"]).arg(rpm));
    for expected in [
        "preinstall scriptlet",
        "useradd \"$@\" --system --gid imds-credd",
        "systemctl --no-reload enable imds-credd.service",
        "disable --now imds-credd.socket imds-credd-container.socket imds-credd.service",
        "try-restart imds-credd.service",
    ] {
        assert!(
            scripts.contains(expected),
            "missing {expected:?} in:\n{scripts}"
        );
    }
    let arch = stdout_of(
        Command::new("rpm")
            .args(["-qp", "--qf", "%{ARCH}"])
            .arg(rpm),
    );
    assert_eq!(arch, std::env::consts::ARCH);
}
