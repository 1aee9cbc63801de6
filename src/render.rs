//! Credentials written as environment assignments, in every syntax we print: `sh` (the env
//! file, `?format=env`, `imds-credd env`), systemd's `EnvironmentFile=`, PowerShell, cmd,
//! JSON, and the five shapes of the AWS CLI v2's `aws configure export-credentials`. One
//! place, so the quoting rules are written (and tested) once.

use crate::credentials::Credentials;
use std::time::SystemTime;

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

impl From<crate::config::EnvFormat> for EnvSyntax {
    fn from(format: crate::config::EnvFormat) -> Self {
        match format {
            crate::config::EnvFormat::Sh => EnvSyntax::Sh,
            crate::config::EnvFormat::Systemd => EnvSyntax::Systemd,
            crate::config::EnvFormat::Powershell => EnvSyntax::Powershell,
            crate::config::EnvFormat::Cmd => EnvSyntax::Cmd,
        }
    }
}

/// The variables the SDKs and the AWS CLI read, in the order we print them:
/// `AWS_CREDENTIAL_EXPIRATION` uses the `+00:00` spelling of `aws configure
/// export-credentials`, and `AWS_ACCOUNT_ID` comes last, only when the account is known.
pub fn env_variables(creds: &Credentials) -> Vec<(&'static str, String)> {
    let mut variables = vec![
        ("AWS_ACCESS_KEY_ID", creds.access_key_id.clone()),
        (
            "AWS_SECRET_ACCESS_KEY",
            creds.secret_access_key.expose().to_string(),
        ),
        (
            "AWS_SESSION_TOKEN",
            creds.session_token.expose().to_string(),
        ),
        (
            "AWS_CREDENTIAL_EXPIRATION",
            expiration_with_offset(creds.expiration),
        ),
    ];
    if let Some(account) = &creds.account_id {
        variables.push(("AWS_ACCOUNT_ID", account.clone()));
    }
    variables
}

/// `2026-11-23T09:00:00+00:00`.
fn expiration_with_offset(time: SystemTime) -> String {
    let z = crate::credentials::format_utc_timestamp(time);
    format!("{}+00:00", z.trim_end_matches('Z'))
}

