//! Never alive but dead: every long-running task of the daemon (refresher, assume-role
//! chains, sinks, servers, notify) runs under a [`Supervisor`] with a name. A task that
//! ends while nobody asked it to stop is a failure the daemon cannot recover from by
//! itself, so the daemon exits non-zero and the service manager restarts it in seconds
//! (`Restart=on-failure`) instead of serving `503` until the watchdog fires.
//!
//! Panics: [`exit_on_panic`] makes any panic, on any thread, log the panicking task's name
//! and location and end the process at once. The panic message itself is not logged: it
//! may quote the data that caused it, and that data may be a secret.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;
use thiserror::Error;
use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;

tokio::task_local! {
    /// The name of the supervised task being polled, for the panic hook.
    static TASK_NAME: String;
}

/// A supervised task that ended without being asked to stop.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TaskFailure {
    /// The named task returned, though it should run until the stop.
    #[error("task {0:?} ended unexpectedly")]
    Ended(String),
    /// The named task panicked.
    #[error("task {0:?} panicked")]
    Panicked(String),
}

/// Named tasks, each with the token that asks it to stop.
#[derive(Default)]
pub struct Supervisor {
    tasks: JoinSet<()>,
    running: HashMap<Id, Supervised>,
}

struct Supervised {
    name: String,
    stop: CancellationToken,
}

impl Supervisor {
    /// Runs `task` on the current runtime as `name`. `stop` is the token that asks it to
    /// stop: ending after it is cancelled is expected, ending before is a [`TaskFailure`].
    pub fn spawn<F>(&mut self, name: impl Into<String>, stop: &CancellationToken, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let name = name.into();
        let handle = self.tasks.spawn(TASK_NAME.scope(name.clone(), task));
        self.running.insert(
            handle.id(),
            Supervised {
                name,
                stop: stop.clone(),
            },
        );
    }

    /// Resolves with the first task that ends unexpectedly; tasks that end after their stop
    /// token was cancelled are reaped on the way. Pending while every task runs.
    pub async fn failure(&mut self) -> TaskFailure {
        loop {
            let Some(joined) = self.tasks.join_next_with_id().await else {
                return std::future::pending().await;
            };
            let (id, panicked) = match joined {
                Ok((id, ())) => (id, false),
                Err(error) => (error.id(), error.is_panic()),
            };
            let Some(task) = self.running.remove(&id) else {
                continue;
            };
            match (panicked, task.stop.is_cancelled()) {
                (true, _) => return TaskFailure::Panicked(task.name),
                (false, false) => return TaskFailure::Ended(task.name),
                (false, true) => {}
            }
        }
    }

    /// Waits up to `grace` for every task to end (their stop tokens must be cancelled
    /// already), logging the names of those that did not.
    pub async fn join_all(&mut self, grace: Duration) {
        let all_done = async {
            while let Some(joined) = self.tasks.join_next_with_id().await {
                let id = joined.map_or_else(|error| error.id(), |(id, ())| id);
                self.running.remove(&id);
            }
        };
        if tokio::time::timeout(grace, all_done).await.is_err() {
            let mut late: Vec<&str> = self.running.values().map(|t| t.name.as_str()).collect();
            late.sort_unstable();
            tracing::warn!(tasks = ?late, "some tasks did not stop in time; abandoning them");
        }
    }
}

/// Installs a panic hook that logs where the panic happened and which supervised task (or
/// thread) it was in, without the panic message, then exits with `exit_code` (the caller's
/// code for a failed task; `cli` owns the codes). A panicked task can leave shared state
/// half-updated; restarting is the safe recovery.
pub fn exit_on_panic(exit_code: u8) {
    std::panic::set_hook(Box::new(move |info| {
        let task = TASK_NAME
            .try_with(Clone::clone)
            .unwrap_or_else(|_| format!("thread {}", thread_name()));
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(
            task,
            location,
            "panic (its message is not logged, it may hold a secret); exiting so that the service manager restarts the daemon"
        );
        std::process::exit(i32::from(exit_code));
    }));
}

fn thread_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_returns_on_its_own_is_a_failure_named_after_it() {
        let mut supervisor = Supervisor::default();
        let stop = CancellationToken::new();
        supervisor.spawn("waits", &stop, stop.clone().cancelled_owned());
        supervisor.spawn("returns", &stop, async {});
        assert_eq!(
            supervisor.failure().await,
            TaskFailure::Ended("returns".into())
        );
    }

    #[tokio::test]
    async fn a_task_stopped_on_request_is_reaped_quietly() {
        let mut supervisor = Supervisor::default();
        let shutdown = CancellationToken::new();
        let sink_stop = shutdown.child_token();
        supervisor.spawn("sink", &sink_stop, sink_stop.clone().cancelled_owned());
        supervisor.spawn("refresher", &shutdown, async {});
        sink_stop.cancel();
        // The sink's end is expected and skipped; the refresher's is not.
        assert_eq!(
            supervisor.failure().await,
            TaskFailure::Ended("refresher".into())
        );
        let pending = tokio::time::timeout(Duration::from_millis(50), supervisor.failure());
        assert!(pending.await.is_err(), "no task is left to fail");
    }

    #[tokio::test]
    async fn a_panicking_task_is_reported_by_name() {
        let mut supervisor = Supervisor::default();
        let stop = CancellationToken::new();
        supervisor.spawn("chain", &stop, async { panic!("boom") });
        assert_eq!(
            supervisor.failure().await,
            TaskFailure::Panicked("chain".into())
        );
    }
}
