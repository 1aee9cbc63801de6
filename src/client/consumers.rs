//! `imds-credd consumers`: who on this box fetched credentials, from the daemon's
//! `/v1/consumers`, as a table for people or as-is with `--json`.
//!
//! The executable comes last on each line: it is the one column a program chooses (its
//! `argv[0]` when the daemon may not read its `/proc/PID/exe`), so whatever it holds cannot
//! shift the other columns. The daemon has already escaped control characters; the table
//! replaces any that would still reach the terminal.

use super::{block_on, print_stdout, ClientCommandError, SocketArgs};
use serde_json::Value;
use std::fmt::Write as _;

/// `imds-credd consumers`: which daemon to ask.
#[derive(Debug, Clone, clap::Args)]
pub struct ConsumersArgs {
    /// The daemon's socket.
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Print the daemon's JSON array instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command: the table (or the JSON) on stdout.
pub fn run(args: &ConsumersArgs) -> Result<(), ClientCommandError> {
    block_on(async {
        let (rows, text) = args.socket.api().consumers().await?;
        let shown = if args.json {
            format!("{}\n", text.trim_end())
        } else {
            render_table(&rows)
        };
        print_stdout(&shown)
    })
}

/// One header line, then one line per consumer.
pub fn render_table(rows: &[Value]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<7} {:<12} {:<10} {:<9} {:>8} {:>7} {:<20} {:<20} PROGRAM",
        "UID", "USER", "ENDPOINT", "PROFILE", "REQUESTS", "REFUSED", "FIRST SEEN", "LAST SEEN"
    );
    for row in rows {
        let field = |name: &str| match &row[name] {
            Value::String(text) => terminal_safe(text),
            Value::Null => "-".to_string(),
            other => other.to_string(),
        };
        // A container endpoint row names its client and the peer's address (a container
        // has no uid here): `container/web@172.17.0.2`.
        let mut endpoint = field("endpoint");
        if let Value::String(client) = &row["client"] {
            endpoint = format!("{endpoint}/{}@{}", terminal_safe(client), field("address"));
        }
        let mut program = field("exe");
        if row["exe_verified"] == false {
            program.push_str(" (argv[0])");
        }
        let _ = writeln!(
            out,
            "{:<7} {:<12} {:<10} {:<9} {:>8} {:>7} {:<20} {:<20} {program}",
            field("uid"),
            field("user"),
            endpoint,
            field("profile"),
            field("requests"),
            field("refused"),
            field("first_seen"),
            field("last_seen"),
        );
    }
    out
}

/// Control characters become `?`: a line of the table stays one line.
fn terminal_safe(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_consumer_with_the_program_last() {
        let rows: Vec<Value> = serde_json::from_str(
            r#"[{"uid":1000,"user":"app","endpoint":"socket","profile":null,"requests":12,
                 "refused":1,"first_seen":"2026-11-23T04:00:00Z","last_seen":"2026-11-23T04:45:00Z",
                 "exe":"/usr/bin/python3.11","exe_verified":true},
                {"uid":1001,"user":"web","endpoint":"container","profile":"audit","requests":3,
                 "refused":0,"first_seen":"2026-11-23T04:10:00Z","last_seen":"2026-11-23T04:11:00Z",
                 "exe":"evil\nuid 0","exe_verified":false},
                {"uid":null,"user":"(unknown)","endpoint":"container","profile":null,"requests":1,
                 "refused":0,"first_seen":"2026-11-23T04:10:00Z","last_seen":"2026-11-23T04:11:00Z",
                 "exe":"(unknown)","exe_verified":false,"client":"web","address":"172.17.0.2"}]"#,
        )
        .unwrap();
        let shown = render_table(&rows);
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), 4, "{shown}");
        assert!(lines[0].starts_with("UID     USER         ENDPOINT   PROFILE   REQUESTS"));
        assert!(
            lines[1].starts_with(
                "1000    app          socket     -               12       1 2026-11-23T04:00:00Z"
            ),
            "{shown}"
        );
        assert!(lines[1].ends_with(" /usr/bin/python3.11"), "{shown}");
        assert!(lines[2].ends_with(" evil?uid 0 (argv[0])"), "{shown}");
        assert!(
            lines[3].starts_with("-       (unknown)    container/web@172.17.0.2 -"),
            "{shown}"
        );
    }
}
