//! `imds-credd status`: the daemon's `/v1/status` document as a short summary for people
//! (`expires in 4h 12m`, `3m ago`), or as-is with `--json`, and the [`Verdict`] a health
//! check reads from the exit code: whether the daemon holds valid credentials.

use super::{block_on, print_stdout, ClientCommandError, SocketArgs};
use crate::clock::{Clock, SystemClock};
use crate::credentials::parse_utc_timestamp;
use serde_json::Value;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

/// What the status document says of the instance role's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The daemon holds valid credentials.
    Valid,
    /// The daemon answered, but holds no valid credentials.
    NoValidCredentials,
}

/// `imds-credd status`: which daemon to ask, and how to print.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// The daemon's socket.
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Print the daemon's status document (JSON) instead of the summary.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command: the summary (or the JSON) on stdout, and the daemon's [`Verdict`].
pub fn run(args: &StatusArgs) -> Result<Verdict, ClientCommandError> {
    block_on(async {
        let (doc, text) = args.socket.api().status().await?;
        let now = SystemClock.now();
        let shown = if args.json {
            format!("{}\n", text.trim_end())
        } else {
            render_status(&doc, now)
        };
        print_stdout(&shown)?;
        Ok(if holds_valid_credentials(&doc, now) {
            Verdict::Valid
        } else {
            Verdict::NoValidCredentials
        })
    })
}

/// True when the daemon says it holds valid instance-role credentials
/// (`credentials_valid`), or, from a daemon that does not say, when `expiration` is ahead.
pub fn holds_valid_credentials(doc: &Value, now: SystemTime) -> bool {
    match doc["credentials_valid"].as_bool() {
        Some(valid) => valid,
        None => timestamp(doc, "expiration").is_some_and(|expiration| expiration > now),
    }
}

/// When the daemon will next refresh the instance role (`profile` `None`) or an
/// `[[assume]]` profile (listed under `profiles`).
pub fn next_refresh(doc: &Value, profile: Option<&str>) -> Option<SystemTime> {
    match profile {
        None => timestamp(doc, "next_refresh"),
        Some(name) => timestamp(&doc["profiles"][name], "next_refresh"),
    }
}

/// The human summary, one fact per line.
pub fn render_status(doc: &Value, now: SystemTime) -> String {
    let mut out = String::new();
    let role = doc["role"]
        .as_str()
        .unwrap_or("(none attached or not yet known)");
    let _ = writeln!(out, "role:          {role}");
    let account = doc["account_id"].as_str().unwrap_or("(not known)");
    let _ = writeln!(out, "account:       {account}");
    let _ = writeln!(out, "credentials:   {}", credentials_state(doc, now));
    let _ = writeln!(out, "last refresh:  {}", when(doc, "last_refresh", now));
    let _ = writeln!(out, "next refresh:  {}", when(doc, "next_refresh", now));
    let last_error = doc["last_error"].as_str().unwrap_or("none");
    let _ = writeln!(out, "last error:    {last_error}");
    if let Some(warning) = doc["clock_skew_warning"].as_str() {
        let _ = writeln!(out, "clock skew:    WARNING {warning}");
    }
    if let Some(jump) = doc["clock_jump"]["description"].as_str() {
        let _ = writeln!(
            out,
            "clock jump:    {jump}, noticed {}",
            when(&doc["clock_jump"], "noticed_at", now)
        );
    }
    if let Some(profiles) = doc["profiles"].as_object().filter(|p| !p.is_empty()) {
        let _ = writeln!(out, "profiles:");
        for (name, profile) in profiles {
            let mut line = format!(
                "  {name:<9} {}; next refresh {}",
                credentials_state(profile, now),
                when(profile, "next_refresh", now)
            );
            if let Some(account) = profile["account_id"].as_str() {
                let _ = write!(line, "; account {account}");
            }
            if let Some(error) = profile["last_error"].as_str() {
                let _ = write!(line, "; last error: {error}");
            }
            if let Some(skew) = profile["clock_skew"].as_str() {
                let _ = write!(line, "; clock skew: {skew}");
            }
            let _ = writeln!(out, "{line}");
        }
    }
    let sinks = doc["sinks"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if sinks.is_empty() {
        let _ = writeln!(out, "sinks:         none");
    } else {
        let _ = writeln!(out, "sinks:");
        for sink in sinks {
            let _ = writeln!(out, "  {}", sink_line(sink, now));
        }
    }
    let mut counters = Vec::new();
    flatten_counters("", &doc["counters"], &mut counters);
    if !counters.is_empty() {
        let _ = writeln!(out, "counters:      {}", counters.join(" "));
    }
    out
}

/// `valid, expire in 4h 12m (…)`, `EXPIRED 8m ago (…)` or `NONE`, on the daemon's clock
/// (`expires_in_seconds`, `credentials_valid`) where it says: this process's clock may
/// disagree with the daemon's (a client outside the daemon's time namespace, or run in
/// the moment after a jump).
fn credentials_state(doc: &Value, now: SystemTime) -> String {
    let Some(at) = timestamp(doc, "expiration") else {
        return "NONE".to_string();
    };
    let left_secs =
        doc["expires_in_seconds"]
            .as_i64()
            .unwrap_or_else(|| match at.duration_since(now) {
                Ok(left) => left.as_secs() as i64,
                Err(past) => -(past.duration().as_secs() as i64),
            });
    let words = in_words(Duration::from_secs(left_secs.unsigned_abs()));
    let expiration = text(doc, "expiration");
    let valid = doc["credentials_valid"].as_bool().unwrap_or(left_secs > 0);
    match (valid, left_secs > 0) {
        (true, true) => format!("valid, expire in {words} ({expiration})"),
        (_, false) => format!("EXPIRED {words} ago ({expiration})"),
        (false, true) => format!("EXPIRED ({expiration})"),
    }
}

/// `name=value` for every number under `counters`, nested groups as `group.name=value`.
fn flatten_counters(prefix: &str, value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (name, inner) in map {
                let path = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                flatten_counters(&path, inner, out);
            }
        }
        Value::Null => {}
        other => out.push(format!("{prefix}={other}")),
    }
}

