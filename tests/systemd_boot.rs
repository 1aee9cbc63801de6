//! The package under a real systemd: a Debian 12 minbase root made by `debootstrap` (built
//! once, cached under the target folder), the `.deb` from `packaging/build-packages.sh`
//! installed into a copy of it, booted with `systemd-nspawn` (systemd as PID 1), and
//! `tests/support/systemd-probe.sh` run inside as a unit after `multi-user.target`. The
//! machine runs in a network namespace of the test's own (the container address the
//! package puts up lives only there), and the IMDS simulator listens on that namespace's
//! loopback, bound from a thread that entered it. The probe writes one
//! line per check; this test prints the table and fails on any failed check, and scans the
//! booted system's journal for every secret the simulator issued. The unit checks start
//! oneshot units with `DynamicUser=yes` and `LoadCredential=` from the unit-credentials
//! socket, and a forged peer of another uid.
//!
//! Needs root, `debootstrap`, `systemd-nspawn` and `ip` (`.ci/run` installs them) and, the first
//! time, network to deb.debian.org (about a minute). Without them it says why in one line
//! and passes, except in CI (`CI` set), where that is a failure.
#![allow(clippy::disallowed_methods)] // Tests and benches time real processes and servers.
#![cfg(target_os = "linux")]

mod common;

use common::netns::{in_namespace, Netns};
use imds_credd::demo::simulator::{Fault, ImdsSimulator, SimulatorOptions, Target};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_imds-credd");
const MIRROR: &str = "http://deb.debian.org/debian";
/// Marks a finished root: a root without it is a debootstrap that was interrupted.
const COMPLETE: &str = ".imds-credd-complete";
/// The whole boot, probe included; the probe's own waits add up to well under this.
const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn has_tool(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Why this machine cannot run the test, if it cannot.
fn missing_prerequisite() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root (systemd-nspawn and debootstrap need it)".into());
    }
    for tool in ["debootstrap", "systemd-nspawn", "dpkg-deb", "ip"] {
        if !has_tool(tool) {
            return Some(format!(
                "{tool} is not installed (apt-get install debootstrap systemd-container iproute2)"
            ));
        }
    }
    None
}

