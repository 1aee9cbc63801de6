//! SIGHUP: a new configuration applied to the running daemon. File and env sinks are
//! compared as configured ([`SinkSpec`]); removed ones stop, new ones start, unchanged ones
//! keep running, and the credentials are never dropped.

use crate::config::{Config, EnvSinkConfig, FileSinkConfig, SignalConfig, SinkConfig};
use crate::daemon::{DaemonError, DaemonHandle};
use crate::refresh::state::StateReceiver;
use crate::sink::hooks::RotationHooks;
use crate::sink::{run_sink, CredentialsFileSink, EnvFileSink, Publish};
use tokio_util::sync::CancellationToken;

/// A `[[file]]` or `[[env]]` sink as configured: what a reload compares to decide which
/// sinks to stop and which to start.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum SinkSpec {
    File(FileSinkConfig),
    Env(EnvSinkConfig),
}

impl SinkSpec {
    pub(super) fn all(config: &Config) -> Vec<SinkSpec> {
        let files = config.files.iter().cloned().map(SinkSpec::File);
        files
            .chain(config.envs.iter().cloned().map(SinkSpec::Env))
            .collect()
    }

    /// The keys every kind of sink has.
    fn sink(&self) -> &SinkConfig {
        match self {
            SinkSpec::File(c) => &c.sink,
            SinkSpec::Env(c) => &c.sink,
        }
    }

    fn source(&self) -> Option<&str> {
        self.sink().source.as_deref()
    }

    /// The sink's `owner` setting, which also says whose pid file its `signal` may read.
    fn owner(&self) -> Option<&str> {
        self.sink().owner.as_deref()
    }

    /// The sink's `on_rotate` command and `signal` target.
    fn hooks(&self) -> (Option<&[String]>, Option<&SignalConfig>) {
        let sink = self.sink();
        (sink.on_rotate.as_deref(), sink.signal.as_ref())
    }

    fn describe(&self) -> String {
        let table = match self {
            SinkSpec::File(_) => "file",
            SinkSpec::Env(_) => "env",
        };
        format!("[[{table}]] {}", self.sink().path.display())
    }
}

/// A sink the daemon started, and the token that stops it.
pub(super) struct RunningSink {
    spec: SinkSpec,
    stop: CancellationToken,
}

impl DaemonHandle {
    /// Applies a new configuration: file and env sinks that were removed stop, new ones
    /// start, unchanged ones keep running; the credentials are never dropped. Other sections
    /// take effect at the next restart, and the log says so.
    pub fn reload(&mut self, new: Config) -> Result<(), DaemonError> {
        self.warn_restart_only(&new);
        let wanted = SinkSpec::all(&new);
        for spec in &wanted {
            if let Some(profile) = spec.source() {
                if !self.profiles.contains_key(profile) {
                    return Err(unknown_profile(spec, profile));
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

    /// Logs each section that changed but only takes effect at the next restart.
    fn warn_restart_only(&self, new: &Config) {
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
    }

    /// Starts one file or env sink on the instance role's state or its `source` profile's.
    pub(super) fn start_sink(&mut self, spec: SinkSpec) -> Result<(), DaemonError> {
        let state = match spec.source() {
            None => self.instance_role.clone(),
            Some(profile) => self
                .profiles
                .get(profile)
                .cloned()
                .ok_or_else(|| unknown_profile(&spec, profile))?,
        };
        let (on_rotate, signal) = spec.hooks();
        let hooks = RotationHooks::new(&spec.describe(), on_rotate, signal)?
            .owned_by(spec.owner().map(str::to_string));
        let stop = self.shutdown.child_token();
        match &spec {
            SinkSpec::File(c) => {
                let sink = CredentialsFileSink::new(c)?;
                self.spawn_publisher(sink, state, hooks, stop.clone())
            }
            SinkSpec::Env(c) => {
                let sink = EnvFileSink::new(c)?;
                self.spawn_publisher(sink, state, hooks, stop.clone())
            }
        }
        self.sinks.push(RunningSink { spec, stop });
        Ok(())
    }

    fn spawn_publisher<P: Publish>(
        &mut self,
        sink: P,
        state: StateReceiver,
        hooks: RotationHooks,
        stop: CancellationToken,
    ) {
        let target = sink.target().display().to_string();
        let name = format!("sink {} {target}", P::KIND);
        let reporter = self.health.register(P::KIND, target);
        let clock = self.clock.clone();
        let task = run_sink(sink, state, clock, reporter, hooks, stop.clone());
        self.tasks.spawn(name, &stop, task);
    }
}

fn unknown_profile(spec: &SinkSpec, profile: &str) -> DaemonError {
    DaemonError::UnknownProfile {
        sink: spec.describe(),
        profile: profile.to_string(),
    }
}
