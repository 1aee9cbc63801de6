//! Where the account id comes from: newer IMDS serves
//! `…/iam/security-credentials-extended/<role>`, the legacy document plus `AccountId`;
//! older IMDS answers that path 404, and then the account is read from `iam/info`'s
//! `InstanceProfileArn`.
//!
//! As the SDKs do, the client tries the extended path first and, after a 404 there that the
//! legacy path answers, remembers to use the legacy path for [`LEGACY_PERIOD`] (or until
//! the daemon restarts). A 404 on both paths is a role IMDS does not know, not an older
//! IMDS, and is not remembered.
//!
//! The account from `iam/info` is kept once found: an instance profile always belongs to
//! the instance's own account, so it cannot change while the instance runs.

use crate::credentials::account::account_of_arn;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// How long to use the legacy path after the extended one answered 404.
pub(crate) const LEGACY_PERIOD: Duration = Duration::from_secs(24 * 3600);

/// What the client has learnt about this IMDS.
#[derive(Debug, Default)]
pub(crate) struct AccountSource {
    inner: Mutex<Learnt>,
}

#[derive(Debug, Default)]
struct Learnt {
    /// Until then, ask only the legacy path.
    legacy_until: Option<SystemTime>,
    /// The account from `iam/info`, once read.
    profile_account: Option<String>,
}

impl AccountSource {
    fn learnt(&self) -> std::sync::MutexGuard<'_, Learnt> {
        self.inner.lock().expect("account source lock")
    }

    /// Whether to ask the extended path at `now`.
    pub(crate) fn try_extended(&self, now: SystemTime) -> bool {
        self.learnt().legacy_until.is_none_or(|until| now >= until)
    }

    /// The extended path answered 404 and the legacy one answered: an older IMDS.
    pub(crate) fn extended_missing(&self, now: SystemTime) {
        self.learnt().legacy_until = Some(now + LEGACY_PERIOD);
    }

    /// The account read from `iam/info`, once it has been.
    pub(crate) fn profile_account(&self) -> Option<String> {
        self.learnt().profile_account.clone()
    }

    /// Keeps the account `iam/info` named, so it is read only once.
    pub(crate) fn set_profile_account(&self, account: String) {
        self.learnt().profile_account = Some(account);
    }
}

/// The account in an `iam/info` document's `InstanceProfileArn`, if it has a valid one.
pub(crate) fn account_of_info(body: &[u8]) -> Option<String> {
    let info: serde_json::Value = serde_json::from_slice(body).ok()?;
    account_of_arn(info.get("InstanceProfileArn")?.as_str()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legacy_path_is_used_for_a_day_after_a_404() {
        let source = AccountSource::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert!(source.try_extended(t0));
        source.extended_missing(t0);
        assert!(!source.try_extended(t0 + LEGACY_PERIOD - Duration::from_secs(1)));
        assert!(source.try_extended(t0 + LEGACY_PERIOD));
    }

    #[test]
    fn reads_the_account_from_iam_info() {
        let info = br#"{
  "Code" : "Success",
  "LastUpdated" : "2026-11-23T03:00:00Z",
  "InstanceProfileArn" : "arn:aws:iam::123456789012:instance-profile/web",
  "InstanceProfileId" : "AIPAEXAMPLE"
}"#;
        assert_eq!(account_of_info(info).as_deref(), Some("123456789012"));
        assert_eq!(account_of_info(b"{\"Code\":\"Success\"}"), None);
        assert_eq!(account_of_info(b"not json"), None);
    }
}
