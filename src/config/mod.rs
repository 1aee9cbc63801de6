//! The daemon's configuration: the TOML file of `docs/DESIGN.md`, defaults for every
//! key, and the CLI flags that override them. Resolved once into a validated [`Config`].
//!
//! A bad file is refused with the file, the line and the key in the message.

mod exposure;
mod flags;
mod values;

#[cfg(unix)]
pub use exposure::check_config_socket_folder;
pub use flags::ConfigOverrides;
pub use values::{
    parse_positive_duration, parse_profile_name, EndpointMode, EnvFormat, FileMode, LogFormat,
    LogLevel,
};

use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// Where `run` and `check-config` look when `--config` is not given.
#[cfg(not(windows))]
pub const DEFAULT_CONFIG_PATH: &str = "/etc/imds-credd/config.toml";
/// Where `run` and `check-config` look when `--config` is not given.
#[cfg(windows)]
pub const DEFAULT_CONFIG_PATH: &str = r"C:\ProgramData\imds-credd\config.toml";
/// Where the daemon listens and the client commands connect by default.
#[cfg(not(windows))]
pub const DEFAULT_SOCKET_PATH: &str = "/run/imds-credd/credentials.sock";
/// Where the daemon listens and the client commands connect by default: a named pipe.
#[cfg(windows)]
pub const DEFAULT_SOCKET_PATH: &str = r"\\.\pipe\imds-credd";

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
    pub container: Option<ContainerConfig>,
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
    pub rate_limit: crate::serve::rate_limit::RateLimit,
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

/// `[container]`: the loopback endpoint for `AWS_CONTAINER_CREDENTIALS_FULL_URI`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContainerConfig {
    pub listen: SocketAddr,
    pub token_file: PathBuf,
}

/// The `[container]` port: one no AWS agent uses (the ECS agent has 51678-51680, the EKS
/// Pod Identity agent 80 and 2703/2705, the CloudWatch agent 25888, 4317/4318 and 2000),
/// and below Linux's ephemeral range (32768-60999), so an outgoing connection of any
/// program never holds it as its source port.
pub const DEFAULT_CONTAINER_PORT: u16 = 28679;

impl Default for ContainerConfig {
    fn default() -> Self {
        ContainerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_CONTAINER_PORT)),
            token_file: PathBuf::from("/run/imds-credd/container-token"),
        }
    }
}

impl ContainerConfig {
    /// The rules of a `[container]` section, as (key, message). The endpoint answers with
    /// credentials over plain HTTP (the SDKs allow `http://` only to loopback), so it
    /// listens on a loopback address or not at all.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !is_loopback(self.listen.ip()) {
            return Err((
                "listen",
                format!(
                    "{} is not a loopback address: the container endpoint serves credentials over plain HTTP, on 127.0.0.1 or [::1] only",
                    self.listen
                ),
            ));
        }
        if !self.token_file.is_absolute() || self.token_file.file_name().is_none() {
            return Err((
                "token_file",
                format!(
                    "{} is not an absolute path to a file",
                    self.token_file.display()
                ),
            ));
        }
        Ok(())
    }
}

/// A loopback address (`127.0.0.0/8`, `::1`), also when an IPv4 one is written IPv4-mapped.
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// Where a cross-key error points: an entry of an array table (`[[file]]` number `index`),
/// or a key of a plain table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spot {
    Entry(&'static str, usize),
    /// A key of an entry of an array table: `mode` of `[[file]]` number `index`.
    EntryKey(&'static str, usize, &'static str),
    Key(&'static str, &'static str),
}

impl Spot {
    /// The line to name in the message, if the text has it.
    fn line(self, text: &str) -> Option<usize> {
        match self {
            Spot::Entry(table, index) => line_of_array_table(text, table, index),
            Spot::EntryKey(table, index, key) => line_of_array_table(text, table, index)
                .map(|header| line_of_key_below(text, header, key).unwrap_or(header)),
            Spot::Key(table, key) => line_of_table_key(text, table, key),
        }
    }

    /// How a flag-made error names the place (there is no line to point at).
    fn describe(self) -> String {
        match self {
            Spot::Entry(table, index) | Spot::EntryKey(table, index, _) => {
                format!("[[{table}]] #{}", index + 1)
            }
            Spot::Key(table, _) => format!("[{table}]"),
        }
    }
}

/// A configuration that cannot be used. The message names the file, the line and the key.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{origin}: {message}")]
    Flag { origin: String, message: String },
}

