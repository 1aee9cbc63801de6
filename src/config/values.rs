//! Value types of the config file and their parsing: durations in humantime, octal modes,
//! and the small enums. Each parser's error names what it expected, and the caller adds the
//! file, line and key.

use crate::credentials::render::EnvSyntax;
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// `[socket] rate_limit`: requests per second per uid; 0 turns the limit off. Written `"100/s"` or `"0"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second; 0: no limit.
    pub per_second: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit { per_second: 100 }
    }
}

impl std::str::FromStr for RateLimit {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let refuse = || format!("{text:?} is not a rate such as \"100/s\" (or \"0\" for no limit)");
        if text.trim() == "0" {
            return Ok(RateLimit { per_second: 0 });
        }
        let count = text.trim().strip_suffix("/s").ok_or_else(refuse)?;
        match count.parse::<u32>() {
            Ok(per_second) if per_second > 0 => Ok(RateLimit { per_second }),
            _ => Err(refuse()),
        }
    }
}

impl<'de> Deserialize<'de> for RateLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A source range of `[[container.client]] allow_from`: `"172.17.0.0/16"`, `"fd00::/8"`, or
/// one address (`"172.17.0.2"`, a /32 or /128). Bits past the prefix must be zero, so that
/// `"172.17.0.2/16"` (meant as one address?) is refused rather than read as the /16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask(u128::from(ip.to_bits()), self.prefix, 32) == u128::from(net.to_bits())
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask(ip.to_bits(), self.prefix, 128) == net.to_bits()
            }
            _ => false,
        }
    }
}

/// `bits` (an address of `width` bits) with everything past `prefix` cleared.
fn mask(bits: u128, prefix: u8, width: u8) -> u128 {
    let host_bits = u32::from(width - prefix);
    bits.checked_shr(host_bits)
        .map_or(0, |b| b.checked_shl(host_bits).unwrap_or(0))
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let refuse = || {
            format!("{text:?} is not an address range such as \"172.17.0.0/16\" or \"fd00::/8\"")
        };
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address.parse().map_err(|_| refuse())?;
        let network = network.to_canonical();
        let width: u8 = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(digits) => match digits.parse::<u8>() {
                Ok(p) if p <= width && digits.bytes().all(|b| b.is_ascii_digit()) => p,
                _ => return Err(refuse()),
            },
        };
        let bits = match network {
            IpAddr::V4(v4) => u128::from(v4.to_bits()),
            IpAddr::V6(v6) => v6.to_bits(),
        };
        if mask(bits, prefix, width) != bits {
            return Err(format!(
                "{text:?} has bits set past its /{prefix} prefix: write the range's first address, or the single address without a prefix"
            ));
        }
        Ok(Cidr { network, prefix })
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A Unix permission mode, written as an octal string: `"0600"`. A TOML integer is refused:
/// `mode = 600` or `mode = 438` reads as decimal and would be a surprise mode.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FileMode(pub u32);

impl fmt::Debug for FileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl std::str::FromStr for FileMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mode = u32::from_str_radix(s.trim_start_matches("0o"), 8)
            .map_err(|_| format!("{s:?} is not an octal file mode such as \"0600\""))?;
        check_mode(mode)
    }
}

fn check_mode(mode: u32) -> Result<FileMode, String> {
    if mode > 0o777 {
        return Err(format!("mode {mode:o} has bits beyond 0777"));
    }
    Ok(FileMode(mode))
}

impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(i64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
            Raw::Number(n) => Err(serde::de::Error::custom(format!(
                "{n} is a number, which TOML may read as decimal; write the mode as a string, e.g. \"0600\""
            ))),
        }
    }
}

/// Format of an `[[env]]` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EnvFormat {
    /// `export NAME='value'` lines for `.`/`source`.
    #[default]
    Sh,
    /// `NAME=value` lines for systemd's `EnvironmentFile=`.
    Systemd,
    /// `$Env:NAME="value"` lines, for dot-sourcing in PowerShell (`. C:\path\creds.ps1`).
    Powershell,
    /// `set NAME=value` lines, for `call C:\path\creds.cmd` in cmd.
    Cmd,
}

/// The syntax an `[[env]]` file is written in (config depends on credentials, never the
/// other way round).
impl From<EnvFormat> for EnvSyntax {
    fn from(format: EnvFormat) -> Self {
        match format {
            EnvFormat::Sh => EnvSyntax::Sh,
            EnvFormat::Systemd => EnvSyntax::Systemd,
            EnvFormat::Powershell => EnvSyntax::Powershell,
            EnvFormat::Cmd => EnvSyntax::Cmd,
        }
    }
}

