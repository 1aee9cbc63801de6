//! Role credentials: parsing the IMDS answer and the `credential_process` document, and
//! expiry arithmetic. Every text form of a set is written by `render`.
#![warn(missing_docs)]

pub mod account;
pub mod render;
pub mod rules;
pub mod secret;

use crate::credentials::account::is_account_id;
use crate::credentials::secret::Secret;
use serde_json::{Map, Value};
use std::fmt;
use std::time::SystemTime;
use thiserror::Error;

/// One set of temporary credentials. `Debug` shows the access key id (not a secret: it
/// appears in CloudTrail and in every signed request) and the expiry, never the secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `ASIA…`: names the set in CloudTrail; not a secret.
    pub access_key_id: String,
    /// The key requests are signed with.
    pub secret_access_key: Secret,
    /// The session token every request carries with the temporary key.
    pub session_token: Secret,
    /// When AWS stops accepting the set; nothing serves it after that instant.
    pub expiration: SystemTime,
    /// The AWS account the credentials belong to (12 digits), when known: IMDS's extended
    /// credentials path or `iam/info` for the instance role, the assumed role's ARN for an
    /// `[[assume]]` profile. Not a secret.
    pub account_id: Option<String>,
}

/// Why an IMDS credentials document was refused. Messages name fields, never values.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CredentialsError {
    /// Not JSON at all; where the parser stopped (never the text there).
    #[error("credentials document is not valid JSON (line {line}, column {column})")]
    Malformed {
        /// The line the parser stopped on.
        line: usize,
        /// The column the parser stopped on.
        column: usize,
    },
    /// JSON, but not an object.
    #[error("credentials document is not a JSON object")]
    NotAnObject,
    /// IMDS answered with a `Code` other than `Success`.
    #[error("IMDS refused to issue credentials: Code {code:?}, Message {message:?}")]
    NotSuccess {
        /// IMDS's `Code`, cut to 64 characters.
        code: String,
        /// IMDS's `Message`, cut to 200 characters.
        message: String,
    },
    /// A required field is absent.
    #[error("credentials document has no `{0}`")]
    MissingField(&'static str),
    /// A field is present but not a non-empty string.
    #[error("credentials document field `{0}` is not a non-empty string")]
    InvalidField(&'static str),
    /// `Expiration` does not parse as an RFC 3339 UTC time.
    #[error("credentials document `Expiration` is not an RFC 3339 UTC time")]
    BadExpiration,
    /// A `credential_process` document whose `Version` is not the number 1.
    #[error("credentials document `Version` is not the number 1")]
    UnsupportedVersion,
    /// A field breaks one of the [`rules`] a set must follow.
    #[error("credentials document field `{field}` is {rule}")]
    BadField {
        /// The field's name in the document.
        field: &'static str,
        /// The rule it breaks, as a phrase ("not 16-128 characters of A-Z and 0-9").
        rule: &'static str,
    },
}

impl Credentials {
    /// Parses the JSON that `GET …/security-credentials/<role>` returns (or the
    /// `-extended` path, which adds `AccountId`). `Code`, `Type` and
    /// `LastUpdated` may be missing (other IMDS implementations omit them); a `Code` other
    /// than `Success` is an error even though IMDS sends it with HTTP 200.
    pub fn from_imds_json(body: &[u8]) -> Result<Self, CredentialsError> {
        let mut doc = parse_object(body)?;
        if let Some(code) = doc.get("Code") {
            let code = code.as_str().unwrap_or("<not a string>");
            if code != "Success" {
                let message = doc
                    .get("Message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .chars()
                    .take(200)
                    .collect();
                return Err(CredentialsError::NotSuccess {
                    code: code.chars().take(64).collect(),
                    message,
                });
            }
        }
        take_credentials(&mut doc, "Token")
    }

    /// Parses the `credential_process` Version 1 document (what [`Self::to_process_json`]
    /// writes and `GET /v1/credentials` serves): the inverse of that function. `Version`
    /// must be the number 1; the session token is `SessionToken` there, not `Token`.
    pub fn from_process_json(body: &[u8]) -> Result<Self, CredentialsError> {
        let mut doc = parse_object(body)?;
        match doc.get("Version") {
            None => return Err(CredentialsError::MissingField("Version")),
            Some(version) if version.as_u64() != Some(1) => {
                return Err(CredentialsError::UnsupportedVersion)
            }
            Some(_) => {}
        }
        take_credentials(&mut doc, "SessionToken")
    }

    /// Refuses a set whose `Expiration` is past or too far ahead at `now`
    /// ([`rules::expiration`]); parsing cannot check it, having no clock.
    pub fn check_expiration(&self, now: SystemTime) -> Result<(), CredentialsError> {
        rules::expiration(self.expiration, now).map_err(|rule| CredentialsError::BadField {
            field: "Expiration",
            rule,
        })
    }

    /// True while the credentials may still be handed out.
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        now < self.expiration
    }

    /// `Expiration` as IMDS writes it: `2026-11-23T10:00:00Z`.
    pub fn expiration_rfc3339(&self) -> String {
        format_utc_timestamp(self.expiration)
    }

    /// The `credential_process` Version 1 document ([`render::process_json`]) as a plain
    /// `String`, for `credential-process`, which prints it once and exits.
    pub fn to_process_json(&self) -> String {
        render::process_json(self).to_string()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key)
            .field("session_token", &self.session_token)
            .field("expiration", &self.expiration_rfc3339())
            .field("account_id", &self.account_id)
            .finish()
    }
}

