//! `[container]` and its `[[container.client]]` entries (`docs/DESIGN.md`, "Configuration"):
//! where the container-credentials endpoint listens, and who may use it. The endpoint answers
//! with credentials over plain HTTP, which the SDKs allow only to loopback and to the
//! link-local container addresses, so those are the only addresses it takes.

use super::values::Cidr;
use serde::{Deserialize, Deserializer};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// The EKS Pod Identity address: link-local, outside any VPC range, and accepted over plain
/// `http://` by every current SDK. Put on the host, bridged containers reach it through
/// their default route.
pub const CONTAINER_ADDRESS_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 170, 23);
/// The IPv6 twin of [`CONTAINER_ADDRESS_V4`] (`fd00:ec2::23`).
pub const CONTAINER_ADDRESS_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23);

/// The `[container]` port: one no AWS agent uses (the ECS agent has 51678-51680, the EKS
/// Pod Identity agent 80 and 2703/2705, the CloudWatch agent 25888, 4317/4318 and 2000),
/// and below Linux's ephemeral range (32768-60999), so an outgoing connection of any
/// program never holds it as its source port.
pub const DEFAULT_CONTAINER_PORT: u16 = 28679;

/// The name the top-level `token_file` goes by in consumers, metrics and logs.
pub const DEFAULT_CLIENT_NAME: &str = "default";

/// `[container]`: the endpoint for `AWS_CONTAINER_CREDENTIALS_FULL_URI`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContainerConfig {
    /// One address or a list (`listen = "…"` or `listen = ["…", "…"]`).
    #[serde(deserialize_with = "one_or_many")]
    pub listen: Vec<SocketAddr>,
    /// The default client's token (name [`DEFAULT_CLIENT_NAME`]).
    pub token_file: PathBuf,
    /// `[[container.client]]`: clients with tokens of their own.
    #[serde(rename = "client")]
    pub clients: Vec<ContainerClientConfig>,
}

/// A `[[container.client]]` entry: a client (a container) with a token of its own.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerClientConfig {
    /// The client's name, in logs and `consumers`.
    pub name: String,
    /// The file its token is written to.
    pub token_file: PathBuf,
    /// The one `[[assume]]` profile the token grants; `None`: the instance role.
    #[serde(default)]
    pub profile: Option<String>,
    /// Source addresses the token is accepted from; empty: any.
    #[serde(default)]
    pub allow_from: Vec<Cidr>,
}

impl Default for ContainerConfig {
    fn default() -> Self {
        ContainerConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], DEFAULT_CONTAINER_PORT))],
            token_file: PathBuf::from("/run/imds-credd/container-token"),
            clients: Vec::new(),
        }
    }
}

/// What a `[container]` rule points at: a key of the table, or a key of client `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerKey {
    /// A key of `[container]` itself.
    Table(&'static str),
    /// A key of the `[[container.client]]` entry at this index.
    Client(usize, &'static str),
}

impl std::fmt::Display for ContainerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContainerKey::Table(key) => write!(f, "container.{key}"),
            ContainerKey::Client(index, key) => {
                write!(
                    f,
                    "container.client.{key} ([[container.client]] #{})",
                    index + 1
                )
            }
        }
    }
}

