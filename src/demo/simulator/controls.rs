//! What a test does to the simulated instance and reads back from it: attach or detach the
//! role, rotate now, expire every token, and the journal of what was asked and issued
//! (request counts, the answered requests in order, every credential set and token ever
//! handed out, so a test can scan logs and files for them). Test machinery: built with the
//! `test-util` feature only (see `docs/ARCHITECTURE.md`).

use super::faults::FaultPlan;
use super::{ImdsSimulator, State};
use crate::credentials::Credentials;
use hyper::Method;

/// How many requests of each kind the simulator has answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// `PUT /latest/api/token` requests.
    pub token_puts: usize,
    /// Requests for the role list.
    pub role_lists: usize,
    /// Requests for a role's credentials.
    pub credential_gets: usize,
    /// Every other `GET`/`HEAD`.
    pub other_gets: usize,
    /// Responses with status 401, injected or not.
    pub unauthorized: usize,
    /// Injected faults applied, queued or random.
    pub faults_injected: usize,
}

/// One answered request, in the order answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// The HTTP method.
    pub method: String,
    /// The path asked for.
    pub path: String,
    /// The status sent; 0 when the connection was reset instead.
    pub status: u16,
}

/// The test-only part of the instance's state, under the simulator's one lock.
#[derive(Default)]
pub(super) struct Journal {
    pub(super) issued_credentials: Vec<Credentials>,
    pub(super) issued_tokens: Vec<String>,
    pub(super) counts: RequestCounts,
    pub(super) requests: Vec<RequestRecord>,
    pub(super) faults: FaultPlan,
}

impl ImdsSimulator {
    /// Attaches a role (with fresh credentials), or detaches it with `None`: the role list
    /// then answers 404, like an instance without an instance profile.
    pub fn set_role(&self, role: Option<&str>) {
        self.state().lock().role = role.map(str::to_string);
        self.rotate_now();
    }

    /// Replaces the current credentials with a fresh set now (if a role is attached).
    pub fn rotate_now(&self) {
        let now = self.state().clock.now();
        let mut inner = self.state().lock();
        inner.current = None;
        self.state().current_set(&mut inner, now);
    }

    /// The set served now, after any rotation due at `clock.now()`.
    pub fn current_credentials(&self) -> Option<Credentials> {
        let now = self.state().clock.now();
        let mut inner = self.state().lock();
        self.state()
            .current_set(&mut inner, now)
            .map(|set| set.credentials.clone())
    }

    /// Every credential set ever issued, including one-off sets from faults.
    pub fn issued_credentials(&self) -> Vec<Credentials> {
        self.state().lock().journal.issued_credentials.clone()
    }

    /// Every IMDS session token ever issued.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.state().lock().journal.issued_tokens.clone()
    }

    /// Makes every outstanding token invalid: their next use gets 401.
    pub fn invalidate_tokens(&self) {
        self.state().lock().live_tokens.clear();
    }

    /// Requests answered so far, by kind.
    pub fn counts(&self) -> RequestCounts {
        self.state().lock().journal.counts
    }

    /// Every request answered so far, in the order answered.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state().lock().journal.requests.clone()
    }

    pub(super) fn state(&self) -> &State {
        &self.handle.state
    }
}

impl State {
    /// Notes an answer in the journal (and the debug log).
    pub(super) fn record(&self, method: &Method, path: &str, status: u16) {
        tracing::debug!(%method, path, status, "simulated IMDS answered");
        let mut inner = self.lock();
        if status == 401 {
            inner.journal.counts.unauthorized += 1;
        }
        inner.journal.requests.push(RequestRecord {
            method: method.to_string(),
            path: path.to_string(),
            status,
        });
    }
}
