//! The rules across keys of a parsed [`Config`] (`docs/DESIGN.md`, "Configuration"): one
//! profile name per `[[assume]]`, sinks on distinct absolute paths naming known profiles, a
//! loopback container endpoint, and the keys only one platform understands. Each error
//! says where it points ([`Spot`]) so the message can name the line.

use super::spot::Spot;
use super::{Config, ContainerKey, SocketConfig};
use std::path::Path;

impl Config {
    /// Checks that hold across keys, one section after another (the first error wins).
    /// Returns where to point and what is wrong.
    pub(super) fn validate(&self) -> Result<(), (Spot, String)> {
        self.check_assumes()?;
        self.check_units(&self.assume_profiles())?;
        #[cfg(windows)]
        self.check_windows_support()?;
        self.socket.check_platform()?;
        self.check_exposure()?;
        let sink_paths = self.check_sinks()?;
        self.check_container(&sink_paths)?;
        Ok(())
    }

    /// The profile names `[[assume]]` defines, in file order.
    fn assume_profiles(&self) -> Vec<&str> {
        self.assumes.iter().map(|a| a.profile.as_str()).collect()
    }

    /// `[[assume]]`: each profile named once, a role ARN, and what STS would refuse.
    fn check_assumes(&self) -> Result<(), (Spot, String)> {
        let known_profiles = self.assume_profiles();
        for (i, assume) in self.assumes.iter().enumerate() {
            let refuse = |key: &str, message: String| {
                Err((
                    Spot::Entry("assume", i),
                    format!("key `assume.{key}`: {message}"),
                ))
            };
            if known_profiles[..i].contains(&assume.profile.as_str()) {
                return refuse(
                    "profile",
                    format!("profile {:?} is defined twice", assume.profile),
                );
            }
            if !assume.role_arn.starts_with("arn:") {
                return refuse(
                    "role_arn",
                    format!("{:?} is not a role ARN", assume.role_arn),
                );
            }
            if let Err((key, message)) = super::sts_limits::check_assume_config(assume) {
                return refuse(key, message);
            }
        }
        Ok(())
    }

    /// `[[file]]` and `[[env]]`: absolute paths, no two sinks on one path, and a `source`
    /// that an `[[assume]]` defines. Returns the sinks' paths, which other files must avoid.
    fn check_sinks(&self) -> Result<Vec<&Path>, (Spot, String)> {
        let known_profiles = self.assume_profiles();
        let mut seen_paths: Vec<&Path> = Vec::new();
        for (table, index, sink) in self.sinks() {
            let (path, source) = (&sink.path, &sink.source);
            let refuse = |key: &str, message: String| {
                Err((
                    Spot::Entry(table, index),
                    format!("key `{table}.{key}`: {message}"),
                ))
            };
            if !path.is_absolute() {
                return refuse(
                    "path",
                    format!("{} is not an absolute path", path.display()),
                );
            }
            if seen_paths.contains(&path.as_path()) {
                return refuse("path", format!("{} is used by two sinks", path.display()));
            }
            seen_paths.push(path);
            if let Some(source) = source {
                if !known_profiles.contains(&source.as_str()) {
                    return refuse(
                        "source",
                        format!("no [[assume]] defines profile {source:?}"),
                    );
                }
            }
        }
        Ok(seen_paths)
    }