/// `file  /home/app/.aws/credentials  ok, written 3m ago`, or the sink's error.
fn sink_line(sink: &Value, now: SystemTime) -> String {
    let kind = sink["kind"].as_str().unwrap_or("?");
    let target = sink["target"].as_str().unwrap_or("?");
    let success = timestamp(sink, "last_success").map(|at| relative(at, now));
    let state = match (sink["last_error"].as_str(), success) {
        (Some(error), Some(success)) => format!("FAILING: {error} (last success {success})"),
        (Some(error), None) => format!("FAILING: {error} (never succeeded)"),
        (None, Some(success)) => format!("ok, last success {success}"),
        (None, None) => "not used yet".to_string(),
    };
    match sink["hook_error"].as_str() {
        Some(hook) => format!("{kind:<9} {target}  {state}; HOOK FAILED: {hook}"),
        None => format!("{kind:<9} {target}  {state}"),
    }
}

fn text<'a>(doc: &'a Value, key: &str) -> &'a str {
    doc[key].as_str().unwrap_or("")
}

fn timestamp(doc: &Value, key: &str) -> Option<SystemTime> {
    doc[key].as_str().and_then(parse_utc_timestamp)
}

/// `3m ago` / `in 41m`, or `never` when the document has no such time.
fn when(doc: &Value, key: &str, now: SystemTime) -> String {
    timestamp(doc, key).map_or_else(|| "never".to_string(), |at| relative(at, now))
}

/// `in 4h 12m` for a time ahead of `now`, `3m ago` for one behind it.
pub fn relative(at: SystemTime, now: SystemTime) -> String {
    match at.duration_since(now) {
        Ok(ahead) => format!("in {}", in_words(ahead)),
        Err(behind) => format!("{} ago", in_words(behind.duration())),
    }
}

/// A duration in humantime's words, to whole minutes from one minute up (`4h 12m`) and to
/// whole seconds below (`42s`): more precision than that is noise in a summary.
pub fn in_words(duration: Duration) -> String {
    let secs = duration.as_secs();
    let shown = if secs >= 60 { secs - secs % 60 } else { secs };
    humantime::format_duration(Duration::from_secs(shown)).to_string()
}

