//! What a credential set from IMDS or STS must look like before anything uses it: logs
//! mask the key id, sinks write the secrets into files and shell text, the socket serves
//! them. A set that breaks a rule is refused like any failed refresh, so the last good set
//! stays served until it expires. Each rule is named in the error; no value is ever quoted
//! (it could be a secret).

use std::time::{Duration, SystemTime};

/// Access key ids are `ASIA…`/`AKIA…` plus upper-case letters and digits; IAM documents
/// 16 to 128 characters.
const ACCESS_KEY_ID_LEN: std::ops::RangeInclusive<usize> = 16..=128;
/// A secret access key is 40 characters today; room for growth, not for a document.
const MAX_SECRET_ACCESS_KEY_LEN: usize = 256;
/// STS says not to assume a fixed session-token size (they are 1-2 KB today and have grown
/// before); this leaves ample room while refusing a body-sized blob.
const MAX_SESSION_TOKEN_LEN: usize = 16 * 1024;
/// Role credentials last at most 12 h (36 h for some STS calls); an `Expiration` further
/// away is a broken source or a wrong clock, and would keep a set served far too long.
pub const MAX_LIFETIME: Duration = Duration::from_secs(36 * 3600);

/// The rule `AccessKeyId` breaks, if any.
pub fn access_key_id(value: &str) -> Result<(), &'static str> {
    let shaped = ACCESS_KEY_ID_LEN.contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    shaped
        .then_some(())
        .ok_or("not 16-128 characters of A-Z and 0-9")
}

/// The rule a secret access key breaks, if any.
pub fn secret_access_key(value: &str) -> Result<(), &'static str> {
    secret_text(value, MAX_SECRET_ACCESS_KEY_LEN)
        .ok_or("not 1-256 characters of printable ASCII without whitespace")
}

/// The rule a session token breaks, if any.
pub fn session_token(value: &str) -> Result<(), &'static str> {
    secret_text(value, MAX_SESSION_TOKEN_LEN)
        .ok_or("not 1-16384 characters of printable ASCII without whitespace")
}

/// The rule an `Expiration` breaks at `now`, if any: it must lie ahead, and within
/// [`MAX_LIFETIME`].
pub fn expiration(expiration: SystemTime, now: SystemTime) -> Result<(), &'static str> {
    if expiration <= now {
        Err("already past (clock skew, or a broken source)")
    } else if expiration > now + MAX_LIFETIME {
        Err("more than 36h away (clock skew, or a broken source)")
    } else {
        Ok(())
    }
}

/// Printable ASCII without space (`!` to `~`), 1 to `max` bytes: safe in a header, an INI
/// line, a shell word and a log-free error.
fn secret_text(value: &str, max: usize) -> Option<()> {
    let ok = (1..=max).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic());
    ok.then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_key_ids_are_upper_case_alphanumerics_of_16_to_128() {
        assert!(access_key_id("ASIAEXAMPLEEXAMPLE01").is_ok());
        assert!(access_key_id(&"A".repeat(16)).is_ok());
        assert!(access_key_id(&"A".repeat(128)).is_ok());
        for bad in [
            "A".repeat(15),
            "A".repeat(129),
            "ASIAexampleEXAMPLE01".into(),
            "ASIA EXAMPLEEXAMPLE".into(),
            "ASIAÉXAMPLEEXAMPLE01".into(),
            "ASIA-EXAMPLEEXAMPLE".into(),
        ] {
            assert!(access_key_id(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn secrets_are_printable_ascii_without_whitespace_and_bounded() {
        assert!(secret_access_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY").is_ok());
        assert!(session_token(&"IQoJb3JpZ2luX2Vj/+=".repeat(100)).is_ok());
        for bad in ["", "a b", "a\tb", "a\nb", "é", "a\u{7f}"] {
            assert!(secret_access_key(bad).is_err(), "{bad:?}");
            assert!(session_token(bad).is_err(), "{bad:?}");
        }
        assert!(secret_access_key(&"a".repeat(257)).is_err());
        assert!(session_token(&"a".repeat(16 * 1024)).is_ok());
        assert!(session_token(&"a".repeat(16 * 1024 + 1)).is_err());
    }

    #[test]
    fn an_expiration_lies_ahead_and_within_36_hours() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert!(expiration(now + Duration::from_secs(1), now).is_ok());
        assert!(expiration(now + MAX_LIFETIME, now).is_ok());
        assert!(expiration(now, now).unwrap_err().contains("already past"));
        assert!(expiration(now + MAX_LIFETIME + Duration::from_secs(1), now)
            .unwrap_err()
            .contains("36h"));
    }
}
