//! What the simulated IMDS says, byte for byte: the JSON documents as the real service lays
//! them out (`" : "` separators, `text/plain`), its error bodies, and fresh random
//! credentials and session tokens shaped like the real ones.

use super::ACCOUNT_ID;
use crate::credentials::format_utc_timestamp;
use crate::credentials::secret::Secret;
use crate::credentials::Credentials;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE, SERVER};
use hyper::{Response, StatusCode};
use std::time::{Duration, SystemTime};

const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64_URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn random_string(alphabet: &[u8], len: usize) -> String {
    (0..len)
        .map(|_| char::from(alphabet[fastrand::usize(..alphabet.len())]))
        .collect()
}

/// A fresh random set expiring at `expiration`, in whole seconds as IMDS writes it.
pub(super) fn random_credentials(expiration: SystemTime) -> Credentials {
    let whole_seconds = expiration
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("expiration after 1970")
        .as_secs();
    Credentials {
        access_key_id: format!("ASIA{}", random_string(UPPER_ALNUM, 16)),
        secret_access_key: Secret::new(random_string(BASE64, 40)),
        session_token: Secret::new(format!("IQoJb3JpZ2luX2Vj{}", random_string(BASE64, 284))),
        expiration: SystemTime::UNIX_EPOCH + Duration::from_secs(whole_seconds),
        account_id: Some(ACCOUNT_ID.to_string()),
    }
}

/// A fresh random IMDSv2 session token.
pub(super) fn random_token() -> String {
    format!("AQAE{}==", random_string(BASE64_URL, 52))
}

/// The credentials document exactly as IMDS lays it out.
pub(super) fn credential_json(credentials: &Credentials, last_updated: SystemTime) -> String {
    imds_json(&[
        ("Code", "Success"),
        ("LastUpdated", &format_utc_timestamp(last_updated)),
        ("Type", "AWS-HMAC"),
        ("AccessKeyId", &credentials.access_key_id),
        ("SecretAccessKey", credentials.secret_access_key.expose()),
        ("Token", credentials.session_token.expose()),
        ("Expiration", &credentials.expiration_rfc3339()),
    ])
}

/// The extended document: the legacy fields with `AccountId` after `Type`.
pub(super) fn extended_credential_json(
    credentials: &Credentials,
    last_updated: SystemTime,
) -> String {
    imds_json(&[
        ("Code", "Success"),
        ("LastUpdated", &format_utc_timestamp(last_updated)),
        ("Type", "AWS-HMAC"),
        ("AccountId", ACCOUNT_ID),
        ("AccessKeyId", &credentials.access_key_id),
        ("SecretAccessKey", credentials.secret_access_key.expose()),
        ("Token", credentials.session_token.expose()),
        ("Expiration", &credentials.expiration_rfc3339()),
    ])
}

/// `GET /latest/meta-data/iam/info` for `role`.
pub(super) fn info_json(role: &str, now: SystemTime) -> String {
    imds_json(&[
        ("Code", "Success"),
        ("LastUpdated", &format_utc_timestamp(now)),
        (
            "InstanceProfileArn",
            &format!("arn:aws:iam::{ACCOUNT_ID}:instance-profile/{role}"),
        ),
        ("InstanceProfileId", "AIPAEXAMPLEPROFILE000"),
    ])
}

/// A flat JSON object of strings, pretty-printed with IMDS's `" : "` separators.
pub(super) fn imds_json(fields: &[(&str, &str)]) -> String {
    let quote = |text: &str| serde_json::Value::from(text).to_string();
    let lines: Vec<String> = fields
        .iter()
        .map(|(key, value)| format!("  {} : {}", quote(key), quote(value)))
        .collect();
    format!("{{\n{}\n}}", lines.join(",\n"))
}

/// An answer with IMDS's headers: `text/plain` whatever the body, `Server: EC2ws`.
pub(super) fn text_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    headers.insert(SERVER, HeaderValue::from_static("EC2ws"));
    response
}

/// An error answer with the short body a person would recognise.
pub(super) fn status_response(status: StatusCode) -> Response<Full<Bytes>> {
    let reason = status.canonical_reason().unwrap_or("Error");
    text_response(status, format!("{} - {reason}\n", status.as_u16()))
}
