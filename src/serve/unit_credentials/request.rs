//! What a `LoadCredential=` connection asks for, from the abstract name systemd binds its
//! end to before connecting (`getpeername(2)`): `\0<hex>/unit/<unit>/<credential ID>`, the
//! hex a random 64-bit number (`"%" PRIx64`, so 1 to 16 lowercase digits, not zero-padded).
//! Parsed strictly: anything else is no request. The name proves nothing on its own (any
//! local user can bind such a name); who bound it is the policy's question.
//!
//! The credential ID picks the format: `NAME.json` the `credential_process` JSON, `NAME.env`
//! sh env lines, any other ID a shared-credentials file.

use crate::config::units::is_unit_name;
use crate::serve::api::Format;
use thiserror::Error;

/// Longest unix socket address (`sun_path`), and so longest abstract name with its NUL.
pub const SUN_PATH_MAX: usize = 108;
/// Longest credential ID systemd accepts (`credential_name_valid`: a file name).
const CREDENTIAL_ID_MAX: usize = 255;

/// A well-formed request: which unit, and which credential of its.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitRequest {
    /// The unit asking (`app.service`).
    pub unit: String,
    /// The credential ID its `LoadCredential=` names.
    pub credential_id: String,
}

/// Why a peer name is no request. Shown in refusal logs: none holds the name's bytes
/// beyond what the variant says, so an attacker's text cannot reach the log raw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum NameError {
    /// The peer's socket is not bound to an abstract name.
    #[error("the peer has no abstract socket name (not systemd's LoadCredential=)")]
    NotAbstract,
    /// The name is longer than a socket address holds.
    #[error("the peer's name is longer than a unix socket address")]
    TooLong,
    /// The name does not start with systemd's random number.
    #[error("the peer's name does not start with a random hex number")]
    BadRandom,
    /// The name has no `/unit/` part.
    #[error("the peer's name has no /unit/ part")]
    NoUnitPart,
    /// The unit part is not a unit name.
    #[error("the peer's name holds no valid unit name")]
    BadUnit,
    /// The credential ID is not one systemd accepts.
    #[error("the peer's name holds no valid credential ID")]
    BadCredentialId,
}

impl UnitRequest {
    /// Parses an abstract name without its leading NUL (nix's `UnixAddr::as_abstract`);
    /// `None` is a peer with a path or no name at all.
    pub fn from_peer_name(name: Option<&[u8]>) -> Result<UnitRequest, NameError> {
        let name = name.ok_or(NameError::NotAbstract)?;
        if name.len() + 1 > SUN_PATH_MAX {
            return Err(NameError::TooLong);
        }
        let name = std::str::from_utf8(name).map_err(|_| NameError::BadUnit)?;
        let (random, rest) = name.split_once('/').ok_or(NameError::BadRandom)?;
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if random.is_empty() || random.len() > 16 || !random.bytes().all(lower_hex) {
            return Err(NameError::BadRandom);
        }
        let rest = rest.strip_prefix("unit/").ok_or(NameError::NoUnitPart)?;
        let (unit, id) = rest.split_once('/').ok_or(NameError::BadCredentialId)?;
        if !is_unit_name(unit) {
            return Err(NameError::BadUnit);
        }
        if !is_credential_id(id) {
            return Err(NameError::BadCredentialId);
        }
        Ok(UnitRequest {
            unit: unit.to_string(),
            credential_id: id.to_string(),
        })
    }

    /// The format the credential ID asks for.
    pub fn format(&self) -> Format {
        let id = self.credential_id.as_str();
        if id.len() > ".json".len() && id.ends_with(".json") {
            Format::Process
        } else if id.len() > ".env".len() && id.ends_with(".env") {
            Format::Env
        } else {
            Format::SharedCredentials
        }
    }
}

/// A credential ID as systemd allows one: a file name (no `/`, not `.` or `..`), printable
/// ASCII here so that it can be logged as it is.
fn is_credential_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= CREDENTIAL_ID_MAX
        && id != "."
        && id != ".."
        && id.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str) -> Result<UnitRequest, NameError> {
        UnitRequest::from_peer_name(Some(name.as_bytes()))
    }

    #[test]
    fn systemd_s_names_parse_into_unit_and_credential() {
        let request = parse("e6bcf1fad9213c61/unit/job.service/aws").unwrap();
        assert_eq!(request.unit, "job.service");
        assert_eq!(request.credential_id, "aws");
        // PRIx64 drops leading zeros: a shorter number is systemd's too.
        assert_eq!(
            parse("6bcf1fad9213c61/unit/getty@tty1.service/x.json")
                .unwrap()
                .unit,
            "getty@tty1.service"
        );
        assert_eq!(parse("0/unit/a.service/b").unwrap().credential_id, "b");
    }

    #[test]
    fn anything_else_is_no_request() {
        let long_id = format!("1/unit/a.service/{}", "x".repeat(SUN_PATH_MAX));
        let cases = [
            ("/unit/a.service/aws", NameError::BadRandom),
            (
                "e6bcf1fad9213c6100/unit/a.service/aws",
                NameError::BadRandom,
            ),
            ("E6BCF1FAD9213C61/unit/a.service/aws", NameError::BadRandom),
            ("e6bcg1fad9213c61/unit/a.service/aws", NameError::BadRandom),
            ("e6bcf1fad9213c61", NameError::BadRandom),
            (
                "e6bcf1fad9213c61/units/a.service/aws",
                NameError::NoUnitPart,
            ),
            ("e6bcf1fad9213c61/a.service/aws", NameError::NoUnitPart),
            (
                "e6bcf1fad9213c61/unit/a.service",
                NameError::BadCredentialId,
            ),
            (
                "e6bcf1fad9213c61/unit/a.service/",
                NameError::BadCredentialId,
            ),
            (
                "e6bcf1fad9213c61/unit/a.service/x/y",
                NameError::BadCredentialId,
            ),
            (
                "e6bcf1fad9213c61/unit/a.service/..",
                NameError::BadCredentialId,
            ),
            (
                "e6bcf1fad9213c61/unit/a.service/a b",
                NameError::BadCredentialId,
            ),
            (
                "e6bcf1fad9213c61/unit/a.service/a\nb",
                NameError::BadCredentialId,
            ),
            ("e6bcf1fad9213c61/unit//aws", NameError::BadUnit),
            ("e6bcf1fad9213c61/unit/a.timer/aws", NameError::BadUnit),
            ("e6bcf1fad9213c61/unit/a b.service/aws", NameError::BadUnit),
            (long_id.as_str(), NameError::TooLong),
        ];
        for (name, error) in cases {
            assert_eq!(parse(name), Err(error), "{name:?}");
        }
        assert_eq!(
            UnitRequest::from_peer_name(Some(b"1/unit/a.service/\xff")),
            Err(NameError::BadUnit)
        );
        assert_eq!(
            UnitRequest::from_peer_name(None),
            Err(NameError::NotAbstract)
        );
    }

    #[test]
    fn the_credential_id_picks_the_format() {
        let format = |id: &str| parse(&format!("1/unit/a.service/{id}")).unwrap().format();
        assert_eq!(format("aws.json"), Format::Process);
        assert_eq!(format("aws.env"), Format::Env);
        assert_eq!(format("aws"), Format::SharedCredentials);
        assert_eq!(format("credentials.ini"), Format::SharedCredentials);
        assert_eq!(format(".json"), Format::SharedCredentials);
        assert_eq!(format("aws.JSON"), Format::SharedCredentials);
    }
}
