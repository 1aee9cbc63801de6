//! `[[assume]]` profiles end to end: the daemon in-process against the IMDS simulator and a
//! loopback STS that verifies every SigV4 signature with the instance credentials the
//! simulator issued, all on one manual clock. Every test ends with a scan of the trace
//! logs for the instance secrets and the STS-issued secrets.
#![allow(clippy::disallowed_methods)]
// Tests and benches time real processes and servers.
// These tests drive the Linux build (unix socket, signals, file modes); the Windows
// build is checked by `windows_wine.rs`.
#![cfg(unix)]

mod common;
#[cfg(target_os = "linux")]
use common::unix_http;

use common::sts::{StsFault, StsServer};
use common::{Harness, HarnessOptions};
use imds_credd::clock::{Clock, ManualClock, SharedClock};
use imds_credd::config::AssumeConfig;
use imds_credd::credentials::Credentials;
use imds_credd::demo::simulator::{SimulatorOptions, INSTANCE_ID, REGION};
use imds_credd::health::metrics::Metrics;
use imds_credd::refresh::state::CredentialState;
use std::sync::Arc;
use std::time::Duration;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const PROFILE: &str = "audit";
const ROLE_ARN: &str = "arn:aws:iam::222222222222:role/efgh";

struct Setup {
    h: Harness,
    sts: StsServer,
}

/// Starts STS, then the daemon with one profile pointing at it. `faults` are queued before
/// the first `AssumeRole`.
async fn start(
    sts_region: &str,
    edit_profile: impl FnOnce(&mut AssumeConfig) + 'static,
    edit_sim: impl FnOnce(&mut SimulatorOptions),
    faults: &[StsFault],
) -> Setup {
    let clock = ManualClock::starting_now();
    let sts = StsServer::start(Arc::new(clock.clone()) as SharedClock, sts_region).await;
    for fault in faults {
        sts.inject(*fault, 1);
    }
    let mut options = HarnessOptions::new(&clock);
    edit_sim(&mut options.sim);
    options.prepare = sts.attach();
    let mut assume = sts.profile(PROFILE, ROLE_ARN);
    edit_profile(&mut assume);
    options.configure = Box::new(move |config| config.assumes.push(assume));
    let h = Harness::start_with(clock, options).await;
    Setup { h, sts }
}

impl Setup {
    fn profile_state(&self) -> CredentialState {
        self.h.daemon.profiles[PROFILE].borrow().clone()
    }

    /// The chained credentials served now, if any.
    fn served(&self) -> Option<Credentials> {
        let now = self.h.clock.now();
        self.profile_state()
            .valid_credentials(now)
            .map(|c| (**c).clone())
    }

    /// Waits (real time, bounded) until the profile's state satisfies `condition`.
    async fn wait_profile(
        &self,
        what: &str,
        condition: impl FnMut(&CredentialState) -> bool,
    ) -> CredentialState {
        let mut rx = self.h.daemon.profiles[PROFILE].clone();
        let outcome = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(condition)).await;
        let state = match outcome {
            Ok(Ok(state)) => state.clone(),
            _ => panic!(
                "timed out waiting for {what}; profile state: {:?}\nlogs:\n{}",
                self.profile_state(),
                self.h.logs.text()
            ),
        };
        state
    }

    /// Moves the clock; waits for the refresher and the profile task to act if either was
    /// due by then.
    async fn advance(&self, by: Duration) {
        let chain_due = self.profile_state().next_refresh;
        let target = self.h.clock.now() + by;
        self.h.advance_and_settle(by).await;
        if chain_due.is_some_and(|at| at <= target) {
            self.wait_profile("an AssumeRole attempt", |s| s.next_refresh != chain_due)
                .await;
        }
    }

    fn metric(&self, counter: fn(&Metrics) -> &std::sync::atomic::AtomicU64) -> u64 {
        Metrics::get(counter(&self.h.daemon.metrics))
    }

    async fn finish(self) {
        self.sts.assert_all_signatures_valid();
        self.sts
            .assert_no_issued_secrets(&self.h.logs.text(), "the logs");
        self.h.finish().await;
    }
}

