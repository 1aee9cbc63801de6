//! Building and wiring the daemon from a `Config`: the IMDS client, the assumed-role
//! profiles, the servers (socket or pipe, unit credentials, container endpoint), the
//! refresher, systemd notify and every configured sink, each task under the supervisor.

use crate::assume::{start_profiles, ChainContext};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::daemon::reload::SinkSpec;
use crate::daemon::supervisor::Supervisor;
use crate::daemon::{DaemonError, DaemonHandle};
use crate::health::heartbeat::Heartbeat;
use crate::health::metrics::Metrics;
use crate::health::SinkHealth;
use crate::imds::endpoint::{imdsv1_allowed, resolve_endpoint};
use crate::imds::{ImdsClient, ImdsSettings, RetryPolicy};
use crate::refresh::instance::{self, RefresherParts};
use crate::refresh::policy::RefreshPolicy;
use crate::refresh::state::StateSender;
use crate::refresh::state_channel;
use crate::serve::Api;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

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
    let (state_tx, instance_role) = state_channel();
    let mut daemon = DaemonHandle {
        instance_role,
        profiles: BTreeMap::new(),
        metrics,
        health: SinkHealth::default(),
        endpoint,
        container: None,
        container_addrs: Vec::new(),
        config: config.clone(),
        clock,
        sinks: Vec::new(),
        shutdown: CancellationToken::new(),
        tasks: Supervisor::default(),
    };
    daemon.start_profiles(config, &imds)?;
    daemon.start_servers(config).await?;
    daemon.start_refresher(config, imds, state_tx);
    for spec in SinkSpec::all(config) {
        daemon.start_sink(spec)?;
    }
    tracing::info!(endpoint = daemon.endpoint, "imds-credd started");
    Ok(daemon)
}

impl DaemonHandle {
    /// One task per `[[assume]]` profile, each publishing on its own state channel.
    fn start_profiles(
        &mut self,
        config: &Config,
        imds: &Arc<ImdsClient>,
    ) -> Result<(), DaemonError> {
        let chains = ChainContext {
            instance_role: self.instance_role.clone(),
            imds: imds.clone(),
            clock: self.clock.clone(),
            metrics: self.metrics.clone(),
            policy: RefreshPolicy::from(&config.refresh),
        };
        for profile in start_profiles(&config.assumes, &chains, &self.shutdown)? {
            let name = format!("assume-role profile {}", profile.name);
            self.tasks.spawn(name, &self.shutdown, profile.task);
            self.profiles.insert(profile.name, profile.state);
        }
        Ok(())
    }

    /// The API every server answers with, on the daemon's state and profiles.
    fn api(&self, config: &Config) -> Arc<Api> {
        let api = Api::new(
            self.instance_role.clone(),
            self.profiles.clone(),
            self.clock.clone(),
            self.metrics.clone(),
            self.health.clone(),
        );
        Arc::new(api.with_rate_limit(config.socket.rate_limit))
    }

    /// The named pipe, bound before READY=1 can be sent so clients never race it.
    #[cfg(windows)]
    async fn start_servers(&mut self, config: &Config) -> Result<(), DaemonError> {
        let api = self.api(config);
        let limits = crate::serve::ServerLimits::default();
        let stop = self.shutdown.clone();
        let server = crate::serve::pipe::PipeServer::open(&config.socket, api)?;
        self.tasks
            .spawn("pipe server", &stop, server.serve(limits, stop.clone()));
        Ok(())
    }

    /// The unit-credentials socket, the API socket and the container endpoint, bound before
    /// READY=1 can be sent so clients never race them.
    #[cfg(target_os = "linux")]
    async fn start_servers(&mut self, config: &Config) -> Result<(), DaemonError> {
        let api = self.api(config);
        let limits = crate::serve::ServerLimits::default();
        let stop = self.shutdown.clone();
        // Before the API socket: systemd passes both under one name.
        let units = crate::serve::unit_credentials::UnitCredentialsServer::open(config)?;
        let server = crate::serve::SocketServer::open(&config.socket)?;
        if let Some(units) = units {
            let task = units.serve(api.clone(), stop.clone());
            self.tasks.spawn("unit-credentials socket", &stop, task);
        }
        let task = server.serve(api.clone(), limits, stop.clone());
        self.tasks.spawn("socket server", &stop, task);
        // After the socket: a token folder made here (0700) must not be the socket's.
        if let Some(container) = &config.container {
            let clock = self.clock.clone();
            let endpoint = crate::serve::container::ContainerEndpoint::open(
                container,
                api,
                &self.health,
                clock,
            )
            .await?;
            self.container_addrs = endpoint.local_addrs();
            self.container = self.container_addrs.first().copied().flatten();
            self.tasks
                .spawn("container endpoint", &stop, endpoint.serve(stop.clone()));
        }
        Ok(())
    }

    /// The instance role's refresher and, on Linux, the systemd notifier watching its
    /// heartbeat.
    fn start_refresher(&mut self, config: &Config, imds: Arc<ImdsClient>, state: StateSender) {
        let heartbeat = Heartbeat::new(Heartbeat::allowance_for(config.imds.timeout));
        let refresher = instance::refresher(RefresherParts {
            imds,
            clock: self.clock.clone(),
            policy: RefreshPolicy::from(&config.refresh),
            configured_role: Some(config.imds.role.clone()).filter(|r| !r.is_empty()),
            state,
            metrics: self.metrics.clone(),
            heartbeat: heartbeat.clone(),
        });
        let stop = self.shutdown.clone();
        self.tasks
            .spawn("refresher", &stop, refresher.run(stop.clone()));
        #[cfg(target_os = "linux")]
        self.tasks.spawn(
            "systemd notify",
            &stop,
            crate::daemon::notify::run(
                self.instance_role.clone(),
                self.health.clone(),
                self.clock.clone(),
                heartbeat,
                config.socket.path.clone(),
                stop.clone(),
            ),
        );
    }
}
