//! Every text form of a credentials set we print: environment assignments in every syntax
//! (`sh` for the env file, `?format=env` and `imds-credd env`; systemd's `EnvironmentFile=`,
//! PowerShell, cmd, JSON, and the five shapes of the AWS CLI v2's `aws configure
//! export-credentials`), the `credential_process` document and the container shape. One
//! place, so the quoting rules are written (and tested) once, each into a zeroized buffer.

use crate::credentials::Credentials;
use std::time::SystemTime;
use zeroize::Zeroizing;

/// The syntax of an environment listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EnvSyntax {
    /// `export NAME='value'`: POSIX shell, for `.`/`source`/`eval`.
    Sh,
    /// `NAME=value`: systemd `EnvironmentFile=`.
    Systemd,
    /// `$Env:NAME="value"`: PowerShell (also the CLI v2 `powershell` shape).
    Powershell,
    /// `set NAME=value`: Windows cmd.
    Cmd,
    /// The `credential_process` JSON document, indented.
    Json,
    /// `export NAME=value`, unquoted: the CLI v2 `env` shape.
    Env,
    /// `NAME=value`, unquoted: the CLI v2 `env-no-export` shape.
    EnvNoExport,
    /// `set NAME=value`: the CLI v2 `windows-cmd` shape.
    WindowsCmd,
    /// The `credential_process` JSON in the CLI v2 `process` shape: its key order, indent 2.
    Process,
}

/// The variables the SDKs and the AWS CLI read, in the order we print them:
/// `AWS_CREDENTIAL_EXPIRATION` uses the `+00:00` spelling of `aws configure
/// export-credentials`, and `AWS_ACCOUNT_ID` comes last, only when the account is known.
/// The values are copies of secrets: zeroized when dropped.
pub fn env_variables(creds: &Credentials) -> Vec<(&'static str, Zeroizing<String>)> {
    let mut variables = vec![
        (
            "AWS_ACCESS_KEY_ID",
            Zeroizing::new(creds.access_key_id.clone()),
        ),
        (
            "AWS_SECRET_ACCESS_KEY",
            Zeroizing::new(creds.secret_access_key.expose().to_string()),
        ),
        (
            "AWS_SESSION_TOKEN",
            Zeroizing::new(creds.session_token.expose().to_string()),
        ),
        (
            "AWS_CREDENTIAL_EXPIRATION",
            Zeroizing::new(expiration_with_offset(creds.expiration)),
        ),
    ];
    if let Some(account) = &creds.account_id {
        variables.push(("AWS_ACCOUNT_ID", Zeroizing::new(account.clone())));
    }
    variables
}

/// `2026-11-23T09:00:00+00:00`.
fn expiration_with_offset(time: SystemTime) -> String {
    let z = crate::credentials::format_utc_timestamp(time);
    format!("{}+00:00", z.trim_end_matches('Z'))
}

/// Renders the credentials in `syntax`, one assignment per line, ending with a newline.
/// The text holds the secrets: it is zeroized when dropped, and every line is written
/// straight into it (sized up front), so no other copy is left behind in freed memory.
pub fn render_env(creds: &Credentials, syntax: EnvSyntax) -> Zeroizing<String> {
    match syntax {
        EnvSyntax::Json => return json_object(&process_fields(creds), Layout::Indented),
        EnvSyntax::Process => return cli_process_json(creds),
        _ => {}
    }
    let variables = env_variables(creds);
    // Quoting at most doubles a value; 32 covers a line's name and syntax.
    let room: usize = variables.iter().map(|(_, v)| 2 * v.len() + 32).sum();
    let mut out = Zeroizing::new(String::with_capacity(room));
    for (name, value) in &variables {
        match syntax {
            EnvSyntax::Sh | EnvSyntax::Env => {
                out.push_str("export ");
                out.push_str(name);
                out.push('=');
                if syntax == EnvSyntax::Sh {
                    push_sh_quoted(&mut out, value);
                } else {
                    push_sh_unquoted(&mut out, value);
                }
            }
            EnvSyntax::EnvNoExport => {
                out.push_str(name);
                out.push('=');
                push_sh_unquoted(&mut out, value);
            }
            EnvSyntax::Systemd => {
                out.push_str(name);
                out.push('=');
                push_systemd_quoted(&mut out, value);
            }
            EnvSyntax::Powershell => {
                out.push_str("$Env:");
                out.push_str(name);
                out.push('=');
                push_powershell_quoted(&mut out, value);
            }
            EnvSyntax::Cmd | EnvSyntax::WindowsCmd => push_cmd_assignment(&mut out, name, value),
            EnvSyntax::Json | EnvSyntax::Process => unreachable!("handled above"),
        }
        out.push('\n');
    }
    out
}

