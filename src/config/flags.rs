//! One CLI flag for every config key. A flag beats the file, which beats the default.
//! Array tables (`[[file]]`, `[[env]]`, `[[assume]]`) take `key=value,key=value` and add
//! one entry each time the flag is given.

use super::values::{
    parse_positive_duration, parse_token_ttl, EndpointMode, FileMode, LogFormat, LogLevel,
};
use super::{AssumeConfig, Config, ConfigError, ContainerConfig, EnvSinkConfig, FileSinkConfig};
use clap::Args;
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The flags that override config keys, each naming its key in its help.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigOverrides {
    /// IMDS base URL (`[imds] endpoint`).
    #[arg(long, value_name = "URL")]
    pub imds_endpoint: Option<String>,
    /// Default IMDS address family (`[imds] endpoint_mode`).
    #[arg(long, value_name = "MODE")]
    pub imds_endpoint_mode: Option<EndpointMode>,
    /// IMDS session token lifetime, 1s..6h (`[imds] token_ttl`).
    #[arg(long, value_name = "DURATION", value_parser = parse_token_ttl)]
    pub imds_token_ttl: Option<Duration>,
    /// Timeout of one IMDS request (`[imds] timeout`).
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub imds_timeout: Option<Duration>,
    /// Fall back to IMDSv1 when the token request is refused (`[imds] allow_imdsv1`).
    #[arg(long)]
    pub allow_imdsv1: bool,
    /// Use this role instead of discovering the attached one (`[imds] role`).
    #[arg(long, value_name = "NAME")]
    pub role: Option<String>,
    /// Refresh this long before expiry (`[refresh] before_expiry`).
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub refresh_before_expiry: Option<Duration>,
    /// Refresh at least this often (`[refresh] max_interval`).
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub refresh_max_interval: Option<Duration>,
    /// Unix socket to serve on (`[socket] path`).
    #[arg(long = "socket", value_name = "PATH")]
    pub socket_path: Option<PathBuf>,
    /// Socket file mode, octal (`[socket] mode`).
    #[arg(long, value_name = "MODE")]
    pub socket_mode: Option<FileMode>,
    /// Group that owns the socket (`[socket] group`).
    #[arg(long, value_name = "GROUP")]
    pub socket_group: Option<String>,
    /// Requests per second per uid, e.g. `100/s`; `0` turns it off (`[socket] rate_limit`).
    #[arg(long, value_name = "RATE")]
    pub socket_rate_limit: Option<super::RateLimit>,
    /// Allow this peer uid on the socket; repeatable (`[socket] allow_uids`).
    #[arg(long = "allow-uid", value_name = "UID")]
    pub allow_uids: Vec<u32>,
    /// Allow this peer gid on the socket; repeatable (`[socket] allow_gids`).
    #[arg(long = "allow-gid", value_name = "GID")]
    pub allow_gids: Vec<u32>,
    /// Add a credentials-file sink, e.g. `path=/home/app/.aws/credentials,profile=instance`.
    #[arg(long = "file", value_name = "KEY=VALUE,...")]
    pub files: Vec<String>,
    /// Add an env-file sink, e.g. `path=/run/imds-credd/credentials.env,format=sh`.
    #[arg(long = "env", value_name = "KEY=VALUE,...")]
    pub envs: Vec<String>,
    /// Add an assumed-role profile, e.g. `profile=audit,role_arn=arn:aws:iam::…`.
    #[arg(long = "assume", value_name = "KEY=VALUE,...")]
    pub assumes: Vec<String>,
    /// Serve the container-credentials endpoint here; repeatable, replaces the file's list
    /// (`[container] listen`).
    #[arg(long, value_name = "ADDR")]
    pub container_listen: Vec<SocketAddr>,
    /// Container endpoint token file (`[container] token_file`).
    #[arg(long, value_name = "PATH")]
    pub container_token_file: Option<PathBuf>,
    /// Log level (`[log] level`).
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<LogLevel>,
    /// Log format (`[log] format`).
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
}

