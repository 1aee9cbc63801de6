//! The signals the daemon answers: SIGTERM (systemd's stop) and SIGINT (Ctrl-C) stop, SIGHUP
//! reloads; on Windows, Ctrl-C stops.

use crate::error_chain;
use tokio_util::sync::CancellationToken;

/// What a signal asks of the daemon.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Signal {
    Stop,
    Reload,
}

/// The installed signal handlers. Cancelling the `external` token stops too (the Windows
/// service's SCM stop).
pub(super) struct StopOrReload {
    #[cfg(target_os = "linux")]
    streams: [tokio::signal::unix::Signal; 3],
    external: CancellationToken,
}

impl StopOrReload {
    pub(super) fn install(external: CancellationToken) -> std::io::Result<Self> {
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

    pub(super) async fn next(&mut self) -> Signal {
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