/// What `aws configure export-credentials --format process` prints: `json.dumps(indent=2)`
/// with its keys in its order (`Version`, `AccessKeyId`, `SecretAccessKey`, `SessionToken`,
/// `Expiration` in the `+00:00` spelling), then `AccountId` when known.
fn cli_process_json(creds: &Credentials) -> Zeroizing<String> {
    let expiration = expiration_with_offset(creds.expiration);
    let mut fields = vec![
        ("Version", Json::Number(1)),
        ("AccessKeyId", Json::Text(&creds.access_key_id)),
        (
            "SecretAccessKey",
            Json::Text(creds.secret_access_key.expose()),
        ),
        ("SessionToken", Json::Text(creds.session_token.expose())),
        ("Expiration", Json::Text(&expiration)),
    ];
    if let Some(account) = &creds.account_id {
        fields.push(("AccountId", Json::Text(account)));
    }
    json_object(&fields, Layout::Indented)
}

/// The `credential_process` Version 1 document, compact (`GET /v1/credentials`,
/// `credential-process`). `Version` is the number 1 and `Expiration` is always present:
/// without it the AWS CLI would never refresh. `AccountId` when known (botocore reads it).
pub fn process_json(creds: &Credentials) -> Zeroizing<String> {
    json_object(&process_fields(creds), Layout::Compact)
}

/// The container-credentials shape the SDKs read (`Token`, not `SessionToken`), with
/// `AccountId` when known and `RoleArn` when given: an assumed-role profile's ARN (IMDS names
/// the instance role, not its ARN).
pub fn container_json(creds: &Credentials, role_arn: Option<&str>) -> Zeroizing<String> {
    let expiration = creds.expiration_rfc3339();
    let mut fields = vec![("AccessKeyId", Json::Text(&creds.access_key_id))];
    if let Some(account) = &creds.account_id {
        fields.push(("AccountId", Json::Text(account)));
    }
    fields.push(("Expiration", Json::Text(&expiration)));
    if let Some(arn) = role_arn {
        fields.push(("RoleArn", Json::Text(arn)));
    }
    fields.push((
        "SecretAccessKey",
        Json::Text(creds.secret_access_key.expose()),
    ));
    fields.push(("Token", Json::Text(creds.session_token.expose())));
    json_object(&fields, Layout::Compact)
}

/// The fields of the `credential_process` document in the order we have always printed
/// them (sorted by key, as `serde_json` sorts an object).
fn process_fields(creds: &Credentials) -> Vec<(&'static str, Json<'_>)> {
    let mut fields = vec![("AccessKeyId", Json::Text(&creds.access_key_id))];
    if let Some(account) = &creds.account_id {
        fields.push(("AccountId", Json::Text(account)));
    }
    fields.extend([
        ("Expiration", Json::Owned(creds.expiration_rfc3339())),
        (
            "SecretAccessKey",
            Json::Text(creds.secret_access_key.expose()),
        ),
        ("SessionToken", Json::Text(creds.session_token.expose())),
        ("Version", Json::Number(1)),
    ]);
    fields
}

/// A value of one of our JSON documents.
enum Json<'a> {
    Text(&'a str),
    /// Text that is not a secret, built for the document (an expiry).
    Owned(String),
    Number(u8),
}

impl Json<'_> {
    /// Appends the value as JSON, escaped straight from the borrowed text into `out`.
    fn write_to(&self, out: &mut Vec<u8>) {
        let written = match self {
            Json::Text(text) => serde_json::to_writer(&mut *out, text),
            Json::Owned(text) => serde_json::to_writer(&mut *out, text),
            Json::Number(number) => serde_json::to_writer(&mut *out, number),
        };
        written.expect("writing JSON into memory cannot fail");
    }

    /// Bytes the value takes once quoted, for sizing the buffer up front: a secret is
    /// printable ASCII (`rules`), so escaping at most doubles it.
    fn room(&self) -> usize {
        match self {
            Json::Text(text) => 2 * text.len() + 2,
            Json::Owned(text) => 2 * text.len() + 2,
            Json::Number(_) => 3,
        }
    }
}

/// How a document is laid out: as `serde_json::to_string` or as `to_string_pretty` plus a
/// final newline.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    Compact,
    Indented,
}