/// `[log] format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    // `help = None`: these docs are for the code; `--help` lists the names alone.
    /// One line of text per event.
    #[default]
    #[value(help = None)]
    Text,
    /// One JSON object per line.
    #[value(help = None)]
    Json,
}

/// `[log] level`: the lowest level logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    // `help = None`: these docs are for the code; `--help` lists the names alone.
    /// Failures only.
    #[value(help = None)]
    Error,
    /// Failures and what may become one.
    #[value(help = None)]
    Warn,
    /// Also each refresh and rotation.
    #[default]
    #[value(help = None)]
    Info,
    /// Also each decision and request.
    #[value(help = None)]
    Debug,
    /// Everything.
    #[value(help = None)]
    Trace,
}

impl LogLevel {
    /// The level as tracing's filter spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// Which default IMDS address to use when no endpoint is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
pub enum EndpointMode {
    // `help = None`: these docs are for the code; `--help` lists the names alone.
    /// `169.254.169.254`.
    #[serde(alias = "ipv4", alias = "IPV4")]
    #[value(name = "IPv4", alias = "ipv4", help = None)]
    IPv4,
    /// `[fd00:ec2::254]`.
    #[serde(alias = "ipv6", alias = "IPV6")]
    #[value(name = "IPv6", alias = "ipv6", help = None)]
    IPv6,
}

/// Parses a humantime duration (`15m`, `6h`, `1h 30m`) that must be above zero.
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration such as \"15m\" or \"6h\" ({e})"))?;
    if d.is_zero() {
        return Err(format!("{text:?} must be longer than zero"));
    }
    Ok(d)
}

/// IMDS accepts token TTLs from 1 to 21600 seconds.
pub(super) fn parse_token_ttl(text: &str) -> Result<Duration, String> {
    let d = parse_positive_duration(text)?;
    if d.as_secs() < 1 || d.as_secs() > 21600 || d.subsec_nanos() != 0 {
        return Err(format!(
            "{text:?} is outside IMDS's token TTL range of 1 to 21600 seconds (6h)"
        ));
    }
    Ok(d)
}

pub(super) mod positive_duration {
    use super::*;
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse_positive_duration(&text).map_err(serde::de::Error::custom)
    }
}

pub(super) mod token_ttl {
    use super::*;
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse_token_ttl(&text).map_err(serde::de::Error::custom)
    }
}

/// A profile name must fit between `[` and `]` on one line of an INI file and in a query
/// string: letters, digits and `-_.@+`.
pub fn parse_profile_name(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@+".contains(c));
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not a profile name (1-64 of letters, digits and -_.@+)"
        ))
    }
}

pub(super) fn profile_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    parse_profile_name(&text).map_err(serde::de::Error::custom)
}

pub(super) fn private_mode() -> FileMode {
    FileMode(0o600)
}

pub(super) fn default_signal() -> String {
    "HUP".to_string()
}

pub(super) fn one_hour() -> Duration {
    Duration::from_secs(3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates_and_refuses_other_text_by_example() {
        assert_eq!("100/s".parse::<RateLimit>().unwrap().per_second, 100);
        assert_eq!("0".parse::<RateLimit>().unwrap().per_second, 0);
        for bad in ["100", "0/s", "-1/s", "1/m", "fast", ""] {
            let err = bad.parse::<RateLimit>().unwrap_err();
            assert!(err.contains("\"100/s\""), "{bad}: {err}");
        }
    }

    #[test]
    fn cidrs_hold_their_range_and_refuse_host_bits_by_example() {
        let cidr = |text: &str| text.parse::<Cidr>().unwrap();
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert!(cidr("172.17.0.0/16").contains(ip("172.17.255.3")));
        assert!(!cidr("172.17.0.0/16").contains(ip("172.18.0.1")));
        assert!(cidr("172.17.0.2").contains(ip("::ffff:172.17.0.2")));
        assert!(!cidr("172.17.0.2").contains(ip("172.17.0.3")));
        assert!(cidr("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(!cidr("0.0.0.0/0").contains(ip("::1")));
        assert!(cidr("fd00::/8").contains(ip("fd12::1")));
        assert!(!cidr("fd00::/8").contains(ip("fe80::1")));
        assert!(cidr("::/0").contains(ip("fe80::1")));
        assert_eq!(cidr("fd00:ec2::/32").to_string(), "fd00:ec2::/32");
        for bad in [
            "172.17.0.0/33",
            "172.17.0.0/+8",
            "172.17.0.0/",
            "web",
            "::/129",
        ] {
            let err = bad.parse::<Cidr>().unwrap_err();
            assert!(err.contains("not an address range"), "{bad}: {err}");
        }
        let err = "172.17.0.2/16".parse::<Cidr>().unwrap_err();
        assert!(err.contains("past its /16 prefix"), "{err}");
    }
}