impl ConfigOverrides {
    /// Applies the flags on top of `config`, then re-checks the cross-key rules.
    pub fn apply(&self, config: &mut Config) -> Result<(), ConfigError> {
        set(&mut config.imds.endpoint, &self.imds_endpoint);
        if self.imds_endpoint_mode.is_some() {
            config.imds.endpoint_mode = self.imds_endpoint_mode;
        }
        set(&mut config.imds.token_ttl, &self.imds_token_ttl);
        set(&mut config.imds.timeout, &self.imds_timeout);
        config.imds.allow_imdsv1 |= self.allow_imdsv1;
        set(&mut config.imds.role, &self.role);
        set(
            &mut config.refresh.before_expiry,
            &self.refresh_before_expiry,
        );
        set(&mut config.refresh.max_interval, &self.refresh_max_interval);
        set(&mut config.socket.path, &self.socket_path);
        set(&mut config.socket.mode, &self.socket_mode);
        set(&mut config.socket.rate_limit, &self.socket_rate_limit);
        if self.socket_group.is_some() {
            config.socket.group = self.socket_group.clone();
        }
        config.socket.allow_uids.extend(&self.allow_uids);
        config.socket.allow_gids.extend(&self.allow_gids);
        for spec in &self.files {
            config
                .files
                .push(parse_table::<FileSinkConfig>("--file", spec)?);
        }
        for spec in &self.envs {
            config
                .envs
                .push(parse_table::<EnvSinkConfig>("--env", spec)?);
        }
        for spec in &self.assumes {
            config
                .assumes
                .push(parse_table::<AssumeConfig>("--assume", spec)?);
        }
        if !self.container_listen.is_empty() || self.container_token_file.is_some() {
            let container = config
                .container
                .get_or_insert_with(ContainerConfig::default);
            if !self.container_listen.is_empty() {
                container.listen.clone_from(&self.container_listen);
            }
            set(&mut container.token_file, &self.container_token_file);
        }
        set(&mut config.log.level, &self.log_level);
        set(&mut config.log.format, &self.log_format);
        config
            .validate()
            .map_err(|(spot, message)| ConfigError::Flag {
                origin: spot.describe(),
                message,
            })
    }
}

fn set<T: Clone>(target: &mut T, value: &Option<T>) {
    if let Some(v) = value {
        *target = v.clone();
    }
}

/// Turns `path=/x,profile=y` into one entry of an array table, through the same
/// deserializer as the file so the rules and messages are the same.
fn parse_table<T: DeserializeOwned>(flag: &str, spec: &str) -> Result<T, ConfigError> {
    let mut table = toml::Table::new();
    for pair in spec.split(',').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').ok_or_else(|| ConfigError::Flag {
            origin: format!("{flag} {spec}"),
            message: format!("{pair:?} is not KEY=VALUE"),
        })?;
        table.insert(
            key.trim().to_string(),
            toml::Value::String(value.to_string()),
        );
    }
    T::deserialize(table).map_err(|e| ConfigError::Flag {
        origin: format!("{flag} {spec}"),
        message: e.message().trim_end().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        overrides: ConfigOverrides,
    }

    fn apply(args: &[&str]) -> Result<Config, ConfigError> {
        let cli = Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied())).unwrap();
        let mut config = Config::default();
        cli.overrides.apply(&mut config)?;
        Ok(config)
    }

    #[test]
    fn flags_override_scalars_and_add_sinks() {
        let config = apply(&[
            "--imds-endpoint",
            "http://127.0.0.1:1",
            "--refresh-before-expiry",
            "5m",
            "--file",
            "path=/tmp/c,profile=instance,mode=0640",
            "--env",
            "path=/tmp/e,format=systemd",
            "--allow-uid",
            "1000",
        ])
        .unwrap();
        assert_eq!(config.imds.endpoint, "http://127.0.0.1:1");
        assert_eq!(config.refresh.before_expiry, Duration::from_secs(300));
        assert_eq!(config.files[0].sink.mode, FileMode(0o640));
        assert_eq!(config.envs[0].format, super::super::EnvFormat::Systemd);
        assert_eq!(config.socket.allow_uids, vec![1000]);
    }

    #[test]
    fn a_container_flag_off_loopback_is_refused() {
        let err = apply(&["--container-listen", "0.0.0.0:28679"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("container.listen") && err.contains("loopback"),
            "{err}"
        );
        let config = apply(&[
            "--container-listen",
            "127.0.0.1:28679",
            "--container-listen",
            "169.254.170.23:80",
        ])
        .unwrap();
        let listen = config.container.unwrap().listen;
        assert_eq!(listen.len(), 2, "the flag repeats: {listen:?}");
    }

    #[test]
    fn a_bad_sink_flag_names_the_flag() {
        let err = apply(&["--file", "path=/tmp/c"]).unwrap_err().to_string();
        assert!(err.contains("--file") && err.contains("profile"), "{err}");
    }
}
