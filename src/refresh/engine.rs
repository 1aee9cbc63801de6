//! The one refresh loop, for the instance role and every `[[assume]]` profile: ask an
//! [`Issuer`] for a credential set, publish it on a state channel or keep the last good set
//! and back off, withdraw a set at its expiry, sleep until the next decision. The decisions
//! are [`super::policy`]'s; what to ask and what to log belong to each issuer
//! ([`super::instance`], `crate::assume::chain`). See `docs/ARCHITECTURE.md`.
//!
//! Between attempts the loop sleeps on the injected clock; nothing polls. An issuer chained on
//! another (a profile on the instance role) also wakes when that upstream state brings
//! credentials it has not signed with yet.

use crate::clock::skew::{self, AnswerTimes, SkewVerdict};
use crate::clock::{Due, SharedClock};
use crate::credentials::Credentials;
use crate::error_chain;
use crate::health::heartbeat::Heartbeat;
use crate::health::metrics::Metrics;
use crate::refresh::policy::{self, AfterSuccess, Attempt, RefreshPolicy};
use crate::refresh::state::{withdraw_if_expired, StateReceiver, StateSender};
use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// A set an issuer fetched, as the engine publishes it.
pub struct Fetched<D> {
    /// What the state names as the role: the instance role's name, a profile's role ARN.
    pub role: String,
    /// The set.
    pub credentials: Credentials,
    /// What only the issuer's own log needs (the assumed-role ARN STS answered).
    pub detail: D,
    /// The answer's `Date` and the set's issue time, when the answer gave them: what the
    /// clock-skew correction judges the set by.
    pub times: Option<AnswerTimes>,
}

/// What the engine tells an issuer to report; each issuer words its own log lines.
pub enum Event<'a, D, E> {
    /// The published role appears, changes or disappears.
    RoleChanged {
        /// The role published before; `None`: none.
        previous: Option<&'a str>,
        /// The role published now; `None`: none.
        current: Option<&'a str>,
    },
    /// The set expires within `before_expiry`: published, asked for again soon.
    TooShort(&'a Fetched<D>),
    /// The set is about to be published; the next attempt is at `next_refresh`.
    Published {
        /// The set.
        fetched: &'a Fetched<D>,
        /// When the next attempt is due.
        next_refresh: SystemTime,
    },
    /// An attempt failed. `message` is the chain the state records; `held`: a valid last
    /// good set is still served; `failures`: how many failed in a row before this one.
    Failed {
        /// The attempt's error.
        error: &'a E,
        /// The error rendered, as the state records it.
        message: &'a str,
        /// A valid last good set is still served.
        held: bool,
        /// How many attempts failed in a row before this one.
        failures: u32,
    },
    /// The held set expired with no replacement and was withdrawn.
    Expired {
        /// The last attempt's error, as the state records it.
        last_error: &'a str,
    },
    /// The upstream state has no valid credentials to sign with: nothing is scheduled until
    /// it has.
    WaitingForUpstream,
    /// The upstream state brought credentials this issuer has not signed with.
    UpstreamRotated,
    /// The clock-skew verdict on the sets changed kind (corrected, refused, back within the
    /// threshold): reported once per change, not per set.
    ClockSkew(SkewVerdict),
}

/// Who issues the sets an engine keeps fresh: IMDS for the instance role, STS for a profile.
pub trait Issuer: Send {
    /// What an attempt works from: nothing for the instance role, the instance-role
    /// credentials to sign with for a profile.
    type Input: Send;
    /// What [`Fetched::detail`] carries.
    type Detail: Send;
    /// Why an attempt failed.
    type Error: std::error::Error + Send + 'static;

    /// What the next attempt works from; `None` while there is nothing (a chained issuer
    /// whose [`Upstream`] holds no valid credentials): no attempt is scheduled until
    /// [`Issuer::upstream_rotated`] completes.
    fn input(&mut self) -> Option<Self::Input>;

