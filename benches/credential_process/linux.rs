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

    let ours = time_calls(calls, || {
        let output = sandbox
            .client("credential-process", &[])
            .stderr(Stdio::inherit())
            .output()
            .expect("credential-process runs");
        assert!(output.status.success(), "credential-process failed");
        let creds = Credentials::from_process_json(&output.stdout).expect("valid document");
        assert_eq!(creds, expected, "credential-process gave other credentials");
    });

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

    let ours_median = percentile(&ours, 50);
    let reference_median = percentile(&reference, 50);
    println!("credential-process via the daemon socket ({calls} calls):");
    println!(
        "  median {:.2} ms, p90 {:.2} ms, min {:.2} ms",
        ms(ours_median),
        ms(percentile(&ours, 90)),
        ms(ours[0])
    );
    println!("fresh python3 + botocore from IMDS ({python_calls} calls):");
    println!(
        "  median {:.1} ms, p90 {:.1} ms, min {:.1} ms",
        ms(reference_median),
        ms(percentile(&reference, 90)),
        ms(reference[0])
    );
    println!(
        "ratio of medians: {:.0}x faster",
        reference_median.as_secs_f64() / ours_median.as_secs_f64()
    );
}

fn count_from_env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

/// Runs `call` a few times untimed (page cache, the daemon's first answers), then `n`
/// times timed; returns the wall times sorted.
fn time_calls(n: usize, mut call: impl FnMut()) -> Vec<Duration> {
    for _ in 0..3 {
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