/// Renders the credentials in `syntax`, one assignment per line, ending with a newline.
pub fn render_env(creds: &Credentials, syntax: EnvSyntax) -> String {
    match syntax {
        EnvSyntax::Json => {
            let value: serde_json::Value =
                serde_json::from_str(&creds.to_process_json()).expect("our own JSON parses");
            let mut out = serde_json::to_string_pretty(&value).expect("JSON value serializes");
            out.push('\n');
            return out;
        }
        EnvSyntax::Process => return cli_process_json(creds),
        _ => {}
    }
    let mut out = String::new();
    for (name, value) in env_variables(creds) {
        let line = match syntax {
            EnvSyntax::Sh => format!("export {name}={}", sh_quote(&value)),
            EnvSyntax::Systemd => format!("{name}={}", systemd_quote(&value)),
            EnvSyntax::Powershell => format!("$Env:{name}={}", powershell_quote(&value)),
            EnvSyntax::Cmd | EnvSyntax::WindowsCmd => cmd_assignment(name, &value),
            EnvSyntax::Env => format!("export {name}={}", sh_unquoted(&value)),
            EnvSyntax::EnvNoExport => format!("{name}={}", sh_unquoted(&value)),
            EnvSyntax::Json | EnvSyntax::Process => unreachable!("handled above"),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// What `aws configure export-credentials --format process` prints: `json.dumps(indent=2)`
/// with its keys in its order (`Version`, `AccessKeyId`, `SecretAccessKey`, `SessionToken`,
/// `Expiration` in the `+00:00` spelling), then `AccountId` when known.
fn cli_process_json(creds: &Credentials) -> String {
    let quote = |text: &str| serde_json::Value::from(text).to_string();
    let mut fields = vec![
        ("Version", "1".to_string()),
        ("AccessKeyId", quote(&creds.access_key_id)),
        ("SecretAccessKey", quote(creds.secret_access_key.expose())),
        ("SessionToken", quote(creds.session_token.expose())),
        (
            "Expiration",
            quote(&expiration_with_offset(creds.expiration)),
        ),
    ];
    if let Some(account) = &creds.account_id {
        fields.push(("AccountId", quote(account)));
    }
    let lines: Vec<String> = fields
        .iter()
        .map(|(key, value)| format!("  \"{key}\": {value}"))
        .collect();
    format!("{{\n{}\n}}\n", lines.join(",\n"))
}

/// The CLI's `env` shapes print values bare, which is safe for the key and token alphabets;
/// anything else is single-quoted rather than handed to the shell as code.
fn sh_unquoted(value: &str) -> String {
    if value.chars().all(is_plain) {
        value.to_string()
    } else {
        sh_quote(value)
    }
}

/// POSIX single quotes: nothing inside is special except `'`, written `'\''`.
pub fn sh_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// systemd reads `KEY=value`; a value with anything beyond a safe set is double-quoted with
/// `\` and `"` escaped (systemd does not expand `$` in environment files).
fn systemd_quote(value: &str) -> String {
    if value.chars().all(is_plain) {
        value.to_string()
    } else {
        format!("\"{}\"", value.replace('\\', r"\\").replace('"', "\\\""))
    }
}

/// PowerShell double quotes, as `aws configure export-credentials` prints them, with the
/// backtick escape on the characters that are special there.
fn powershell_quote(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        if matches!(c, '`' | '"' | '$') {
            out.push('`');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `set NAME=value`, or `set "NAME=value"` when the value holds a character cmd treats
/// specially outside quotes.
fn cmd_assignment(name: &str, value: &str) -> String {
    if value.chars().all(is_plain) {
        format!("set {name}={value}")
    } else {
        format!("set \"{name}={value}\"")
    }
}

/// Characters that need no quoting in any syntax: the base64 and key alphabets.
fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || "/+=._:-".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
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

    #[test]
    fn sh_lines_are_exported_and_single_quoted() {
        let out = render_env(&creds("a'b$c"), EnvSyntax::Sh);
        assert!(
            out.contains("export AWS_SECRET_ACCESS_KEY='a'\\''b$c'\n"),
            "{out}"
        );
        assert!(
            out.contains("export AWS_CREDENTIAL_EXPIRATION='2026-11-18T"),
            "{out}"
        );
        assert!(out.trim_end().ends_with("+00:00'"), "{out}");
    }

    #[test]
    fn systemd_lines_quote_only_when_needed() {
        let out = render_env(&creds("plain/Key+1="), EnvSyntax::Systemd);
        assert!(
            out.contains("AWS_SECRET_ACCESS_KEY=plain/Key+1=\n"),
            "{out}"
        );
        let out = render_env(&creds("with \"quote\""), EnvSyntax::Systemd);
        assert!(
            out.contains(r#"AWS_SECRET_ACCESS_KEY="with \"quote\"""#),
            "{out}"
        );
    }

    #[test]
    fn powershell_and_cmd_match_the_cli_v2_shapes() {
        let out = render_env(&creds("k$y"), EnvSyntax::Powershell);
        assert!(
            out.contains("$Env:AWS_SECRET_ACCESS_KEY=\"k`$y\"\n"),
            "{out}"
        );
        let out = render_env(&creds("plain"), EnvSyntax::Cmd);
        assert!(out.contains("set AWS_SECRET_ACCESS_KEY=plain\n"), "{out}");
        let out = render_env(&creds("a&b"), EnvSyntax::Cmd);
        assert!(out.contains("set \"AWS_SECRET_ACCESS_KEY=a&b\"\n"), "{out}");
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
            let out = render_env(&with_account("s"), syntax);
            let last = out.lines().last().unwrap();
            assert!(
                last.contains("AWS_ACCOUNT_ID") && last.contains("123456789012"),
                "{syntax:?}: {out}"
            );
            let out = render_env(&creds("s"), syntax);
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
        assert_eq!(render_env(&c, EnvSyntax::Env), expected("export ", ""));
        assert_eq!(render_env(&c, EnvSyntax::EnvNoExport), expected("", ""));
        assert_eq!(render_env(&c, EnvSyntax::WindowsCmd), expected("set ", ""));
        let powershell = expected("$Env:", "\"");
        assert_eq!(render_env(&c, EnvSyntax::Powershell), powershell);
    }

    #[test]
    fn the_cli_v2_env_shape_quotes_what_the_shell_would_run() {
        let out = render_env(&creds("a;b $(x)"), EnvSyntax::Env);
        assert!(
            out.contains("export AWS_SECRET_ACCESS_KEY='a;b $(x)'\n"),
            "{out}"
        );
    }

    #[test]
    fn the_cli_v2_process_shape_is_exact() {
        let out = render_env(&with_account("s/k"), EnvSyntax::Process);
        assert_eq!(
            out,
            "{\n  \"Version\": 1,\n  \"AccessKeyId\": \"ASIAEXAMPLE\",\n  \"SecretAccessKey\": \"s/k\",\n  \"SessionToken\": \"tok/en+=\",\n  \"Expiration\": \"2026-11-18T11:06:40+00:00\",\n  \"AccountId\": \"123456789012\"\n}\n"
        );
        let back = Credentials::from_process_json(out.as_bytes()).unwrap();
        assert_eq!(back, with_account("s/k"));
    }

    #[test]
    fn json_is_the_process_document() {
        let out = render_env(&creds("s"), EnvSyntax::Json);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["Version"], 1);
        assert_eq!(v["SecretAccessKey"], "s");
    }
}
