//! The `[[file]]` sink: one profile section in a shared-credentials INI file
//! (`~/.aws/credentials` format), which the daemon owns while every other byte of the file
//! belongs to someone else.
//!
//! Our section holds `aws_access_key_id`, `aws_secret_access_key`, `aws_session_token`,
//! `aws_account_id` when the account is known (botocore reads it), and, for people, a comment line `# expires 2026-11-23T09:00:00Z (written by imds-credd)`: no
//! SDK reads an expiry key from this file. A stray `aws_security_token` (which botocore reads
//! before `aws_session_token`) never survives in our section, because the section is
//! rewritten whole.
//!
//! What counts as our section: every header `[NAME]` whose name, trimmed, is the profile
//! (`[ instance ]` too: some SDKs trim, so it would shadow ours), from the header through its
//! last key line (or our own expiry comment). Comments and blank lines after the last key
//! belong to what follows (they usually describe the next section) and are kept. Duplicate
//! sections of our name are collapsed into one (botocore refuses a file with duplicates).

use super::atomic::ManagedFile;
use super::{Change, Publish, SinkError};
use crate::config::FileSinkConfig;
use crate::credentials::Credentials;
use std::path::Path;
use zeroize::Zeroizing;

/// The marker of our comment line, also how a leftover one is recognised.
const MARKER: &str = "(written by imds-credd)";

/// Returns `existing` with our `[section]` (a profile of the shared-credentials file) replaced in place by `credentials`, or
/// appended at the end when absent (after a blank line), or removed when `credentials` is
/// `None`. Every other line stays byte for byte, CRLF files stay CRLF. The caller keeps the
/// result in a zeroizing buffer; it is built without reallocating, so no copy is left.
pub fn merge_section(existing: &str, section: &str, credentials: Option<&Credentials>) -> String {
    let mut newline = if existing.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let lines: Vec<&str> = existing.split_inclusive('\n').collect();
    // Room for our section up front: growing would free copies of the secrets unzeroized.
    let room = credentials.map_or(0, |c| {
        section.len()
            + c.access_key_id.len()
            + c.secret_access_key.expose().len()
            + c.session_token.expose().len()
            + 256
    });
    let mut out = String::with_capacity(existing.len() + room);
    let mut placed = false;
    let mut i = 0;
    while i < lines.len() {
        if section_name(lines[i]) == Some(section) {
            if let (false, Some(creds)) = (placed, credentials) {
                push_section(&mut out, section, creds, newline);
                placed = true;
            }
            i = section_end(&lines, i);
        } else {
            out.push_str(lines[i]);
            i += 1;
        }
    }
    if let (false, Some(creds)) = (placed, credentials) {
        if !out.is_empty() {
            if out.ends_with('\r') {
                // A last line ending in a bare CR is completed to CRLF, which makes it a
                // CRLF file: our section follows suit, so the next merge changes nothing.
                out.push('\n');
                newline = "\r\n";
            } else if !out.ends_with('\n') {
                out.push_str(newline);
            }
            if !last_line_is_blank(&out) {
                out.push_str(newline);
            }
        }
        push_section(&mut out, section, creds, newline);
    }
    out
}

/// The section name of a header line (`[ name ]` → `name`), `None` for any other line.
fn section_name(line: &str) -> Option<&str> {
    let trimmed = line.trim();
    let inner = trimmed.strip_prefix('[')?;
    let close = inner.rfind(']')?;
    Some(inner[..close].trim())
}

/// Index just past our section starting at `header`: its last key line or marker comment.
fn section_end(lines: &[&str], header: usize) -> usize {
    let mut end = header + 1;
    for (offset, line) in lines[header + 1..].iter().enumerate() {
        if section_name(line).is_some() {
            break;
        }
        let trimmed = line.trim();
        let comment = trimmed.starts_with('#') || trimmed.starts_with(';');
        if (!trimmed.is_empty() && !comment) || (comment && trimmed.ends_with(MARKER)) {
            end = header + 1 + offset + 1;
        }
    }
    end
}

