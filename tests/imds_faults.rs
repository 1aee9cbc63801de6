//! The daemon against a misbehaving IMDS: each fault the real service (or a network) can
//! produce, what a client sees meanwhile (the answer on the unix socket, the credentials
//! and env files on disk, `imds-credd status`), and that it recovers. Every test runs the
//! real HTTP client against the simulator on loopback and ends with a scan of everything
//! logged (at trace level) for secrets.
#![allow(clippy::disallowed_methods)]
// Tests and benches time real processes and servers.
// These tests drive the Linux build (unix socket, signals, file modes); the Windows
// build is checked by `windows_wine.rs`.
#![cfg(unix)]

mod common;

use common::client_view::ClientView;
use common::skewed_clock::SkewedClock;
use common::{Harness, HarnessOptions};
use imds_credd::clock::{Clock, ManualClock};
use imds_credd::demo::simulator::{Fault, Target};
use imds_credd::refresh::state::CredentialState;
use std::sync::Arc;
use std::time::Duration;

const MILLISECOND: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn publishes_the_issued_credentials_and_reuses_the_session_token() {
    let h = Harness::start_with_file_sinks().await;
    assert_eq!(h.served(), h.sim.current_credentials());
    h.advance_and_settle(HOUR).await;
    h.advance_and_settle(HOUR).await;
    let counts = h.sim.counts();
    assert_eq!(counts.token_puts, 1, "one token for three refreshes");
    assert_eq!(counts.role_lists, 3);
    assert_eq!(counts.credential_gets, 3);
    assert!(h.logs.contains("published new credentials"));
    let view = h
        .assert_clients_see(h.sim.current_credentials().as_ref(), "after two refreshes")
        .await;
    view.assert_error(None, "after two refreshes");
    h.finish().await;
}

#[tokio::test]
async fn refreshes_within_policy_and_follows_rotation_for_a_day() {
    let h = Harness::start_with_file_sinks().await;
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
    let h = Harness::start_with_file_sinks().await;
    h.sim.invalidate_tokens();
    h.advance_and_settle(HOUR).await;
    assert_eq!(h.served(), h.sim.current_credentials());
    let counts = h.sim.counts();
    assert_eq!(counts.token_puts, 2);
    assert!(counts.unauthorized >= 1);
    assert!(h.daemon.instance_role.borrow().last_error.is_none());
    h.assert_clients_see(h.sim.current_credentials().as_ref(), "after a new token")
        .await
        .assert_error(None, "after a new token");
    h.finish().await;
}

