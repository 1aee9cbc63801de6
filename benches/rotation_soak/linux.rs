//! The Linux body of the `rotation_soak` bench (see `benches/rotation_soak.rs`).

#[path = "../common/load.rs"]
mod load;

use imds_credd::demo::simulator::{ImdsSimulator, SimulatorOptions};
use load::{get_once, rss_kib};
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_imds-credd");
const WARM_UP: Duration = Duration::from_secs(10);
const READ_EVERY: Duration = Duration::from_millis(50);

pub fn main() {
    let seconds = load::setting("ROTATION_SOAK_SECONDS", 120);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(soak(Duration::from_secs(seconds)));
}

async fn soak(length: Duration) {
    let sim = ImdsSimulator::start(SimulatorOptions {
        credential_lifetime: Duration::from_secs(40),
        rotate_every: Duration::from_secs(15),
        ..SimulatorOptions::default()
    })
    .await
    .expect("simulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("credentials.sock");
    let file_sink = format!(
        "path={},profile=soak",
        dir.path().join("credentials").display()
    );
    let env_sink = format!("path={}", dir.path().join("credentials.env").display());
    let mut child = Command::new(BIN)
        .args([
            "run",
            "--config",
            "/dev/null",
            "--imds-endpoint",
            &sim.endpoint(),
        ])
        .args(["--socket", socket.to_str().expect("utf-8 path")])
        .args([
            "--refresh-before-expiry",
            "20s",
            "--refresh-max-interval",
            "5s",
        ])
        .args([
            "--file",
            &file_sink,
            "--env",
            &env_sink,
            "--log-level",
            "warn",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("daemon starts");
    let pid = child.id();

    let started = Instant::now();
    let mut keys = BTreeSet::new();
    let mut reads = 0u64;
    let mut rss_after_warm_up = None;
    while started.elapsed() < length + WARM_UP {
        if socket.exists() {
            let body = get_once(&socket).await;
            let doc: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            if let Some(key) = doc["AccessKeyId"].as_str() {
                keys.insert(key.to_string());
                reads += 1;
            }
        }
        if rss_after_warm_up.is_none() && started.elapsed() >= WARM_UP {
            rss_after_warm_up = Some(rss_kib(pid, "VmRSS"));
        }
        tokio::time::sleep(READ_EVERY).await;
    }
    let rss_end = rss_kib(pid, "VmRSS");
    let peak = rss_kib(pid, "VmHWM");
    let _ = child.kill();
    let _ = child.wait();

    let warm = rss_after_warm_up.expect("warm-up reached");
    println!(
        "rotation soak: {} s after {} s warm-up",
        length.as_secs(),
        WARM_UP.as_secs()
    );
    println!("  credential sets served:  {}", keys.len());
    println!("  socket reads answered:   {reads}");
    println!("  IMDS requests:           {:?}", sim.counts());
    println!(
        "  RSS after warm-up {:.2} MiB, at the end {:.2} MiB (change {:+.2} MiB), peak {:.2} MiB",
        warm as f64 / 1024.0,
        rss_end as f64 / 1024.0,
        (rss_end as f64 - warm as f64) / 1024.0,
        peak as f64 / 1024.0
    );
}
