//! The daemon against a misbehaving IMDS: each fault the real service (or a network) can
//! produce, what the daemon serves and logs meanwhile, and that it recovers. Every test
//! runs the real HTTP client against the simulator on loopback and ends with a scan of
//! everything logged (at trace level) for secrets.
// These tests drive the Linux build (unix socket, signals, file modes); the Windows
// build is checked by `windows_wine.rs`.
#![cfg(unix)]

mod common;

use common::{Harness, HarnessOptions};
use imds_credd::clock::{Clock, ManualClock};
use imds_credd::simulator::{Fault, Target};
use std::time::Duration;

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn publishes_the_issued_credentials_and_reuses_the_session_token() {
    let h = Harness::start().await;
    assert_eq!(h.served(), h.sim.current_credentials());
    h.advance_and_settle(HOUR).await;
    h.advance_and_settle(HOUR).await;
    let counts = h.sim.counts();
    assert_eq!(counts.token_puts, 1, "one token for three refreshes");
    assert_eq!(counts.role_lists, 3);
    assert_eq!(counts.credential_gets, 3);
    assert!(h.logs.contains("published new credentials"));
    h.finish().await;
}

#[tokio::test]
async fn refreshes_within_policy_and_follows_rotation_for_a_day() {
    let h = Harness::start().await;
    for _ in 0..24 {
        let state = h.advance_and_settle(HOUR).await;
        let now = h.clock.now();
        let served = h.served().expect("always valid credentials");
        assert_eq!(Some(&served), h.sim.current_credentials().as_ref());
        let next = state.next_refresh.unwrap();
        assert!(next <= now + HOUR && next >= now + HOUR - 6 * MINUTE);
        assert!(next <= served.expiration - 15 * MINUTE);
    }
    let counts = h.sim.counts();
    assert!(
        counts.token_puts <= 5,
        "a 6h token covers about 6 refreshes: {counts:?}"
    );
    h.finish().await;
}

#[tokio::test]
async fn a_stale_token_gets_401_then_a_new_token_and_the_request_succeeds() {
    let h = Harness::start().await;
    h.sim.invalidate_tokens();
    h.advance_and_settle(HOUR).await;
    assert_eq!(h.served(), h.sim.current_credentials());
    let counts = h.sim.counts();
    assert_eq!(counts.token_puts, 2);
    assert!(counts.unauthorized >= 1);
    assert!(h.daemon.state.borrow().last_error.is_none());
    h.finish().await;
}