#[tokio::test]
async fn an_injected_401_is_retried_once_with_a_new_token() {
    let h = Harness::start_with_file_sinks().await;
    h.sim.inject(Target::Credentials, Fault::Status(401), 1);
    h.sim.rotate_now();
    h.advance_and_settle(HOUR).await;
    assert!(h.daemon.instance_role.borrow().last_error.is_none());
    assert_eq!(h.sim.counts().token_puts, 2);
    h.assert_clients_see(h.sim.current_credentials().as_ref(), "after the 401")
        .await
        .assert_error(None, "after the 401");
    h.finish().await;
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_within_one_refresh() {
    for fault in [Fault::Status(429), Fault::Status(500), Fault::Status(503)] {
        let h = Harness::start_with_file_sinks().await;
        let before = h.sim.counts().credential_gets;
        h.sim.inject(Target::Credentials, fault.clone(), 2);
        let old = h.served().unwrap();
        h.sim.rotate_now();
        h.advance_and_settle(HOUR).await;
        let served = h.served().unwrap();
        assert_ne!(served, old, "{fault:?}: new credentials despite the fault");
        h.assert_clients_see(Some(&served), &format!("{fault:?}"))
            .await
            .assert_error(None, &format!("{fault:?}"));
        assert_eq!(
            h.sim.counts().credential_gets - before,
            3,
            "{fault:?}: two retries"
        );
        assert!(h.daemon.instance_role.borrow().last_error.is_none());
        h.finish().await;
    }
}

#[tokio::test]
async fn a_slow_answer_past_the_timeout_and_a_reset_are_retried() {
    for fault in [Fault::Delay(2 * SECOND), Fault::Reset] {
        let h = Harness::start_with_file_sinks().await;
        h.sim.inject(Target::RoleList, fault.clone(), 1);
        h.sim.rotate_now();
        h.advance_and_settle(HOUR).await;
        assert_eq!(h.served(), h.sim.current_credentials(), "{fault:?}");
        assert!(
            h.daemon.instance_role.borrow().last_error.is_none(),
            "{fault:?}"
        );
        h.assert_clients_see(h.sim.current_credentials().as_ref(), &format!("{fault:?}"))
            .await
            .assert_error(None, &format!("{fault:?}"));
        h.finish().await;
    }
}

/// A fault IMDS (or the network) shows for one refresh: meanwhile clients see the last good
/// set and the error, and after the retry the new set and no error.
struct FaultThenRecover<'a> {
    /// Whether the daemon's IMDS token is made stale too, so the refresh starts with a PUT.
    stale_token: bool,
    /// Where, what and how many times (the simulator's `inject` arguments).
    injected: (Target, Fault, usize),
    /// Names the checks while the fault lasts.
    during: &'a str,
    /// What `/v1/status` and `imds-credd status` show as the last error meanwhile.
    error: &'a str,
    /// How long after the failed refresh the retry has succeeded.
    retry_after: Duration,
    /// Names the checks after the retry.
    after: &'a str,
}

impl FaultThenRecover<'_> {
    async fn run(&self) {
        let h = Harness::start_with_file_sinks().await;
        self.fails(&h).await;
        self.recovers(h).await;
    }

    /// Injects the fault, rotates, moves past the next refresh and checks what clients see;
    /// returns the state after that refresh and how long (real time) it took.
    async fn fails(&self, h: &Harness) -> (CredentialState, Duration) {
        let good = h.served().unwrap();
        if self.stale_token {
            h.sim.invalidate_tokens();
        }
        let (target, fault, times) = self.injected.clone();
        h.sim.inject(target, fault, times);
        h.sim.rotate_now();
        let started = std::time::Instant::now();
        let state = h.advance_and_settle(HOUR).await;
        let took = started.elapsed();
        h.assert_clients_see(Some(&good), self.during)
            .await
            .assert_error(Some(self.error), self.during);
        (state, took)
    }

    /// Moves on to the retry and checks that clients see the new set and no error.
    async fn recovers(&self, h: Harness) {
        h.advance_and_settle(self.retry_after).await;
        h.assert_clients_see(h.sim.current_credentials().as_ref(), self.after)
            .await
            .assert_error(None, self.after);
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
        let during = format!("{fault:?}: the last good set still served");
        let after = format!("{fault:?}: recovered");
        let case = FaultThenRecover {
            stale_token: false,
            injected: (target, fault, 1),
            during: &during,
            error: message,
            retry_after: 2 * SECOND,
            after: &after,
        };
        let h = Harness::start_with_file_sinks().await;
        let (state, _) = case.fails(&h).await;
        let retry_at = state.next_refresh.unwrap();
        assert!(
            retry_at <= h.clock.now() + 2 * SECOND,
            "{during}: retried soon"
        );
        case.recovers(h).await;
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
        let h = Harness::start_with_file_sinks().await;
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
        let what = format!("{field}: the last good set still served");
        h.assert_clients_see(Some(&good), &what)
            .await
            .assert_error(Some(rule), &what);
        h.finish().await;
    }
}