#[tokio::test]
async fn publishes_chained_credentials_signed_with_the_instance_role() {
    let s = start(REGION, |_| {}, |_| {}, &[]).await;
    let state = s
        .wait_profile("chained credentials", |s| s.credentials.is_some())
        .await;
    let issued = s.sts.issued();
    assert_eq!(issued.len(), 1);
    assert_eq!(s.served().as_ref(), issued.last());
    assert_ne!(
        s.served().unwrap().access_key_id,
        s.h.sim.current_credentials().unwrap().access_key_id,
        "the profile serves the assumed role, not the instance role"
    );
    assert_eq!(state.role.as_deref(), Some(ROLE_ARN));
    assert!(state.last_error.is_none());
    let next = state.next_refresh.unwrap();
    let expiry = issued[0].expiration;
    assert!(next <= expiry - 15 * MINUTE && next >= expiry - 20 * MINUTE);

    let requests = s.sts.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.rejected, None);
    assert_eq!(
        request.signed_by,
        s.h.sim.current_credentials().unwrap().access_key_id
    );
    assert_eq!(request.params["RoleArn"], ROLE_ARN);
    assert_eq!(
        request.params["RoleSessionName"],
        format!("imds-credd-{INSTANCE_ID}")
    );
    assert_eq!(request.params["DurationSeconds"], "3600");
    assert!(!request.params.contains_key("ExternalId"));
    s.h.logs
        .assert_contains("assumed role; published chained credentials");
    s.h.logs
        .assert_contains("assumed-role/efgh/imds-credd-i-0123456789abcdef0");
    s.finish().await;
}

#[tokio::test]
async fn configured_region_session_name_and_external_id_are_used() {
    let s = start(
        "eu-west-1",
        |p| {
            p.region = "eu-west-1".into();
            p.session_name = "nightly-audit".into();
            p.external_id = "ext-4242".into();
            p.duration = 2 * HOUR;
        },
        |_| {},
        &[],
    )
    .await;
    s.wait_profile("chained credentials", |s| s.credentials.is_some())
        .await;
    let request = &s.sts.requests()[0];
    assert_eq!(request.rejected, None, "signed for eu-west-1");
    assert_eq!(request.params["RoleSessionName"], "nightly-audit");
    assert_eq!(request.params["ExternalId"], "ext-4242");
    assert_eq!(request.params["DurationSeconds"], "7200");
    s.finish().await;
}

#[tokio::test]
async fn a_signature_for_the_wrong_region_is_rejected_by_the_verifier() {
    // The loopback STS expects us-west-2 while the daemon signs for the instance's region:
    // proves the verifier can fail, and that the daemon reports the refusal.
    let s = start("us-west-2", |_| {}, |_| {}, &[]).await;
    let state = s
        .wait_profile("a failed attempt", |s| s.last_error.is_some())
        .await;
    let error = state.last_error.unwrap();
    assert!(error.contains("SignatureDoesNotMatch"), "{error}");
    assert!(s.served().is_none());
    assert!(s.sts.requests()[0].rejected.is_some());
    s.sts.assert_no_issued_secrets(&s.h.logs.text(), "the logs");
    s.h.finish().await;
}

#[tokio::test]
async fn reassumes_as_soon_as_the_instance_credentials_rotate() {
    // Instance credentials live 40 min and rotate at 20: the refresher fetches at about
    // 25 min, long before the chained set (1 h) is due at about 45 min.
    let s = start(
        REGION,
        |_| {},
        |sim| {
            sim.credential_lifetime = 40 * MINUTE;
            sim.rotate_every = 20 * MINUTE;
        },
        &[],
    )
    .await;
    let first = s
        .wait_profile("chained credentials", |s| s.credentials.is_some())
        .await;
    let chain_due = first.next_refresh.unwrap();
    let instance_before = s.h.sim.current_credentials().unwrap().access_key_id;
    s.advance(26 * MINUTE).await;
    let instance_after = s.h.served().unwrap().access_key_id;
    assert_ne!(instance_before, instance_after, "the instance role rotated");
    s.wait_profile("chained credentials after rotation", |s| {
        s.credentials.as_ref().map(|c| c.access_key_id.clone())
            != first.credentials.as_ref().map(|c| c.access_key_id.clone())
    })
    .await;
    assert!(s.h.clock.now() < chain_due, "refreshed early, on rotation");
    let requests = s.sts.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].signed_by, instance_after);
    assert_eq!(s.served().as_ref(), s.sts.issued().last());
    s.h.logs
        .assert_contains("instance-role credentials rotated");
    s.finish().await;
}

