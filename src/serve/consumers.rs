//! Who fetched credentials (`GET /v1/consumers`, `imds-credd consumers`): one row per
//! (uid, executable, profile) with first and last seen, requests and refusals, and per-uid
//! counters for `/metrics`.
//!
//! A subordinate uid ([`crate::serve::subuid`]) is recorded as its owner, with the
//! subordinate uid beside it: it shares its owner's rows cap, rate limit and view.
//!
//! Memory is bounded: at most [`MAX_ROWS`] rows, and at most [`MAX_ROWS_PER_UID`] per uid
//! (with its subordinate uids), past which a uid's new programs share one
//! `(other programs)` row: a user who runs many programs (or rewrites its `argv[0]`, or
//! connects from 65,536 subordinate uids) cannot push other users' rows out. When the table
//! is full, the least recently seen row of the uid holding the most rows is evicted (and
//! evictions are counted).
//!
//! Who sees what: root every row; another uid only its own rows (its subordinate uids'
//! included), and a subordinate uid only its own. Command lines can hold secrets. The executable and command line (from
//! `/proc`, so attacker-controlled text) are made printable and capped by [`printable`]
//! before they are kept. One info line is logged per new row.

use crate::credentials::format_utc_timestamp;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Rows kept at most.
pub const MAX_ROWS: usize = 1024;
/// Rows of one uid at most.
pub const MAX_ROWS_PER_UID: usize = 32;
/// Uids counted for `/metrics` at most (uids mapped from user namespaces can be many);
/// the requests of further uids are counted as uid `unknown`.
pub const MAX_UIDS: usize = 4096;
/// The executable of a uid's row for programs past [`MAX_ROWS_PER_UID`].
const OTHER_PROGRAMS: &str = "(other programs)";

/// A program as `/proc` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// The executable: `/proc/PID/exe` when readable (`verified`), else `argv[0]`.
    pub exe: String,
    /// `exe` is `/proc/PID/exe`, not the peer's own `argv[0]`.
    pub verified: bool,
    /// The command line, shortened.
    pub cmdline: String,
}

impl Program {
    /// What is shown when the pid is not known or gone.
    pub fn unknown() -> Program {
        Program {
            exe: "(unknown)".into(),
            verified: false,
            cmdline: String::new(),
        }
    }
}