#[tokio::test]
async fn credentials_expiring_inside_the_margin_are_served_but_refreshed_soon() {
    let h = Harness::start_with_file_sinks().await;
    h.sim
        .inject(Target::Credentials, Fault::ExpiresIn(5 * MINUTE), 1);
    let state = h.advance_and_settle(HOUR).await;
    let served = h.served().unwrap();
    assert!(served.expiration <= h.clock.now() + 5 * MINUTE);
    h.assert_clients_see(Some(&served), "a set inside the margin")
        .await;
    assert!(state.next_refresh.unwrap() <= h.clock.now() + 2 * SECOND);
    assert!(h.logs.contains("expire within before_expiry"));
    h.advance_and_settle(2 * SECOND).await;
    assert_eq!(h.served(), h.sim.current_credentials());
    h.finish().await;
}

#[tokio::test]
async fn an_outage_serves_until_expiry_then_withdraws_then_recovers() {
    let h = Harness::start_with_file_sinks().await;
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
        h.assert_clients_see(Some(&good), "during the outage")
            .await
            .assert_error(Some("503"), "during the outage");
        assert!(h.sim.requests().len() > attempts, "still trying");
        attempts = h.sim.requests().len();
    }
    h.clock.advance(30 * MINUTE);
    h.wait_for("withdrawal", |s| s.credentials.is_none()).await;
    h.assert_clients_see(None, "past the expiry")
        .await
        .assert_error(Some("503"), "past the expiry");
    assert!(h.logs.contains("withdrawn"));
    assert!(h
        .daemon
        .instance_role
        .borrow()
        .last_error
        .as_deref()
        .unwrap()
        .contains("503"));
    h.sim.clear_faults();
    h.advance_and_settle(MINUTE).await;
    h.wait_for("recovery", |s| s.credentials.is_some()).await;
    h.assert_clients_see(h.sim.current_credentials().as_ref(), "after the outage")
        .await
        .assert_error(None, "after the outage");
    h.finish().await;
}

#[tokio::test]
async fn a_replaced_role_is_followed_and_a_removed_role_withdraws_credentials() {
    let h = Harness::start_with_file_sinks().await;
    h.sim.set_role(Some("renamed-role"));
    let state = h.advance_and_settle(HOUR).await;
    assert_eq!(state.role.as_deref(), Some("renamed-role"));
    assert_eq!(h.served(), h.sim.current_credentials());
    assert!(h.logs.contains("instance role was replaced"));
    h.assert_clients_see(h.sim.current_credentials().as_ref(), "a replaced role")
        .await;

    h.sim.set_role(None);
    let state = h.advance_and_settle(HOUR).await;
    assert!(state.credentials.is_none() && state.role.is_none());
    assert!(state.last_error.unwrap().contains("no IAM role"));
    assert!(h.logs.contains("instance role was removed"));
    h.assert_clients_see(None, "a removed role")
        .await
        .assert_error(Some("no IAM role"), "a removed role");

    h.sim.set_role(Some("third-role"));
    h.advance_and_settle(2 * SECOND).await;
    let state = h
        .wait_for("role attached again", |s| s.credentials.is_some())
        .await;
    assert_eq!(state.role.as_deref(), Some("third-role"));
    h.assert_clients_see(
        h.sim.current_credentials().as_ref(),
        "a role attached again",
    )
    .await;
    h.finish().await;
}

#[tokio::test]
async fn an_instance_without_a_role_serves_nothing_until_one_is_attached() {
    let h = Harness::start_with_file_sinks_and(|options| {
        options.sim.role = None;
        options.wait_for_credentials = false;
    })
    .await;
    let state = h.wait_for("an error", |s| s.last_error.is_some()).await;
    assert!(state.credentials.is_none());
    assert!(state.last_error.unwrap().contains("no IAM role"));
    h.assert_clients_see(None, "no role yet")
        .await
        .assert_error(Some("no IAM role"), "no role yet");
    h.sim.set_role(Some("late-role"));
    h.advance_and_settle(2 * SECOND).await;
    h.wait_for("credentials", |s| s.credentials.is_some()).await;
    h.assert_clients_see(h.sim.current_credentials().as_ref(), "a late role")
        .await;
    h.finish().await;
}