/// Writes a flat JSON object into one zeroized buffer sized up front, each value escaped
/// from the borrowed text: no other copy of a secret is made, nor left in freed memory.
fn json_object(fields: &[(&str, Json<'_>)], layout: Layout) -> Zeroizing<String> {
    let room: usize = fields
        .iter()
        .map(|(key, value)| key.len() + value.room() + 8)
        .sum();
    let mut out = Zeroizing::new(Vec::with_capacity(room + 8));
    out.push(b'{');
    for (index, (key, value)) in fields.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        if layout == Layout::Indented {
            out.extend_from_slice(b"\n  ");
        }
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(match layout {
            Layout::Indented => b"\": ",
            Layout::Compact => b"\":",
        });
        value.write_to(&mut out);
    }
    if layout == Layout::Indented {
        out.extend_from_slice(b"\n}\n");
    } else {
        out.push(b'}');
    }
    let text = String::from_utf8(std::mem::take(&mut *out)).expect("JSON is UTF-8");
    Zeroizing::new(text)
}

/// The CLI's `env` shapes print values bare, which is safe for the key and token alphabets;
/// anything else is single-quoted rather than handed to the shell as code.
fn push_sh_unquoted(out: &mut String, value: &str) {
    if value.chars().all(is_plain) {
        out.push_str(value);
    } else {
        push_sh_quoted(out, value);
    }
}

/// POSIX single quotes: nothing inside is special except `'`, written `'\''`.
fn push_sh_quoted(out: &mut String, value: &str) {
    out.push('\'');
    for c in value.chars() {
        if c == '\'' {
            out.push_str(r"'\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
}

/// systemd reads `KEY=value`; a value with anything beyond a safe set is double-quoted with
/// `\` and `"` escaped (systemd does not expand `$` in environment files).
fn push_systemd_quoted(out: &mut String, value: &str) {
    if value.chars().all(is_plain) {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        if matches!(c, '\\' | '"') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// PowerShell double quotes, as `aws configure export-credentials` prints them, with the
/// backtick escape on the characters that are special there.
fn push_powershell_quoted(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        if matches!(c, '`' | '"' | '$') {
            out.push('`');
        }
        out.push(c);
    }
    out.push('"');
}

/// `set NAME=value`, or `set "NAME=value"` when the value holds a character cmd treats
/// specially outside quotes.
fn push_cmd_assignment(out: &mut String, name: &str, value: &str) {
    let quoted = !value.chars().all(is_plain);
    out.push_str(if quoted { "set \"" } else { "set " });
    out.push_str(name);
    out.push('=');
    out.push_str(value);
    if quoted {
        out.push('"');
    }
}

/// Characters that need no quoting in any syntax: the base64 and key alphabets.
fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || "/+=._:-".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::secret::Secret;
    use std::time::Duration;

    fn creds(secret: &str) -> Credentials {
        Credentials {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: Secret::new(secret.into()),
            session_token: Secret::new("tok/en+=".into()),
            expiration: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000),
            account_id: None,
        }
    }

    /// The JSON documents are written by hand into a zeroized buffer; they stay byte for
    /// byte what `serde_json` writes for the same object (sorted keys, its escaping), with
    /// and without the optional fields, for a value that needs escaping.
    #[test]
    fn the_json_documents_are_what_serde_json_writes() {
        for account in [None, Some("123456789012".to_string())] {
            let mut set = creds("se\"cr/et\u{1}é");
            set.account_id = account.clone();
            let mut process = serde_json::json!({
                "Version": 1,
                "AccessKeyId": "ASIAEXAMPLE",
                "SecretAccessKey": "se\"cr/et\u{1}é",
                "SessionToken": "tok/en+=",
                "Expiration": set.expiration_rfc3339(),
            });
            if let Some(account) = &account {
                process["AccountId"] = account.as_str().into();
            }
            assert_eq!(*process_json(&set), process.to_string());
            let pretty = serde_json::to_string_pretty(&process).unwrap() + "\n";
            assert_eq!(*render_env(&set, EnvSyntax::Json), pretty);
            for role_arn in [None, Some("arn:aws:iam::123456789012:role/app")] {
                let mut container = serde_json::json!({
                    "AccessKeyId": "ASIAEXAMPLE",
                    "SecretAccessKey": "se\"cr/et\u{1}é",
                    "Token": "tok/en+=",
                    "Expiration": set.expiration_rfc3339(),
                });
                if let Some(arn) = role_arn {
                    container["RoleArn"] = arn.into();
                }
                if let Some(account) = &account {
                    container["AccountId"] = account.as_str().into();
                }
                assert_eq!(*container_json(&set, role_arn), container.to_string());
            }
        }
    }

    #[test]
    fn each_syntax_quotes_a_value_as_its_readers_expect() {
        let cases = [
            // sh: exported and single-quoted.
            (
                EnvSyntax::Sh,
                "a'b$c",
                "export AWS_SECRET_ACCESS_KEY='a'\\''b$c'\n",
            ),
            // systemd: quoted only when needed.
            (
                EnvSyntax::Systemd,
                "plain/Key+1=",
                "AWS_SECRET_ACCESS_KEY=plain/Key+1=\n",
            ),
            (
                EnvSyntax::Systemd,
                "with \"quote\"",
                r#"AWS_SECRET_ACCESS_KEY="with \"quote\"""#,
            ),
            // PowerShell and cmd: the AWS CLI v2 shapes.
            (
                EnvSyntax::Powershell,
                "k$y",
                "$Env:AWS_SECRET_ACCESS_KEY=\"k`$y\"\n",
            ),
            (EnvSyntax::Cmd, "plain", "set AWS_SECRET_ACCESS_KEY=plain\n"),
            (EnvSyntax::Cmd, "a&b", "set \"AWS_SECRET_ACCESS_KEY=a&b\"\n"),
        ];
        for (syntax, secret, line) in cases {
            let out = render_env(&creds(secret), syntax).to_string();
            assert!(out.contains(line), "{syntax:?}: {out}");
        }
        let sh = render_env(&creds("s"), EnvSyntax::Sh).to_string();
        assert!(
            sh.contains("export AWS_CREDENTIAL_EXPIRATION='2026-11-18T"),
            "{sh}"
        );
        assert!(sh.trim_end().ends_with("+00:00'"), "{sh}");
    }

    fn with_account(secret: &str) -> Credentials {
        Credentials {
            account_id: Some("123456789012".into()),
            ..creds(secret)
        }
    }

    #[test]
    fn every_line_format_carries_the_account_id_last() {
        for syntax in [
            EnvSyntax::Sh,
            EnvSyntax::Systemd,
            EnvSyntax::Powershell,
            EnvSyntax::Cmd,
            EnvSyntax::Env,
            EnvSyntax::EnvNoExport,
            EnvSyntax::WindowsCmd,
        ] {
            let out = render_env(&with_account("s"), syntax).to_string();
            let last = out.lines().last().unwrap();
            assert!(
                last.contains("AWS_ACCOUNT_ID") && last.contains("123456789012"),
                "{syntax:?}: {out}"
            );
            let out = render_env(&creds("s"), syntax).to_string();
            assert!(!out.contains("AWS_ACCOUNT_ID"), "{syntax:?}: {out}");
        }
    }

    #[test]
    fn the_cli_v2_line_shapes_are_exact() {
        let c = with_account("plain/Key+1=");
        let expected = |prefix: &str, quote: &str| {
            format!(
                "{prefix}AWS_ACCESS_KEY_ID={quote}ASIAEXAMPLE{quote}\n\
                 {prefix}AWS_SECRET_ACCESS_KEY={quote}plain/Key+1={quote}\n\
                 {prefix}AWS_SESSION_TOKEN={quote}tok/en+={quote}\n\
                 {prefix}AWS_CREDENTIAL_EXPIRATION={quote}2026-11-18T11:06:40+00:00{quote}\n\
                 {prefix}AWS_ACCOUNT_ID={quote}123456789012{quote}\n"
            )
        };
        assert_eq!(*render_env(&c, EnvSyntax::Env), expected("export ", ""));
        assert_eq!(*render_env(&c, EnvSyntax::EnvNoExport), expected("", ""));
        assert_eq!(*render_env(&c, EnvSyntax::WindowsCmd), expected("set ", ""));
        let powershell = expected("$Env:", "\"");
        assert_eq!(*render_env(&c, EnvSyntax::Powershell), powershell);
    }

    #[test]
    fn the_cli_v2_env_shape_quotes_what_the_shell_would_run() {
        let out = render_env(&creds("a;b $(x)"), EnvSyntax::Env).to_string();
        assert!(
            out.contains("export AWS_SECRET_ACCESS_KEY='a;b $(x)'\n"),
            "{out}"
        );
    }

    #[test]
    fn the_cli_v2_process_shape_is_exact() {
        let out = render_env(&with_account("s/k"), EnvSyntax::Process).to_string();
        assert_eq!(
            out,
            "{\n  \"Version\": 1,\n  \"AccessKeyId\": \"ASIAEXAMPLE\",\n  \"SecretAccessKey\": \"s/k\",\n  \"SessionToken\": \"tok/en+=\",\n  \"Expiration\": \"2026-11-18T11:06:40+00:00\",\n  \"AccountId\": \"123456789012\"\n}\n"
        );
        // The client commands read this shape back (with a key id the answer rules accept).
        let valid = Credentials {
            access_key_id: "ASIAEXAMPLEEXAMPLE".into(),
            ..with_account("s/k")
        };
        let out = render_env(&valid, EnvSyntax::Process);
        let back = Credentials::from_process_json(out.as_bytes()).unwrap();
        assert_eq!(back, valid);
    }

    #[test]
    fn json_is_the_process_document() {
        let out = render_env(&creds("s"), EnvSyntax::Json).to_string();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["Version"], 1);
        assert_eq!(v["SecretAccessKey"], "s");
    }
}