// The tests serve on unix sockets (see `test_support`).
#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::client::test_support::{json_answer, runtime, serve_once};
    use crate::client::SocketArgs;
    use tokio::net::UnixListener;

    const NOW: &str = "2026-11-23T04:48:00Z";

    fn now() -> SystemTime {
        parse_utc_timestamp(NOW).unwrap()
    }

    fn healthy_doc() -> Value {
        serde_json::json!({
            "role": "app-server",
            "account_id": "123456789012",
            "expiration": "2026-11-23T09:00:30Z",
            "expires_in_seconds": 15150,
            "last_refresh": "2026-11-23T04:45:00Z",
            "next_refresh": "2026-11-23T05:29:10Z",
            "last_error": null,
            "sinks": [
                {"kind": "socket", "target": "/run/imds-credd/credentials.sock",
                 "last_success": "2026-11-23T04:45:00Z", "last_error": null},
                {"kind": "file", "target": "/home/app/.aws/credentials",
                 "last_success": "2026-11-23T03:45:00Z",
                 "last_error": "cannot write /home/app/.aws/credentials: No space left on device"},
                {"kind": "env", "target": "/run/imds-credd/credentials.env",
                 "last_success": "2026-11-23T04:45:00Z", "last_error": null,
                 "hook_error": "pid file /run/app.pid: owned by uid 1001; only root or the sink's owner (uid 1000) may own it"}
            ],
            "profiles": {"audit": {"expiration": "2026-11-23T05:40:00Z",
                                   "account_id": "222222222222",
                                   "next_refresh": "2026-11-23T05:25:00Z",
                                   "last_error": null}},
            "counters": {"imds_get_requests": 12, "imds_token_requests": 3,
                         "socket_requests": {"200": 40, "503": 2}}
        })
    }

    #[test]
    fn summary_says_when_in_words() {
        let shown = render_status(&healthy_doc(), now());
        let expected = "\
role:          app-server
account:       123456789012
credentials:   valid, expire in 4h 12m (2026-11-23T09:00:30Z)
last refresh:  3m ago
next refresh:  in 41m
last error:    none
profiles:
  audit     valid, expire in 52m (2026-11-23T05:40:00Z); next refresh in 37m; account 222222222222
sinks:
  socket    /run/imds-credd/credentials.sock  ok, last success 3m ago
  file      /home/app/.aws/credentials  FAILING: cannot write /home/app/.aws/credentials: No space left on device (last success 1h 3m ago)
  env       /run/imds-credd/credentials.env  ok, last success 3m ago; HOOK FAILED: pid file /run/app.pid: owned by uid 1001; only root or the sink's owner (uid 1000) may own it
counters:      imds_get_requests=12 imds_token_requests=3 socket_requests.200=40 socket_requests.503=2
";
        assert_eq!(shown, expected);
        assert!(holds_valid_credentials(&healthy_doc(), now()));
        assert_eq!(
            next_refresh(&healthy_doc(), Some("audit")),
            parse_utc_timestamp("2026-11-23T05:25:00Z")
        );
        assert_eq!(
            next_refresh(&healthy_doc(), None),
            parse_utc_timestamp("2026-11-23T05:29:10Z")
        );
    }

    #[test]
    fn the_daemons_own_validity_verdict_wins() {
        let mut doc = healthy_doc();
        doc["credentials_valid"] = Value::Bool(false);
        assert!(!holds_valid_credentials(&doc, now()));
    }

    #[test]
    fn summary_of_a_daemon_without_credentials() {
        let doc = serde_json::json!({
            "role": null, "expiration": null, "last_refresh": null,
            "next_refresh": "2026-11-23T04:48:42Z",
            "last_error": "no IAM role is attached to this instance",
            "sinks": [], "counters": {}
        });
        let shown = render_status(&doc, now());
        assert!(shown.contains("role:          (none attached"), "{shown}");
        assert!(shown.contains("credentials:   NONE\n"), "{shown}");
        assert!(shown.contains("last refresh:  never\n"), "{shown}");
        assert!(shown.contains("next refresh:  in 42s\n"), "{shown}");
        assert!(
            shown.contains("last error:    no IAM role is attached"),
            "{shown}"
        );
        assert!(!holds_valid_credentials(&doc, now()));
    }

    #[test]
    fn expired_credentials_are_not_healthy() {
        let mut doc = healthy_doc();
        doc["expiration"] = Value::from("2026-11-23T04:40:00Z");
        doc["expires_in_seconds"] = Value::from(-480);
        assert!(!holds_valid_credentials(&doc, now()));
        let shown = render_status(&doc, now());
        assert!(shown.contains("credentials:   EXPIRED 8m ago"), "{shown}");
    }

    /// The daemon's wall clock jumped 3 h (a resume) and this process's did not: the set
    /// is expired on the daemon's clock, and `status` says so rather than "valid, expire in
    /// 4h 12m" from its own clock. The jump is shown too.
    #[test]
    fn validity_is_judged_on_the_daemons_clock_and_a_jump_is_shown() {
        let mut doc = healthy_doc();
        doc["credentials_valid"] = Value::Bool(false);
        doc["expires_in_seconds"] = Value::from(-3 * 3600 - 120);
        doc["clock_jump"] = serde_json::json!({
            "noticed_at": "2026-11-23T04:45:00Z",
            "forward_seconds": 10800,
            "description": "the wall clock jumped 3h forward (a resume from suspend or hibernation, or a clock step)",
        });
        let shown = render_status(&doc, now());
        assert!(
            shown.contains("credentials:   EXPIRED 3h 2m ago (2026-11-23T09:00:30Z)\n"),
            "{shown}"
        );
        assert!(
            shown.contains("clock jump:    the wall clock jumped 3h forward (a resume from suspend or hibernation, or a clock step), noticed 3m ago\n"),
            "{shown}"
        );
    }

    #[test]
    fn words_round_to_minutes_from_one_minute_up() {
        assert_eq!(in_words(Duration::from_secs(59)), "59s");
        assert_eq!(in_words(Duration::from_secs(61)), "1m");
        assert_eq!(
            in_words(Duration::from_secs(4 * 3600 + 12 * 60 + 59)),
            "4h 12m"
        );
    }

    #[test]
    fn status_document_is_read_from_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let body = healthy_doc().to_string();
        runtime().block_on(async {
            let listener = UnixListener::bind(&path).unwrap();
            let server = tokio::spawn(serve_once(listener, json_answer("200 OK", &body)));
            let api = SocketArgs {
                socket: path.clone(),
            }
            .api();
            let (doc, text) = api.status().await.unwrap();
            assert_eq!(doc, healthy_doc());
            assert_eq!(text, body);
            assert!(server.await.unwrap().starts_with("GET /v1/status HTTP/1.1"));
        });
    }
}