/// Parses a JSON object. Into a `Value` first: serde's typed errors quote the offending
/// value, which here could be a secret. Our own errors name only the field.
fn parse_object(body: &[u8]) -> Result<Map<String, Value>, CredentialsError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| CredentialsError::Malformed {
        line: e.line(),
        column: e.column(),
    })?;
    match value {
        Value::Object(doc) => Ok(doc),
        _ => Err(CredentialsError::NotAnObject),
    }
}

/// Takes the four fields out of a parsed document, each checked against [`rules`]; the
/// session token is `token_field` (`Token` from IMDS, `SessionToken` in the
/// `credential_process` document).
fn take_credentials(
    doc: &mut Map<String, Value>,
    token_field: &'static str,
) -> Result<Credentials, CredentialsError> {
    let access_key_id = take_checked(doc, "AccessKeyId", rules::access_key_id)?;
    let secret_access_key = Secret::new(take_checked(
        doc,
        "SecretAccessKey",
        rules::secret_access_key,
    )?);
    let session_token = Secret::new(take_checked(doc, token_field, rules::session_token)?);
    let expiration = take_string(doc, "Expiration")?;
    let expiration = parse_utc_timestamp(&expiration).ok_or(CredentialsError::BadExpiration)?;
    let account_id = match doc.remove("AccountId") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if is_account_id(&id) => Some(id),
        Some(_) => {
            return Err(CredentialsError::BadField {
                field: "AccountId",
                rule: "not a 12-digit account id",
            })
        }
    };
    Ok(Credentials {
        access_key_id,
        secret_access_key,
        session_token,
        expiration,
        account_id,
    })
}

/// [`take_string`], then `rule`: a string that breaks it is dropped (zeroized if a secret's
/// rule) and the error names `key` and the rule.
fn take_checked(
    doc: &mut Map<String, Value>,
    key: &'static str,
    rule: fn(&str) -> Result<(), &'static str>,
) -> Result<String, CredentialsError> {
    let mut value = take_string(doc, key)?;
    if let Err(rule) = rule(&value) {
        zeroize::Zeroize::zeroize(&mut value);
        return Err(CredentialsError::BadField { field: key, rule });
    }
    Ok(value)
}