/// `text` with every control, format (bidi) and backslash character escaped as `\u{…}` /
/// `\\`, cut to `limit` characters (then ending in `…`): safe on one line of a table or a
/// log, and unable to pass for another row.
pub fn printable(text: &str, limit: usize) -> String {
    let mut out = String::new();
    for (count, c) in text.chars().enumerate() {
        if count == limit {
            out.push('…');
            break;
        }
        match c {
            '\\' => out.push_str("\\\\"),
            c if c.is_control() || is_format(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Invisible characters that reorder or hide text on a terminal.
fn is_format(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}')
}

/// Who made a request, as found at accept time.
#[derive(Debug, Clone)]
pub struct Consumer {
    /// `None` when it could not be found (a container peer whose socket vanished). For a
    /// subordinate uid, its owner.
    pub uid: Option<u32>,
    /// The peer's own uid when it is a subordinate uid of [`Self::uid`].
    pub subordinate: Option<u32>,
    /// The peer's gid, when known.
    pub gid: Option<u32>,
    /// The peer's pid, when known.
    pub pid: Option<i32>,
    /// The peer's program.
    pub program: Program,
    /// On the container endpoint: the client whose token it showed (`None` elsewhere, or
    /// before a token was shown).
    pub client: Option<Arc<str>>,
    /// On the container endpoint: the peer's address (a container has no uid here).
    pub address: Option<IpAddr>,
}

impl Consumer {
    /// A peer not identified: its socket vanished, or it never showed the token.
    pub fn unknown() -> Consumer {
        Consumer {
            uid: None,
            subordinate: None,
            gid: None,
            pid: None,
            program: Program::unknown(),
            client: None,
            address: None,
        }
    }

    /// Root itself (not a subordinate uid of root): exempt from the per-uid limits, and
    /// shown every row.
    pub fn is_root(&self) -> bool {
        self.uid == Some(0) && self.subordinate.is_none()
    }

    /// Whether `self` may see a row of `uid` / `subordinate` (see the module doc).
    fn may_see(&self, key: &Key) -> bool {
        if self.is_root() {
            return true;
        }
        match self.subordinate {
            Some(own) => key.subordinate == Some(own) && key.uid == self.uid,
            None => self.uid.is_some() && key.uid == self.uid,
        }
    }
}

/// How a request ended, for the counters (the `result` label of `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestResult {
    /// Answered (with credentials, or why there are none).
    Answered,
    /// Refused: a peer not allowed, a missing or wrong token.
    Refused,
    /// Over the uid's rate limit.
    RateLimited,
}

/// Per-uid counts, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UidCounts {
    /// Requests answered with credentials.
    pub answered: u64,
    /// Requests refused.
    pub refused: u64,
    /// Requests over the rate limit.
    pub rate_limited: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    uid: Option<u32>,
    subordinate: Option<u32>,
    exe: String,
    profile: Option<String>,
    /// The container endpoint's client and peer address: containers have no uid here.
    client: Option<Arc<str>>,
    address: Option<IpAddr>,
}

#[derive(Debug)]
struct Row {
    user: String,
    gid: Option<u32>,
    pid: Option<i32>,
    verified: bool,
    cmdline: String,
    endpoint: &'static str,
    requests: u64,
    refused: u64,
    first_seen: SystemTime,
    last_seen: SystemTime,
}

#[derive(Debug, Default)]
struct Table {
    rows: HashMap<Key, Row>,
    evicted: u64,
    per_uid: BTreeMap<Option<u32>, UidCounts>,
    /// Counts by container client and peer address, at most [`MAX_UIDS`] pairs (further
    /// ones count as address `None`).
    per_client: BTreeMap<(Arc<str>, Option<IpAddr>), UidCounts>,
}

/// The consumer table, shared by both listeners.
#[derive(Debug, Default)]
pub struct Consumers {
    table: Mutex<Table>,
}

impl Consumers {
    /// Counts one request of `consumer` for `profile` (`None`: the instance role) on
    /// `endpoint` (`socket` or `container`).
    pub fn record(
        &self,
        endpoint: &'static str,
        consumer: &Consumer,
        profile: Option<&str>,
        result: RequestResult,
        now: SystemTime,
    ) {
        let mut table = self.table.lock().expect("consumer table lock");
        let counted_uid =
            if table.per_uid.len() < MAX_UIDS || table.per_uid.contains_key(&consumer.uid) {
                consumer.uid
            } else {
                None
            };
        table.per_uid.entry(counted_uid).or_default().add(result);
        if let Some(client) = &consumer.client {
            let mut pair = (Arc::clone(client), consumer.address);
            if table.per_client.len() >= MAX_UIDS && !table.per_client.contains_key(&pair) {
                pair.1 = None;
            }
            table.per_client.entry(pair).or_default().add(result);
        }
        let mut key = Key {
            uid: consumer.uid,
            subordinate: consumer.subordinate,
            exe: consumer.program.exe.clone(),
            profile: profile.map(str::to_string),
            client: consumer.client.clone(),
            address: consumer.address,
        };
        if !table.rows.contains_key(&key) {
            let of_uid = table.rows.keys().filter(|k| k.uid == key.uid).count();
            if of_uid >= MAX_ROWS_PER_UID {
                key.exe = OTHER_PROGRAMS.to_string();
                key.subordinate = None;
            }
        }
        if !table.rows.contains_key(&key) {
            if table.rows.len() >= MAX_ROWS {
                table.evict_oldest();
            }
            let user = user_name(consumer.uid);
            tracing::info!(
                endpoint,
                uid = consumer.uid,
                subordinate_uid = consumer.subordinate,
                user,
                pid = consumer.pid,
                exe = key.exe,
                exe_verified = consumer.program.verified,
                profile = key.profile.as_deref(),
                client = key.client.as_deref(),
                address = key.address.map(|a| a.to_string()),
                "new credentials consumer"
            );
            table.rows.insert(
                key.clone(),
                Row {
                    user,
                    gid: consumer.gid,
                    pid: consumer.pid,
                    verified: consumer.program.verified,
                    cmdline: consumer.program.cmdline.clone(),
                    endpoint,
                    requests: 0,
                    refused: 0,
                    first_seen: now,
                    last_seen: now,
                },
            );
        }
        let row = table.rows.get_mut(&key).expect("inserted above");
        row.requests += 1;
        if result != RequestResult::Answered {
            row.refused += 1;
        }
        row.last_seen = now;
        row.pid = consumer.pid;
        row.cmdline.clone_from(&consumer.program.cmdline);
        row.endpoint = endpoint;
    }

    /// Rows evicted so far to stay within [`MAX_ROWS`].
    pub fn evicted(&self) -> u64 {
        self.table.lock().expect("consumer table lock").evicted
    }

    /// Counts by uid.
    pub fn per_uid(&self) -> Vec<(Option<u32>, UidCounts)> {
        let table = self.table.lock().expect("consumer table lock");
        table.per_uid.iter().map(|(uid, c)| (*uid, *c)).collect()
    }

    /// Counts by container client and peer address.
    pub fn per_client(&self) -> Vec<(Arc<str>, Option<IpAddr>, UidCounts)> {
        let table = self.table.lock().expect("consumer table lock");
        table
            .per_client
            .iter()
            .map(|((client, address), c)| (Arc::clone(client), *address, *c))
            .collect()
    }

    /// The `/v1/consumers` document as `viewer` may see it: rows, most recently seen first.
    pub fn to_json(&self, viewer: &Consumer) -> Value {
        let table = self.table.lock().expect("consumer table lock");
        let mut rows: Vec<(&Key, &Row)> = table
            .rows
            .iter()
            .filter(|(key, _)| viewer.may_see(key))
            .collect();
        rows.sort_by_key(|(_, row)| std::cmp::Reverse(row.last_seen));
        let rows: Vec<Value> = rows
            .into_iter()
            .map(|(key, row)| {
                json!({
                    "uid": key.uid,
                    "subordinate_uid": key.subordinate,
                    "user": row.user,
                    "gid": row.gid,
                    "pid": row.pid,
                    "exe": key.exe,
                    "exe_verified": row.verified,
                    "cmdline": row.cmdline,
                    "profile": key.profile,
                    "endpoint": row.endpoint,
                    "client": key.client.as_deref(),
                    "address": key.address.map(|a| a.to_string()),
                    "requests": row.requests,
                    "refused": row.refused,
                    "first_seen": format_utc_timestamp(row.first_seen),
                    "last_seen": format_utc_timestamp(row.last_seen),
                })
            })
            .collect();
        Value::Array(rows)
    }
}

impl UidCounts {
    fn add(&mut self, result: RequestResult) {
        match result {
            RequestResult::Answered => self.answered += 1,
            RequestResult::Refused => self.refused += 1,
            RequestResult::RateLimited => self.rate_limited += 1,
        }
    }
}

impl Table {
    /// Evicts the least recently seen row of the uid holding the most rows.
    fn evict_oldest(&mut self) {
        let mut per_uid: HashMap<Option<u32>, usize> = HashMap::new();
        for key in self.rows.keys() {
            *per_uid.entry(key.uid).or_default() += 1;
        }
        let Some((largest, _)) = per_uid.into_iter().max_by_key(|(_, rows)| *rows) else {
            return;
        };
        let oldest = self
            .rows
            .iter()
            .filter(|(key, _)| key.uid == largest)
            .min_by_key(|(_, row)| row.last_seen)
            .map(|(key, _)| key.clone());
        if let Some(key) = oldest {
            self.rows.remove(&key);
            self.evicted += 1;
        }
    }
}

/// The user name of `uid` (from the system's user database), or the number.
#[cfg(target_os = "linux")]
fn user_name(uid: Option<u32>) -> String {
    let Some(uid) = uid else {
        return "(unknown)".to_string();
    };
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) => printable(&user.name, 64),
        _ => uid.to_string(),
    }
}