/// An STS answer that breaks a rule of `credentials::rules` is refused with the field named,
/// and the last good chained set stays served.
#[tokio::test]
async fn a_malformed_sts_answer_is_refused_by_field_and_the_last_good_set_kept() {
    let cases = [
        (
            StsFault::NonAsciiKeyId,
            "Credentials/AccessKeyId is not 16-128 characters of A-Z and 0-9",
        ),
        (
            StsFault::FarExpiration,
            "Credentials/Expiration is more than 36h away",
        ),
    ];
    for (fault, message) in cases {
        let s = start(REGION, |_| {}, |_| {}, &[]).await;
        let first = s
            .wait_profile("chained credentials", |s| s.credentials.is_some())
            .await;
        let good = s.served().unwrap();
        s.sts.inject(fault, 1);
        let due = first.next_refresh.unwrap();
        s.advance(due.duration_since(s.h.clock.now()).unwrap())
            .await;
        let error = s
            .profile_state()
            .last_error
            .expect("the refusal is recorded");
        assert!(error.contains(message), "{fault:?}: {error}");
        let bad = s.sts.issued().last().unwrap().access_key_id.clone();
        assert!(
            !error.contains(&bad),
            "{fault:?}: the key id is quoted: {error}"
        );
        assert_eq!(
            s.served(),
            Some(good),
            "{fault:?}: the last good set is served"
        );
        s.finish().await;
    }
}

