//! `[[unit]]` entries (`docs/DESIGN.md`, "Configuration"): which systemd units get
//! credentials through `LoadCredential=` on the unit-credentials socket, and from which
//! profile. Here: the entry, what a unit name (or a pattern with one `*`) looks like, how a
//! pattern matches, and the rules `check-config` applies to the entries.

use super::spot::Spot;
use super::{Config, SocketConfig};
use serde::Deserialize;
use std::path::PathBuf;

/// The unit-credentials socket's file name, in the API socket's folder.
pub const UNIT_SOCKET_NAME: &str = "unit-credentials.sock";

/// Longest unit name systemd accepts (`UNIT_NAME_MAX` less its NUL).
pub const UNIT_NAME_MAX: usize = 255;
/// The unit types that run processes with `LoadCredential=` (the exec units).
const UNIT_TYPES: &[&str] = &["service", "socket", "mount", "swap"];

/// A `[[unit]]` entry: the units it names, the profile they get, and for a user manager's
/// units, whose manager.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitConfig {
    /// A unit name (`backup.service`) or a pattern with exactly one `*` (`report-*.service`).
    pub name: String,
    /// An `[[assume]]` profile; empty: the instance role.
    #[serde(default)]
    pub profile: String,
    /// A user (name or uid) whose user manager's units this entry names; unset: the
    /// system manager's units (peers with uid 0).
    pub user: Option<String>,
}

impl UnitConfig {
    /// The `[[assume]]` profile served, `None` for the instance role.
    pub fn profile(&self) -> Option<&str> {
        Some(self.profile.as_str()).filter(|p| !p.is_empty())
    }

    /// Whether `unit` is the unit this entry names, or one its pattern covers (the `*`
    /// stands for any run of characters, none included).
    pub fn matches(&self, unit: &str) -> bool {
        match self.name.split_once('*') {
            None => self.name == unit,
            Some((prefix, suffix)) => {
                unit.len() >= prefix.len() + suffix.len()
                    && unit.starts_with(prefix)
                    && unit.ends_with(suffix)
            }
        }
    }
}

impl SocketConfig {
    /// Where the unit-credentials socket is: beside the API socket
    /// (`/run/imds-credd/unit-credentials.sock` by default), so one folder holds both and
    /// no key of its own is needed.
    pub fn unit_socket_path(&self) -> PathBuf {
        self.path.with_file_name(UNIT_SOCKET_NAME)
    }
}

/// A unit name as systemd writes it (`unit_name_is_valid`): at most 255 bytes of
/// `[A-Za-z0-9:_.\-@]`, a non-empty name before the last `.`, and after it the type of a
/// unit that can load credentials (`service`, `socket`, `mount`, `swap`).
pub fn is_unit_name(name: &str) -> bool {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b":_.\\-@".contains(&b);
    name.len() <= UNIT_NAME_MAX
        && name.bytes().all(allowed)
        && name
            .rsplit_once('.')
            .is_some_and(|(stem, kind)| !stem.is_empty() && UNIT_TYPES.contains(&kind))
}

/// Why a `[[unit]]` name is not usable, if it is not: a unit name, or one with a single `*`
/// that would be one with the `*` replaced.
fn name_problem(name: &str) -> Option<String> {
    let stars = name.matches('*').count();
    if stars > 1 {
        return Some(format!(
            "{name:?} has {stars} '*': a pattern has exactly one"
        ));
    }
    if !is_unit_name(&name.replacen('*', "x", 1)) {
        return Some(format!(
            "{name:?} is not a unit name such as \"backup.service\" or a pattern such as \"report-*.service\" (letters, digits, \":_.\\-@\", ending in .service, .socket, .mount or .swap)"
        ));
    }
    None
}

impl Config {
    /// The rules of the `[[unit]]` entries: names and patterns, no name twice for the same
    /// manager, profiles that `[[assume]]` defines, users that exist.
    pub(super) fn check_units(&self, known_profiles: &[&str]) -> Result<(), (Spot, String)> {
        #[cfg(windows)]
        if !self.units.is_empty() {
            return Err((
                Spot::Entry("unit", 0),
                "table `[[unit]]`: systemd units are Linux only".into(),
            ));
        }
        if !self.units.is_empty() && self.socket.path == self.socket.unit_socket_path() {
            return Err((
                Spot::Key("socket", "path"),
                format!("key `socket.path`: {UNIT_SOCKET_NAME} is the unit-credentials socket's name; name the API socket otherwise"),
            ));
        }
        for (i, unit) in self.units.iter().enumerate() {
            let refuse = |key: &'static str, message: String| {
                Err((
                    Spot::EntryKey("unit", i, key),
                    format!("key `unit.{key}`: {message}"),
                ))
            };
            if let Some(problem) = name_problem(&unit.name) {
                return refuse("name", problem);
            }
            let twice = self.units[..i]
                .iter()
                .any(|earlier| earlier.name == unit.name && earlier.user == unit.user);
            if twice {
                return refuse("name", format!("{:?} is named twice", unit.name));
            }
            if let Some(profile) = unit.profile() {
                if !known_profiles.contains(&profile) {
                    return refuse(
                        "profile",
                        format!("no [[assume]] defines profile {profile:?}"),
                    );
                }
            }
            #[cfg(target_os = "linux")]
            if let Some(user) = &unit.user {
                if let Err(problem) = resolve_user(user) {
                    return refuse("user", problem);
                }
            }
        }
        Ok(())
    }
}