/// Removes `key` from the document and returns it as a non-empty string. The string is moved
/// out (not copied), so the only remaining copy of a secret is the one we wrap.
fn take_string(
    doc: &mut Map<String, Value>,
    key: &'static str,
) -> Result<String, CredentialsError> {
    match doc.remove(key) {
        None | Some(Value::Null) => Err(CredentialsError::MissingField(key)),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(_) => Err(CredentialsError::InvalidField(key)),
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff]Z` and the `+00:00` spelling some implementations use.
pub fn parse_utc_timestamp(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let normalized;
    let text = match text.strip_suffix("+00:00") {
        Some(base) => {
            normalized = format!("{base}Z");
            normalized.as_str()
        }
        None => text,
    };
    humantime::parse_rfc3339(text).ok()
}

/// Formats a time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_utc_timestamp(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const IMDS_DOC: &str = r#"{
  "Code" : "Success",
  "LastUpdated" : "2026-11-23T03:00:00Z",
  "Type" : "AWS-HMAC",
  "AccessKeyId" : "ASIAEXAMPLEEXAMPLE01",
  "SecretAccessKey" : "secret/key+EXAMPLE",
  "Token" : "token//EXAMPLE==",
  "Expiration" : "2026-11-23T09:00:00Z"
}"#;

    #[test]
    fn parses_the_imds_document() {
        let creds = Credentials::from_imds_json(IMDS_DOC.as_bytes()).unwrap();
        assert_eq!(creds.access_key_id, "ASIAEXAMPLEEXAMPLE01");
        assert_eq!(creds.secret_access_key.expose(), "secret/key+EXAMPLE");
        assert_eq!(creds.session_token.expose(), "token//EXAMPLE==");
        assert_eq!(creds.expiration_rfc3339(), "2026-11-23T09:00:00Z");
    }

    #[test]
    fn accepts_a_document_without_code_type_or_last_updated() {
        let doc = r#"{"AccessKeyId":"AKIAEXAMPLEEXAMPLE","SecretAccessKey":"s","Token":"t","Expiration":"2026-11-23T09:00:00+00:00"}"#;
        let creds = Credentials::from_imds_json(doc.as_bytes()).unwrap();
        assert_eq!(creds.expiration_rfc3339(), "2026-11-23T09:00:00Z");
    }

    #[test]
    fn refuses_a_failure_code_even_with_keys_present() {
        let doc = IMDS_DOC.replace("\"Success\"", "\"Failure\"");
        let err = Credentials::from_imds_json(doc.as_bytes()).unwrap_err();
        assert!(matches!(err, CredentialsError::NotSuccess { ref code, .. } if code == "Failure"));
    }

    #[test]
    fn refuses_missing_and_empty_fields_by_name() {
        for field in ["AccessKeyId", "SecretAccessKey", "Token", "Expiration"] {
            let mut doc: Value = serde_json::from_str(IMDS_DOC).unwrap();
            doc.as_object_mut().unwrap().remove(field);
            let err = Credentials::from_imds_json(doc.to_string().as_bytes()).unwrap_err();
            assert_eq!(err, CredentialsError::MissingField(field));
            doc[field] = Value::String(String::new());
            let err = Credentials::from_imds_json(doc.to_string().as_bytes()).unwrap_err();
            assert_eq!(err, CredentialsError::InvalidField(field));
        }
    }

    #[test]
    fn errors_never_quote_secret_values() {
        let doc = IMDS_DOC.replace("\"2026-11-23T09:00:00Z\"", "\"secret/key+EXAMPLE\"");
        let err = Credentials::from_imds_json(doc.as_bytes()).unwrap_err();
        assert_eq!(err, CredentialsError::BadExpiration);
        let truncated = &IMDS_DOC[..IMDS_DOC.len() - 20];
        let err = Credentials::from_imds_json(truncated.as_bytes()).unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("EXAMPLE"), "{shown}");
    }

    #[test]
    fn debug_hides_secrets() {
        let creds = Credentials::from_imds_json(IMDS_DOC.as_bytes()).unwrap();
        let shown = format!("{creds:?}");
        assert!(shown.contains("ASIAEXAMPLEEXAMPLE01"));
        assert!(
            !shown.contains("secret/key") && !shown.contains("token//"),
            "{shown}"
        );
    }

    #[test]
    fn process_json_has_numeric_version_and_expiration() {
        let creds = Credentials::from_imds_json(IMDS_DOC.as_bytes()).unwrap();
        let v: Value = serde_json::from_str(&creds.to_process_json()).unwrap();
        assert_eq!(v["Version"], 1);
        assert_eq!(v["SessionToken"], "token//EXAMPLE==");
        assert_eq!(v["Expiration"], "2026-11-23T09:00:00Z");
    }

    #[test]
    fn process_json_round_trips() {
        let creds = Credentials::from_imds_json(IMDS_DOC.as_bytes()).unwrap();
        let back = Credentials::from_process_json(creds.to_process_json().as_bytes()).unwrap();
        assert_eq!(back, creds);
    }

    #[test]
    fn process_json_needs_version_1_and_a_session_token() {
        let creds = Credentials::from_imds_json(IMDS_DOC.as_bytes()).unwrap();
        let mut doc: Value = serde_json::from_str(&creds.to_process_json()).unwrap();
        doc["Version"] = Value::String("1".into());
        let err = Credentials::from_process_json(doc.to_string().as_bytes()).unwrap_err();
        assert_eq!(err, CredentialsError::UnsupportedVersion);
        doc.as_object_mut().unwrap().remove("Version");
        let err = Credentials::from_process_json(doc.to_string().as_bytes()).unwrap_err();
        assert_eq!(err, CredentialsError::MissingField("Version"));
        doc["Version"] = Value::from(1);
        let token = doc.as_object_mut().unwrap().remove("SessionToken").unwrap();
        doc["Token"] = token;
        let err = Credentials::from_process_json(doc.to_string().as_bytes()).unwrap_err();
        assert_eq!(err, CredentialsError::MissingField("SessionToken"));
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("EXAMPLE"), "{shown}");
    }

    #[test]
    fn the_extended_document_carries_the_account_into_the_process_json() {
        let extended = IMDS_DOC.replace(
            "\"Type\" : \"AWS-HMAC\",",
            "\"Type\" : \"AWS-HMAC\",\n  \"AccountId\" : \"123456789012\",",
        );
        let creds = Credentials::from_imds_json(extended.as_bytes()).unwrap();
        assert_eq!(creds.account_id.as_deref(), Some("123456789012"));
        let v: Value = serde_json::from_str(&creds.to_process_json()).unwrap();
        assert_eq!(v["AccountId"], "123456789012");
        let back = Credentials::from_process_json(creds.to_process_json().as_bytes()).unwrap();
        assert_eq!(back, creds);
        let legacy = Credentials::from_imds_json(IMDS_DOC.as_bytes()).unwrap();
        assert_eq!(legacy.account_id, None);
        assert!(!legacy.to_process_json().contains("AccountId"));
    }

    #[test]
    fn an_account_id_that_is_not_12_digits_is_refused_by_name() {
        for bad in ["\"12345\"", "\"12345678901\\n\"", "123456789012"] {
            let doc = IMDS_DOC.replace(
                "\"Type\" : \"AWS-HMAC\",",
                &format!("\"Type\" : \"AWS-HMAC\", \"AccountId\" : {bad},"),
            );
            let err = Credentials::from_imds_json(doc.as_bytes()).unwrap_err();
            assert_eq!(
                err,
                CredentialsError::BadField {
                    field: "AccountId",
                    rule: "not a 12-digit account id"
                },
                "{bad}"
            );
        }
    }

    #[test]
    fn validity_ends_at_expiration() {
        let creds = Credentials::from_imds_json(IMDS_DOC.as_bytes()).unwrap();
        assert!(creds.is_valid_at(creds.expiration - Duration::from_secs(1)));
        assert!(!creds.is_valid_at(creds.expiration));
    }

    #[test]
    fn a_field_that_breaks_its_rule_is_named_and_not_quoted() {
        let cases = [
            ("AccessKeyId", "ASIAÉXAMPLEEXAMPLE01"),
            ("AccessKeyId", "ASIASHORT"),
            ("SecretAccessKey", "secret key+EXAMPLE"),
            ("Token", "token\n//EXAMPLE=="),
        ];
        for (field, value) in cases {
            let mut doc: Value = serde_json::from_str(IMDS_DOC).unwrap();
            doc[field] = Value::String(value.into());
            let err = Credentials::from_imds_json(doc.to_string().as_bytes()).unwrap_err();
            assert!(
                matches!(err, CredentialsError::BadField { field: f, .. } if f == field),
                "{field}: {err:?}"
            );
            let shown = format!("{err} {err:?}");
            assert!(shown.contains(field) && !shown.contains(value), "{shown}");
        }
    }

    #[test]
    fn an_expiration_past_or_beyond_36_hours_is_refused_by_name() {
        let creds = Credentials::from_imds_json(IMDS_DOC.as_bytes()).unwrap();
        let hour = Duration::from_secs(3600);
        assert!(creds.check_expiration(creds.expiration - hour).is_ok());
        for now in [creds.expiration, creds.expiration - 37 * hour] {
            let err = creds.check_expiration(now).unwrap_err().to_string();
            assert!(err.contains("`Expiration`"), "{err}");
        }
    }
}
