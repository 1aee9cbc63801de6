//! Each sink's last outcome, for `status` and `/v1/status`: a failing sink (disk full, folder
//! gone) is visible without reading the logs, and never stops the others.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// What one sink last did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkReport {
    /// `socket`, `file`, `env`, `container`.
    pub kind: &'static str,
    /// Path or address the sink writes to or serves on.
    pub target: String,
    pub last_success: Option<SystemTime>,
    /// The last failure, cleared by the next success. Never holds a secret.
    pub last_error: Option<String>,
}

/// The table of sinks, shared between the sinks (writers) and the status endpoints.
#[derive(Debug, Clone, Default)]
pub struct SinkHealth {
    reports: Arc<Mutex<Vec<SinkReport>>>,
}

/// A sink's handle on its own row.
#[derive(Debug, Clone)]
pub struct SinkReporter {
    health: SinkHealth,
    index: usize,
}

impl SinkHealth {
    /// Adds a row for a sink and returns the handle it reports through.
    pub fn register(&self, kind: &'static str, target: String) -> SinkReporter {
        let mut reports = self.reports.lock().expect("sink health lock");
        reports.push(SinkReport {
            kind,
            target,
            last_success: None,
            last_error: None,
        });
        SinkReporter {
            health: self.clone(),
            index: reports.len() - 1,
        }
    }

    pub fn snapshot(&self) -> Vec<SinkReport> {
        self.reports.lock().expect("sink health lock").clone()
    }
}

impl SinkReporter {
    pub fn succeeded(&self, at: SystemTime) {
        self.update(|r| {
            r.last_success = Some(at);
            r.last_error = None;
        });
    }

    pub fn failed(&self, error: String) {
        self.update(|r| r.last_error = Some(error));
    }

    fn update(&self, f: impl FnOnce(&mut SinkReport)) {
        let mut reports = self.health.reports.lock().expect("sink health lock");
        f(&mut reports[self.index]);
    }
}
