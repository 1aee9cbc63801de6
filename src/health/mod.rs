//! Each sink's last outcome, for `status` and `/v1/status`: a failing sink (disk full, folder
//! gone) is visible without reading the logs, and never stops the others. A sink's row lives
//! as long as its [`SinkReporter`]: a sink removed by a reload leaves the table.
#![warn(missing_docs)]

pub(crate) mod heartbeat;
pub mod metrics;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// What one sink last did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkReport {
    /// `socket`, `file`, `env`, `container`.
    pub kind: &'static str,
    /// Path or address the sink writes to or serves on.
    pub target: String,
    /// When the sink last did its job (a write, a served answer), if ever.
    pub last_success: Option<SystemTime>,
    /// The last failure, cleared by the next success. Never holds a secret.
    pub last_error: Option<String>,
    /// What went wrong in the last run of the sink's rotation hooks (a refused pid file, a
    /// failed `on_rotate`), cleared by the next run that goes right.
    pub hook_error: Option<String>,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    rows: BTreeMap<u64, SinkReport>,
}

/// The table of sinks, shared between the sinks (writers) and the status endpoints.
#[derive(Debug, Clone, Default)]
pub struct SinkHealth {
    table: Arc<Mutex<Table>>,
}

/// A sink's handle on its own row; dropping it removes the row.
#[derive(Debug)]
pub struct SinkReporter {
    health: SinkHealth,
    id: u64,
}

impl SinkHealth {
    /// Adds a row for a sink and returns the handle it reports through.
    pub fn register(&self, kind: &'static str, target: String) -> SinkReporter {
        let mut table = self.lock();
        let id = table.next_id;
        table.next_id += 1;
        table.rows.insert(
            id,
            SinkReport {
                kind,
                target,
                last_success: None,
                last_error: None,
                hook_error: None,
            },
        );
        SinkReporter {
            health: self.clone(),
            id,
        }
    }

    /// The rows in the order the sinks were started.
    pub fn snapshot(&self) -> Vec<SinkReport> {
        self.lock().rows.values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().expect("sink health lock")
    }
}

impl SinkReporter {
    /// The sink did its job at `at`: clears its error.
    pub fn succeeded(&self, at: SystemTime) {
        self.update(|r| {
            r.last_success = Some(at);
            r.last_error = None;
        });
    }

    /// The sink failed: `error` (rendered, never holding a secret) shows until it succeeds.
    pub fn failed(&self, error: String) {
        self.update(|r| r.last_error = Some(error));
    }

    /// The outcome of a run of the sink's hooks: `None` when all went right.
    pub fn hooks_ran(&self, problem: Option<String>) {
        self.update(|r| r.hook_error = problem);
    }

    fn update(&self, f: impl FnOnce(&mut SinkReport)) {
        if let Some(row) = self.health.lock().rows.get_mut(&self.id) {
            f(row);
        }
    }
}

impl Drop for SinkReporter {
    fn drop(&mut self) {
        self.health.lock().rows.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_follow_their_reporters() {
        let health = SinkHealth::default();
        let file = health.register("file", "/a".into());
        let env = health.register("env", "/b".into());
        file.failed("ENOSPC".into());
        env.succeeded(SystemTime::UNIX_EPOCH);
        let rows = health.snapshot();
        assert_eq!(rows[0].last_error.as_deref(), Some("ENOSPC"));
        assert_eq!(rows[1].last_success, Some(SystemTime::UNIX_EPOCH));
        env.hooks_ran(Some("pid file /run/app.pid: missing".into()));
        env.succeeded(SystemTime::UNIX_EPOCH);
        let rows = health.snapshot();
        assert_eq!(
            rows[1].hook_error.as_deref(),
            Some("pid file /run/app.pid: missing"),
            "a write does not clear a hook's problem"
        );
        drop(file);
        let rows = health.snapshot();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].target, "/b");
    }
}