    /// Completes when the upstream calls for a new attempt (see [`Upstream::rotated`]);
    /// never, for an issuer with no upstream.
    fn upstream_rotated(&mut self, waiting: bool) -> impl Future<Output = ()> + Send;

    /// Asks for a new set.
    fn fetch(
        &mut self,
        input: Self::Input,
    ) -> impl Future<Output = Result<Fetched<Self::Detail>, Self::Error>> + Send;

    /// Checks (and may adjust) a fetched set at `now` before it is published; an error
    /// rejects it like a failed fetch.
    fn admit(
        &self,
        fetched: &mut Fetched<Self::Detail>,
        now: SystemTime,
    ) -> Result<(), Self::Error>;

    /// Whether `error` means the held set is no longer this issuer's to serve (the instance
    /// role was removed): withdrawn at once, not at its expiry.
    fn revokes(&self, error: &Self::Error) -> bool;

    /// Logs what happened.
    fn report(&self, event: Event<'_, Self::Detail, Self::Error>);

    /// The counters this issuer's outcomes add to.
    fn counters<'m>(&self, metrics: &'m Metrics) -> Counters<'m>;
}

/// An issuer's two counters in [`Metrics`].
pub struct Counters<'m> {
    /// Sets published.
    pub published: &'m AtomicU64,
    /// Attempts that ended without a set.
    pub failed: &'m AtomicU64,
}

/// The state a chained issuer signs with (a profile: the instance role's), and what it
/// signed with last.
pub struct Upstream {
    state: StateReceiver,
    clock: SharedClock,
    /// False once the upstream loop is gone (the daemon is stopping): only the clock and the
    /// shutdown can wake the issuer then.
    open: bool,
    /// The access key id of the credentials the last attempt signed with.
    signed_with: Option<String>,
}

impl Upstream {
    /// Follows `state`, judging validity by `clock`.
    pub fn new(state: StateReceiver, clock: SharedClock) -> Self {
        Upstream {
            state,
            clock,
            open: true,
            signed_with: None,
        }
    }

    /// The credentials to sign the next attempt with, if the upstream holds valid ones.
    pub fn signer(&mut self) -> Option<Arc<Credentials>> {
        let now = self.clock.now();
        let signer = self
            .state
            .borrow_and_update()
            .valid_credentials(now)
            .cloned()?;
        self.signed_with = Some(signer.access_key_id.clone());
        Some(signer)
    }

    /// The time to sign with at `local`: corrected by the upstream's accepted clock skew
    /// (the instance role's, from IMDS's `Date`), if any.
    pub fn signing_time(&self, local: SystemTime) -> SystemTime {
        match self.state.borrow().clock_skew {
            Some(verdict) => verdict.signing_time(local),
            None => local,
        }
    }

    /// Completes when the upstream holds valid credentials that call for a new attempt:
    /// any, while `waiting` for them (the last turn had no signer); else ones not signed
    /// with yet.
    pub async fn rotated(&mut self, waiting: bool) {
        loop {
            if !self.open {
                return std::future::pending().await;
            }
            if self.state.changed().await.is_err() {
                self.open = false;
                continue;
            }
            let current = self
                .state
                .borrow_and_update()
                .valid_credentials(self.clock.now())
                .map(|c| c.access_key_id.clone());
            if let Some(key) = current {
                if waiting || self.signed_with.as_deref() != Some(key.as_str()) {
                    return;
                }
            }
        }
    }
}

/// Judges the set by its answer's `Date` ([`skew::judge`]) and moves its expiry onto the
/// local clock when the verdict says so.
fn judge_skew<D>(fetched: &mut Fetched<D>, now: SystemTime) -> Option<SkewVerdict> {
    let expiration = fetched.credentials.expiration;
    let verdict = skew::judge(fetched.times?, expiration, now);
    fetched.credentials.expiration = verdict.local_expiration(expiration);
    Some(verdict)
}