    /// `[container]` with its clients: its own rules, the profiles its clients name, and
    /// token files that are no sink's path.
    fn check_container(&self, sink_paths: &[&Path]) -> Result<(), (Spot, String)> {
        let Some(container) = &self.container else {
            return Ok(());
        };
        let known_profiles = self.assume_profiles();
        let spot = |key| match key {
            ContainerKey::Table(key) => (Spot::Key("container", key), format!("container.{key}")),
            ContainerKey::Client(index, key) => (
                Spot::SubEntryKey("container", "client", index, key),
                format!("container.client.{key}"),
            ),
        };
        let refuse = |key, message: String| {
            let (spot, name) = spot(key);
            Err((spot, format!("key `{name}`: {message}")))
        };
        if let Err((key, message)) = container.check() {
            return refuse(key, message);
        }
        for (i, client) in container.clients.iter().enumerate() {
            if let Some(profile) = &client.profile {
                if !known_profiles.contains(&profile.as_str()) {
                    return refuse(
                        ContainerKey::Client(i, "profile"),
                        format!("no [[assume]] defines profile {profile:?}"),
                    );
                }
            }
        }
        let keys = std::iter::once(ContainerKey::Table("token_file"))
            .chain((0..container.clients.len()).map(|i| ContainerKey::Client(i, "token_file")));
        for (key, path) in keys.zip(container.token_files()) {
            if sink_paths.contains(&path) {
                return refuse(key, format!("{} is also a sink's path", path.display()));
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
        #[cfg(target_os = "linux")]
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
        for (table, index, sink) in self.sinks() {
            let refused = [
                ("owner", sink.owner.is_some(), ACL),
                ("group", sink.group.is_some(), ACL),
                ("signal", sink.signal.is_some(), NO_SIGNALS),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{assert_refused, parse};

    #[test]
    fn entries_that_clash_with_others_are_refused_with_their_line() {
        let cases = [
            // A sink source must name an `[[assume]]` profile.
            (
                "[[file]]\npath = \"/a/credentials\"\nprofile = \"x\"\n\n[[env]]\npath = \"/a/env\"\nsource = \"nope\"\n",
                [":5:", "env.source"],
            ),
            // An `[[assume]]` entry STS would refuse.
            (
                "[[assume]]\nprofile = \"a\"\nrole_arn = \"arn:aws:iam::1:role/r\"\n\n[[assume]]\nprofile = \"b\"\nrole_arn = \"arn:aws:iam::1:role/r\"\nduration = \"5m\"\n",
                [":5:", "assume.duration"],
            ),
            // Two sinks on one path.
            (
                "[[file]]\npath = \"/a/c\"\nprofile = \"x\"\n[[file]]\npath = \"/a/c\"\nprofile = \"y\"\n",
                [":4:", "two sinks"],
            ),
        ];
        for (text, fragments) in cases {
            assert_refused(text, &fragments);
        }
    }

    #[test]
    fn a_container_endpoint_off_loopback_is_refused_with_its_line() {
        for listen in [
            "0.0.0.0:28679",
            "[::]:28679",
            "10.0.0.5:28679",
            "169.254.170.2:80",
            "169.254.170.24:80",
            "[fd00:ec2::2]:80",
        ] {
            let text = format!(
                "[log]\nlevel = \"info\"\n\n[container]\ntoken_file = \"/run/t\"\nlisten = \"{listen}\"\n"
            );
            assert_refused(
                &text,
                &[":6:", "container.listen", "loopback", "169.254.170.23"],
            );
            let list = format!("[container]\nlisten = [\"127.0.0.1:1\", \"{listen}\"]\n");
            assert_refused(&list, &[":2:", "container.listen", listen]);
        }
        let allowed = [
            "127.0.0.1:28679",
            "127.0.0.2:0",
            "[::1]:28679",
            "[::ffff:127.0.0.1]:1",
            "169.254.170.23:80",
            "[fd00:ec2::23]:8080",
        ];
        let accepted =
            allowed.map(|listen| parse(&format!("[container]\nlisten = \"{listen}\"\n")).is_ok());
        assert_eq!(accepted, [true; 6], "{allowed:?}");
        let list = parse("[container]\nlisten = [\"127.0.0.1:28679\", \"169.254.170.23:80\", \"[fd00:ec2::23]:80\"]\n").unwrap();
        assert_eq!(list.container.unwrap().listen.len(), 3);
        assert_refused(
            "[container]\nlisten = [\"127.0.0.1:1\", \"127.0.0.1:1\"]\n",
            &[":2:", "container.listen", "twice"],
        );
        assert_refused(
            "[container]\nlisten = []\n",
            &[":2:", "container.listen", "at least one"],
        );
        assert_refused(
            "[container]\nlisten = \"169.254.170.23\"\n",
            &[":2:", "container.listen", "with a port"],
        );
    }

    #[test]
    fn container_clients_are_refused_with_their_line_and_key() {
        let assume = "[[assume]]\nprofile = \"audit\"\nrole_arn = \"arn:aws:iam::1:role/r\"\n";
        let head = format!("[[env]]\npath = \"/srv/x\"\n{assume}[container]\nlisten = \"169.254.170.23:80\"\ntoken_file = \"/run/c/token\"\n");
        let client = |body: &str| {
            format!("{head}[[container.client]]\nname = \"web\"\ntoken_file = \"/run/c/web/token\"\n[[container.client]]\n{body}")
        };
        // The second client's header is line 12, then its `name`, its `token_file` and a
        // third key, in the order written.
        for (name, says) in [
            ("web", "already taken"),
            ("default", "already taken"),
            ("a b", "not a client name"),
        ] {
            let body = format!("name = \"{name}\"\ntoken_file = \"/run/c/b/token\"\n");
            assert_refused(&client(&body), &[":13:", "container.client.name", says]);
        }
        for (token_file, says) in [
            ("/run/c/web/other", "\"web\"'s token"),
            ("/run/c/token2", "\"default\"'s token"),
            ("b/token", "absolute"),
            ("/srv/x", "sink's path"),
        ] {
            let body = format!("name = \"b\"\ntoken_file = \"{token_file}\"\n");
            assert_refused(
                &client(&body),
                &[":14:", "container.client.token_file", says],
            );
        }
        for (third, key, says) in [
            (
                "profile = \"nope\"",
                "container.client.profile",
                "no [[assume]]",
            ),
            (
                "allow_from = [\"172.17.0.2/16\"]",
                "allow_from",
                "past its /16 prefix",
            ),
        ] {
            let body = format!("name = \"b\"\ntoken_file = \"/run/c/b/token\"\n{third}\n");
            assert_refused(&client(&body), &[":15:", key, says]);
        }
        let good = parse(&client(
            "name = \"b\"\ntoken_file = \"/run/c/b/token\"\nprofile = \"audit\"\nallow_from = [\"172.18.0.0/16\", \"fd00:1::/64\"]\n",
        ))
        .unwrap();
        let container = good.container.unwrap();
        assert_eq!(container.clients.len(), 2);
        assert_eq!(container.clients[1].profile.as_deref(), Some("audit"));
        assert!(container.clients[1].allow_from[0].contains("172.18.3.4".parse().unwrap()));
    }

    #[test]
    fn a_container_token_file_must_be_absolute_and_not_a_sink_path() {
        assert_refused(
            "[container]\ntoken_file = \"run/t\"\n",
            &[":2:", "container.token_file"],
        );
        assert_refused(
            "[[env]]\npath = \"/run/x\"\n[container]\ntoken_file = \"/run/x\"\n",
            &[":4:", "sink"],
        );
    }

    #[test]
    fn allow_sids_must_be_sids() {
        assert_refused(
            "[socket]\nallow_sids = [\"S-1-5-32-544)(A;;GA;;;WD\"]\n",
            &["socket.allow_sids", "not a SID"],
        );
        assert!(is_sid("S-1-5-21-1004336348-1177238915-682003330-1001"));
        assert!(!is_sid("S-1-5-") && !is_sid("S-1-") && !is_sid("BA"));
    }

    #[test]
    fn sink_modes_that_expose_secrets_are_refused_at_the_mode_line() {
        // The `[[file]]` entry's extra `profile` line puts its mode a line lower.
        let file = ("file", "profile = \"p\"\n", ":7:");
        let env = ("env", "", ":6:");
        for ((table, extra, line), mode) in
            [(file, "0644"), (env, "0606"), (file, "0620"), (env, "0601")]
        {
            let text = format!(
                "[log]\nlevel = \"info\"\n\n[[{table}]]\npath = \"/a/x\"\n{extra}mode = \"{mode}\"\n"
            );
            assert_refused(&text, &[line, &format!("key `{table}.mode`: {mode}")]);
        }
        for mode in ["0600", "0640", "0400"] {
            let text = format!("[[env]]\npath = \"/a/x\"\nmode = \"{mode}\"\n");
            assert!(parse(&text).is_ok(), "{mode}");
        }
    }

    #[test]
    fn a_socket_anyone_may_connect_to_needs_an_allow_list() {
        assert_refused(
            "[socket]\npath = \"/run/x.sock\"\nmode = \"0666\"\n",
            &[":3:", "key `socket.mode`", "allow_uids"],
        );
        assert!(parse("[socket]\nmode = \"0666\"\nallow_gids = [1000]\n").is_ok());
        assert!(parse("[socket]\nmode = \"0666\"\nallow_uids = [1000]\n").is_ok());
        assert!(parse("[socket]\nmode = \"0664\"\n").is_ok());
    }

    #[test]
    fn chained_durations_over_an_hour_and_plain_http_sts_are_refused() {
        let entry = "[[assume]]\nprofile = \"a\"\nrole_arn = \"arn:aws:iam::1:role/r\"\n";
        assert_refused(
            &format!("{entry}duration = \"2h\"\n"),
            &[":1:", "assume.duration", "role chaining"],
        );
        assert_refused(
            &format!("{entry}sts_endpoint = \"http://sts.us-east-1.amazonaws.com\"\n"),
            &["assume.sts_endpoint", "https"],
        );
        assert!(parse(&format!(
            "{entry}sts_endpoint = \"http://127.0.0.1:4566\"\n"
        ))
        .is_ok());
    }
}
