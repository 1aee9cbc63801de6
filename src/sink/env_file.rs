//! The `[[env]]` sink: a file of environment assignments that the daemon owns whole, in `sh`
//! form (`export AWS_ACCESS_KEY_ID='…'`, for `.`/`source`), `systemd` form (`KEY=value`,
//! for `EnvironmentFile=`), or, mostly for Windows, `powershell` form (`$Env:KEY="…"`, a
//! `.ps1` to dot-source; the execution policy must allow local scripts) or `cmd` form
//! (`set KEY=…`, a `.cmd` to `call`). Every format is accepted on every platform. The lines come from [`crate::credentials::render::render_env`], so the quoting
//! is the same as `imds-credd env` prints.
//!
//! Withdrawal deletes the file: a file that scripts source must not hold expired
//! credentials, and a missing file fails loudly (`.: cannot open`) where stale values would
//! fail later with a confusing `ExpiredToken`.

use super::atomic::ManagedFile;
use super::{Change, Publish, SinkError};
use crate::config::EnvSinkConfig;
use crate::credentials::render::{render_env, EnvSyntax};
use crate::credentials::Credentials;
use std::path::Path;
use zeroize::Zeroizing;

/// The whole file for `creds`: a comment line (`#` for sh, systemd and PowerShell; `rem`
/// for cmd, which would run a `#` line as a command), then the assignments. Zeroized when
/// dropped, like the lines it is made of.
pub fn render_env_file(creds: &Credentials, syntax: EnvSyntax) -> Zeroizing<String> {
    let comment = match syntax {
        EnvSyntax::Cmd | EnvSyntax::WindowsCmd => "rem",
        _ => "#",
    };
    let header = format!(
        "{comment} AWS credentials written by imds-credd; they expire {}. Rewritten on rotation, removed when withdrawn.\n",
        creds.expiration_rfc3339(),
    );
    let lines = render_env(creds, syntax);
    let mut text = Zeroizing::new(String::with_capacity(header.len() + lines.len()));
    text.push_str(&header);
    text.push_str(&lines);
    text
}

/// An `[[env]]` sink, ready to run with [`super::run_sink`].
#[derive(Debug)]
pub struct EnvFileSink {
    file: ManagedFile,
    syntax: EnvSyntax,
}

impl EnvFileSink {
    /// Fails only on a path that is not an absolute file path.
    pub fn new(config: &EnvSinkConfig) -> Result<Self, SinkError> {
        Ok(EnvFileSink {
            file: super::managed_file(&config.sink)?,
            syntax: config.format.into(),
        })
    }
}

impl Publish for EnvFileSink {
    const KIND: &'static str = "env";

    fn target(&self) -> &Path {
        self.file.path()
    }

    fn publish_checked(&self, creds: &Credentials) -> Result<Change, SinkError> {
        let contents = render_env_file(creds, self.syntax);
        let existing = self.file.read()?;
        Ok(Change::from_written(self.file.replace_if_changed(
            existing.as_ref(),
            contents.as_bytes(),
        )?))
    }

    fn withdraw(&self) -> Result<Change, SinkError> {
        Ok(Change::from_written(self.file.remove()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::secret::Secret;
    use std::time::{Duration, SystemTime};

    #[test]
    fn starts_with_a_comment_then_the_rendered_lines() {
        let creds = Credentials {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: Secret::new("s'q".into()),
            session_token: Secret::new("t".into()),
            expiration: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000),
            account_id: None,
        };
        let comments = [
            (EnvSyntax::Sh, "# "),
            (EnvSyntax::Systemd, "# "),
            (EnvSyntax::Powershell, "# "),
            (EnvSyntax::Cmd, "rem "),
        ];
        for (syntax, comment) in comments {
            let text = render_env_file(&creds, syntax);
            let (first, rest) = text.split_once('\n').unwrap();
            let expected =
                "AWS credentials written by imds-credd; they expire 2026-11-18T11:06:40Z.";
            assert_eq!(
                first.strip_prefix(comment).map(|c| c.starts_with(expected)),
                Some(true),
                "{first}"
            );
            assert_eq!(rest, render_env(&creds, syntax).as_str());
        }
    }
}
