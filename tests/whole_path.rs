//! Property test of the whole path (see `tests/support/whole_path.rs`): seeded random IMDS
//! and STS answers — valid, almost valid and hostile (non-ASCII, quotes, newlines, NUL,
//! INI and shell syntax, wrong JSON types, odd timestamps, truncation) — through validation
//! and every renderer, without a panic and without a secret in non-secret output. The same
//! file drives the cargo-fuzz target `whole_path`.
#![allow(clippy::disallowed_methods)] // Tests and benches time real processes and servers.
#![cfg(target_os = "linux")]

#[path = "support/whole_path.rs"]
mod whole_path;

use serde_json::{json, Value};
use whole_path::{exercise, Answers};

/// Cases per run: a few seconds in a debug build.
const CASES: usize = 1_000;
/// Fixed, so that a failure is reproduced by running the test again.
const SEED: u64 = 0x1d5c_5ed0;

const PIECES: [&str; 24] = [
    "ASIA", "AKIA", "é", "Ä", "🙂", "\u{202e}", "\0", "\n", "\r\n", "'", "\"", "\\", "$(id)", "`",
    "=", "[", "]", "#", ";", " ", "%41", "&amp;", "<x>", "]]>",
];

fn nasty(rng: &mut fastrand::Rng) -> String {
    let mut out = String::new();
    for _ in 0..rng.usize(0..10) {
        if rng.bool() {
            out.push_str(PIECES[rng.usize(..PIECES.len())]);
        } else {
            let n = rng.usize(1..48);
            out.extend((0..n).map(|_| rng.alphanumeric()));
        }
    }
    out
}

fn expiration(rng: &mut fastrand::Rng) -> String {
    match rng.u8(0..6) {
        0 => format!("2027-01-15T{:02}:{:02}:00Z", rng.u8(0..24), rng.u8(0..60)),
        1 => "2027-01-15T08:00:00+00:00".into(),
        2 => "9999-12-31T23:59:59Z".into(),
        3 => "2027-02-30T25:61:61Z".into(),
        4 => "1970-01-01T00:00:00Z".into(),
        _ => nasty(rng),
    }
}

/// A string field as IMDS might send it: usually a string, sometimes another JSON type.
fn field(rng: &mut fastrand::Rng, value: String) -> Value {
    match rng.u8(0..12) {
        0 => Value::Null,
        1 => json!(rng.i64(..)),
        2 => json!([value]),
        _ => Value::String(value),
    }
}

fn realistic_key(rng: &mut fastrand::Rng, len: usize) -> String {
    (0..len)
        .map(|_| rng.alphanumeric().to_ascii_uppercase())
        .collect()
}

fn imds_answer(rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut doc = serde_json::Map::new();
    let code = if rng.u8(0..8) == 0 {
        nasty(rng)
    } else {
        "Success".into()
    };
    doc.insert("Code".into(), field(rng, code));
    let key = if rng.bool() {
        format!("ASIA{}", realistic_key(rng, 16))
    } else {
        nasty(rng)
    };
    doc.insert("AccessKeyId".into(), field(rng, key));
    let secret = if rng.bool() {
        realistic_key(rng, 40)
    } else {
        nasty(rng)
    };
    doc.insert("SecretAccessKey".into(), field(rng, secret));
    let token = if rng.bool() {
        realistic_key(rng, 300)
    } else {
        nasty(rng)
    };
    doc.insert("Token".into(), field(rng, token));
    let expires = expiration(rng);
    doc.insert("Expiration".into(), field(rng, expires));
    let mut body = Value::Object(doc).to_string().into_bytes();
    if rng.u8(0..10) == 0 {
        body.truncate(rng.usize(0..=body.len()));
    }
    body
}

fn xml_text(rng: &mut fastrand::Rng, value: String) -> String {
    if rng.bool() {
        quick_xml::escape::escape(&value).into_owned()
    } else {
        value
    }
}

fn sts_answer(rng: &mut fastrand::Rng) -> Vec<u8> {
    let key = format!("ASIA{}", realistic_key(rng, 16));
    let key = xml_text(rng, key);
    let secret = if rng.bool() {
        realistic_key(rng, 40)
    } else {
        nasty(rng)
    };
    let secret = xml_text(rng, secret);
    let token = nasty(rng);
    let token = xml_text(rng, token);
    let expires = expiration(rng);
    let expires = xml_text(rng, expires);
    let arn = nasty(rng);
    let arn = xml_text(rng, arn);
    let mut body = format!(
        "<AssumeRoleResponse><AssumeRoleResult><AssumedRoleUser><Arn>{arn}</Arn>\
         </AssumedRoleUser><Credentials><SessionToken>{token}</SessionToken>\
         <SecretAccessKey>{secret}</SecretAccessKey><Expiration>{expires}</Expiration>\
         <AccessKeyId>{key}</AccessKeyId></Credentials></AssumeRoleResult>\
         </AssumeRoleResponse>"
    )
    .into_bytes();
    if rng.u8(0..10) == 0 {
        body.truncate(rng.usize(0..=body.len()));
    }
    body
}

fn existing_file(rng: &mut fastrand::Rng) -> String {
    let mut lines = Vec::new();
    for _ in 0..rng.usize(0..8) {
        lines.push(match rng.u8(0..5) {
            0 => format!("[{}]", nasty(rng)),
            1 => "[instance]".to_string(),
            2 => format!("aws_access_key_id = {}", nasty(rng)),
            3 => format!("# {}", nasty(rng)),
            _ => nasty(rng),
        });
    }
    let newline = if rng.bool() { "\n" } else { "\r\n" };
    lines.join(newline)
}

#[test]
fn random_imds_and_sts_answers_pass_validation_and_every_renderer_without_a_panic() {
    let mut rng = fastrand::Rng::with_seed(SEED);
    let mut accepted = 0;
    for _ in 0..CASES {
        let imds = imds_answer(&mut rng);
        let sts = sts_answer(&mut rng);
        let existing = existing_file(&mut rng);
        let profile = if rng.bool() {
            "instance".to_string()
        } else {
            nasty(&mut rng)
        };
        accepted += exercise(&Answers {
            imds: &imds,
            sts: &sts,
            existing_file: &existing,
            profile: &profile,
            asked_after: rng.u32(0..30_000_000),
        });
    }
    // The renderers are reached, not only the refusals.
    println!("{accepted} of {} answers passed validation", 2 * CASES);
    assert!(accepted >= CASES / 10, "{accepted}");
}
