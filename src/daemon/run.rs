//! The `run` command's life: the runtime, the daemon, and its answer to each signal and to a
//! failed task, until it stops.

use crate::clock::SystemClock;
use crate::config::{Config, ConfigError};
use crate::daemon::signals::{Signal, StopOrReload};
use crate::daemon::{start, DaemonHandle, RunError};
use crate::error_chain;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

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
    crate::daemon::memory::limit_arenas();
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
        let _trimmer = tokio::spawn(crate::daemon::memory::trim_periodically());
        let mut daemon = start(&config, Arc::new(SystemClock)).await.map_err(|e| {
            tracing::error!(error = %error_chain::render(&e), "cannot start");
            RunError::Start(e)
        })?;
        let signals = match StopOrReload::install(stop) {
            Ok(signals) => signals,
            Err(e) => {
                tracing::error!(error = %error_chain::render(&e), "cannot install signal handlers");
                daemon.stop().await;
                return Err(RunError::Signals(e));
            }
        };
        let ended = serve_until_stopped(&mut daemon, signals, reread).await;
        if ended.is_ok() {
            tracing::info!("stopping");
            daemon.stop().await;
            tracing::info!("stopped");
        } else {
            daemon.stop().await;
        }
        ended
    })
}

/// Answers signals until a stop signal (`Ok`) or a failed task (`Err`).
async fn serve_until_stopped(
    daemon: &mut DaemonHandle,
    mut signals: StopOrReload,
    reread: impl Fn() -> Result<Config, ConfigError>,
) -> Result<(), RunError> {
    loop {
        let signal = tokio::select! {
            signal = signals.next() => signal,
            failure = daemon.failure() => {
                tracing::error!(error = %error_chain::render(&failure), "exiting so that the service manager restarts the daemon");
                return Err(RunError::TaskFailed(failure));
            }
        };
        if signal != Signal::Reload {
            return Ok(());
        }
        tracing::info!("SIGHUP: re-reading the configuration");
        let reloaded = reread()
            .map_err(|e| error_chain::render(&e))
            .and_then(|new| daemon.reload(new).map_err(|e| error_chain::render(&e)));
        match reloaded {
            Ok(()) => tracing::info!("configuration reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "new configuration refused; keeping the running one")
            }
        }
    }
}
