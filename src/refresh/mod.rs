//! When to ask again, and the loop that asks and publishes the result on a watch channel:
//! for the instance role (IMDS) and every `[[assume]]` profile (STS) alike.
//! - [`policy`]: the decisions, pure functions of time, expiry, policy and failures.
//! - [`engine`]: the one loop that carries them out over an [`engine::Issuer`].
//! - [`instance`]: the instance role as an issuer.
//! - [`state`]: what the loop publishes and every sink reads.
//!
//! See `docs/ARCHITECTURE.md` for where this sits between IMDS and the sinks.

pub mod engine;
pub mod instance;
pub mod policy;
pub mod state;

use crate::refresh::state::{CredentialState, StateReceiver, StateSender};

/// `ASIA…WXYZ`: enough to match CloudTrail entries, not the whole id in every log line.
/// Counts characters, not bytes: IMDS answers are not trusted to be ASCII.
pub fn masked(access_key_id: &str) -> String {
    let chars: Vec<char> = access_key_id.chars().collect();
    if chars.len() <= 8 {
        return "…".to_string();
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

/// A fresh state channel with nothing published yet.
pub fn state_channel() -> (StateSender, StateReceiver) {
    tokio::sync::watch::channel(CredentialState::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_key_keeps_prefix_and_suffix() {
        assert_eq!(masked("ASIAABCDEFGHIJKLWXYZ"), "ASIA…WXYZ");
        assert_eq!(masked("short"), "…");
    }

    #[test]
    fn masked_key_of_multibyte_characters_does_not_panic() {
        assert_eq!(masked("ASIéÄBCDEFGHIJKLWXYé"), "ASIé…WXYé");
        assert_eq!(masked("ééééééééé"), "éééé…éééé");
        assert_eq!(masked("éééééééé"), "…");
    }
}