fn run(command: &mut Command) {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The cached Debian 12 root, made once under an exclusive lock (test binaries of two
/// worktrees may start it at the same time): debootstrap into a temporary folder, marked
/// complete, then renamed into place.
fn debian_root() -> PathBuf {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("systemd-boot");
    fs::create_dir_all(&cache).unwrap();
    // The name says what the root holds: a cached root of another package list is not reused.
    let root = cache.join("bookworm-python3");
    let lock = fs::File::create(cache.join("lock")).unwrap();
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap();
    if root.join(COMPLETE).exists() {
        return root;
    }
    let partial = cache.join("bookworm-python3.partial");
    let _ = fs::remove_dir_all(&partial);
    let _ = fs::remove_dir_all(&root);
    let started = Instant::now();
    run(Command::new("debootstrap")
        .args([
            "--variant=minbase",
            // python3-minimal: the probe's forged LoadCredential= peer binds an abstract
            // socket name, which nothing else in a minimal Debian can.
            "--include=systemd,systemd-sysv,dbus,curl,passwd,python3-minimal",
            "bookworm",
        ])
        .arg(&partial)
        .arg(MIRROR));
    fs::write(partial.join(COMPLETE), "").unwrap();
    fs::rename(&partial, &root).unwrap();
    println!("debootstrap took {:?}", started.elapsed());
    root
}

/// The `.deb` of this test's build of the binary.
fn build_deb(out: &Path) -> PathBuf {
    run(Command::new(repo().join("packaging/build-packages.sh"))
        .args(["--no-rpm", "--binary", BIN, "--out"])
        .arg(out));
    fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("build-packages.sh made a .deb")
}

/// A copy of the cached root with the package, the probe and its unit in place.
fn prepare_machine(dir: &Path, shared: &Path, port: u16) -> PathBuf {
    let machine = dir.join("root");
    run(Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(debian_root())
        .arg(&machine));
    let deb = build_deb(&dir.join("packages"));
    fs::copy(deb, machine.join("root/imds-credd.deb")).unwrap();
    fs::copy(
        repo().join("tests/support/systemd-probe.sh"),
        machine.join("usr/local/bin/systemd-probe"),
    )
    .unwrap();
    let unit = "[Unit]\nDescription=imds-credd probe\nAfter=multi-user.target\n\n\
                [Service]\nType=oneshot\nExecStart=/usr/local/bin/systemd-probe\n\
                StandardOutput=journal+console\n\n[Install]\nWantedBy=multi-user.target\n";
    fs::write(machine.join("etc/systemd/system/probe.service"), unit).unwrap();
    let wants = machine.join("etc/systemd/system/multi-user.target.wants");
    fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink(
        "/etc/systemd/system/probe.service",
        wants.join("probe.service"),
    )
    .unwrap();
    // No getty on the console: nothing would read it.
    let _ =
        fs::remove_file(machine.join("etc/systemd/system/getty.target.wants/getty@tty1.service"));
    fs::write(shared.join("imds-port"), port.to_string()).unwrap();
    machine
}

/// Arms the faults (and rotations) the probe asks for while the machine runs.
fn serve_probe_requests(sim: &ImdsSimulator, shared: &Path) {
    if shared.join("request-rotate").exists() && !shared.join("request-rotate.done").exists() {
        sim.rotate_now();
        fs::write(shared.join("request-rotate.done"), "").unwrap();
    }
    let request = shared.join("request-malformed");
    if request.exists() && !shared.join("request-malformed.done").exists() {
        let field = Fault::Field {
            name: "AccessKeyId",
            value: "ASIAÉXAMPLEÉXAMPLEÄ1".into(),
        };
        sim.inject(Target::Credentials, field, 1);
        fs::write(shared.join("request-malformed.done"), "").unwrap();
    }
}

#[test]
fn the_package_under_a_booted_systemd_passes_the_probe() {
    if let Some(why) = missing_prerequisite() {
        let _ = common::require::unavailable(&why);
        return;
    }
    let started = Instant::now();
    let netns = Netns::create(format!("icd-boot-{}", std::process::id()));
    let (_runtime, sim) = in_namespace(&netns.name, || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let sim = runtime
            .block_on(ImdsSimulator::start(SimulatorOptions::default()))
            .unwrap();
        (runtime, sim)
    });
    let port: u16 = sim.endpoint().rsplit(':').next().unwrap().parse().unwrap();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let shared = dir.path().join("shared");
    fs::create_dir(&shared).unwrap();
    let machine = prepare_machine(dir.path(), &shared, port);
    let prepared = started.elapsed();

    let console = fs::File::create(dir.path().join("console.log")).unwrap();
    let mut nspawn = Command::new("systemd-nspawn")
        .arg("-D")
        .arg(&machine)
        .args(["--register=no", "--keep-unit", "--quiet", "--boot"])
        .arg(format!("--network-namespace-path={}", netns.path()))
        // The namespace is the test's own: its root may put addresses on lo, as an
        // instance's root may (the unit's ExecStartPre=+ container-address up).
        .arg("--capability=CAP_NET_ADMIN")
        .arg(format!("--bind={}:/shared", shared.display()))
        .stdin(Stdio::null())
        .stdout(console.try_clone().unwrap())
        .stderr(console)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + BOOT_TIMEOUT;
    let status = loop {
        serve_probe_requests(&sim, &shared);
        if let Some(status) = nspawn.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = nspawn.kill();
            let _ = nspawn.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let console = fs::read_to_string(dir.path().join("console.log")).unwrap_or_default();
    let results = fs::read_to_string(shared.join("results")).unwrap_or_default();
    println!("check | result | detail");
    for line in results.lines() {
        println!("{}", line.replace('\t', " | "));
    }
    println!(
        "systemd boot test: {:?} in all ({:?} to prepare the root and the package)",
        started.elapsed(),
        prepared
    );
    let tail: String = console
        .lines()
        .rev()
        .take(60)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        status.is_some(),
        "the machine did not power off in time; console:\n{tail}"
    );
    assert!(
        shared.join("done").exists(),
        "the probe did not finish; console:\n{tail}"
    );
    let failed: Vec<&str> = results.lines().filter(|l| !l.contains("\tok\t")).collect();
    assert_eq!(results.lines().count(), 17, "{results}");
    assert!(failed.is_empty(), "failed checks:\n{}", failed.join("\n"));

    let journal = fs::read_to_string(shared.join("journal.txt")).unwrap();
    assert!(
        journal.contains("published new credentials"),
        "journal:\n{journal}"
    );
    common::assert_no_secrets(&journal, &sim, "the booted system's journal");
    common::assert_no_secrets(&console, &sim, "the console");
    println!(
        "no_secret_in_journal | ok | {} journal lines scanned",
        journal.lines().count()
    );
}
