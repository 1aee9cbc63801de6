//! `imds-credd run`: resolves the IMDS settings, starts the refresher and every configured
//! sink on one state channel, re-reads the config on SIGHUP (starting and stopping sinks
//! without dropping the credentials), and stops everything on SIGTERM/SIGINT.

pub mod logging;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod memory;
#[cfg(target_os = "linux")]
pub mod notify;
#[cfg(windows)]
pub mod service;
pub mod supervisor;

use crate::assume::{start_profiles, ChainContext, StsError};
use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, ConfigError, EnvSinkConfig, FileSinkConfig, SignalConfig};
use crate::daemon::supervisor::{Supervisor, TaskFailure};
use crate::error_chain;
use crate::health::heartbeat::Heartbeat;
use crate::health::metrics::Metrics;
use crate::health::SinkHealth;
use crate::imds::endpoint::{imdsv1_allowed, resolve_endpoint};
use crate::imds::{ImdsClient, ImdsError, ImdsSettings, RetryPolicy};
use crate::refresh::policy::RefreshPolicy;
use crate::refresh::state::StateReceiver;
use crate::refresh::{instance, state_channel};
use crate::sink::hooks::{HookConfigError, RotationHooks};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

/// How long a stopping daemon waits for its tasks before giving up on them.
const STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum DaemonError {
    #[error(transparent)]
    Imds(#[from] ImdsError),
    #[error(transparent)]
    Assume(#[from] StsError),
    #[error(transparent)]
    Sink(#[from] crate::sink::SinkError),
    #[cfg(target_os = "linux")]
    #[error(transparent)]
    Socket(#[from] crate::serve::SocketError),
    #[cfg(target_os = "linux")]
    #[error(transparent)]
    Container(#[from] crate::serve::container::ContainerError),
    #[cfg(windows)]
    #[error(transparent)]
    Pipe(#[from] crate::serve::pipe::PipeError),
    #[error(transparent)]
    Hooks(#[from] HookConfigError),
    #[error("sink {sink} publishes profile {profile:?}, which no [[assume]] entry provides")]
    UnknownProfile { sink: String, profile: String },
}

/// Why `run` ended other than by a stop signal. Each is logged where it happens (the
/// daemon's log, in its format), so whoever turns it into an exit code prints nothing.
#[derive(Debug, Error)]
pub enum RunError {
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error("cannot start")]
    Start(#[source] DaemonError),
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
    #[error("a supervised task failed")]
    TaskFailed(#[source] TaskFailure),
}

/// A `[[file]]` or `[[env]]` sink as configured: what a reload compares to decide which
/// sinks to stop and which to start.
#[derive(Debug, Clone, PartialEq)]
enum SinkSpec {
    File(FileSinkConfig),
    Env(EnvSinkConfig),
}

impl SinkSpec {
    fn all(config: &Config) -> Vec<SinkSpec> {
        let files = config.files.iter().cloned().map(SinkSpec::File);
        files
            .chain(config.envs.iter().cloned().map(SinkSpec::Env))
            .collect()
    }

    fn source(&self) -> Option<&str> {
        match self {
            SinkSpec::File(c) => c.source.as_deref(),
            SinkSpec::Env(c) => c.source.as_deref(),
        }
    }

    /// The sink's `owner` setting, which also says whose pid file its `signal` may read.
    fn owner(&self) -> Option<&str> {
        match self {
            SinkSpec::File(c) => c.owner.as_deref(),
            SinkSpec::Env(c) => c.owner.as_deref(),
        }
    }

    /// The sink's `on_rotate` command and `signal` target.
    fn hooks(&self) -> (Option<&[String]>, Option<&SignalConfig>) {
        match self {
            SinkSpec::File(c) => (c.on_rotate.as_deref(), c.signal.as_ref()),
            SinkSpec::Env(c) => (c.on_rotate.as_deref(), c.signal.as_ref()),
        }
    }

    fn describe(&self) -> String {
        match self {
            SinkSpec::File(c) => format!("[[file]] {}", c.path.display()),
            SinkSpec::Env(c) => format!("[[env]] {}", c.path.display()),
        }
    }
}

struct RunningSink {
    spec: SinkSpec,
    stop: CancellationToken,
}

/// A running daemon: the refresher and its sinks, and what they share.
pub struct DaemonHandle {
    pub state: StateReceiver,
    /// Assumed-role profiles by name, each with its own state channel.
    pub profiles: BTreeMap<String, StateReceiver>,
    pub metrics: Arc<Metrics>,
    pub health: SinkHealth,
    pub endpoint: String,
    /// Where the `[container]` endpoint listens on its first `listen` address (its port
    /// resolved), if configured and bound at start (a busy port is retried in the
    /// background).
    pub container: Option<std::net::SocketAddr>,
    /// The same for every `listen` address, in order.
    pub container_addrs: Vec<Option<std::net::SocketAddr>>,
    config: Config,
    clock: SharedClock,
    sinks: Vec<RunningSink>,
    shutdown: CancellationToken,
    tasks: Supervisor,
}

impl DaemonHandle {
    /// Applies a new configuration: file and env sinks that were removed stop, new ones
    /// start, unchanged ones keep running; the credentials are never dropped. Other sections
    /// take effect at the next restart, and the log says so.
    pub fn reload(&mut self, new: Config) -> Result<(), DaemonError> {
        let old = &self.config;
        let restart_only = [
            ("[imds]", old.imds != new.imds),
            ("[refresh]", old.refresh != new.refresh),
            ("[socket]", old.socket != new.socket),
            ("[log]", old.log != new.log),
            ("[[assume]]", old.assumes != new.assumes),
            ("[container]", old.container != new.container),
            ("[[unit]]", old.units != new.units),
        ];
        for (section, changed) in restart_only {
            if changed {
                tracing::warn!(
                    section,
                    "changes to this section take effect at the next restart"
                );
            }
        }
        let wanted = SinkSpec::all(&new);
        for spec in &wanted {
            if let Some(profile) = spec.source() {
                if !self.profiles.contains_key(profile) {
                    return Err(self.unknown_profile(spec, profile));
                }
            }
        }
        self.sinks.retain(|running| {
            let keep = wanted.contains(&running.spec);
            if !keep {
                tracing::info!(sink = %running.spec.describe(), "sink removed by reload; stopping it");
                running.stop.cancel();
            }
            keep
        });
        for spec in wanted {
            if !self.sinks.iter().any(|running| running.spec == spec) {
                tracing::info!(sink = %spec.describe(), "sink added by reload; starting it");
                self.start_sink(spec)?;
            }
        }
        self.config.files = new.files;
        self.config.envs = new.envs;
        Ok(())
    }

    /// Resolves when a task ends or panics without being asked to stop (see
    /// [`crate::daemon::supervisor`]); sinks stopped by a reload are reaped on the way.
    pub async fn failure(&mut self) -> TaskFailure {
        self.tasks.failure().await
    }

    /// Stops every task and waits (boundedly) for them to finish.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        self.tasks.join_all(STOP_GRACE).await;
    }

    fn unknown_profile(&self, spec: &SinkSpec, profile: &str) -> DaemonError {
        DaemonError::UnknownProfile {
            sink: spec.describe(),
            profile: profile.to_string(),
        }
    }

    fn start_sink(&mut self, spec: SinkSpec) -> Result<(), DaemonError> {
        use crate::sink::{run_sink, CredentialsFileSink, EnvFileSink, Publish};
        let source = match spec.source() {
            None => self.state.clone(),
            Some(profile) => self
                .profiles
                .get(profile)
                .cloned()
                .ok_or_else(|| self.unknown_profile(&spec, profile))?,
        };
        let (on_rotate, signal) = spec.hooks();
        let hooks = RotationHooks::new(&spec.describe(), on_rotate, signal)?
            .owned_by(spec.owner().map(str::to_string));
        let stop = self.shutdown.child_token();
        fn spawn_publisher<P: Publish>(
            daemon: &mut DaemonHandle,
            sink: P,
            source: StateReceiver,
            hooks: RotationHooks,
            stop: CancellationToken,
        ) {
            let target = sink.target().display().to_string();
            let name = format!("sink {} {target}", P::KIND);
            let reporter = daemon.health.register(P::KIND, target);
            let clock = daemon.clock.clone();
            let task = run_sink(sink, source, clock, reporter, hooks, stop.clone());
            daemon.tasks.spawn(name, &stop, task);
        }
        match &spec {
            SinkSpec::File(c) => {
                let sink = CredentialsFileSink::new(c)?;
                spawn_publisher(self, sink, source, hooks, stop.clone())
            }
            SinkSpec::Env(c) => {
                let sink = EnvFileSink::new(c)?;
                spawn_publisher(self, sink, source, hooks, stop.clone())
            }
        }
        self.sinks.push(RunningSink { spec, stop });
        Ok(())
    }
}

/// Starts the daemon's tasks on the current runtime.
pub async fn start(config: &Config, clock: SharedClock) -> Result<DaemonHandle, DaemonError> {
    let env = |name: &str| std::env::var(name).ok();
    let endpoint = resolve_endpoint(&config.imds, env)?;
    let settings = ImdsSettings {
        endpoint: endpoint.clone(),
        token_ttl: config.imds.token_ttl,
        timeout: config.imds.timeout,
        allow_imdsv1: imdsv1_allowed(&config.imds, env),
        retry: RetryPolicy::default(),
    };
    let metrics = Arc::new(Metrics::default());
    let imds = Arc::new(ImdsClient::new(settings, clock.clone(), metrics.clone())?);
    let (state_tx, state) = state_channel();
    let shutdown = CancellationToken::new();

    let mut daemon = DaemonHandle {
        state,
        profiles: BTreeMap::new(),
        metrics,
        health: SinkHealth::default(),
        endpoint,
        container: None,
        container_addrs: Vec::new(),
        config: config.clone(),
        clock,
        sinks: Vec::new(),
        shutdown,
        tasks: Supervisor::default(),
    };
    let chains = ChainContext {
        source: daemon.state.clone(),
        imds: imds.clone(),
        clock: daemon.clock.clone(),
        metrics: daemon.metrics.clone(),
        policy: RefreshPolicy::from(&config.refresh),
    };
    for profile in start_profiles(&config.assumes, &chains, &daemon.shutdown)? {
        let name = format!("assume-role profile {}", profile.name);
        daemon.tasks.spawn(name, &daemon.shutdown, profile.task);
        daemon.profiles.insert(profile.name, profile.state);
    }
    {
        let api = Arc::new(
            crate::serve::Api::new(
                daemon.state.clone(),
                daemon.profiles.clone(),
                daemon.clock.clone(),
                daemon.metrics.clone(),
                daemon.health.clone(),
            )
            .with_rate_limit(config.socket.rate_limit),
        );
        // Bound before READY=1 can be sent, so clients never race the socket.
        let limits = crate::serve::ServerLimits::default();
        let stop = daemon.shutdown.clone();
        #[cfg(windows)]
        {
            let server = crate::serve::pipe::PipeServer::open(&config.socket, api)?;
            daemon
                .tasks
                .spawn("pipe server", &stop, server.serve(limits, stop.clone()));
        }
        #[cfg(target_os = "linux")]
        {
            // Before the API socket: systemd passes both under one name.
            let units = crate::serve::unit_credentials::UnitCredentialsServer::open(config)?;
            let server = crate::serve::SocketServer::open(&config.socket)?;
            if let Some(units) = units {
                daemon.tasks.spawn(
                    "unit-credentials socket",
                    &stop,
                    units.serve(api.clone(), stop.clone()),
                );
            }
            daemon.tasks.spawn(
                "socket server",
                &stop,
                server.serve(api.clone(), limits, stop.clone()),
            );
            // After the socket: a token folder made here (0700) must not be the socket's.
            if let Some(container) = &config.container {
                let clock = daemon.clock.clone();
                let endpoint = crate::serve::container::ContainerEndpoint::open(
                    container,
                    api,
                    &daemon.health,
                    clock,
                )
                .await?;
                daemon.container_addrs = endpoint.local_addrs();
                daemon.container = daemon.container_addrs.first().copied().flatten();
                let stop = daemon.shutdown.clone();
                daemon
                    .tasks
                    .spawn("container endpoint", &stop, endpoint.serve(stop.clone()));
            }
        }
    }
    let role = Some(config.imds.role.clone()).filter(|r| !r.is_empty());
    let heartbeat = Heartbeat::new(Heartbeat::allowance_for(config.imds.timeout));
    let refresher = instance::refresher(
        imds,
        daemon.clock.clone(),
        RefreshPolicy::from(&config.refresh),
        role,
        state_tx,
        daemon.metrics.clone(),
        heartbeat.clone(),
    );
    let stop = daemon.shutdown.clone();
    daemon
        .tasks
        .spawn("refresher", &stop, refresher.run(stop.clone()));
    #[cfg(target_os = "linux")]
    daemon.tasks.spawn(
        "systemd notify",
        &stop,
        crate::daemon::notify::run(
            daemon.state.clone(),
            daemon.health.clone(),
            daemon.clock.clone(),
            heartbeat,
            config.socket.path.clone(),
            stop.clone(),
        ),
    );

    for spec in SinkSpec::all(config) {
        daemon.start_sink(spec)?;
    }
    tracing::info!(endpoint = daemon.endpoint, "imds-credd started");
    Ok(daemon)
}

/// The `run` command: a daemon in the foreground until SIGTERM or SIGINT. On SIGHUP it calls
/// `reread` and applies the result, keeping the running config if the new one is bad.
pub fn run_foreground(
    config: Config,
    reread: impl Fn() -> Result<Config, ConfigError>,
) -> Result<(), RunError> {
    crate::daemon::logging::init(config.log.level, config.log.format);
    run_until(config, reread, CancellationToken::new())
}

/// The daemon until a stop signal or until `stop` is cancelled (how the Windows service
/// control manager stops it), with the logging already set up. A failure is logged here
/// before it is returned.
pub fn run_until(
    config: Config,
    reread: impl Fn() -> Result<Config, ConfigError>,
    stop: CancellationToken,
) -> Result<(), RunError> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    memory::limit_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            tracing::error!(error = %error_chain::render(&e), "cannot start the async runtime");
            RunError::Runtime(e)
        })?;
    runtime.block_on(async {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        let _trimmer = tokio::spawn(memory::trim_periodically());
        let mut daemon = start(&config, Arc::new(SystemClock)).await.map_err(|e| {
            tracing::error!(error = %error_chain::render(&e), "cannot start");
            RunError::Start(e)
        })?;
        let mut signals = match StopOrReload::install(stop) {
            Ok(signals) => signals,
            Err(e) => {
                tracing::error!(error = %error_chain::render(&e), "cannot install signal handlers");
                daemon.stop().await;
                return Err(RunError::Signals(e));
            }
        };
        loop {
            let signal = tokio::select! {
                signal = signals.next() => signal,
                failure = daemon.failure() => {
                    tracing::error!(error = %error_chain::render(&failure), "exiting so that the service manager restarts the daemon");
                    daemon.stop().await;
                    return Err(RunError::TaskFailed(failure));
                }
            };
            if signal != Signal::Reload {
                break;
            }
            tracing::info!("SIGHUP: re-reading the configuration");
            let outcome = reread()
                .map_err(|e| error_chain::render(&e))
                .and_then(|new| daemon.reload(new).map_err(|e| error_chain::render(&e)));
            match outcome {
                Ok(()) => tracing::info!("configuration reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "new configuration refused; keeping the running one")
                }
            }
        }
        tracing::info!("stopping");
        daemon.stop().await;
        tracing::info!("stopped");
        Ok(())
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Signal {
    Stop,
    Reload,
}

/// SIGTERM (systemd's stop) and SIGINT (Ctrl-C) stop; SIGHUP reloads. On Windows, Ctrl-C
/// stops. Cancelling the `external` token stops too (the Windows service's SCM stop).
struct StopOrReload {
    #[cfg(target_os = "linux")]
    streams: [tokio::signal::unix::Signal; 3],
    external: CancellationToken,
}

impl StopOrReload {
    fn install(external: CancellationToken) -> std::io::Result<Self> {
        #[cfg(target_os = "linux")]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(StopOrReload {
                streams: [
                    signal(SignalKind::terminate())?,
                    signal(SignalKind::interrupt())?,
                    signal(SignalKind::hangup())?,
                ],
                external,
            })
        }
        #[cfg(windows)]
        Ok(StopOrReload { external })
    }

    async fn next(&mut self) -> Signal {
        #[cfg(target_os = "linux")]
        {
            let [term, int, hup] = &mut self.streams;
            tokio::select! {
                _ = term.recv() => Signal::Stop,
                _ = int.recv() => Signal::Stop,
                _ = hup.recv() => Signal::Reload,
                _ = self.external.cancelled() => Signal::Stop,
            }
        }
        #[cfg(windows)]
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => Signal::Stop,
                _ = self.external.cancelled() => Signal::Stop,
            }
        }
    }
}

/// Resolves on the first stop signal (the demo's way to end).
pub async fn wait_for_stop_signal() {
    match StopOrReload::install(CancellationToken::new()) {
        Ok(mut signals) => while signals.next().await != Signal::Stop {},
        Err(e) => {
            tracing::error!(error = %error_chain::render(&e), "cannot install signal handlers; stop with SIGKILL");
            std::future::pending::<()>().await
        }
    }
}
