//! The tables of the configuration file (`docs/DESIGN.md`, "Configuration") as types,
//! with the default of every key: what `serde` fills from the TOML, before the rules across
//! keys of `validate`.

use super::values::{self, EndpointMode, EnvFormat, FileMode, LogFormat, LogLevel};
use super::DEFAULT_SOCKET_PATH;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// The whole configuration. Every field has a default, so an empty file (or none) is valid.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub imds: ImdsConfig,
    pub refresh: RefreshConfig,
    pub socket: SocketConfig,
    #[serde(rename = "file")]
    pub files: Vec<FileSinkConfig>,
    #[serde(rename = "env")]
    pub envs: Vec<EnvSinkConfig>,
    pub log: LogConfig,
    #[serde(rename = "assume")]
    pub assumes: Vec<AssumeConfig>,
    pub container: Option<super::ContainerConfig>,
    /// systemd units served on the unit-credentials socket (`super::units`).
    #[serde(rename = "unit")]
    pub units: Vec<super::units::UnitConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImdsConfig {
    /// Empty: `AWS_EC2_METADATA_SERVICE_ENDPOINT`, else the default for `endpoint_mode`.
    pub endpoint: String,
    /// `IPv4` or `IPv6`; unset: `AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE`, else IPv4.
    pub endpoint_mode: Option<EndpointMode>,
    #[serde(with = "values::token_ttl")]
    pub token_ttl: Duration,
    #[serde(with = "values::positive_duration")]
    pub timeout: Duration,
    pub allow_imdsv1: bool,
    /// Empty: discover the attached role on every refresh.
    pub role: String,
}

impl Default for ImdsConfig {
    fn default() -> Self {
        ImdsConfig {
            endpoint: String::new(),
            endpoint_mode: None,
            token_ttl: Duration::from_secs(6 * 3600),
            timeout: Duration::from_secs(2),
            allow_imdsv1: false,
            role: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RefreshConfig {
    #[serde(with = "values::positive_duration")]
    pub before_expiry: Duration,
    #[serde(with = "values::positive_duration")]
    pub max_interval: Duration,
}

impl Default for RefreshConfig {
    fn default() -> Self {
        RefreshConfig {
            before_expiry: Duration::from_secs(15 * 60),
            max_interval: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SocketConfig {
    pub path: PathBuf,
    pub mode: FileMode,
    /// `None`: the `imds-credd` group if it exists, else the daemon's own group.
    pub group: Option<String>,
    /// Empty: anyone who can open the socket.
    pub allow_uids: Vec<u32>,
    pub allow_gids: Vec<u32>,
    /// Windows: accounts (SIDs such as `S-1-5-21-…-1001`, from `whoami /user`) admitted to
    /// the named pipe besides SYSTEM and Administrators.
    pub allow_sids: Vec<String>,
    /// Requests per second per uid on the socket and the container endpoint (`"100/s"`,
    /// burst twice that; `"0"` off; root exempt).
    pub rate_limit: super::RateLimit,
}

impl Default for SocketConfig {
    fn default() -> Self {
        SocketConfig {
            path: PathBuf::from(DEFAULT_SOCKET_PATH),
            mode: FileMode(0o660),
            group: None,
            allow_uids: Vec::new(),
            allow_gids: Vec::new(),
            allow_sids: Vec::new(),
            rate_limit: Default::default(),
        }
    }
}

/// A program to run, or a process to signal, after a sink has published new credentials.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalConfig {
    pub pid_file: PathBuf,
    #[serde(default = "values::default_signal")]
    pub signal: String,
}

/// A `[[file]]` sink: one profile section in a shared-credentials file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    pub path: PathBuf,
    #[serde(deserialize_with = "values::profile_name")]
    pub profile: String,
    #[serde(default = "values::private_mode")]
    pub mode: FileMode,
    pub owner: Option<String>,
    pub group: Option<String>,
    /// An `[[assume]]` profile to publish instead of the instance role.
    pub source: Option<String>,
    pub on_rotate: Option<Vec<String>>,
    pub signal: Option<SignalConfig>,
}

/// An `[[env]]` sink: a file of environment assignments.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvSinkConfig {
    pub path: PathBuf,
    #[serde(default)]
    pub format: EnvFormat,
    #[serde(default = "values::private_mode")]
    pub mode: FileMode,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub source: Option<String>,
    pub on_rotate: Option<Vec<String>>,
    pub signal: Option<SignalConfig>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub level: LogLevel,
    pub format: LogFormat,
}

/// An `[[assume]]` profile: a role assumed with the instance role's credentials.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssumeConfig {
    #[serde(deserialize_with = "values::profile_name")]
    pub profile: String,
    pub role_arn: String,
    #[serde(default)]
    pub external_id: String,
    #[serde(default)]
    pub session_name: String,
    #[serde(default = "values::one_hour", with = "values::positive_duration")]
    pub duration: Duration,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub sts_endpoint: String,
}