fn last_line_is_blank(text: &str) -> bool {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let last = body.rsplit('\n').next().unwrap_or("");
    last.trim().is_empty()
}

/// Appends our section to `out`, written in place: no temporary copy of the secrets.
fn push_section(out: &mut String, section: &str, creds: &Credentials, newline: &str) {
    let expires = creds.expiration_rfc3339();
    let lines: [&[&str]; 5] = [
        &["[", section, "]"],
        &["# expires ", &expires, " ", MARKER],
        &["aws_access_key_id = ", &creds.access_key_id],
        &["aws_secret_access_key = ", creds.secret_access_key.expose()],
        &["aws_session_token = ", creds.session_token.expose()],
    ];
    let account: Option<[&str; 2]> = creds
        .account_id
        .as_deref()
        .map(|id| ["aws_account_id = ", id]);
    for parts in lines.into_iter().chain(account.as_ref().map(|a| &a[..])) {
        parts.iter().for_each(|part| out.push_str(part));
        out.push_str(newline);
    }
}

/// A `[[file]]` sink, ready to run with [`super::run_sink`].
#[derive(Debug)]
pub struct CredentialsFileSink {
    file: ManagedFile,
    /// The INI section it owns (the config key `profile`).
    section: String,
}

impl CredentialsFileSink {
    /// Fails only on a path that is not an absolute file path; owner and group are resolved
    /// on each write (see [`super::atomic::FileOwner::resolve`]).
    pub fn new(config: &FileSinkConfig) -> Result<Self, SinkError> {
        Ok(CredentialsFileSink {
            file: super::managed_file(&config.sink)?,
            section: config.profile.clone(),
        })
    }

    /// The current file as text; a missing file is empty. Non-UTF-8 content is refused
    /// rather than rewritten, so nothing of it is lost.
    fn current(&self) -> Result<Option<(super::atomic::Existing, Zeroizing<String>)>, SinkError> {
        let Some(existing) = self.file.read()? else {
            return Ok(None);
        };
        let text = std::str::from_utf8(&existing.contents)
            .map(|text| Zeroizing::new(text.to_string()))
            .map_err(|_| SinkError::NotUtf8 {
                path: self.file.path().to_path_buf(),
            })?;
        Ok(Some((existing, text)))
    }
}

impl Publish for CredentialsFileSink {
    const KIND: &'static str = "file";

    fn target(&self) -> &Path {
        self.file.path()
    }

    fn publish_checked(&self, creds: &Credentials) -> Result<Change, SinkError> {
        let current = self.current()?;
        let text = current.as_ref().map_or("", |(_, text)| text.as_str());
        let merged = Zeroizing::new(merge_section(text, &self.section, Some(creds)));
        let existing = current.as_ref().map(|(existing, _)| existing);
        Ok(Change::from_written(
            self.file.replace_if_changed(existing, merged.as_bytes())?,
        ))
    }