#[tokio::test]
async fn access_denied_keeps_the_last_good_set_until_expiry_then_withdraws_it() {
    let s = start(REGION, |_| {}, |_| {}, &[]).await;
    let first = s
        .wait_profile("chained credentials", |s| s.credentials.is_some())
        .await;
    let good = s.served().unwrap();
    s.sts.inject(StsFault::AccessDenied, 1000);
    let due = first.next_refresh.unwrap();
    s.advance(due.duration_since(s.h.clock.now()).unwrap())
        .await;
    let state = s.profile_state();
    let error = state.last_error.clone().expect("the failure is recorded");
    assert!(
        error.starts_with(
            "assume-role profile audit: STS refused AssumeRole with HTTP 403 AccessDenied: User: "
        ),
        "{error}"
    );
    assert_eq!(
        s.sts.requests().len(),
        2,
        "a refusal is not retried at once"
    );
    assert_eq!(
        s.served(),
        Some(good.clone()),
        "the last good set is served"
    );
    s.h.logs
        .assert_contains("AssumeRole failed; still serving the last good chained credentials");

    // Retries back off while the set is still valid, then it is withdrawn at expiry.
    while s.h.clock.now() + 2 * MINUTE < good.expiration {
        s.advance(2 * MINUTE).await;
        assert_eq!(s.served(), Some(good.clone()));
    }
    s.advance(3 * MINUTE).await;
    s.wait_profile("withdrawal at expiry", |s| s.credentials.is_none())
        .await;
    assert!(s.served().is_none());
    assert!(s.sts.requests().len() > 3, "retried with backoff");
    assert!(s.metric(|m| &m.assume_failures) >= 3);
    s.h.logs
        .assert_contains("chained credentials expired without a successful refresh; withdrawn");

    // Once the role trusts us again, credentials come back within the retry cap.
    s.sts.clear_faults();
    s.advance(MINUTE + Duration::from_secs(1)).await;
    let state = s
        .wait_profile("credentials again", |s| s.credentials.is_some())
        .await;
    assert!(state.last_error.is_none());
    s.finish().await;
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_within_one_attempt() {
    let s = start(
        REGION,
        |_| {},
        |_| {},
        &[StsFault::Throttling, StsFault::ServerError],
    )
    .await;
    let state = s
        .wait_profile("chained credentials", |s| s.credentials.is_some())
        .await;
    assert!(state.last_error.is_none());
    assert_eq!(s.sts.requests().len(), 3);
    assert_eq!(s.sts.issued().len(), 1);
    assert_eq!(s.metric(|m| &m.assume_failures), 0);
    assert_eq!(s.metric(|m| &m.assume_successes), 1);
    s.finish().await;
}

#[tokio::test]
async fn an_oversize_answer_is_refused_and_retried_later() {
    let s = start(REGION, |_| {}, |_| {}, &[StsFault::Oversize]).await;
    let state = s
        .wait_profile("a failed attempt", |s| s.last_error.is_some())
        .await;
    assert!(
        state
            .last_error
            .unwrap()
            .contains("STS answer exceeds 65536 bytes"),
        "capped"
    );
    assert_eq!(s.sts.requests().len(), 1);
    s.advance(MINUTE).await;
    s.wait_profile("chained credentials", |s| s.credentials.is_some())
        .await;
    s.finish().await;
}

#[tokio::test]
async fn without_instance_credentials_the_chained_set_lasts_only_until_it_expires() {
    let s = start(REGION, |_| {}, |_| {}, &[]).await;
    s.wait_profile("chained credentials", |s| s.credentials.is_some())
        .await;
    s.h.sim.set_role(None);
    // Run until the refresher notices the role is gone (the profile may refresh once
    // before that, while the instance credentials are still valid).
    while s.h.daemon.instance_role.borrow().credentials.is_some() {
        s.advance(10 * MINUTE).await;
    }
    let calls = s.sts.requests().len();
    let held = s.served().expect("still valid after the source went away");
    while s.h.clock.now() + 10 * MINUTE < held.expiration {
        s.advance(10 * MINUTE).await;
        assert_eq!(s.served(), Some(held.clone()));
    }
    s.advance(10 * MINUTE).await;
    s.wait_profile("withdrawal", |s| s.credentials.is_none())
        .await;
    assert_eq!(
        s.sts.requests().len(),
        calls,
        "nothing to sign with: no calls"
    );
    s.h.logs
        .assert_contains("no instance-role credentials to assume the role with");
    s.finish().await;
}

#[tokio::test]
async fn stopping_does_not_wait_for_a_hanging_sts_call() {
    let s = start(REGION, |_| {}, |_| {}, &[StsFault::Hang]).await;
    for _ in 0..200 {
        if !s.sts.requests().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(s.sts.requests().len(), 1, "the call is in flight");
    let logs = s.h.logs.clone();
    s.finish().await;
    assert!(!logs.contains("did not stop in time"), "{}", logs.text());
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_socket_serves_the_profile_with_profile_query() {
    let s = start(REGION, |_| {}, |_| {}, &[]).await;
    s.wait_profile("chained credentials", |s| s.credentials.is_some())
        .await;
    let socket = s.h.dir.path().join("credentials.sock");
    let answer = unix_http::get(&socket, "/v1/credentials?profile=audit").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let issued = s.sts.issued().pop().unwrap();
    let doc = answer.json();
    assert_eq!(doc["AccessKeyId"], issued.access_key_id.as_str());
    assert_eq!(doc["SecretAccessKey"], issued.secret_access_key.expose());
    assert_eq!(doc["SessionToken"], issued.session_token.expose());
    assert_eq!(doc["Expiration"], issued.expiration_rfc3339().as_str());
    let instance = unix_http::get(&socket, "/v1/credentials").await.json();
    assert_eq!(
        instance["AccessKeyId"],
        s.h.sim
            .current_credentials()
            .unwrap()
            .access_key_id
            .as_str()
    );
    s.finish().await;
}
