//! The daemon's configuration: the TOML file of `docs/DESIGN.md`, defaults for every
//! key, and the CLI flags that override them. Resolved once into a validated [`Config`].
//!
//! A bad file is refused with the file, the line and the key in the message.
//!
//! Here: reading and parsing the file. The tables themselves are in `model`, the rules
//! across keys in `validate` (and `exposure`, `sts_limits`, `units`, and `socket_folder` on
//! Linux), the `[container]` table and its rules in `container`, where an
//! error points in `spot`, the value types in `values`, the flags in `flags`.

mod container;
mod exposure;
mod flags;
mod model;
#[cfg(target_os = "linux")]
mod socket_folder;
mod spot;
pub(crate) mod sts_limits;
pub mod units;
mod validate;
mod values;

pub use container::{
    is_container_address, is_container_listen_address, is_loopback, ContainerClientConfig,
    ContainerConfig, ContainerKey, CONTAINER_ADDRESS_V4, CONTAINER_ADDRESS_V6, DEFAULT_CLIENT_NAME,
    DEFAULT_CONTAINER_PORT,
};
pub use flags::ConfigOverrides;
pub use model::{
    AssumeConfig, Config, EnvSinkConfig, FileSinkConfig, ImdsConfig, LogConfig, RefreshConfig,
    SignalConfig, SinkConfig, SocketConfig,
};
#[cfg(target_os = "linux")]
pub use socket_folder::{check_config_folders, PathsFromFlags};
pub use units::UnitConfig;
pub use values::{
    parse_positive_duration, parse_profile_name, Cidr, EndpointMode, EnvFormat, FileMode,
    LogFormat, LogLevel, RateLimit,
};

use spot::{key_at, line_at, Spot};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Where `run` and `check-config` look when `--config` is not given.
#[cfg(target_os = "linux")]
pub const DEFAULT_CONFIG_PATH: &str = "/etc/imds-credd/config.toml";
/// Where `run` and `check-config` look when `--config` is not given.
#[cfg(windows)]
pub const DEFAULT_CONFIG_PATH: &str = r"C:\ProgramData\imds-credd\config.toml";
/// Where the daemon listens and the client commands connect by default.
#[cfg(target_os = "linux")]
pub const DEFAULT_SOCKET_PATH: &str = "/run/imds-credd/credentials.sock";
/// Where the daemon listens and the client commands connect by default: a named pipe.
#[cfg(windows)]
pub const DEFAULT_SOCKET_PATH: &str = r"\\.\pipe\imds-credd";

/// A configuration that cannot be used. The message names the file, the line and the key.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file's text breaks a rule: `message` names the key.
    #[error("{path}:{line}: {message}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// The line the error points at (1-based).
        line: usize,
        /// What is wrong, with the key.
        message: String,
    },
    /// A command-line flag breaks a rule.
    #[error("{origin}: {message}")]
    Flag {
        /// The flag, or the entry a flag added.
        origin: String,
        /// What is wrong, with the key.
        message: String,
    },
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/imds-credd/config.toml"))
    }

    /// Asserts that `text` is refused with a message holding every one of `fragments`.
    pub(super) fn assert_refused(text: &str, fragments: &[&str]) {
        let err = parse(text).unwrap_err().to_string();
        for fragment in fragments {
            assert!(err.contains(fragment), "{fragment:?} not in {err}");
        }
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
        assert_refused(
            "[socket]\nmode = \"0660\"\nrate_limit = \"fast\"\n",
            &[
                "/etc/imds-credd/config.toml:3: key `socket.rate_limit`",
                "\"100/s\"",
            ],
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
        assert_eq!(config.files[0].sink.mode, FileMode(0o600));
        assert_eq!(config.envs[0].format, EnvFormat::Sh);
        assert_eq!(config.envs[0].sink.signal.as_ref().unwrap().signal, "HUP");
        assert_eq!(config.assumes[0].duration, Duration::from_secs(3600));
        assert_eq!(config.container.unwrap().listen[0].port(), 28679);
    }

    #[test]
    fn a_bad_duration_names_file_line_and_key() {
        assert_refused(
            "[imds]\ntimeout = \"2s\"\n\n[refresh]\nbefore_expiry = \"15 parsecs\"\n",
            &["/etc/imds-credd/config.toml:5:", "refresh.before_expiry"],
        );
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_line() {
        assert_refused(
            "[imds]\ntimeout = \"2s\"\ntoken_tll = \"6h\"\n",
            &[":3:", "token_tll"],
        );
    }

    /// The keys every sink shares are read in place (not through serde's `flatten`, which
    /// would point these errors at the table's header).
    #[test]
    fn a_sink_key_is_refused_at_its_own_line() {
        assert_refused(
            "[[file]]\npath = \"/a/x\"\nprofile = \"p\"\nmdoe = \"0600\"\n",
            &[":4:", "key `file.mdoe`: unknown field `mdoe`"],
        );
        assert_refused(
            "[[env]]\npath = \"/a/x\"\n\nowner = 5\n",
            &[":4:", "key `env.owner`: invalid type"],
        );
    }

    #[test]
    fn token_ttl_outside_imds_limits_is_refused() {
        assert_refused("[imds]\ntoken_ttl = \"7h\"\n", &[":2:", "21600"]);
    }

    #[test]
    fn a_profile_name_that_would_break_the_ini_file_is_refused() {
        assert_refused(
            "[[file]]\npath = \"/a/c\"\nprofile = \"x]\\n[default\"\n",
            &[":3:", "file.profile"],
        );
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
    fn an_integer_mode_is_refused_with_how_to_write_it() {
        for text in [
            "[[file]]\npath = \"/a/x\"\nprofile = \"p\"\nmode = 438\n",
            "[socket]\nmode = 0o660\n",
        ] {
            assert_refused(text, &["mode", "write the mode as a string, e.g. \"0600\""]);
        }
    }
}