#[tokio::test]
async fn an_injected_401_is_retried_once_with_a_new_token() {
    let h = Harness::start().await;
    h.sim.inject(Target::Credentials, Fault::Status(401), 1);
    h.advance_and_settle(HOUR).await;
    assert!(h.daemon.state.borrow().last_error.is_none());
    assert_eq!(h.sim.counts().token_puts, 2);
    h.finish().await;
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_within_one_refresh() {
    for fault in [Fault::Status(429), Fault::Status(500), Fault::Status(503)] {
        let h = Harness::start().await;
        let before = h.sim.counts().credential_gets;
        h.sim.inject(Target::Credentials, fault.clone(), 2);
        let old = h.served().unwrap();
        h.sim.rotate_now();
        h.advance_and_settle(HOUR).await;
        let served = h.served().unwrap();
        assert_ne!(served, old, "{fault:?}: new credentials despite the fault");
        assert_eq!(
            h.sim.counts().credential_gets - before,
            3,
            "{fault:?}: two retries"
        );
        assert!(h.daemon.state.borrow().last_error.is_none());
        h.finish().await;
    }
}

#[tokio::test]
async fn a_slow_answer_past_the_timeout_and_a_reset_are_retried() {
    for fault in [Fault::Delay(2 * SECOND), Fault::Reset] {
        let h = Harness::start().await;
        h.sim.inject(Target::RoleList, fault.clone(), 1);
        h.sim.rotate_now();
        h.advance_and_settle(HOUR).await;
        assert_eq!(h.served(), h.sim.current_credentials(), "{fault:?}");
        assert!(h.daemon.state.borrow().last_error.is_none(), "{fault:?}");
        h.finish().await;
    }
}

/// Faults that are answers, not glitches: the refresh fails at once, the last good
/// credentials stay served, the error is visible, and the next retry recovers.
#[tokio::test]
async fn bad_answers_keep_the_last_good_credentials_and_recover_on_retry() {
    let cases = [
        (Target::RoleList, Fault::Status(403), "HTTP 403"),
        (Target::Credentials, Fault::MalformedJson, "not valid JSON"),
        (
            Target::Credentials,
            Fault::OversizeBody(100_000),
            "exceeds 65536 bytes",
        ),
        (Target::Credentials, Fault::CodeFailure, "Failure"),
        (
            Target::Credentials,
            Fault::Expired,
            "`Expiration` is already past",
        ),
    ];
    for (target, fault, message) in cases {
        let h = Harness::start().await;
        let good = h.served().unwrap();
        h.sim.inject(target, fault.clone(), 1);
        h.sim.rotate_now();
        let state = h.advance_and_settle(HOUR).await;
        let error = state.last_error.clone().unwrap_or_default();
        assert!(
            error.contains(message) || h.logs.contains(message),
            "{fault:?}: expected {message:?} in {error:?}"
        );
        assert_eq!(
            h.served(),
            Some(good.clone()),
            "{fault:?}: last good set still served"
        );
        let retry_at = state.next_refresh.unwrap();
        assert!(
            retry_at <= h.clock.now() + 2 * SECOND,
            "{fault:?}: retried soon"
        );
        h.advance_and_settle(2 * SECOND).await;
        assert_eq!(
            h.served(),
            h.sim.current_credentials(),
            "{fault:?}: recovered"
        );
        assert!(h.daemon.state.borrow().last_error.is_none());
        h.finish().await;
    }
}

/// An answer that parses but breaks a rule of `credentials::rules`: refused with the field
/// named and its value nowhere in the error or the logs, the last good set kept.
#[tokio::test]
async fn a_malformed_credential_field_is_refused_by_name_and_the_last_good_set_kept() {
    let far =
        imds_credd::credentials::format_utc_timestamp(std::time::SystemTime::now() + 48 * HOUR);
    let cases = [
        (
            "AccessKeyId",
            "ASIAÉXAMPLEXAMPLE01".to_string(),
            "A-Z and 0-9",
        ),
        ("AccessKeyId", "ASIA-SHORT".to_string(), "A-Z and 0-9"),
        ("AccessKeyId", "ASIA".repeat(40), "A-Z and 0-9"),
        (
            "SecretAccessKey",
            "wJalrXUtnFEMI K7MDENG".to_string(),
            "whitespace",
        ),
        (
            "Token",
            "IQoJb3JpZ2luX2Vj\nX-Injected: 1".to_string(),
            "whitespace",
        ),
        ("Token", "T".repeat(20_000), "1-16384 characters"),
        ("Expiration", far, "more than 36h away"),
    ];
    for (field, value, rule) in cases {
        let h = Harness::start().await;
        let good = h.served().unwrap();
        h.sim.inject(
            Target::Credentials,
            Fault::Field {
                name: field,
                value: value.clone(),
            },
            1,
        );
        h.sim.rotate_now();
        let state = h.advance_and_settle(HOUR).await;
        let error = state.last_error.clone().unwrap_or_default();
        assert!(
            error.contains(&format!("`{field}` is")) && error.contains(rule),
            "{field}: {error:?}"
        );
        assert!(
            !error.contains(&value),
            "{field}: the value is quoted: {error:?}"
        );
        assert!(!h.logs.contains(&value), "{field}: the value is logged");
        assert_eq!(
            h.served(),
            Some(good),
            "{field}: last good set still served"
        );
        h.finish().await;
    }
}

#[tokio::test]
async fn credentials_expiring_inside_the_margin_are_served_but_refreshed_soon() {
    let h = Harness::start().await;
    h.sim
        .inject(Target::Credentials, Fault::ExpiresIn(5 * MINUTE), 1);
    let state = h.advance_and_settle(HOUR).await;
    let served = h.served().unwrap();
    assert!(served.expiration <= h.clock.now() + 5 * MINUTE);
    assert!(state.next_refresh.unwrap() <= h.clock.now() + 2 * SECOND);
    assert!(h.logs.contains("expire within before_expiry"));
    h.advance_and_settle(2 * SECOND).await;
    assert_eq!(h.served(), h.sim.current_credentials());
    h.finish().await;
}

#[tokio::test]
async fn an_outage_serves_until_expiry_then_withdraws_then_recovers() {
    let h = Harness::start().await;
    let good = h.served().unwrap();
    h.sim.inject(Target::Any, Fault::Status(503), usize::MAX);
    // Walk through the outage in half-hour steps: each step wakes the refresher for one
    // failed attempt (its backoff is capped at a minute), and the last good set stays served.
    let state = h.advance_and_settle(HOUR).await;
    assert!(state.last_error.as_deref().unwrap_or("").contains("503"));
    let mut attempts = h.sim.requests().len();
    while h.clock.now() + 30 * MINUTE < good.expiration {
        let state = h.advance_and_settle(30 * MINUTE).await;
        assert!(
            state.last_error.as_deref().unwrap_or("").contains("503"),
            "{state:?}"
        );
        assert_eq!(h.served(), Some(good.clone()));
        assert!(h.sim.requests().len() > attempts, "still trying");
        attempts = h.sim.requests().len();
    }
    h.clock.advance(30 * MINUTE);
    h.wait_for("withdrawal", |s| s.credentials.is_none()).await;
    assert!(h.logs.contains("withdrawn"));
    assert!(h
        .daemon
        .state
        .borrow()
        .last_error
        .as_deref()
        .unwrap()
        .contains("503"));
    h.sim.clear_faults();
    h.advance_and_settle(MINUTE).await;
    h.wait_for("recovery", |s| s.credentials.is_some()).await;
    assert_eq!(h.served(), h.sim.current_credentials());
    h.finish().await;
}

#[tokio::test]
async fn a_replaced_role_is_followed_and_a_removed_role_withdraws_credentials() {
    let h = Harness::start().await;
    h.sim.set_role(Some("renamed-role"));
    let state = h.advance_and_settle(HOUR).await;
    assert_eq!(state.role.as_deref(), Some("renamed-role"));
    assert_eq!(h.served(), h.sim.current_credentials());
    assert!(h.logs.contains("instance role was replaced"));

    h.sim.set_role(None);
    let state = h.advance_and_settle(HOUR).await;
    assert!(state.credentials.is_none() && state.role.is_none());
    assert!(state.last_error.unwrap().contains("no IAM role"));
    assert!(h.logs.contains("instance role was removed"));

    h.sim.set_role(Some("third-role"));
    h.advance_and_settle(2 * SECOND).await;
    let state = h
        .wait_for("role attached again", |s| s.credentials.is_some())
        .await;
    assert_eq!(state.role.as_deref(), Some("third-role"));
    h.finish().await;
}

#[tokio::test]
async fn an_instance_without_a_role_serves_nothing_until_one_is_attached() {
    let clock = ManualClock::starting_now();
    let mut options = HarnessOptions::new(&clock);
    options.sim.role = None;
    options.wait_for_credentials = false;
    let h = Harness::start_with(clock, options).await;
    let state = h.wait_for("an error", |s| s.last_error.is_some()).await;
    assert!(state.credentials.is_none());
    assert!(state.last_error.unwrap().contains("no IAM role"));
    h.sim.set_role(Some("late-role"));
    h.advance_and_settle(2 * SECOND).await;
    h.wait_for("credentials", |s| s.credentials.is_some()).await;
    h.finish().await;
}

#[tokio::test]
async fn a_configured_role_is_used_without_listing() {
    let clock = ManualClock::starting_now();
    let mut options = HarnessOptions::new(&clock);
    options.configure = Box::new(|c| c.imds.role = "demo-role".into());
    let h = Harness::start_with(clock, options).await;
    assert_eq!(h.sim.counts().role_lists, 0);
    assert_eq!(h.served(), h.sim.current_credentials());
    h.finish().await;
}

#[tokio::test]
async fn imdsv2_only_by_default_and_v1_fallback_when_allowed() {
    // The token PUT is refused: without allow_imdsv1 the daemon says why and serves nothing.
    let clock = ManualClock::starting_now();
    let mut options = HarnessOptions::new(&clock);
    options.wait_for_credentials = false;
    options.sim.allow_imdsv1 = true;
    options.prepare = Box::new(|sim| sim.inject(Target::Token, Fault::Status(403), usize::MAX));
    let h = Harness::start_with(clock.clone(), options).await;
    let state = h.wait_for("an error", |s| s.last_error.is_some()).await;
    assert!(state.credentials.is_none());
    assert!(state.last_error.unwrap().contains("IMDSv2 is required"));
    assert_eq!(h.sim.counts().credential_gets, 0);
    h.finish().await;

    let clock = ManualClock::starting_now();
    let mut options = HarnessOptions::new(&clock);
    options.wait_for_credentials = false;
    options.sim.allow_imdsv1 = true;
    options.configure = Box::new(|c| c.imds.allow_imdsv1 = true);
    options.prepare = Box::new(|sim| sim.inject(Target::Token, Fault::Status(405), usize::MAX));
    let h = Harness::start_with(clock, options).await;
    h.wait_for("credentials over IMDSv1", |s| s.credentials.is_some())
        .await;
    assert!(h.logs.contains("falling back to IMDSv1"));
    h.finish().await;
}