#[tokio::test]
async fn a_configured_role_is_used_without_listing() {
    let h = Harness::start_with_file_sinks_and(|options| {
        options.configure = Box::new(|c| c.imds.role = "demo-role".into());
    })
    .await;
    assert_eq!(h.sim.counts().role_lists, 0);
    h.assert_clients_see(h.sim.current_credentials().as_ref(), "a configured role")
        .await;
    h.finish().await;
}

#[tokio::test]
async fn imdsv2_only_by_default_and_v1_fallback_when_allowed() {
    // The token PUT is refused: without allow_imdsv1 the daemon says why and serves nothing.
    let h = Harness::start_with_file_sinks_and(|options| {
        options.wait_for_credentials = false;
        options.sim.allow_imdsv1 = true;
        options.prepare = Box::new(|sim| sim.inject(Target::Token, Fault::Status(403), usize::MAX));
    })
    .await;
    let state = h.wait_for("an error", |s| s.last_error.is_some()).await;
    assert!(state.credentials.is_none());
    assert!(state.last_error.unwrap().contains("IMDSv2 is required"));
    h.assert_clients_see(None, "IMDSv1 refused")
        .await
        .assert_error(Some("IMDSv2 is required"), "IMDSv1 refused");
    assert_eq!(h.sim.counts().credential_gets, 0);
    h.finish().await;

    let h = Harness::start_with_file_sinks_and(|options| {
        options.wait_for_credentials = false;
        options.sim.allow_imdsv1 = true;
        options.configure = Box::new(|c| c.imds.allow_imdsv1 = true);
        options.prepare = Box::new(|sim| sim.inject(Target::Token, Fault::Status(405), usize::MAX));
    })
    .await;
    h.wait_for("credentials over IMDSv1", |s| s.credentials.is_some())
        .await;
    assert!(h.logs.contains("falling back to IMDSv1"));
    h.assert_clients_see(h.sim.current_credentials().as_ref(), "over IMDSv1")
        .await;
    h.finish().await;
}

#[tokio::test]
async fn a_401_on_the_token_put_keeps_the_last_good_set_and_recovers() {
    FaultThenRecover {
        stale_token: true,
        injected: (Target::Token, Fault::Status(401), 1),
        during: "token PUT answered 401",
        error: "IMDS answered /latest/api/token with HTTP 401",
        retry_after: 2 * SECOND,
        after: "after the 401",
    }
    .run()
    .await;
}

/// The hop-limit case: the token answer never arrives (here: later than the timeout).
#[tokio::test]
async fn a_token_put_that_times_out_names_the_hop_limit_and_keeps_the_last_good_set() {
    FaultThenRecover {
        stale_token: true,
        injected: (Target::Token, Fault::Delay(2 * SECOND), 3),
        during: "token PUT timed out",
        error: "hop limit",
        retry_after: MINUTE,
        after: "token answered again",
    }
    .run()
    .await;
}

/// IMDS lists the role but has no credentials for it (briefly, while a profile changes):
/// a glitch, not a removed role.
#[tokio::test]
async fn a_404_on_the_credentials_of_a_listed_role_keeps_the_last_good_set() {
    FaultThenRecover {
        stale_token: false,
        // Both credentials paths: the `-extended` one first, then the legacy one.
        injected: (Target::Credentials, Fault::Status(404), 2),
        during: "credentials path 404",
        error: "IMDS lists role demo-role but answers 404 for its credentials",
        retry_after: 2 * SECOND,
        after: "after the 404",
    }
    .run()
    .await;
}

#[tokio::test]
async fn a_configured_role_that_answers_404_is_not_attached_and_nothing_is_served() {
    let h = Harness::start_with_file_sinks_and(|options| {
        options.configure = Box::new(|c| c.imds.role = "demo-role".into());
    })
    .await;
    h.sim.set_role(Some("another-role"));
    h.advance_and_settle(HOUR).await;
    h.assert_clients_see(None, "configured role gone")
        .await
        .assert_error(
            Some("role demo-role is not attached to this instance"),
            "configured role gone",
        );
    h.finish().await;
}