/// What ended a sleep.
enum Woke {
    /// The next attempt is due.
    Attempt,
    /// The held set expired.
    Expiry,
    Upstream,
    Stop,
    /// Time to check in with the heartbeat again (see [`CHECK_IN_EVERY`]).
    CheckIn,
}

/// A sleeping engine checks in with its heartbeat at least this often (monotonic time), with
/// how far its wake-up is then: a step back of the wall clock moves the wake-up later, and
/// must not make the refresher look hung to the watchdog.
const CHECK_IN_EVERY: Duration = crate::clock::wall::RECHECK;

/// Keeps one issuer's set fresh on its state channel.
pub struct Engine<S: Issuer> {
    issuer: S,
    clock: SharedClock,
    policy: RefreshPolicy,
    state: StateSender,
    metrics: Arc<Metrics>,
    /// Checked in on every turn of the loop, for the watchdog (the instance role's).
    heartbeat: Option<Heartbeat>,
}

impl<S: Issuer> Engine<S> {
    /// An engine that asks `issuer` on `policy` and publishes on `state`.
    pub fn new(
        issuer: S,
        clock: SharedClock,
        policy: RefreshPolicy,
        state: StateSender,
        metrics: Arc<Metrics>,
    ) -> Self {
        Engine {
            issuer,
            clock,
            policy,
            state,
            metrics,
            heartbeat: None,
        }
    }

    /// Checks in with `heartbeat` on every turn: before each attempt, and with the length of
    /// each sleep.
    pub fn with_heartbeat(mut self, heartbeat: Heartbeat) -> Self {
        self.heartbeat = Some(heartbeat);
        self
    }

