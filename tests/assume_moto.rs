//! An `[[assume]]` profile against an STS we did not write: moto's server (from PyPI, made
//! by `tests/support/setup-python.sh`) over real HTTPS on loopback. The daemon's rustls
//! client (`ring`, system trust roots) trusts a throwaway CA through `SSL_CERT_FILE`, which
//! the native-roots loader honours, as it would a corporate CA on an instance.
//!
//! moto checks no signature (the loopback STS in `tests/assume.rs` does); this test proves
//! the TLS path, the request format and the XML parsing against an independent
//! implementation.
#![allow(clippy::disallowed_methods)]
// Tests and benches time real processes and servers.
// These tests drive the Linux build (unix socket, signals, file modes); the Windows
// build is checked by `windows_wine.rs`.
#![cfg(unix)]

mod common;

use common::{Harness, HarnessOptions};
use imds_credd::clock::{Clock, ManualClock};
use imds_credd::config::AssumeConfig;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const ROLE_ARN: &str = "arn:aws:iam::222222222222:role/efgh";

/// A moto server process, killed when dropped.
struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn moto_server_path() -> PathBuf {
    common::aws_clients::python_bin().join("moto_server")
}

fn run(program: &str, args: &[&str], dir: &Path) {
    let status = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(status.success(), "{program} {args:?} failed");
}

/// A CA, and a certificate for 127.0.0.1 that it signed, in `dir`: `ca.pem`, `cert.pem`,
/// `key.pem`.
fn make_certificates(dir: &Path) {
    let days = ["-days", "1"];
    run(
        "openssl",
        &[
            &[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
            ][..],
            &["-out", "ca.pem", "-subj", "/CN=imds-credd test CA"],
            &days,
        ]
        .concat(),
        dir,
    );
    run(
        "openssl",
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
        dir,
    );
    std::fs::write(
        dir.join("leaf.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(
        "openssl",
        &[
            &[
                "x509", "-req", "-in", "cert.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            ][..],
            &[
                "-CAcreateserial",
                "-out",
                "cert.pem",
                "-extfile",
                "leaf.ext",
            ],
            &days,
        ]
        .concat(),
        dir,
    );
}

/// Starts moto with TLS on a free loopback port and waits until it accepts connections.
async fn start_moto(dir: &Path) -> (Moto, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(moto_server_path())
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", "cert.pem", "-k", "key.pem"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server starts");
    let moto = Moto(child);
    for _ in 0..300 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (moto, port);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("moto_server did not listen on port {port} within 15 s");
}

#[tokio::test]
async fn chained_credentials_from_moto_over_https() {
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let (_moto, port) = start_moto(certs.path()).await;
    // Read by rustls-native-certs when the STS client loads the trust roots; this test
    // binary has this one test, so no other thread reads the environment meanwhile.
    std::env::set_var("SSL_CERT_FILE", certs.path().join("ca.pem"));

    let clock = ManualClock::starting_now();
    let mut options = HarnessOptions::new(&clock);
    options.configure = Box::new(move |config| {
        config.assumes.push(AssumeConfig {
            profile: "audit".into(),
            role_arn: ROLE_ARN.into(),
            external_id: "ext-1".into(),
            session_name: String::new(),
            duration: Duration::from_secs(3600),
            region: String::new(),
            sts_endpoint: format!("https://127.0.0.1:{port}"),
        })
    });
    let h = Harness::start_with(clock, options).await;
    let mut profile = h.daemon.profiles["audit"].clone();
    let waited = tokio::time::timeout(
        Duration::from_secs(20),
        profile.wait_for(|s| s.credentials.is_some() || s.last_error.is_some()),
    )
    .await;
    let state = match waited {
        Ok(Ok(state)) => state.clone(),
        _ => panic!("no answer from moto; logs:\n{}", h.logs.text()),
    };
    assert_eq!(state.last_error, None, "logs:\n{}", h.logs.text());
    let creds = state.credentials.unwrap();
    assert!(creds.access_key_id.starts_with("ASIA"), "{creds:?}");
    assert!(!creds.secret_access_key.is_empty() && !creds.session_token.is_empty());
    let lifetime = creds
        .expiration
        .duration_since(h.clock.now())
        .expect("expires in the future");
    assert!(
        lifetime > Duration::from_secs(3500) && lifetime <= Duration::from_secs(3700),
        "DurationSeconds=3600 honoured: {lifetime:?}"
    );
    assert!(h
        .logs
        .contains("assumed-role/efgh/imds-credd-i-0123456789abcdef0"));
    common::assert_no_credential_secrets(&h.logs.text(), &[(*creds).clone()], "the logs");
    h.finish().await;
}
