//! What the refresher publishes and every sink reads: the current credentials (if any) and
//! the facts `status` reports. Data flows one way: refresher → watch channel → sinks.

use crate::clock::skew::SkewVerdict;
use crate::credentials::Credentials;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::watch;

/// The refresher's latest word. Cloning is cheap (the credentials are shared).
#[derive(Clone, Debug, Default)]
pub struct CredentialState {
    /// The instance role the credentials belong to; `None` when no role is attached or not
    /// yet known.
    pub role: Option<String>,
    /// The last good credentials, withdrawn (set to `None`) when they expire without a
    /// replacement or when the role is removed. Readers must still check
    /// [`Credentials::is_valid_at`]: a set can expire between two publications.
    pub credentials: Option<Arc<Credentials>>,
    /// When credentials were last fetched successfully.
    pub last_refresh: Option<SystemTime>,
    /// When the refresher will next ask IMDS.
    pub next_refresh: Option<SystemTime>,
    /// The most recent failure, cleared by the next success. Never holds a secret.
    pub last_error: Option<String>,
    /// What the `Date` of the published set's answer did to its expiry; `None` until an
    /// answer with a `Date` was published.
    pub clock_skew: Option<SkewVerdict>,
}

impl CredentialState {
    /// The credentials if they may be served at `now`: never an expired set.
    pub fn valid_credentials(&self, now: SystemTime) -> Option<&Arc<Credentials>> {
        self.credentials.as_ref().filter(|c| c.is_valid_at(now))
    }

    /// Whether the refresher has had an outcome yet (credentials or an error): what
    /// `READY=1` and requests at start wait for.
    pub fn has_outcome(&self) -> bool {
        self.credentials.is_some() || self.last_error.is_some() || self.last_refresh.is_some()
    }

    /// When the held credentials expire, if any are held.
    pub fn expiration(&self) -> Option<SystemTime> {
        self.credentials.as_ref().map(|c| c.expiration)
    }
}

/// Withdraws the published credentials if they have expired at `now` (readers are told only
/// when that changes something). Returns true when it withdrew them.
pub fn withdraw_if_expired(state: &StateSender, now: SystemTime) -> bool {
    state.send_if_modified(|s| {
        let expired = s.credentials.as_ref().is_some_and(|c| !c.is_valid_at(now));
        if expired {
            s.credentials = None;
        }
        expired
    })
}

/// The refresher's end of a state channel.
pub type StateSender = watch::Sender<CredentialState>;
/// A reader's end of a state channel: a sink's, a server's, a chained profile's.
pub type StateReceiver = watch::Receiver<CredentialState>;