    /// Refreshes until `shutdown` is cancelled.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut failures: u32 = 0;
        loop {
            self.check_in(Duration::ZERO);
            let wake_at = match self.issuer.input() {
                Some(input) => {
                    // A fetch can take its full timeout: do not hold up a stop.
                    let outcome = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        outcome = self.issuer.fetch(input) => outcome,
                    };
                    Some(self.settle(outcome, &mut failures))
                }
                None => {
                    self.issuer.report(Event::WaitingForUpstream);
                    None
                }
            };
            let next_refresh = wake_at.map(|due| self.clock.wall_time_of(due));
            self.state.send_modify(|s| s.next_refresh = next_refresh);
            if !self.sleep(wake_at, &shutdown).await {
                return;
            }
        }
    }

    /// Publishes or rejects what a fetch gave; returns when to try next.
    fn settle(&self, outcome: Result<Fetched<S::Detail>, S::Error>, failures: &mut u32) -> Due {
        let now = self.clock.now();
        let admitted = outcome.and_then(|mut fetched| {
            let verdict = judge_skew(&mut fetched, now);
            self.issuer
                .admit(&mut fetched, now)
                .map(|()| (fetched, verdict))
        });
        match admitted {
            Ok((fetched, verdict)) => {
                self.note_skew(verdict);
                self.accept(fetched, now, failures)
            }
            Err(error) => self.reject(error, failures),
        }
    }

    /// Records the skew verdict on the set about to be published, reporting a change of
    /// kind (a first verdict within the threshold is no news).
    fn note_skew(&self, verdict: Option<SkewVerdict>) {
        let Some(verdict) = verdict else {
            return;
        };
        let previous = self.state.borrow().clock_skew;
        let news = match previous {
            Some(previous) => !previous.same_kind(verdict),
            None => !matches!(verdict, SkewVerdict::Tolerated(_)),
        };
        if news {
            self.issuer.report(Event::ClockSkew(verdict));
        }
        self.state.send_modify(|s| s.clock_skew = Some(verdict));
    }

    /// Publishes the set and decides when to ask again.
    fn accept(&self, fetched: Fetched<S::Detail>, now: SystemTime, failures: &mut u32) -> Due {
        self.note_role(Some(&fetched.role));
        let next = policy::after_success(
            now,
            fetched.credentials.expiration,
            &self.policy,
            *failures,
            fastrand::f64(),
        );
        if let AfterSuccess::TooShort(_) = next {
            self.issuer.report(Event::TooShort(&fetched));
        }
        *failures = next.failures();
        let next_refresh = self.due(next.attempt());
        self.issuer.report(Event::Published {
            fetched: &fetched,
            next_refresh: self.clock.wall_time_of(next_refresh),
        });
        Metrics::incr(self.issuer.counters(&self.metrics).published);
        let Fetched {
            role, credentials, ..
        } = fetched;
        self.state.send_modify(|s| {
            s.role = Some(role);
            s.credentials = Some(Arc::new(credentials));
            s.last_refresh = Some(now);
            s.last_error = None;
        });
        next_refresh
    }

    /// Records a failed attempt; the last good set stays served until it expires, unless the
    /// error revokes it.
    fn reject(&self, error: S::Error, failures: &mut u32) -> Due {
        let message = error_chain::render(&error);
        let now = self.clock.now();
        let held = self.state.borrow().valid_credentials(now).is_some();
        self.issuer.report(Event::Failed {
            error: &error,
            message: &message,
            held,
            failures: *failures,
        });
        if self.issuer.revokes(&error) {
            self.note_role(None);
            self.state.send_modify(|s| {
                s.role = None;
                s.credentials = None;
            });
        }
        Metrics::incr(self.issuer.counters(&self.metrics).failed);
        self.state.send_modify(|s| s.last_error = Some(message));
        let retry = policy::after_failure(&self.policy, *failures, fastrand::f64());
        *failures = retry.failures;
        self.due(Attempt::After(retry.delay))
    }

    /// An attempt as a wait: a deadline stays on the wall clock, a delay runs from now.
    fn due(&self, attempt: Attempt) -> Due {
        match attempt {
            Attempt::At(at) => Due::At(at),
            Attempt::After(delay) => self.clock.after(delay),
        }
    }

    /// Reports the published role changing to `current`.
    fn note_role(&self, current: Option<&str>) {
        let previous = self.state.borrow().role.clone();
        if previous.as_deref() != current {
            self.issuer.report(Event::RoleChanged {
                previous: previous.as_deref(),
                current,
            });
        }
    }

    /// Sleeps until `wake_at` (`None`: until the upstream wakes it), withdrawing the set if
    /// it expires first. The attempt and the expiry are waited for together, each on its
    /// own clock: after a step back the expiry moves later but a retry's delay does not.
    /// On a tie the attempt wins, so a set is replaced rather than withdrawn. Returns false
    /// when asked to stop.
    async fn sleep(&mut self, wake_at: Option<Due>, shutdown: &CancellationToken) -> bool {
        loop {
            let expiry = self.state.borrow().expiration();
            let attempt_at = wake_at.map(|due| self.clock.wall_time_of(due));
            if let Some(next) = expiry.into_iter().chain(attempt_at).min() {
                let away = next.duration_since(self.clock.now());
                self.check_in(away.unwrap_or_default());
            }
            let woke = {
                let clock = &self.clock;
                let attempt = async {
                    match wake_at {
                        Some(due) => clock.sleep_until_due(due).await,
                        None => std::future::pending().await,
                    }
                };
                let expired = async {
                    match expiry {
                        Some(expiry) => clock.sleep_until(expiry).await,
                        None => std::future::pending().await,
                    }
                };
                let upstream = self.issuer.upstream_rotated(wake_at.is_none());
                let check_in = async {
                    match self.heartbeat {
                        // Monotonic: the heartbeat counts monotonic time.
                        #[allow(clippy::disallowed_methods)]
                        Some(_) => tokio::time::sleep(CHECK_IN_EVERY).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => Woke::Stop,
                    _ = attempt => Woke::Attempt,
                    _ = expired => Woke::Expiry,
                    _ = upstream => Woke::Upstream,
                    _ = check_in => Woke::CheckIn,
                }
            };
            match woke {
                Woke::Stop => return false,
                Woke::CheckIn => {}
                Woke::Upstream => {
                    self.issuer.report(Event::UpstreamRotated);
                    return true;
                }
                Woke::Expiry => self.withdraw_expired(),
                Woke::Attempt => return true,
            }
        }
    }

    /// The held set reached its expiry with no replacement: stop serving it.
    fn withdraw_expired(&self) {
        if withdraw_if_expired(&self.state, self.clock.now()) {
            let last_error = self.state.borrow().last_error.clone().unwrap_or_default();
            self.issuer.report(Event::Expired {
                last_error: &last_error,
            });
        }
    }

    fn check_in(&self, away: Duration) {
        if let Some(heartbeat) = &self.heartbeat {
            heartbeat.check_in(away);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::credentials::secret::Secret;
    use crate::refresh::state::CredentialState;
    use crate::refresh::state_channel;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    const MIN: Duration = Duration::from_secs(60);
    const HOUR: Duration = Duration::from_secs(3600);

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Refused(&'static str);

    /// Answers attempts from a script, in order, and is silent once it is spent. "gone"
    /// revokes the held set. Records the access key id each attempt signed with.
    struct Scripted {
        answers: VecDeque<Result<Credentials, Refused>>,
        upstream: Option<Upstream>,
        signed: Arc<Mutex<Vec<String>>>,
    }

    impl Issuer for Scripted {
        type Input = Option<String>;
        type Detail = ();
        type Error = Refused;

        fn input(&mut self) -> Option<Option<String>> {
            match &mut self.upstream {
                Some(upstream) => upstream.signer().map(|c| Some(c.access_key_id.clone())),
                None => Some(None),
            }
        }

        async fn upstream_rotated(&mut self, waiting: bool) {
            match &mut self.upstream {
                Some(upstream) => upstream.rotated(waiting).await,
                None => std::future::pending().await,
            }
        }

        async fn fetch(&mut self, signer: Option<String>) -> Result<Fetched<()>, Refused> {
            self.signed.lock().unwrap().extend(signer);
            let Some(answer) = self.answers.pop_front() else {
                return std::future::pending().await;
            };
            answer.map(|credentials| Fetched {
                role: "r".into(),
                credentials,
                detail: (),
                times: None,
            })
        }

        fn admit(&self, _: &mut Fetched<()>, _: SystemTime) -> Result<(), Refused> {
            Ok(())
        }

        fn revokes(&self, error: &Refused) -> bool {
            error.0 == "gone"
        }

        fn report(&self, _: Event<'_, (), Refused>) {}

        fn counters<'m>(&self, metrics: &'m Metrics) -> Counters<'m> {
            Counters {
                published: &metrics.refresh_successes,
                failed: &metrics.refresh_failures,
            }
        }
    }

    /// A failed attempt that keeps the held set.
    fn down() -> Result<Credentials, Refused> {
        Err(Refused("down"))
    }

    fn credentials(key: &str, expiration: SystemTime) -> Credentials {
        Credentials {
            access_key_id: key.into(),
            secret_access_key: Secret::new("secret".into()),
            session_token: Secret::new("token".into()),
            expiration,
            account_id: None,
        }
    }

    struct Running {
        clock: ManualClock,
        state: StateReceiver,
        metrics: Arc<Metrics>,
        signed: Arc<Mutex<Vec<String>>>,
        _stop: tokio_util::sync::DropGuard,
    }

    impl Running {
        /// Starts an unchained issuer whose first answer is the set `KEY1`, expiring
        /// `lasting` after the start, then `then`'s (written from the start time), and waits
        /// for that first set (the manual clock still reads the start time then).
        async fn first_set(
            lasting: Duration,
            then: impl FnOnce(SystemTime) -> Vec<Result<Credentials, Refused>>,
            heartbeat: Option<Heartbeat>,
        ) -> Self {
            let clock = ManualClock::starting_now();
            let t0 = clock.now();
            let answers = std::iter::once(Ok(credentials("KEY1", t0 + lasting)));
            let answers = answers.chain(then(t0)).collect();
            let mut run = Self::start(clock, answers, None, heartbeat);
            run.until("the first set", |s| s.credentials.is_some())
                .await;
            run
        }

        fn start(
            clock: ManualClock,
            answers: Vec<Result<Credentials, Refused>>,
            upstream: Option<StateReceiver>,
            heartbeat: Option<Heartbeat>,
        ) -> Self {
            let shared: SharedClock = Arc::new(clock.clone());
            let signed = Arc::new(Mutex::new(Vec::new()));
            let issuer = Scripted {
                answers: answers.into(),
                upstream: upstream.map(|state| Upstream::new(state, shared.clone())),
                signed: signed.clone(),
            };
            let (sender, state) = state_channel();
            let metrics = Arc::new(Metrics::default());
            let policy = RefreshPolicy::from(&crate::config::RefreshConfig::default());
            let mut engine = Engine::new(issuer, shared, policy, sender, metrics.clone());
            engine.heartbeat = heartbeat;
            let stop = CancellationToken::new();
            tokio::spawn(engine.run(stop.clone()));
            Running {
                clock,
                state,
                metrics,
                signed,
                _stop: stop.drop_guard(),
            }
        }

        async fn until(&mut self, what: &str, done: impl FnMut(&CredentialState) -> bool) {
            tokio::time::timeout(Duration::from_secs(5), self.state.wait_for(done))
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .expect("engine running");
        }

        fn key(&self) -> Option<String> {
            let state = self.state.borrow();
            state.credentials.as_ref().map(|c| c.access_key_id.clone())
        }
    }

    #[tokio::test]
    async fn a_failure_keeps_the_last_good_set_until_it_expires_then_withdraws_it() {
        let mut run = Running::first_set(40 * MIN, |_| vec![down(), down()], None).await;

        run.clock.advance(25 * MIN);
        run.until("the failure", |s| s.last_error.is_some()).await;
        let now = run.clock.now();
        assert!(run.state.borrow().valid_credentials(now).is_some());
        assert_eq!(run.key().as_deref(), Some("KEY1"));

        run.clock.advance(20 * MIN);
        run.until("the withdrawal", |s| s.credentials.is_none())
            .await;
        assert_eq!(run.state.borrow().last_error.as_deref(), Some("down"));
        assert_eq!(Metrics::get(&run.metrics.refresh_successes), 1);
        assert_eq!(Metrics::get(&run.metrics.refresh_failures), 2);
    }

    #[tokio::test]
    async fn an_error_that_revokes_the_set_withdraws_it_at_once() {
        let mut run = Running::first_set(6 * HOUR, |_| vec![Err(Refused("gone"))], None).await;
        let t0 = run.clock.now();
        assert!(run
            .state
            .borrow()
            .next_refresh
            .is_some_and(|at| at <= t0 + HOUR));

        run.clock.advance(HOUR);
        run.until("the withdrawal", |s| s.credentials.is_none())
            .await;
        let state = run.state.borrow();
        assert_eq!(state.role, None);
        assert_eq!(state.last_error.as_deref(), Some("gone"));
    }

    #[tokio::test]
    async fn a_chained_issuer_waits_for_upstream_credentials_and_signs_again_when_they_rotate() {
        let clock = ManualClock::starting_now();
        let t0 = clock.now();
        let (upstream, upstream_state) = state_channel();
        let answers = vec![
            Ok(credentials("CHAIN1", t0 + HOUR)),
            Ok(credentials("CHAIN2", t0 + HOUR)),
        ];
        let mut run = Running::start(clock, answers, Some(upstream_state), None);
        let publish = |key: &str| {
            let set = Arc::new(credentials(key, t0 + 6 * HOUR));
            upstream.send_modify(|s| s.credentials = Some(set));
        };

        publish("KEY1");
        run.until("the first chained set", |s| s.credentials.is_some())
            .await;
        publish("KEY1");
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            *run.signed.lock().unwrap(),
            ["KEY1"],
            "same key: no new attempt"
        );

        publish("KEY2");
        run.until("the second chained set", |s| {
            s.credentials
                .as_ref()
                .is_some_and(|c| c.access_key_id == "CHAIN2")
        })
        .await;
        assert_eq!(*run.signed.lock().unwrap(), ["KEY1", "KEY2"]);
    }

    /// A step back of the wall clock makes the sleep until the next refresh two hours
    /// longer than the engine said when it checked in; it keeps checking in while it
    /// sleeps, so the watchdog does not take it for hung.
    #[tokio::test(start_paused = true)]
    async fn a_step_back_does_not_make_the_sleeping_engine_look_hung() {
        let heartbeat = Heartbeat::new(MIN);
        let run = Running::first_set(6 * HOUR, |_| Vec::new(), Some(heartbeat.clone())).await;
        run.clock.jump_back(2 * HOUR);
        // Past the hour the engine promised before the step, plus the allowance.
        for _ in 0..8 {
            tokio::time::sleep(10 * MIN).await;
            assert!(!heartbeat.is_overdue(), "overdue while sleeping");
        }
        assert_eq!(run.key().as_deref(), Some("KEY1"));
    }

    /// A refresh fails, then the wall clock steps an hour back: the retry is a delay, so
    /// it comes after its second of backoff, not an hour and a second later; the held set
    /// is not withdrawn early.
    #[tokio::test]
    async fn a_retry_after_a_step_back_comes_after_its_delay() {
        let mut run = Running::first_set(
            40 * MIN,
            |t0| vec![down(), Ok(credentials("KEY2", t0 + 2 * HOUR))],
            None,
        )
        .await;
        run.clock.advance(25 * MIN);
        run.until("the failure", |s| s.last_error.is_some()).await;
        assert_eq!(run.key().as_deref(), Some("KEY1"), "still served");

        run.clock.jump_back(HOUR);
        // The first retry's delay is at most a second (the default `retry_base`).
        run.clock.advance(Duration::from_secs(1));
        run.until("the retry's set", |s| {
            s.credentials
                .as_ref()
                .is_some_and(|c| c.access_key_id == "KEY2")
        })
        .await;
        assert_eq!(Metrics::get(&run.metrics.refresh_failures), 1);
        assert_eq!(Metrics::get(&run.metrics.refresh_successes), 2);
    }

    /// A set that expires before the retry's delay is withdrawn at its expiry; with the
    /// retry still due, the replacement follows.
    #[tokio::test]
    async fn an_expiry_before_the_retry_withdraws_the_set_and_the_retry_still_follows() {
        let mut run = Running::first_set(
            40 * MIN,
            |t0| {
                vec![
                    down(),
                    down(),
                    down(),
                    Ok(credentials("KEY2", t0 + 2 * HOUR)),
                ]
            },
            None,
        )
        .await;
        // Just before the expiry: three failures in a row back off to 2-4 s.
        run.clock.advance(40 * MIN - Duration::from_millis(1500));
        run.until("the failure", |s| s.last_error.is_some()).await;
        for _ in 0..3 {
            run.clock.advance(Duration::from_secs(1));
            tokio::task::yield_now().await;
        }
        run.until("the withdrawal or the new set", |s| {
            s.credentials
                .as_ref()
                .is_none_or(|c| c.access_key_id == "KEY2")
        })
        .await;
        run.clock.advance(4 * Duration::from_secs(1));
        run.until("the new set", |s| s.credentials.is_some()).await;
        assert_eq!(run.key().as_deref(), Some("KEY2"));
    }
}