/// The uid of a `[[unit]]` `user` (a name, or a number taken as a uid): what the peer's
/// `SO_PEERCRED` uid must be for that user manager's units.
#[cfg(target_os = "linux")]
pub fn resolve_user(user: &str) -> Result<u32, String> {
    if let Ok(uid) = user.parse::<u32>() {
        return Ok(uid);
    }
    match nix::unistd::User::from_name(user) {
        Ok(Some(found)) => Ok(found.uid.as_raw()),
        Ok(None) => Err(format!("user {user:?} does not exist")),
        Err(error) => Err(format!("cannot look up user {user:?}: {error}")),
    }
}

/// Linux only, as `[[unit]]` is.
#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::config::tests::{assert_refused, parse};

    fn entry(name: &str) -> UnitConfig {
        UnitConfig {
            name: name.into(),
            profile: String::new(),
            user: None,
        }
    }

    #[test]
    fn unit_names_are_systemd_s_and_of_units_that_load_credentials() {
        for good in [
            "backup.service",
            "getty@tty1.service",
            "a-b_c:d.socket",
            "x\\x2dy.mount",
        ] {
            assert!(is_unit_name(good), "{good}");
        }
        let long = format!("{}.service", "a".repeat(UNIT_NAME_MAX));
        for bad in [
            "",
            "backup",
            ".service",
            "backup.timer",
            "back up.service",
            "a/b.service",
            "ü.service",
            long.as_str(),
        ] {
            assert!(!is_unit_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_pattern_s_star_stands_for_any_run_of_characters() {
        let pattern = entry("report-*.service");
        assert!(pattern.matches("report-daily.service"));
        assert!(pattern.matches("report-.service"));
        assert!(!pattern.matches("report.service"));
        assert!(!pattern.matches("report-daily.socket"));
        assert!(!pattern.matches("xreport-daily.service"));
        assert!(entry("backup.service").matches("backup.service"));
        assert!(!entry("backup.service").matches("backup2.service"));
        assert!(entry("*.service").matches("anything.service"));
    }

    #[test]
    fn bad_entries_are_refused_with_their_line_and_key() {
        let assume = "[[assume]]\nprofile = \"audit\"\nrole_arn = \"arn:aws:iam::1:role/r\"\n\n";
        let cases: [(String, &[&str]); 6] = [
            (
                "[[unit]]\nname = \"backup\"\n".into(),
                &[":2:", "key `unit.name`", "not a unit name"],
            ),
            (
                "[[unit]]\nname = \"a-*-*.service\"\n".into(),
                &[":2:", "exactly one"],
            ),
            (
                "[[unit]]\nname = \"a.service\"\n\n[[unit]]\nname = \"a.service\"\n".into(),
                &[":5:", "named twice"],
            ),
            (
                "[[unit]]\nname = \"a.service\"\nprofile = \"nope\"\n".into(),
                &[":3:", "key `unit.profile`", "\"nope\""],
            ),
            (
                "[[unit]]\nname = \"a.service\"\nuser = \"no-such-user-imds-credd\"\n".into(),
                &[":3:", "key `unit.user`", "does not exist"],
            ),
            (
                format!("{assume}[[unit]]\nname = \"a.service\"\nsecret = 1\n"),
                &[":7:", "secret"],
            ),
        ];
        for (text, fragments) in cases {
            assert_refused(&text, fragments);
        }
        let good = format!(
            "{assume}[[unit]]\nname = \"a.service\"\nprofile = \"audit\"\n\n[[unit]]\nname = \"a.service\"\nuser = \"root\"\n\n[[unit]]\nname = \"r-*.service\"\nprofile = \"\"\n"
        );
        let config = parse(&good).unwrap();
        assert_eq!(config.units[0].profile(), Some("audit"));
        assert_eq!(config.units[2].profile(), None);
        assert_eq!(resolve_user("root"), Ok(0));
        assert_eq!(resolve_user("4242"), Ok(4242));
    }
}