/// IMDS stops listening: the connection is refused on every retry.
#[tokio::test]
async fn a_refused_connection_keeps_the_last_good_set_until_it_expires() {
    let h = Harness::start_with_file_sinks().await;
    let good = h.served().unwrap();
    h.sim.clone().shutdown().await;
    h.advance_and_settle(HOUR).await;
    h.assert_clients_see(Some(&good), "IMDS refuses connections")
        .await
        .assert_error(Some("cannot connect to IMDS"), "IMDS refuses connections");
    while h.clock.now() + 30 * MINUTE < good.expiration {
        h.advance_and_settle(30 * MINUTE).await;
    }
    h.clock.advance(30 * MINUTE);
    h.wait_for("withdrawal", |s| s.credentials.is_none()).await;
    h.assert_clients_see(None, "past the expiry")
        .await
        .assert_error(Some("cannot connect to IMDS"), "past the expiry");
    h.finish().await;
}

/// A connection that is never accepted: a listener whose backlog is full drops the SYNs,
/// so the connect itself times out (as for an unreachable 169.254.169.254).
#[tokio::test]
async fn a_connect_timeout_serves_nothing_and_says_it_timed_out() {
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    listener.listen(0).unwrap();
    let address = listener.local_addr().unwrap().as_socket().unwrap();
    // Fill the backlog (queue of 0 holds one connection, and the kernel allows one more).
    let fillers: Vec<_> = (0..2)
        .filter_map(|_| std::net::TcpStream::connect_timeout(&address, 200 * MILLISECOND).ok())
        .collect();
    assert!(!fillers.is_empty(), "the backlog filled");
    let h = Harness::start_with_file_sinks_and(|options| {
        options.wait_for_credentials = false;
        options.configure = Box::new(move |c| c.imds.endpoint = format!("http://{address}"));
    })
    .await;
    h.wait_for("an error", |s| s.last_error.is_some()).await;
    h.assert_clients_see(None, "connect timed out")
        .await
        .assert_error(Some("timed out"), "connect timed out");
    h.finish().await;
}

/// The daemon with a simulator whose clock is `skewed` from the daemon's, and the given
/// credential lifetime (rotated 5 minutes before it ends).
async fn skewed_harness(
    skewed: impl FnOnce(&ManualClock) -> SkewedClock,
    lifetime: Duration,
) -> Harness {
    let clock = ManualClock::starting_now();
    let mut options = HarnessOptions::new(&clock);
    options.file_sinks = true;
    options.sim.clock = Arc::new(skewed(&clock));
    options.sim.credential_lifetime = lifetime;
    options.sim.rotate_every = lifetime - 5 * MINUTE;
    Harness::start_with(clock, options).await
}

/// The skew as `/v1/status`, `/metrics`, `imds-credd status` and the log report it.
async fn assert_skew_reported(h: &Harness, view: &ClientView, seconds: i64, words: &str) {
    assert_eq!(view.status_doc["clock_skew_seconds"], seconds, "{view:#?}");
    let warning = view.status_doc["clock_skew_warning"].as_str().unwrap_or("");
    assert!(warning.contains(words), "{warning:?}");
    assert!(
        view.status_text.contains(&format!(
            "clock skew:    WARNING the instance clock is {words}"
        )),
        "{}",
        view.status_text
    );
    let metrics = common::unix_http::get(&h.daemon_socket, "/metrics").await;
    assert!(
        metrics
            .body
            .contains(&format!("\nimds_credd_clock_skew_seconds {seconds}\n")),
        "{}",
        metrics.body
    );
    assert!(h
        .logs
        .contains(&format!("clock skew: the instance clock is {words}")));
}