    fn withdraw(&self) -> Result<Change, SinkError> {
        let Some((_, text)) = self.current()? else {
            return Ok(Change::Unchanged);
        };
        let merged = Zeroizing::new(merge_section(&text, &self.section, None));
        if merged == text {
            return Ok(Change::Unchanged);
        }
        self.file.replace(merged.as_bytes())?;
        Ok(Change::Written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::secret::Secret;
    use std::time::{Duration, SystemTime};

    fn creds(n: u32) -> Credentials {
        Credentials {
            access_key_id: format!("ASIAEXAMPLE{n:05}"),
            secret_access_key: Secret::new(format!("secret/{n}+key")),
            session_token: Secret::new(format!("token/{n}+=")),
            expiration: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000),
            account_id: None,
        }
    }

    /// `text` with our `instance` section holding `creds(1)`.
    fn publish(text: &str) -> String {
        merge_section(text, "instance", Some(&creds(1)))
    }

    /// `text` without our `instance` section.
    fn withdraw(text: &str) -> String {
        merge_section(text, "instance", None)
    }

    const OURS: &str = "[instance]\n\
        # expires 2026-11-18T11:06:40Z (written by imds-credd)\n\
        aws_access_key_id = ASIAEXAMPLE00001\n\
        aws_secret_access_key = secret/1+key\n\
        aws_session_token = token/1+=\n";

    #[test]
    fn the_account_id_is_the_last_key_of_our_section() {
        let with_account = Credentials {
            account_id: Some("123456789012".into()),
            ..creds(1)
        };
        let merged = merge_section("", "instance", Some(&with_account));
        assert_eq!(merged, format!("{OURS}aws_account_id = 123456789012\n"));
        let replaced = publish(&merged);
        assert_eq!(replaced, OURS, "a set without an account drops the key");
    }

    #[test]
    fn empty_file_gets_just_our_section() {
        assert_eq!(publish(""), OURS);
        assert_eq!(withdraw(""), "");
    }

    #[test]
    fn appends_after_a_blank_line_and_keeps_everything_else() {
        let existing = "# my file\n[default]\naws_access_key_id = MINE\nregion=eu-west-1\n";
        let merged = publish(existing);
        assert_eq!(merged, format!("{existing}\n{OURS}"));
        let removed = withdraw(&merged);
        assert_eq!(removed, format!("{existing}\n"));
        // A second cycle does not grow the file.
        let again = publish(&removed);
        assert_eq!(again, merged);
    }

    #[test]
    fn adds_the_missing_final_newline_before_appending() {
        let merged = publish("[default]\nx = 1");
        assert_eq!(merged, format!("[default]\nx = 1\n\n{OURS}"));
    }

    #[test]
    fn replaces_in_place_and_keeps_the_comments_of_the_next_section() {
        let existing = "[a]\nk = 1\n\n[instance]\naws_access_key_id = OLD\n\
            aws_security_token = STALE\n; note inside\naws_session_token = OLD\n\n\
            # the b account\n[b]\nk = 2";
        let merged = publish(existing);
        assert_eq!(
            merged,
            format!("[a]\nk = 1\n\n{OURS}\n# the b account\n[b]\nk = 2")
        );
        assert!(!merged.contains("aws_security_token"));
        assert_eq!(
            withdraw(existing),
            "[a]\nk = 1\n\n\n# the b account\n[b]\nk = 2"
        );
    }

    #[test]
    fn crlf_files_stay_crlf() {
        let existing =
            "[a]\r\nk = 1\r\n\r\n[instance]\r\naws_access_key_id = OLD\r\n\r\n[b]\r\nk = 2\r\n";
        let merged = publish(existing);
        let ours_crlf = OURS.replace('\n', "\r\n");
        assert_eq!(
            merged,
            format!("[a]\r\nk = 1\r\n\r\n{ours_crlf}\r\n[b]\r\nk = 2\r\n")
        );
        assert!(!merged.replace("\r\n", "").contains('\n'));
    }

    #[test]
    fn a_last_line_ending_in_a_bare_cr_is_completed_as_crlf_and_stays_stable() {
        let merged = publish("[a]\nk = 1\r");
        let ours_crlf = OURS.replace('\n', "\r\n");
        assert_eq!(merged, format!("[a]\nk = 1\r\n\r\n{ours_crlf}"));
        assert_eq!(publish(&merged), merged);
    }

    #[test]
    fn spaced_and_duplicate_headers_collapse_into_one_section() {
        let existing =
            "[ instance ]\naws_access_key_id = A\n[x]\nk = 1\n[instance]\naws_access_key_id = B\n";
        assert_eq!(publish(existing), format!("{OURS}[x]\nk = 1\n"));
        assert_eq!(withdraw(existing), "[x]\nk = 1\n");
    }

    #[test]
    fn a_leftover_expiry_comment_is_ours_and_does_not_pile_up() {
        let existing =
            "[instance]\n# expires 2020-01-01T00:00:00Z (written by imds-credd)\n\n[x]\nk = 1\n";
        let merged = publish(existing);
        assert_eq!(merged, format!("{OURS}\n[x]\nk = 1\n"));
        assert_eq!(merged.matches(MARKER).count(), 1);
    }

    #[test]
    fn other_profiles_with_similar_names_are_not_ours() {
        let existing = "[instance2]\nk = 1\n[profile instance]\nk = 2\n";
        assert_eq!(withdraw(existing), existing);
    }

    /// One generated file: its text, and the text with our sections removed, built
    /// independently of `merge_section` from the way it was generated.
    struct Generated {
        text: String,
        without_ours: String,
        has_ours: bool,
    }

    fn generate(rng: &mut fastrand::Rng) -> Generated {
        let newline = if rng.bool() { "\r\n" } else { "\n" };
        let names = [
            "default",
            "instance",
            " instance ",
            "work",
            "instance-2",
            "prod",
        ];
        // Every line with whether it survives the removal of our section.
        let mut lines: Vec<(String, bool)> = Vec::new();
        // Lines before the first header (comments, blanks) are never ours.
        for _ in 0..rng.usize(0..3) {
            let line = if rng.bool() {
                format!("# top {}{newline}", rng.u32(..))
            } else {
                newline.to_string()
            };
            lines.push((line, true));
        }
        let mut has_ours = false;
        for _ in 0..rng.usize(0..6) {
            let name = names[rng.usize(..names.len())];
            let ours = name.trim() == "instance";
            has_ours |= ours;
            lines.push((format!("[{name}]{newline}"), !ours));
            for k in 0..rng.usize(0..4) {
                if rng.u8(..4) == 0 {
                    lines.push((format!("; inner {k}{newline}"), !ours));
                }
                lines.push((format!("key{k} = value {}{newline}", rng.u32(..)), !ours));
                if rng.u8(..5) == 0 {
                    lines.push((format!("  continued {k}{newline}"), !ours));
                }
            }
            // Comments and blanks after the last key belong to what follows: always kept.
            for _ in 0..rng.usize(0..3) {
                let line = if rng.bool() {
                    format!("# about the next one{newline}")
                } else {
                    newline.to_string()
                };
                lines.push((line, true));
            }
        }
        if rng.u8(..4) == 0 {
            if let Some((last, _)) = lines.last_mut() {
                last.truncate(last.len() - newline.len());
            }
        }
        Generated {
            text: lines.iter().map(|(l, _)| l.as_str()).collect(),
            without_ours: lines
                .iter()
                .filter(|(_, k)| *k)
                .map(|(l, _)| l.as_str())
                .collect(),
            has_ours,
        }
    }

    #[test]
    fn generated_files_keep_every_other_section_byte_for_byte() {
        let mut rng = fastrand::Rng::with_seed(0x1d5_c12ed);
        let c = creds(7);
        for round in 0..5000 {
            let g = generate(&mut rng);
            let removed = withdraw(&g.text);
            assert_eq!(removed, g.without_ours, "round {round}: {:?}", g.text);

            let merged = merge_section(&g.text, "instance", Some(&c));
            let newline = if g.text.contains("\r\n") {
                "\r\n"
            } else {
                "\n"
            };
            let mut ours = String::new();
            push_section(&mut ours, "instance", &c, newline);
            assert_eq!(
                merged.matches(&ours).count(),
                1,
                "round {round}: {merged:?}"
            );
            let headers = merged
                .split_inclusive('\n')
                .filter(|l| section_name(l) == Some("instance"));
            assert_eq!(headers.count(), 1, "round {round}: {merged:?}");
            if g.has_ours {
                // Replaced in place: removing it again gives what removal gave.
                assert_eq!(withdraw(&merged), removed, "round {round}");
            } else {
                let mut expected = g.text.clone();
                if !expected.is_empty() {
                    if !expected.ends_with('\n') {
                        expected.push_str(newline);
                    }
                    if !last_line_is_blank(&expected) {
                        expected.push_str(newline);
                    }
                }
                expected.push_str(&ours);
                assert_eq!(merged, expected, "round {round}: {:?}", g.text);
            }
            assert_eq!(
                merge_section(&merged, "instance", Some(&c)),
                merged,
                "round {round}"
            );
        }
    }
}
