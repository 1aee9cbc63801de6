//! `imds-credd run`: resolves the IMDS settings, starts the refresher and every configured
//! sink on one state channel, re-reads the config on SIGHUP (starting and stopping sinks
//! without dropping the credentials), and stops everything on SIGTERM/SIGINT. Each job has
//! its module: `start` (building and wiring), `reload` (SIGHUP), `signals`, `run` (the
//! foreground loop) and `errors`.

mod errors;
pub mod logging;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod memory;
#[cfg(target_os = "linux")]
pub mod notify;
mod reload;
mod run;
#[cfg(windows)]
pub mod service;
mod signals;
mod start;
pub mod supervisor;

pub use errors::{DaemonError, RunError};
pub use run::{run_foreground, run_until};
pub use signals::wait_for_stop_signal;
pub use start::start;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::daemon::reload::RunningSink;
use crate::daemon::supervisor::{Supervisor, TaskFailure};
use crate::health::metrics::Metrics;
use crate::health::SinkHealth;
use crate::refresh::state::StateReceiver;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a stopping daemon waits for its tasks before giving up on them.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running daemon: the refresher and its sinks, and what they share.
pub struct DaemonHandle {
    /// The instance role's state channel.
    pub instance_role: StateReceiver,
    /// Assumed-role profiles by name, each with its own state channel.
    pub profiles: BTreeMap<String, StateReceiver>,
    /// The counters `/metrics` and `status` report.
    pub metrics: Arc<Metrics>,
    /// Each sink's last outcome.
    pub health: SinkHealth,
    /// The IMDS endpoint in use, for the logs and `demo`'s guide.
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
}
