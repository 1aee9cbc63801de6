//! What a client of the in-process daemon sees, read the way clients read it: the HTTP
//! answer on the unix socket, the `[[file]]` and `[[env]]` sinks read back from disk, and
//! the `imds-credd status` command run as a child process.

use super::daemon_process::BIN;
use super::unix_http;
use super::Harness;
use imds_credd::config::{Config, EnvFormat, EnvSinkConfig, FileSinkConfig, SinkConfig};
use imds_credd::credentials::Credentials;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The profile the harness's credentials file holds.
pub const PROFILE: &str = "instance";

/// Adds one credentials file and one `sh` env file in `dir` to `config`.
pub fn add_file_sinks(config: &mut Config, dir: &Path) {
    config.files.push(FileSinkConfig {
        sink: SinkConfig::new(credentials_file(dir)),
        profile: PROFILE.into(),
    });
    config.envs.push(EnvSinkConfig {
        sink: SinkConfig::new(env_file(dir)),
        format: EnvFormat::Sh,
    });
}

pub fn credentials_file(dir: &Path) -> PathBuf {
    dir.join("credentials")
}

pub fn env_file(dir: &Path) -> PathBuf {
    dir.join("credentials.env")
}

/// One reading of everything a client can see.
#[derive(Debug)]
pub struct ClientView {
    /// `GET /v1/credentials` on the socket.
    pub credentials: unix_http::Answer,
    /// `GET /v1/status` on the socket.
    pub status_doc: serde_json::Value,
    /// The credentials file, if it exists.
    pub file: Option<String>,
    /// The env file, if it exists.
    pub env: Option<String>,
    /// `imds-credd status`: its exit code and what it printed.
    pub status_exit: Option<i32>,
    pub status_text: String,
}

impl ClientView {
    /// Checks that `/v1/status` and `imds-credd status` both report an error containing
    /// `fragment` (or none at all when `None`).
    pub fn assert_error(&self, fragment: Option<&str>, what: &str) {
        let shown = self
            .status_text
            .lines()
            .find_map(|line| line.strip_prefix("last error:"))
            .map(str::trim)
            .unwrap_or_else(|| panic!("{what}: no last error line in {}", self.status_text));
        match fragment {
            Some(fragment) => {
                let api = self.status_doc["last_error"].as_str().unwrap_or_default();
                assert!(
                    api.contains(fragment),
                    "{what}: /v1/status last_error {api:?}"
                );
                assert!(shown.contains(fragment), "{what}: status says {shown:?}");
            }
            None => {
                assert!(self.status_doc["last_error"].is_null(), "{what}: {self:#?}");
                assert_eq!(shown, "none", "{what}");
            }
        }
    }

    /// Whether the files hold `expected` (or, for `None`, hold no credentials).
    fn files_show(&self, expected: Option<&Credentials>) -> bool {
        match expected {
            Some(creds) => [&self.file, &self.env].iter().all(|text| {
                text.as_deref().is_some_and(|text| {
                    text.contains(&creds.access_key_id)
                        && text.contains(creds.session_token.expose())
                })
            }),
            None => {
                self.env.is_none()
                    && !self
                        .file
                        .as_deref()
                        .is_some_and(|text| text.contains("aws_access_key_id"))
            }
        }
    }
}

impl Harness {
    /// Reads the socket, the files and `imds-credd status` once.
    pub async fn client_view(&self) -> ClientView {
        let socket = &self.daemon_socket;
        let credentials = unix_http::request(socket, hyper::Method::GET, "/v1/credentials")
            .await
            .expect("GET /v1/credentials answers");
        let status_doc = unix_http::request(socket, hyper::Method::GET, "/v1/status")
            .await
            .expect("GET /v1/status answers")
            .json();
        let status = tokio::process::Command::new(BIN)
            .arg("status")
            .arg("--socket")
            .arg(socket)
            .output()
            .await
            .expect("imds-credd status runs");
        ClientView {
            credentials,
            status_doc,
            file: std::fs::read_to_string(credentials_file(self.dir.path())).ok(),
            env: std::fs::read_to_string(env_file(self.dir.path())).ok(),
            status_exit: status.status.code(),
            status_text: String::from_utf8_lossy(&status.stdout).into_owned(),
        }
    }

    /// Waits (real time, bounded: the sinks write on their own) until the files show
    /// `expected`, then checks that every client sees exactly that: the socket answers 200
    /// with that set (503 with a JSON error when `None`), both files hold it (the env file
    /// is gone and the profile emptied when `None`), and `imds-credd status` exits 0 (1).
    pub async fn assert_clients_see(
        &self,
        expected: Option<&Credentials>,
        what: &str,
    ) -> ClientView {
        let deadline = Instant::now() + Duration::from_secs(10);
        let view = loop {
            let view = self.client_view().await;
            if view.files_show(expected) || Instant::now() > deadline {
                break view;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(
            view.files_show(expected),
            "{what}: the files show {expected:?}: {view:#?}"
        );
        match expected {
            Some(creds) => {
                assert_eq!(view.credentials.status, 200, "{what}: {view:#?}");
                let doc = view.credentials.json();
                assert_eq!(doc["AccessKeyId"], creds.access_key_id.as_str(), "{what}");
                assert_eq!(doc["SessionToken"], creds.session_token.expose(), "{what}");
                assert_eq!(
                    doc["Expiration"],
                    creds.expiration_rfc3339().as_str(),
                    "{what}"
                );
                assert_eq!(view.status_doc["credentials_valid"], true, "{what}");
                assert_eq!(view.status_exit, Some(0), "{what}: {}", view.status_text);
            }
            None => {
                assert_eq!(view.credentials.status, 503, "{what}: {view:#?}");
                assert!(view.credentials.json()["message"].is_string(), "{what}");
                assert_eq!(view.status_doc["credentials_valid"], false, "{what}");
                assert_eq!(view.status_exit, Some(1), "{what}: {}", view.status_text);
            }
        }
        view
    }
}
