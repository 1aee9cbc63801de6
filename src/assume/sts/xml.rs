//! The STS query API's XML answers: `AssumeRoleResponse` parsed into [`AssumedRole`], and
//! `ErrorResponse` into a typed refusal. Errors name the element at fault, never a value;
//! text copied from an answer into a message is cut and made printable.

use super::{AssumedRole, StsError};
use crate::credentials::account::account_of_arn;
use crate::credentials::secret::Secret;
use crate::credentials::{parse_utc_timestamp, rules, Credentials};
use quick_xml::events::Event;
use quick_xml::Reader;
use zeroize::Zeroize;

/// STS error messages are short; a longer one is cut so a log line stays a line.
const MAX_MESSAGE_CHARS: usize = 300;

/// Collects the text of the elements at `wanted` paths (element names from the root, e.g.
/// `["AssumeRoleResponse", "AssumeRoleResult", "Credentials", "AccessKeyId"]`), entity
/// references resolved. Namespaces are ignored: STS puts everything in one default one.
fn collect_texts<const N: usize>(
    xml: &[u8],
    wanted: [&[&str]; N],
) -> Result<[Option<String>; N], String> {
    let mut reader = Reader::from_reader(xml);
    let mut path: Vec<String> = Vec::new();
    let mut found: [Option<String>; N] = std::array::from_fn(|_| None);
    let mut raw = String::new();
    loop {
        let event = reader
            .read_event()
            .map_err(|_| format!("malformed XML at byte {}", reader.error_position()))?;
        match event {
            Event::Start(start) => {
                let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                path.push(name);
                raw.clear();
            }
            Event::Text(text) => {
                raw.push_str(&text.decode().map_err(|_| "XML text is not UTF-8")?);
            }
            Event::CData(data) => {
                // CDATA is literal: escape it so the unescape below gives it back as is.
                let text = data.decode().map_err(|_| "XML text is not UTF-8")?;
                raw.push_str(&quick_xml::escape::escape(text));
            }
            Event::GeneralRef(reference) => {
                let name = reference.decode().map_err(|_| "XML text is not UTF-8")?;
                raw.push('&');
                raw.push_str(&name);
                raw.push(';');
            }
            Event::End(_) => {
                if let Some(index) = wanted.iter().position(|w| path_is(&path, w)) {
                    let text = quick_xml::escape::unescape(&raw)
                        .map_err(|_| "unknown entity in XML text")?;
                    found[index] = Some(text.trim().to_string());
                }
                path.pop();
                raw.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(found)
}

fn path_is(path: &[String], wanted: &[&str]) -> bool {
    path.len() == wanted.len() && path.iter().zip(wanted).all(|(a, b)| a == b)
}

/// Parses `AssumeRoleResponse/AssumeRoleResult/{Credentials, AssumedRoleUser}`. Errors name
/// the missing element, never a value.
pub fn parse_assume_role_response(xml: &[u8]) -> Result<AssumedRole, StsError> {
    const RESULT: [&str; 2] = ["AssumeRoleResponse", "AssumeRoleResult"];
    const FIELDS: [&str; 5] = [
        "AccessKeyId",
        "SecretAccessKey",
        "SessionToken",
        "Expiration",
        "Arn",
    ];
    let credentials_path = |field| [RESULT[0], RESULT[1], "Credentials", field];
    let [access_key_id, secret, token, expiration, arn] = {
        let c0 = credentials_path(FIELDS[0]);
        let c1 = credentials_path(FIELDS[1]);
        let c2 = credentials_path(FIELDS[2]);
        let c3 = credentials_path(FIELDS[3]);
        let user = [RESULT[0], RESULT[1], "AssumedRoleUser", FIELDS[4]];
        collect_texts(xml, [&c0[..], &c1[..], &c2[..], &c3[..], &user[..]])
            .map_err(StsError::BadResponse)?
    };
    let required = |value: Option<String>, field: &str| {
        value
            .filter(|v| !v.is_empty())
            .ok_or_else(|| StsError::BadResponse(format!("no Credentials/{field}")))
    };
    let checked =
        |value: Option<String>, field: &str, rule: fn(&str) -> Result<(), &'static str>| {
            let mut value = required(value, field)?;
            match rule(&value) {
                Ok(()) => Ok(value),
                Err(rule) => {
                    value.zeroize();
                    Err(StsError::BadResponse(format!(
                        "Credentials/{field} is {rule}"
                    )))
                }
            }
        };
    let access_key_id = checked(access_key_id, FIELDS[0], rules::access_key_id)?;
    let secret_access_key = Secret::new(checked(secret, FIELDS[1], rules::secret_access_key)?);
    let session_token = Secret::new(checked(token, FIELDS[2], rules::session_token)?);
    let expiration = required(expiration, FIELDS[3])?;
    let expiration = parse_utc_timestamp(&expiration)
        .ok_or_else(|| StsError::BadResponse("Credentials/Expiration is not a UTC time".into()))?;
    Ok(AssumedRole {
        credentials: Credentials {
            access_key_id,
            secret_access_key,
            session_token,
            expiration,
            account_id: arn.as_deref().and_then(account_of_arn),
        },
        assumed_role_arn: arn.unwrap_or_default(),
        date: None,
    })
}

/// Turns a non-200 answer into [`StsError::Refused`] when it carries
/// `ErrorResponse/Error/{Code,Message}`, else [`StsError::Status`].
pub fn parse_error_response(status: u16, xml: &[u8]) -> StsError {
    let code_path = ["ErrorResponse", "Error", "Code"];
    let message_path = ["ErrorResponse", "Error", "Message"];
    match collect_texts(xml, [&code_path[..], &message_path[..]]) {
        Ok([Some(code), message]) if !code.is_empty() => StsError::Refused {
            status,
            code: printable(&code, 64),
            message: printable(&message.unwrap_or_default(), MAX_MESSAGE_CHARS),
        },
        _ => StsError::Status { status },
    }
}

/// `text` cut to `max` characters with control characters replaced, so a hostile or broken
/// answer cannot forge log lines.
fn printable(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUCCESS: &str = r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <SourceIdentity>DevUser123</SourceIdentity>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/demo/John</Arn>
      <AssumedRoleId>ARO123EXAMPLE123:John</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>AQoDYXdzEPT//////////wEXAMPLEtc764&amp;more</SessionToken>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>
      <Expiration>2026-11-23T09:00:00Z</Expiration>
      <AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>
    </Credentials>
    <PackedPolicySize>8</PackedPolicySize>
  </AssumeRoleResult>
  <ResponseMetadata>
    <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId>
  </ResponseMetadata>
</AssumeRoleResponse>"#;

    const DENIED: &str = r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error>
    <Type>Sender</Type>
    <Code>AccessDenied</Code>
    <Message>User: arn:aws:sts::123456789012:assumed-role/demo/i-0 is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::222222222222:role/efgh</Message>
  </Error>
  <RequestId>4c9a1b6e-0000-0000-0000-000000000000</RequestId>
</ErrorResponse>"#;

    #[test]
    fn parses_the_documented_assume_role_answer() {
        let assumed = parse_assume_role_response(SUCCESS.as_bytes()).unwrap();
        let creds = &assumed.credentials;
        assert_eq!(creds.access_key_id, "ASIAIOSFODNN7EXAMPLE");
        assert_eq!(
            creds.secret_access_key.expose(),
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
        );
        assert_eq!(
            creds.session_token.expose(),
            "AQoDYXdzEPT//////////wEXAMPLEtc764&more"
        );
        assert_eq!(creds.expiration_rfc3339(), "2026-11-23T09:00:00Z");
        assert_eq!(
            assumed.assumed_role_arn,
            "arn:aws:sts::123456789012:assumed-role/demo/John"
        );
    }

    #[test]
    fn a_missing_element_is_named_and_no_value_is_quoted() {
        let xml = SUCCESS.replace("<AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>", "");
        let err = parse_assume_role_response(xml.as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "STS answer is not a usable AssumeRoleResponse: no Credentials/AccessKeyId"
        );
        let xml = SUCCESS.replace("2026-11-23T09:00:00Z", "wJalrXUtnFEMI");
        let err = parse_assume_role_response(xml.as_bytes()).unwrap_err();
        assert!(!format!("{err} {err:?}").contains("wJalrXUtnFEMI"));
        let truncated = &SUCCESS[..SUCCESS.len() / 2];
        let err = parse_assume_role_response(truncated.as_bytes()).unwrap_err();
        assert!(!format!("{err} {err:?}").contains("wJalrXUtnFEMI"), "{err}");
    }

    #[test]
    fn a_field_that_breaks_its_rule_is_named_and_not_quoted() {
        let cases = [
            (
                "ASIAIOSFODNN7EXAMPLE",
                "ASIAIOSFODNN7ÉXAMPLE",
                "AccessKeyId",
            ),
            (
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY",
                "wJalrXUtnFEMI K7MDENG",
                "SecretAccessKey",
            ),
            ("wEXAMPLEtc764", "wEXAMPLE\ttc764", "SessionToken"),
        ];
        for (good, bad, field) in cases {
            let xml = SUCCESS.replace(good, bad);
            let err = parse_assume_role_response(xml.as_bytes()).unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(
                shown.contains(&format!("Credentials/{field} is not")),
                "{shown}"
            );
            assert!(!shown.contains(bad), "{shown}");
        }
    }

    #[test]
    fn an_error_document_becomes_a_refusal_with_code_and_message() {
        let err = parse_error_response(403, DENIED.as_bytes());
        assert_eq!(err.code(), Some("AccessDenied"));
        assert!(!err.is_retryable());
        let text = err.to_string();
        assert!(
            text.starts_with(
                "STS refused AssumeRole with HTTP 403 AccessDenied: User: arn:aws:sts::"
            ),
            "{text}"
        );
    }

    #[test]
    fn throttling_and_server_errors_are_retryable_refusals_are_not() {
        let throttled = DENIED.replace("AccessDenied", "Throttling");
        assert!(parse_error_response(400, throttled.as_bytes()).is_retryable());
        let internal = DENIED.replace("AccessDenied", "InternalFailure");
        assert!(parse_error_response(500, internal.as_bytes()).is_retryable());
        assert!(parse_error_response(503, b"<html>busy</html>").is_retryable());
        for code in ["ExpiredToken", "RegionDisabledException", "ValidationError"] {
            let doc = DENIED.replace("AccessDenied", code);
            let err = parse_error_response(400, doc.as_bytes());
            assert_eq!(err.code(), Some(code));
            assert!(!err.is_retryable(), "{code}");
        }
        assert!(matches!(
            parse_error_response(400, b"not xml <"),
            StsError::Status { status: 400 }
        ));
    }

    #[test]
    fn error_messages_are_cut_and_cannot_forge_log_lines() {
        let long = "x".repeat(1000);
        let doc = DENIED.replace("User: arn", &format!("line1&#10;fake line {long}"));
        let StsError::Refused { message, .. } = parse_error_response(403, doc.as_bytes()) else {
            panic!("not a refusal");
        };
        assert!(!message.contains('\n'));
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS + 1);
    }
}
