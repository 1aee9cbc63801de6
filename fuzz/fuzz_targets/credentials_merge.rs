//! `merge_profile` on any file text: it never panics, and every byte that is not our
//! section survives. The expected output is built here from the documented contract (see
//! `src/sink/credentials_file.rs`), line by line, without calling the implementation's
//! helpers:
//! - a header is a line that, trimmed, starts with `[` and has a `]` after it; its name is
//!   what lies between the `[` and the last `]`, trimmed;
//! - our section runs from a header named like our profile through its last line that is
//!   a key (not blank, not a `#`/`;` comment) or our own expiry comment; comments and blank
//!   lines after that belong to what follows and are kept;
//! - publishing puts our section where the first of ours was (duplicates go), or appends it
//!   after a blank line; withdrawing removes ours; CRLF files get CRLF;
//! - publishing the same set twice gives the same file (no needless rewrite).
#![no_main]

use imds_credd::credentials::Credentials;
use imds_credd::credentials::secret::Secret;
use imds_credd::sink::merge_profile;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, SystemTime};

const MARKER: &str = "(written by imds-credd)";

#[derive(Debug, Arbitrary)]
struct Input {
    existing: String,
    profile: String,
    access_key_id: String,
    secret: String,
    token: String,
    expiration_secs: u32,
}

/// Profile names as the config accepts them.
fn valid_profile(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@+".contains(c))
}

/// Values as the sinks accept them (anything else is refused before merging).
fn valid_value(value: &str) -> bool {
    !value.is_empty() && value.trim() == value && !value.chars().any(char::is_control)
}

fn header_name(line: &str) -> Option<&str> {
    let rest = line.trim().strip_prefix('[')?;
    let close = rest.rfind(']')?;
    Some(rest[..close].trim())
}

fn is_ours_to_drop(line: &str) -> bool {
    let t = line.trim();
    let comment = t.starts_with('#') || t.starts_with(';');
    (!t.is_empty() && !comment) || (comment && t.ends_with(MARKER))
}

/// The file cut into pieces: text that must survive, and the places where our sections
/// stood.
enum Piece<'a> {
    Kept(&'a str),
    Ours,
}

fn pieces<'a>(text: &'a str, profile: &str) -> Vec<Piece<'a>> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if header_name(lines[i]) != Some(profile) {
            out.push(Piece::Kept(lines[i]));
            i += 1;
            continue;
        }
        // Our block: the header and every line up to the next header.
        let mut j = i + 1;
        while j < lines.len() && header_name(lines[j]).is_none() {
            j += 1;
        }
        // Its tail of comments and blanks after the last key stays.
        let mut tail = j;
        while tail > i + 1 && !is_ours_to_drop(lines[tail - 1]) {
            tail -= 1;
        }
        out.push(Piece::Ours);
        out.extend(lines[tail..j].iter().map(|l| Piece::Kept(l)));
        i = j;
    }
    out
}

fn rendered(profile: &str, creds: &Credentials, nl: &str) -> String {
    let expires = humantime_like(creds.expiration);
    format!(
        "[{profile}]{nl}# expires {expires} {MARKER}{nl}aws_access_key_id = {}{nl}aws_secret_access_key = {}{nl}aws_session_token = {}{nl}",
        creds.access_key_id,
        creds.secret_access_key.expose(),
        creds.session_token.expose()
    )
}

/// `YYYY-MM-DDTHH:MM:SSZ`, computed here by the civil-from-days algorithm.
fn humantime_like(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fuzz_target!(|input: Input| {
    let profile = if valid_profile(&input.profile) {
        input.profile.as_str()
    } else {
        "instance"
    };
    let text = input.existing.as_str();
    let nl = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let pieces = pieces(text, profile);
    let kept: String = pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Kept(l) => Some(*l),
            Piece::Ours => None,
        })
        .collect();

    // Withdrawal: exactly everything that is not ours.
    assert_eq!(merge_profile(text, profile, None), kept);

    let values = [&input.access_key_id, &input.secret, &input.token];
    if !values.iter().all(|v| valid_value(v)) {
        return;
    }
    let creds = Credentials {
        access_key_id: input.access_key_id.clone(),
        secret_access_key: Secret::new(input.secret.clone()),
        session_token: Secret::new(input.token.clone()),
        expiration: SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(input.expiration_secs)),
        account_id: None,
    };
    let merged = merge_profile(text, profile, Some(&creds));
    let expected = if pieces.iter().any(|p| matches!(p, Piece::Ours)) {
        // In place of the first of ours; the others vanish.
        let mut out = String::new();
        let mut placed = false;
        for piece in &pieces {
            match piece {
                Piece::Kept(l) => out.push_str(l),
                Piece::Ours if !placed => {
                    out.push_str(&rendered(profile, &creds, nl));
                    placed = true;
                }
                Piece::Ours => {}
            }
        }
        out
    } else {
        // Appended after a blank line, the last line completed first; a last line ending
        // in a bare CR is completed to CRLF, and then the file is a CRLF file.
        let mut out = text.to_string();
        let mut nl = nl;
        if !out.is_empty() {
            if out.ends_with('\r') {
                out.push('\n');
                nl = "\r\n";
            } else if !out.ends_with('\n') {
                out.push_str(nl);
            }
            let body = out.strip_suffix('\n').unwrap_or(&out);
            if !body.rsplit('\n').next().unwrap_or("").trim().is_empty() {
                out.push_str(nl);
            }
        }
        out.push_str(&rendered(profile, &creds, nl));
        out
    };
    assert_eq!(merged, expected);
    // Publishing the same set again changes nothing.
    assert_eq!(merge_profile(&merged, profile, Some(&creds)), merged);
});