impl Config {
    /// Reads `path`; when `path` is the default and does not exist, the defaults apply (no
    /// config file is needed on a normal instance). An explicit path must exist.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (path, explicit) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Config::parse(&text, &path),
            Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Config::default())
            }
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }

    /// Parses and validates `text`; `path` is used only in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            let line = line_at(text, offset);
            let key = key_at(text, offset)
                .map(|k| format!("key `{k}`: "))
                .unwrap_or_default();
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                message: format!("{key}{}", e.message().trim_end()),
            }
        })?;
        config.validate().map_err(|(spot, message)| {
            let line = spot.line(text).unwrap_or(1);
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                message,
            }
        })?;
        Ok(config)
    }

    /// Checks that hold across keys. Returns where to point and what is wrong.
    fn validate(&self) -> Result<(), (Spot, String)> {
        let known_profiles: Vec<&str> = self.assumes.iter().map(|a| a.profile.as_str()).collect();
        for (i, assume) in self.assumes.iter().enumerate() {
            if known_profiles[..i].contains(&assume.profile.as_str()) {
                return Err((
                    Spot::Entry("assume", i),
                    format!(
                        "key `assume.profile`: profile {:?} is defined twice",
                        assume.profile
                    ),
                ));
            }
            if !assume.role_arn.starts_with("arn:") {
                return Err((
                    Spot::Entry("assume", i),
                    format!(
                        "key `assume.role_arn`: {:?} is not a role ARN",
                        assume.role_arn
                    ),
                ));
            }
            if let Err((key, message)) = crate::assume::sts::check_assume_config(assume) {
                return Err((
                    Spot::Entry("assume", i),
                    format!("key `assume.{key}`: {message}"),
                ));
            }
        }
        #[cfg(windows)]
        self.check_windows_support()?;
        self.socket.check_platform()?;
        self.check_exposure()?;
        let mut seen_paths: Vec<&Path> = Vec::new();
        let sinks = self
            .files
            .iter()
            .map(|f| ("file", &f.path, &f.source))
            .enumerate()
            .chain(
                self.envs
                    .iter()
                    .map(|e| ("env", &e.path, &e.source))
                    .enumerate(),
            );
        for (index, (table, path, source)) in sinks {
            if !path.is_absolute() {
                return Err((
                    Spot::Entry(table, index),
                    format!(
                        "key `{table}.path`: {} is not an absolute path",
                        path.display()
                    ),
                ));
            }
            if seen_paths.contains(&path.as_path()) {
                return Err((
                    Spot::Entry(table, index),
                    format!(
                        "key `{table}.path`: {} is used by two sinks",
                        path.display()
                    ),
                ));
            }
            seen_paths.push(path);
            if let Some(source) = source {
                if !known_profiles.contains(&source.as_str()) {
                    return Err((
                        Spot::Entry(table, index),
                        format!("key `{table}.source`: no [[assume]] defines profile {source:?}"),
                    ));
                }
            }
        }
        if let Some(container) = &self.container {
            container.check().map_err(|(key, message)| {
                (
                    Spot::Key("container", key),
                    format!("key `container.{key}`: {message}"),
                )
            })?;
            if seen_paths.contains(&container.token_file.as_path()) {
                return Err((
                    Spot::Key("container", "token_file"),
                    format!(
                        "key `container.token_file`: {} is also a sink's path",
                        container.token_file.display()
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl SocketConfig {
    /// `[socket]` keys that only one platform understands.
    fn check_platform(&self) -> Result<(), (Spot, String)> {
        let refuse = |key: &'static str, why: &str| {
            Err((
                Spot::Key("socket", key),
                format!("key `socket.{key}`: {why}"),
            ))
        };
        if let Some(bad) = self.allow_sids.iter().find(|sid| !is_sid(sid)) {
            return refuse(
                "allow_sids",
                &format!("{bad:?} is not a SID such as S-1-5-21-…-1001"),
            );
        }
        #[cfg(unix)]
        if !self.allow_sids.is_empty() {
            return refuse(
                "allow_sids",
                "Windows only; use allow_uids / allow_gids here",
            );
        }
        #[cfg(windows)]
        {
            let unix_only = [
                ("group", self.group.is_some()),
                ("allow_uids", !self.allow_uids.is_empty()),
                ("allow_gids", !self.allow_gids.is_empty()),
            ];
            if let Some((key, _)) = unix_only.into_iter().find(|(_, set)| *set) {
                return refuse(key, "not supported on Windows; use allow_sids");
            }
        }
        Ok(())
    }
}

/// `S-1-` then numbers separated by dashes: all that may go into the pipe's SDDL.
fn is_sid(text: &str) -> bool {
    text.strip_prefix("S-1-").is_some_and(|rest| {
        rest.split('-')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
    })
}

#[cfg(windows)]
impl Config {
    /// Refuses the sink keys that have no Windows meaning: there is no unix owner or group
    /// (a file takes the ACL of its folder, so the folder's ACL decides who reads it), and
    /// no signals to send (`on_rotate` is the way to tell a program).
    fn check_windows_support(&self) -> Result<(), (Spot, String)> {
        if self.container.is_some() {
            return Err((
                Spot::Key("container", "listen"),
                "table `[container]`: the container endpoint is not available on Windows".into(),
            ));
        }
        const ACL: &str = "files take the ACL of their folder; set the folder's ACL instead";
        const NO_SIGNALS: &str = "there are no signals to send; use on_rotate instead";
        let files = self
            .files
            .iter()
            .map(|f| ("file", &f.owner, &f.group, &f.signal));
        let envs = self
            .envs
            .iter()
            .map(|e| ("env", &e.owner, &e.group, &e.signal));
        for (index, (table, owner, group, signal)) in files.enumerate().chain(envs.enumerate()) {
            let refused = [
                ("owner", owner.is_some(), ACL),
                ("group", group.is_some(), ACL),
                ("signal", signal.is_some(), NO_SIGNALS),
            ];
            if let Some((key, _, why)) = refused.into_iter().find(|(_, set, _)| *set) {
                return Err((
                    Spot::Entry(table, index),
                    format!("key `{table}.{key}`: not supported on Windows: {why}"),
                ));
            }
        }
        Ok(())
    }
}

/// 1-based line number of a byte offset.
fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The dotted key whose line holds `offset`: the `[table]` header above it plus the key on
/// the line itself, so `before_expiry = "x"` under `[refresh]` reads `refresh.before_expiry`.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line = text[line_start..].lines().next().unwrap_or("");
    let key = line.split_once('=').map(|(k, _)| k.trim().to_string());
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (None, Some(k)) => Some(k),
        (Some(t), None) => Some(t),
        (None, None) => None,
    }
}

/// Line of `key` in the plain `[table]` (else the table's header), for errors about it.
fn line_of_table_key(text: &str, table: &str, key: &str) -> Option<usize> {
    let header = format!("[{table}]");
    let header_line = text.lines().position(|l| l.trim().starts_with(&header))? + 1;
    Some(line_of_key_below(text, header_line, key).unwrap_or(header_line))
}

/// Line of `key` among the lines after the 1-based line `header`, up to the next table.
fn line_of_key_below(text: &str, header: usize, key: &str) -> Option<usize> {
    text.lines()
        .enumerate()
        .skip(header)
        .take_while(|(_, l)| !l.trim().starts_with('['))
        .find(|(_, l)| {
            l.trim()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|(n, _)| n + 1)
}

/// Line of the `index`-th `[[table]]` header, for errors about one entry of an array.
fn line_of_array_table(text: &str, table: &str, index: usize) -> Option<usize> {
    let header = format!("[[{table}]]");
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim().starts_with(&header))
        .nth(index)
        .map(|(n, _)| n + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/imds-credd/config.toml"))
    }

    #[test]
    fn empty_file_gives_the_documented_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.imds.token_ttl, Duration::from_secs(21600));
        assert_eq!(config.refresh.before_expiry, Duration::from_secs(900));
        assert_eq!(config.socket.mode, FileMode(0o660));
        assert!(config.files.is_empty() && config.envs.is_empty());
    }

    #[test]
    fn a_bad_rate_limit_names_the_file_line_and_key() {
        let err = parse("[socket]\nmode = \"0660\"\nrate_limit = \"fast\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("/etc/imds-credd/config.toml:3: key `socket.rate_limit`")
                && err.contains("\"100/s\""),
            "{err}"
        );
        let config = parse("[socket]\nrate_limit = \"0\"\n").unwrap();
        assert_eq!(config.socket.rate_limit.per_second, 0);
        assert_eq!(Config::default().socket.rate_limit.per_second, 100);
    }

    #[test]
    fn parses_the_design_example() {
        let text = r#"
[imds]
endpoint = "http://169.254.169.254"
token_ttl = "6h"
timeout = "2s"
allow_imdsv1 = false
role = ""

[refresh]
before_expiry = "15m"
max_interval = "1h"

[socket]
path = "/run/imds-credd/credentials.sock"
mode = "0660"
group = "imds-credd"
allow_uids = []
allow_gids = []
rate_limit = "100/s"

[[file]]
path = "/home/app/.aws/credentials"
profile = "instance"
mode = "0600"
owner = "app"
on_rotate = ["systemctl", "reload", "app"]

[[env]]
path = "/run/imds-credd/credentials.env"
format = "sh"
signal = { pid_file = "/run/app.pid", signal = "HUP" }

[log]
level = "info"
format = "text"

[[assume]]
profile = "audit"
role_arn = "arn:aws:iam::222222222222:role/efgh"
duration = "1h"

[container]
listen = "127.0.0.1:28679"
token_file = "/run/imds-credd/container-token"
"#;
        let config = parse(text).unwrap();
        assert_eq!(config.files[0].profile, "instance");
        assert_eq!(config.files[0].mode, FileMode(0o600));
        assert_eq!(config.envs[0].format, EnvFormat::Sh);
        assert_eq!(config.envs[0].signal.as_ref().unwrap().signal, "HUP");
        assert_eq!(config.assumes[0].duration, Duration::from_secs(3600));
        assert_eq!(config.container.unwrap().listen.port(), 28679);
    }

    #[test]
    fn a_bad_duration_names_file_line_and_key() {
        let err = parse("[imds]\ntimeout = \"2s\"\n\n[refresh]\nbefore_expiry = \"15 parsecs\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/etc/imds-credd/config.toml:5:"), "{err}");
        assert!(err.contains("refresh.before_expiry"), "{err}");
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_line() {
        let err = parse("[imds]\ntimeout = \"2s\"\ntoken_tll = \"6h\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains(":3:") && err.contains("token_tll"), "{err}");
    }

    #[test]
    fn token_ttl_outside_imds_limits_is_refused() {
        let err = parse("[imds]\ntoken_ttl = \"7h\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains(":2:") && err.contains("21600"), "{err}");
    }

    #[test]
    fn a_sink_source_must_name_an_assume_profile() {
        let text = "[[file]]\npath = \"/a/credentials\"\nprofile = \"x\"\n\n[[env]]\npath = \"/a/env\"\nsource = \"nope\"\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains(":5:") && err.contains("env.source"), "{err}");
    }

    #[test]
    fn an_assume_entry_sts_would_refuse_is_refused_with_its_line() {
        let text = "[[assume]]\nprofile = \"a\"\nrole_arn = \"arn:aws:iam::1:role/r\"\n\n[[assume]]\nprofile = \"b\"\nrole_arn = \"arn:aws:iam::1:role/r\"\nduration = \"5m\"\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(
            err.contains(":5:") && err.contains("assume.duration"),
            "{err}"
        );
    }

    #[test]
    fn two_sinks_on_one_path_are_refused() {
        let text = "[[file]]\npath = \"/a/c\"\nprofile = \"x\"\n[[file]]\npath = \"/a/c\"\nprofile = \"y\"\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains(":4:") && err.contains("two sinks"), "{err}");
    }

    #[test]
    fn a_profile_name_that_would_break_the_ini_file_is_refused() {
        let err = parse("[[file]]\npath = \"/a/c\"\nprofile = \"x]\\n[default\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains(":3:") && err.contains("file.profile"), "{err}");
    }

    #[test]
    fn a_container_endpoint_off_loopback_is_refused_with_its_line() {
        for listen in [
            "0.0.0.0:28679",
            "[::]:28679",
            "10.0.0.5:28679",
            "169.254.170.2:80",
        ] {
            let text = format!(
                "[log]\nlevel = \"info\"\n\n[container]\ntoken_file = \"/run/t\"\nlisten = \"{listen}\"\n"
            );
            let err = parse(&text).unwrap_err().to_string();
            assert!(
                err.contains(":6:") && err.contains("container.listen") && err.contains("loopback"),
                "{err}"
            );
        }
        for listen in [
            "127.0.0.1:28679",
            "127.0.0.2:0",
            "[::1]:28679",
            "[::ffff:127.0.0.1]:1",
        ] {
            let text = format!("[container]\nlisten = \"{listen}\"\n");
            assert!(parse(&text).is_ok(), "{listen}");
        }
    }

    #[test]
    fn a_container_token_file_must_be_absolute_and_not_a_sink_path() {
        let err = parse("[container]\ntoken_file = \"run/t\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(":2:") && err.contains("container.token_file"),
            "{err}"
        );
        let text = "[[env]]\npath = \"/run/x\"\n[container]\ntoken_file = \"/run/x\"\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains(":4:") && err.contains("sink"), "{err}");
    }

    #[test]
    fn allow_sids_must_be_sids() {
        let err = parse("[socket]\nallow_sids = [\"S-1-5-32-544)(A;;GA;;;WD\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("socket.allow_sids") && err.contains("not a SID"),
            "{err}"
        );
        assert!(is_sid("S-1-5-21-1004336348-1177238915-682003330-1001"));
        assert!(!is_sid("S-1-5-") && !is_sid("S-1-") && !is_sid("BA"));
    }

    #[test]
    fn env_files_take_the_windows_formats_too() {
        let text = "[[env]]\npath = \"/a/creds.ps1\"\nformat = \"powershell\"\n\
                    [[env]]\npath = \"/a/creds.cmd\"\nformat = \"cmd\"\n";
        let config = parse(text).unwrap();
        let formats: Vec<EnvFormat> = config.envs.iter().map(|e| e.format).collect();
        assert_eq!(formats, [EnvFormat::Powershell, EnvFormat::Cmd]);
    }

    #[test]
    fn a_missing_explicit_config_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.toml");
        assert!(matches!(
            Config::load(Some(&missing)),
            Err(ConfigError::Read { .. })
        ));
    }

    #[test]
    fn sink_modes_that_expose_secrets_are_refused_at_the_mode_line() {
        for (table, mode) in [
            ("file", "0644"),
            ("env", "0606"),
            ("file", "0620"),
            ("env", "0601"),
        ] {
            let extra = if table == "file" {
                "profile = \"p\"\n"
            } else {
                ""
            };
            let text = format!(
                "[log]\nlevel = \"info\"\n\n[[{table}]]\npath = \"/a/x\"\n{extra}mode = \"{mode}\"\n"
            );
            let err = parse(&text).unwrap_err().to_string();
            let line = if table == "file" { ":7:" } else { ":6:" };
            assert!(
                err.contains(line) && err.contains(&format!("key `{table}.mode`: {mode}")),
                "{err}"
            );
        }
        for mode in ["0600", "0640", "0400"] {
            let text = format!("[[env]]\npath = \"/a/x\"\nmode = \"{mode}\"\n");
            assert!(parse(&text).is_ok(), "{mode}");
        }
    }

    #[test]
    fn an_integer_mode_is_refused_with_how_to_write_it() {
        for text in [
            "[[file]]\npath = \"/a/x\"\nprofile = \"p\"\nmode = 438\n",
            "[socket]\nmode = 0o660\n",
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(
                err.contains("mode") && err.contains("write the mode as a string, e.g. \"0600\""),
                "{err}"
            );
        }
    }

    #[test]
    fn a_socket_anyone_may_connect_to_needs_an_allow_list() {
        let err = parse("[socket]\npath = \"/run/x.sock\"\nmode = \"0666\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(":3:") && err.contains("key `socket.mode`") && err.contains("allow_uids"),
            "{err}"
        );
        assert!(parse("[socket]\nmode = \"0666\"\nallow_gids = [1000]\n").is_ok());
        assert!(parse("[socket]\nmode = \"0666\"\nallow_uids = [1000]\n").is_ok());
        assert!(parse("[socket]\nmode = \"0664\"\n").is_ok());
    }

    #[test]
    fn chained_durations_over_an_hour_and_plain_http_sts_are_refused() {
        let entry = "[[assume]]\nprofile = \"a\"\nrole_arn = \"arn:aws:iam::1:role/r\"\n";
        let err = parse(&format!("{entry}duration = \"2h\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(":1:") && err.contains("assume.duration") && err.contains("role chaining"),
            "{err}"
        );
        let err = parse(&format!(
            "{entry}sts_endpoint = \"http://sts.us-east-1.amazonaws.com\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("assume.sts_endpoint") && err.contains("https"),
            "{err}"
        );
        assert!(parse(&format!(
            "{entry}sts_endpoint = \"http://127.0.0.1:4566\"\n"
        ))
        .is_ok());
    }
}