/// Windows peers have no uid; the named pipe does not record consumers.
#[cfg(windows)]
fn user_name(uid: Option<u32>) -> String {
    uid.map_or_else(|| "(unknown)".to_string(), |uid| uid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn consumer(uid: u32, exe: &str) -> Consumer {
        Consumer {
            uid: Some(uid),
            subordinate: None,
            gid: Some(uid),
            pid: Some(42),
            program: Program {
                exe: exe.to_string(),
                verified: true,
                cmdline: format!("{exe} --flag"),
            },
            client: None,
            address: None,
        }
    }

    fn root() -> Consumer {
        consumer(0, "/usr/bin/sudo")
    }

    fn t(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + seconds)
    }

    #[test]
    fn strings_from_proc_cannot_break_a_line_or_pass_for_another_row() {
        assert_eq!(printable("/usr/bin/aws", 256), "/usr/bin/aws");
        assert_eq!(
            printable("a\nuid 0 root\tx\u{1b}[2J\\", 256),
            "a\\u{a}uid 0 root\\u{9}x\\u{1b}[2J\\\\"
        );
        assert_eq!(
            printable("evil\u{202e}txt.exe", 256),
            "evil\\u{202e}txt.exe"
        );
        assert_eq!(
            printable(&"x".repeat(1000), 10),
            format!("{}…", "x".repeat(10))
        );
    }

    #[test]
    fn one_row_per_uid_program_and_profile_with_counts_and_times() {
        let table = Consumers::default();
        let aws = consumer(1000, "/usr/bin/aws");
        table.record("socket", &aws, None, RequestResult::Answered, t(0));
        table.record("socket", &aws, None, RequestResult::RateLimited, t(5));
        table.record("socket", &aws, Some("audit"), RequestResult::Answered, t(6));
        table.record(
            "container",
            &consumer(1001, "/usr/bin/python3"),
            None,
            RequestResult::Refused,
            t(7),
        );
        let rows = table.to_json(&root());
        let rows = rows.as_array().unwrap();
        assert_eq!(rows.len(), 3);
        let first = rows
            .iter()
            .find(|r| r["uid"] == 1000 && r["profile"].is_null())
            .unwrap();
        assert_eq!(
            (first["requests"].as_u64(), first["refused"].as_u64()),
            (Some(2), Some(1))
        );
        assert_eq!(first["first_seen"], format_utc_timestamp(t(0)));
        assert_eq!(first["last_seen"], format_utc_timestamp(t(5)));
        assert_eq!(rows[0]["endpoint"], "container", "most recent first");
        let counts = table.per_uid();
        assert_eq!(
            counts[0],
            (
                Some(1000),
                UidCounts {
                    answered: 2,
                    refused: 0,
                    rate_limited: 1
                }
            )
        );
        assert_eq!(counts[1].1.refused, 1);
    }

    #[test]
    fn the_table_is_bounded_and_one_uid_cannot_evict_the_others() {
        let table = Consumers::default();
        let answered = |uid, exe: &str, at| {
            table.record(
                "socket",
                &consumer(uid, exe),
                None,
                RequestResult::Answered,
                t(at),
            );
        };
        answered(1000, "/usr/bin/aws", 0);
        for i in 0..200 {
            answered(2000, &format!("/tmp/fake-{i}"), 1 + i);
        }
        let rows = table.to_json(&root());
        let rows = rows.as_array().unwrap();
        assert_eq!(rows.len(), 1 + MAX_ROWS_PER_UID + 1);
        assert!(rows.iter().any(|r| r["uid"] == 1000));
        let other = rows.iter().find(|r| r["exe"] == OTHER_PROGRAMS).unwrap();
        assert_eq!(other["requests"], 200 - MAX_ROWS_PER_UID as u64);
        assert_eq!(table.evicted(), 0);

        for uid in 0..MAX_ROWS as u32 {
            answered(10_000 + uid, "/bin/x", 1000 + u64::from(uid));
        }
        assert_eq!(table.to_json(&root()).as_array().unwrap().len(), MAX_ROWS);
        assert_eq!(table.evicted(), 1 + MAX_ROWS_PER_UID as u64 + 1);

        for uid in 0..MAX_UIDS as u32 {
            answered(100_000 + uid, "/bin/y", 5000);
        }
        let counts = table.per_uid();
        assert_eq!(counts.len(), MAX_UIDS + 1, "the capped uids and `unknown`");
        assert_eq!(counts[0].0, None);
    }

    #[test]
    fn subordinate_uids_share_their_owners_rows_and_cannot_evict_anyone_else() {
        let table = Consumers::default();
        table.record("socket", &root(), None, RequestResult::Answered, t(0));
        table.record(
            "socket",
            &consumer(1000, "/usr/bin/aws"),
            None,
            RequestResult::Answered,
            t(1),
        );
        for sub in 0..5000u32 {
            let flood = Consumer {
                subordinate: Some(200_000 + sub),
                ..consumer(2000, &format!("/tmp/c-{sub}"))
            };
            table.record(
                "socket",
                &flood,
                None,
                RequestResult::Answered,
                t(2 + u64::from(sub)),
            );
        }
        let rows = table.to_json(&root());
        let rows = rows.as_array().unwrap();
        assert!(rows.iter().any(|r| r["uid"] == 0) && rows.iter().any(|r| r["uid"] == 1000));
        assert_eq!(rows.len(), 2 + MAX_ROWS_PER_UID + 1, "the owner's share");
        assert!(rows
            .iter()
            .filter(|r| r["uid"] == 2000 && r["exe"] != OTHER_PROGRAMS)
            .all(|r| r["subordinate_uid"].as_u64().unwrap() >= 200_000));
        assert_eq!(table.evicted(), 0);
        let counts = table.per_uid();
        assert_eq!(counts.len(), 3, "counted as three uids: {counts:?}");
    }

    #[test]
    fn a_caller_sees_only_its_own_rows_and_root_sees_all() {
        let table = Consumers::default();
        let app = consumer(1000, "/usr/bin/app");
        let sub = Consumer {
            subordinate: Some(100_005),
            ..consumer(1000, "/usr/bin/podman-app")
        };
        for who in [&root(), &app, &sub, &consumer(2000, "/usr/bin/other")] {
            table.record("socket", who, None, RequestResult::Answered, t(0));
        }
        let seen = |viewer: &Consumer| -> Vec<String> {
            let mut exes: Vec<String> = table
                .to_json(viewer)
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["exe"].as_str().unwrap().to_string())
                .collect();
            exes.sort();
            exes
        };
        assert_eq!(seen(&root()).len(), 4);
        assert_eq!(seen(&app), ["/usr/bin/app", "/usr/bin/podman-app"]);
        assert_eq!(seen(&sub), ["/usr/bin/podman-app"]);
        let root_subordinate = Consumer {
            subordinate: Some(100_000),
            ..root()
        };
        assert!(
            seen(&root_subordinate).is_empty(),
            "root's subordinate is not root"
        );
        assert!(seen(&Consumer::unknown()).is_empty());
    }
}