/// IMDS time 20 minutes ahead: a set IMDS says expires at E really expires when the local
/// clock reads E − 20 min, and is withdrawn then, not 20 minutes later.
#[tokio::test]
async fn an_instance_clock_20_minutes_slow_never_serves_an_expired_set() {
    let h = skewed_harness(|c| SkewedClock::ahead_of(c, 20 * MINUTE), 6 * HOUR).await;
    let issued = h.sim.current_credentials().unwrap();
    let mut local = issued.clone();
    local.expiration = issued.expiration - 20 * MINUTE;
    let view = h.assert_clients_see(Some(&local), "a slow clock").await;
    assert_skew_reported(&h, &view, 1200, "20m behind IMDS").await;

    h.sim.inject(Target::Any, Fault::Status(503), usize::MAX);
    while h.clock.now() + 30 * MINUTE < local.expiration {
        h.advance_and_settle(30 * MINUTE).await;
    }
    h.assert_clients_see(Some(&local), "just before IMDS's expiry")
        .await;
    // One second past the expiry on IMDS's clock; the local clock still shows 19m 59s left.
    let step = local.expiration.duration_since(h.clock.now()).unwrap() + SECOND;
    h.clock.advance(step);
    h.wait_for("withdrawal", |s| s.credentials.is_none()).await;
    assert!(h.clock.now() < issued.expiration);
    h.assert_clients_see(None, "expired on IMDS's clock")
        .await
        .assert_error(Some("503"), "expired on IMDS's clock");
    h.finish().await;
}

/// IMDS time 20 minutes behind, with 30-minute credentials: on the local clock each new set
/// seems to expire in 10 minutes, inside the 15-minute refresh margin. Judged on IMDS time
/// it has 30 minutes, so the daemon refreshes at the margin, not again and again.
#[tokio::test]
async fn an_instance_clock_20_minutes_fast_does_not_refresh_in_a_loop() {
    let h = skewed_harness(|c| SkewedClock::behind(c, 20 * MINUTE), 30 * MINUTE).await;
    let issued = h.sim.current_credentials().unwrap();
    let mut local = issued.clone();
    local.expiration = issued.expiration + 20 * MINUTE;
    let view = h.assert_clients_see(Some(&local), "a fast clock").await;
    assert_skew_reported(&h, &view, -1200, "20m ahead of IMDS").await;
    let next = h.daemon.instance_role.borrow().next_refresh.unwrap();
    // At the margin, less the refresh jitter (at most a tenth of the 15-minute wait).
    let margin = local.expiration - 15 * MINUTE;
    let wait = margin.duration_since(h.clock.now()).unwrap();
    assert!(
        next >= margin - wait / 10 - SECOND,
        "next refresh in {:?}",
        next.duration_since(h.clock.now())
    );
    let gets = h.sim.counts().credential_gets;
    for _ in 0..30 {
        h.advance_and_settle(2 * SECOND).await;
    }
    assert_eq!(
        h.sim.counts().credential_gets,
        gets,
        "no refresh for a minute"
    );
    assert!(!h.logs.contains("expire within before_expiry"));
    h.finish().await;
}

/// An answer whose body trickles in a byte every 20 ms (over 10 s for a credentials
/// document): the request timeout covers the body too, so each try gives up at 500 ms.
#[tokio::test]
async fn a_body_that_trickles_in_times_out_and_keeps_the_last_good_set() {
    let case = FaultThenRecover {
        stale_token: false,
        injected: (Target::Credentials, Fault::Trickle(20 * MILLISECOND), 3),
        during: "a trickling body",
        error: "timed out",
        retry_after: MINUTE,
        after: "after the trickle",
    };
    let h = Harness::start_with_file_sinks().await;
    let (_, took) = case.fails(&h).await;
    assert!(
        took < 5 * SECOND,
        "three tries of at most 500 ms each, with backoff: {took:?}"
    );
    case.recovers(h).await;
}
