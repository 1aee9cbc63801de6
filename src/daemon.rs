//! `imds-credd run`: resolves the IMDS settings, starts the refresher and every configured
//! sink on one state channel, and stops them all on SIGTERM/SIGINT.

use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::health::SinkHealth;
use crate::imds::endpoint::{imdsv1_allowed, resolve_endpoint};
use crate::imds::{ImdsClient, ImdsError, ImdsSettings, RetryPolicy};
use crate::metrics::Metrics;
use crate::refresh::{state_channel, RefreshPolicy, Refresher};
use crate::state::StateReceiver;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long a stopping daemon waits for its tasks before giving up on them.
const STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum DaemonError {
    #[error(transparent)]
    Imds(#[from] ImdsError),
}

/// A running daemon: the refresher and its sinks, and what they share.
pub struct DaemonHandle {
    pub state: StateReceiver,
    pub metrics: Arc<Metrics>,
    pub health: SinkHealth,
    pub endpoint: String,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl DaemonHandle {
    /// Stops every task and waits (boundedly) for them to finish.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let all_done = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(STOP_GRACE, all_done).await.is_err() {
            tracing::warn!("some tasks did not stop in time; abandoning them");
        }
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
    let health = SinkHealth::default();
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();

    let role = Some(config.imds.role.clone()).filter(|r| !r.is_empty());
    let refresher = Refresher::new(
        imds,
        clock.clone(),
        RefreshPolicy::from(&config.refresh),
        role,
        state_tx,
        metrics.clone(),
    );
    tasks.spawn(refresher.run(shutdown.clone()));
    #[cfg(unix)]
    tasks.spawn(crate::notify::run(
        state.clone(),
        clock.clone(),
        shutdown.clone(),
    ));

    tracing::info!(endpoint, "imds-credd started");
    Ok(DaemonHandle {
        state,
        metrics,
        health,
        endpoint,
        shutdown,
        tasks,
    })
}

/// The `run` command: a daemon in the foreground until SIGTERM or SIGINT.
pub fn run_foreground(config: Config) -> u8 {
    crate::logging::init(config.log.level, config.log.format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return crate::cli::EXIT_NO_CREDENTIALS;
        }
    };
    runtime.block_on(async {
        let daemon = match start(&config, Arc::new(SystemClock)).await {
            Ok(daemon) => daemon,
            Err(e) => {
                tracing::error!(error = %crate::imds::error_chain(&e), "cannot start");
                return crate::cli::EXIT_USAGE;
            }
        };
        wait_for_stop_signal().await;
        tracing::info!("stopping");
        daemon.stop().await;
        tracing::info!("stopped");
        crate::cli::EXIT_OK
    })
}

/// Resolves on SIGTERM (systemd's stop) or SIGINT (Ctrl-C).
pub async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