impl ContainerConfig {
    /// The rules of a `[container]` section that need nothing else of the config, as
    /// (where, message). The `[[assume]]` profiles a client names are checked with the
    /// whole config (`validate`).
    pub fn check(&self) -> Result<(), (ContainerKey, String)> {
        let table = |key, message| Err((ContainerKey::Table(key), message));
        if self.listen.is_empty() {
            return table("listen", "give at least one address to listen on".into());
        }
        for (i, addr) in self.listen.iter().enumerate() {
            if !is_container_listen_address(addr.ip()) {
                return table("listen", format!(
                    "{addr} is not an address the container endpoint may listen on: it serves credentials over plain HTTP, on loopback (127.0.0.1, [::1]) or {CONTAINER_ADDRESS_V4} / [{CONTAINER_ADDRESS_V6}] only"
                ));
            }
            if self.listen[..i].contains(addr) {
                return table("listen", format!("{addr} is listed twice"));
            }
        }
        if let Err(message) = check_token_file(&self.token_file) {
            return table("token_file", message);
        }
        let folders: Vec<(&str, Option<&Path>)> =
            std::iter::once((DEFAULT_CLIENT_NAME, self.token_file.parent()))
                .chain(
                    self.clients
                        .iter()
                        .map(|c| (c.name.as_str(), c.token_file.parent())),
                )
                .collect();
        for (i, client) in self.clients.iter().enumerate() {
            let refuse = |key, message| Err((ContainerKey::Client(i, key), message));
            if !is_client_name(&client.name) {
                return refuse(
                    "name",
                    format!(
                        "{:?} is not a client name: use 1-64 letters, digits, '.', '_' or '-'",
                        client.name
                    ),
                );
            }
            let earlier = |name: &str| self.clients[..i].iter().any(|c| c.name == name);
            if client.name == DEFAULT_CLIENT_NAME || earlier(&client.name) {
                return refuse(
                    "name",
                    format!("client name {:?} is already taken", client.name),
                );
            }
            if let Err(message) = check_token_file(&client.token_file) {
                return refuse("token_file", message);
            }
            // Each token lives in a folder no other client's token is in or below, so that
            // mounting a client's folder into its container hands over its token only. (The
            // default client's folder may hold others': it is not mounted anywhere.) Checked
            // against the earlier ones, so the error points at the later entry.
            let folder = client.token_file.parent();
            let shared = folders[..=i].iter().enumerate().find(|(j, (_, other))| {
                other
                    .zip(folder)
                    .is_some_and(|(o, f)| o.starts_with(f) || (*j > 0 && f.starts_with(o)))
            });
            if let Some((_, (other, _))) = shared {
                return refuse("token_file", format!(
                    "{} is in a folder that also holds client {other:?}'s token: give each client a folder of its own (it is what gets mounted into the container)",
                    client.token_file.display()
                ));
            }
        }
        Ok(())
    }

    /// Every token file: the default client's, then each `[[container.client]]`'s.
    pub fn token_files(&self) -> impl Iterator<Item = &Path> {
        std::iter::once(self.token_file.as_path())
            .chain(self.clients.iter().map(|c| c.token_file.as_path()))
    }

    /// The link-local container addresses among the listen addresses: the ones
    /// `container-address up` puts on the host.
    pub fn container_addresses(&self) -> Vec<IpAddr> {
        let mut addresses: Vec<IpAddr> = self
            .listen
            .iter()
            .map(|a| a.ip().to_canonical())
            .filter(|ip| is_container_address(*ip))
            .collect();
        addresses.dedup();
        addresses
    }
}

fn check_token_file(path: &Path) -> Result<(), String> {
    if !path.is_absolute() || path.file_name().is_none() {
        return Err(format!(
            "{} is not an absolute path to a file",
            path.display()
        ));
    }
    Ok(())
}

/// Names show in consumers, metrics labels and log lines: keep them plain.
fn is_client_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `169.254.170.23` or `fd00:ec2::23`.
pub fn is_container_address(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4 == CONTAINER_ADDRESS_V4,
        IpAddr::V6(v6) => v6 == CONTAINER_ADDRESS_V6,
    }
}

/// Loopback or a container address: where plain-HTTP credentials may be served.
pub fn is_container_listen_address(ip: IpAddr) -> bool {
    is_loopback(ip) || is_container_address(ip)
}

/// A loopback address (`127.0.0.0/8`, `::1`), also when an IPv4 one is written IPv4-mapped.
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// `"127.0.0.1:28679"` or `["127.0.0.1:28679", "169.254.170.23:80"]`.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let texts = match OneOrMany::deserialize(d)? {
        OneOrMany::One(text) => vec![text],
        OneOrMany::Many(texts) => texts,
    };
    texts
        .iter()
        .map(|text| {
            text.parse().map_err(|_| {
                serde::de::Error::custom(format!(
                    "{text:?} is not an address with a port, such as \"127.0.0.1:28679\" or \"[fd00:ec2::23]:80\""
                ))
            })
        })
        .collect()
}
