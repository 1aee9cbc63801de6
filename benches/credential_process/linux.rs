//! The Linux body of the bench; `../credential_process.rs` says what it measures.

#[path = "../../tests/common/aws_clients.rs"]
mod aws_clients;
#[path = "../../tests/common/daemon_process.rs"]
mod daemon_process;

use aws_clients::python_bin;
use daemon_process::Sandbox;
use imds_credd::credentials::Credentials;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What the reference process runs: botocore's default chain, which ends at the IMDS
/// provider when nothing else offers credentials.
const BOTOCORE_SCRIPT: &str = "\
import botocore.session
creds = botocore.session.get_session().get_credentials()
print(creds.access_key if creds else '')
";

pub fn main() {
    let calls = count_from_env("BENCH_CALLS", 200);
    let python_calls = count_from_env("BENCH_PYTHON_CALLS", 20);
    let sandbox = Sandbox::healthy();
    sandbox.wait_until("valid credentials", Duration::from_secs(15), || {
        sandbox.served().is_some()
    });
    let expected = sandbox.current();

    // Our call, the floor of any process (`/bin/true`) and our binary doing nothing
    // (`--version`), one call of each in turn, so that the machine's load hits all alike.
    let true_bin = which("true");
    let mut floor = Vec::with_capacity(calls);
    let mut version = Vec::with_capacity(calls);
    let mut ours = Vec::with_capacity(calls);
    for round in 0..calls + WARM_UP {
        let timed = [
            time_one(|| run_quietly(Command::new(&true_bin))),
            time_one(|| {
                let mut command = Command::new(daemon_process::BIN);
                command.arg("--version");
                run_quietly(command)
            }),
            time_one(|| {
                let output = sandbox
                    .client("credential-process", &[])
                    .stderr(Stdio::inherit())
                    .output()
                    .expect("credential-process runs");
                assert!(output.status.success(), "credential-process failed");
                let creds = Credentials::from_process_json(&output.stdout).expect("valid document");
                assert_eq!(creds, expected, "credential-process gave other credentials");
            }),
        ];
        if round >= WARM_UP {
            floor.push(timed[0]);
            version.push(timed[1]);
            ours.push(timed[2]);
        }
    }
    for times in [&mut floor, &mut version, &mut ours] {
        times.sort();
    }

    let python = python_bin().join("python");
    let home = sandbox.path("home");
    std::fs::create_dir(&home).expect("empty home");
    let reference = time_calls(python_calls, || {
        let mut command = Command::new(&python);
        command
            .args(["-c", BOTOCORE_SCRIPT])
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", sandbox.sim.endpoint())
            .env("HOME", &home)
            .env("AWS_CONFIG_FILE", home.join("config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", home.join("credentials"))
            .stderr(Stdio::inherit());
        for name in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_EC2_METADATA_DISABLED",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
        ] {
            command.env_remove(name);
        }
        let output = command.output().expect("python runs");
        assert!(output.status.success(), "botocore failed");
        let key = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            key.trim(),
            expected.access_key_id,
            "botocore got other credentials"
        );
    });

    let command = "`cargo bench --bench credential_process`";
    println!("| What | imds-credd | Reference, same run | Ratio | Command |");
    println!("|---|---|---|---|---|");
    let median = |times: &[Duration]| percentile(times, 50);
    println!(
        "| `credential-process` against a running daemon, {calls} calls alternating with the references | median {:.2} ms (p90 {:.2}, min {:.2}) | `/bin/true`: median {:.2} ms (p90 {:.2}, min {:.2}) | {:.2}× | {command} |",
        ms(median(&ours)),
        ms(percentile(&ours, 90)),
        ms(ours[0]),
        ms(median(&floor)),
        ms(percentile(&floor, 90)),
        ms(floor[0]),
        ratio(median(&ours), median(&floor)),
    );
    println!(
        "| `imds-credd --version` (starting the binary, no work), same rounds | median {:.2} ms | `/bin/true`: median {:.2} ms | {:.2}× | {command} |",
        ms(median(&version)),
        ms(median(&floor)),
        ratio(median(&version), median(&floor)),
    );
    println!(
        "| The same credentials for a Python cron job: fresh `python3` + botocore from IMDS, {python_calls} calls | `credential-process`: median {:.2} ms | median {:.1} ms (p90 {:.1}, min {:.1}) | {:.0}× faster | {command} |",
        ms(median(&ours)),
        ms(median(&reference)),
        ms(percentile(&reference, 90)),
        ms(reference[0]),
        ratio(median(&reference), median(&ours)),
    );
}

/// Untimed rounds first: page cache, the daemon's first answers.
const WARM_UP: usize = 3;

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// The wall time of one `call`.
fn time_one(call: impl FnOnce()) -> Duration {
    let start = Instant::now();
    call();
    start.elapsed()
}

/// Runs `command` with its output discarded; panics unless it succeeds.
fn run_quietly(mut command: Command) {
    let status = command
        .stdout(Stdio::null())
        .status()
        .expect("the command runs");
    assert!(status.success(), "{command:?} failed");
}

/// The first `name` on PATH.
fn which(name: &str) -> std::path::PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|folder| folder.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("no {name} on PATH"))
}

fn count_from_env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

/// Runs `call` a few times untimed, then `n` times timed; returns the wall times sorted.
fn time_calls(n: usize, mut call: impl FnMut()) -> Vec<Duration> {
    for _ in 0..WARM_UP {
        call();
    }
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let start = Instant::now();
            call();
            start.elapsed()
        })
        .collect();
    times.sort();
    times
}

/// The `p`th percentile (nearest rank) of sorted `times`.
fn percentile(times: &[Duration], p: usize) -> Duration {
    let rank = (times.len() * p).div_ceil(100).max(1);
    times[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
