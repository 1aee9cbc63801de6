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
    /// `[imds]`.
    pub imds: ImdsConfig,
    /// `[refresh]`.
    pub refresh: RefreshConfig,
    /// `[socket]`.
    pub socket: SocketConfig,
    /// The `[[file]]` sinks.
    #[serde(rename = "file")]
    pub files: Vec<FileSinkConfig>,
    /// The `[[env]]` sinks.
    #[serde(rename = "env")]
    pub envs: Vec<EnvSinkConfig>,
    /// `[log]`.
    pub log: LogConfig,
    /// The `[[assume]]` profiles.
    #[serde(rename = "assume")]
    pub assumes: Vec<AssumeConfig>,
    /// `[container]`, if the container endpoint is wanted.
    pub container: Option<super::ContainerConfig>,
    /// systemd units served on the unit-credentials socket (`super::units`).
    #[serde(rename = "unit")]
    pub units: Vec<super::units::UnitConfig>,
}

impl Config {
    /// Every sink's common part, with its table (`file`, `env`) and its index among that
    /// table's entries, `[[file]]` entries first: what a rule over all sinks walks.
    pub(super) fn sinks(&self) -> impl Iterator<Item = (&'static str, usize, &SinkConfig)> {
        let files = self.files.iter().map(|file| ("file", &file.sink));
        let envs = self.envs.iter().map(|env| ("env", &env.sink));
        (files.enumerate().chain(envs.enumerate()))
            .map(|(index, (table, sink))| (table, index, sink))
    }
}

/// `[imds]`: how to reach IMDS and which role to read.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImdsConfig {
    /// Empty: `AWS_EC2_METADATA_SERVICE_ENDPOINT`, else the default for `endpoint_mode`.
    pub endpoint: String,
    /// `IPv4` or `IPv6`; unset: `AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE`, else IPv4.
    pub endpoint_mode: Option<EndpointMode>,
    /// Lifetime asked for each IMDSv2 session token (1 s to 6 h).
    #[serde(with = "values::token_ttl")]
    pub token_ttl: Duration,
    /// Timeout of one IMDS request.
    #[serde(with = "values::positive_duration")]
    pub timeout: Duration,
    /// Fall back to IMDSv1 when the token request is refused.
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

/// `[refresh]`: when to ask for a new set.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RefreshConfig {
    /// Ask this long before the set expires.
    #[serde(with = "values::positive_duration")]
    pub before_expiry: Duration,
    /// Ask at least this often, whatever the expiry.
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

/// `[socket]`: where the API listens and who may use it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SocketConfig {
    /// The socket file (the pipe's name on Windows).
    pub path: PathBuf,
    /// The socket file's mode.
    pub mode: FileMode,
    /// `None`: the `imds-credd` group if it exists, else the daemon's own group.
    pub group: Option<String>,
    /// Empty: anyone who can open the socket.
    pub allow_uids: Vec<u32>,
    /// Peer gids admitted (any of the peer's groups).
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
    /// The file holding the pid to signal.
    pub pid_file: PathBuf,
    /// The signal's name (`HUP`, `USR1`…).
    #[serde(default = "values::default_signal")]
    pub signal: String,
}

/// What every sink table (`[[file]]`, `[[env]]`) has: which credentials it writes, the file
/// it writes them to and who owns it, and whom to tell after each write. One part, so that
/// a rule or a use of these keys is written once for every kind of sink.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkConfig {
    /// An `[[assume]]` profile to publish instead of the instance role.
    pub source: Option<String>,
    /// The file the sink writes.
    pub path: PathBuf,
    /// The file's mode.
    pub mode: FileMode,
    /// The file's owner; `None`: the daemon's user.
    pub owner: Option<String>,
    /// The file's group; `None`: the daemon's group.
    pub group: Option<String>,
    /// A program (and its arguments) to run after each new set.
    pub on_rotate: Option<Vec<String>>,
    /// A process to signal after each new set.
    pub signal: Option<SignalConfig>,
}

impl SinkConfig {
    /// A sink writing `path`, every other key at the default a table without it gets.
    pub fn new(path: PathBuf) -> Self {
        SinkConfig {
            source: None,
            path,
            mode: values::private_mode(),
            owner: None,
            group: None,
            on_rotate: None,
            signal: None,
        }
    }
}

/// A `[[file]]` sink: one profile section in a shared-credentials file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "tables::FileSinkConfig")]
pub struct FileSinkConfig {
    /// The keys every sink has.
    pub sink: SinkConfig,
    /// The INI section it writes (`[profile]`).
    pub profile: String,
}

/// An `[[env]]` sink: a file of environment assignments.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "tables::EnvSinkConfig")]
pub struct EnvSinkConfig {
    /// The keys every sink has.
    pub sink: SinkConfig,
    /// The syntax of the assignments.
    pub format: EnvFormat,
}

/// The sink tables as serde reads them: flat, so that an error keeps toml's span of its key
/// and value (serde's `flatten` would buffer the keys of [`SinkConfig`] and point their
/// errors, and an unknown key's, at the table's header instead). Each is `path`, the sink's
/// own keys, then [`SinkConfig`]'s, which [`sink_table`] writes once for both.
mod tables {
    use super::{values, EnvFormat, FileMode, PathBuf, SignalConfig, SinkConfig};
    use serde::Deserialize;

    /// Declares the flat table `$name` with the sink's own `$key`s, and its conversion into
    /// the model's `$name` (its own keys beside a [`SinkConfig`]).
    macro_rules! sink_table {
        ($name:ident { $($(#[$attr:meta])* $key:ident: $type:ty,)* }) => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            pub(super) struct $name {
                path: PathBuf,
                $($(#[$attr])* $key: $type,)*
                #[serde(default = "values::private_mode")]
                mode: FileMode,
                owner: Option<String>,
                group: Option<String>,
                source: Option<String>,
                on_rotate: Option<Vec<String>>,
                signal: Option<SignalConfig>,
            }

            impl From<$name> for super::$name {
                fn from(table: $name) -> Self {
                    super::$name {
                        $($key: table.$key,)*
                        sink: SinkConfig {
                            source: table.source,
                            path: table.path,
                            mode: table.mode,
                            owner: table.owner,
                            group: table.group,
                            on_rotate: table.on_rotate,
                            signal: table.signal,
                        },
                    }
                }
            }
        };
    }

    sink_table!(FileSinkConfig {
        #[serde(deserialize_with = "values::profile_name")]
        profile: String,
    });
    sink_table!(EnvSinkConfig {
        #[serde(default)]
        format: EnvFormat,
    });
}

/// `[log]`: how much the daemon logs, and in which form.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// The lowest level logged.
    pub level: LogLevel,
    /// Text or JSON lines.
    pub format: LogFormat,
}

/// An `[[assume]]` profile: a role assumed with the instance role's credentials.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssumeConfig {
    /// The name sinks, clients and `?profile=` ask for it by.
    #[serde(deserialize_with = "values::profile_name")]
    pub profile: String,
    /// The role to assume.
    pub role_arn: String,
    /// `ExternalId`, when the role's trust policy asks for one; empty: none.
    #[serde(default)]
    pub external_id: String,
    /// `RoleSessionName`; empty: made from the profile and the instance id.
    #[serde(default)]
    pub session_name: String,
    /// How long each assumed set lasts.
    #[serde(default = "values::one_hour", with = "values::positive_duration")]
    pub duration: Duration,
    /// The STS region; empty: the instance's.
    #[serde(default)]
    pub region: String,
    /// The STS URL; empty: the region's endpoint.
    #[serde(default)]
    pub sts_endpoint: String,
}
