//! Log output: text or JSON lines on stderr (journald captures it), or a file for the
//! Windows service, filtered by target with tracing's `Targets` (no regex).
//!
//! Only our own crate logs below `warn`: libraries' trace output (hyper, rustls) could carry
//! request details we do not control, such as the IMDS token header. `RUST_LOG`, when set,
//! is read as `Targets` directives and may change the level of our crate and its modules
//! only (a bare level such as `RUST_LOG=debug` applies to our crate); it overrides the
//! configured `log_level` for them. Directives for other crates are ignored: they stay at
//! `warn`. A `RUST_LOG` that does not parse is named in one warning and the configured
//! level is used (`docs/ARCHITECTURE.md`, secrets).

use crate::config::{LogFormat, LogLevel};
use std::io::IsTerminal;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Our crate's target, and the prefix of its modules' targets.
const OUR_CRATE: &str = env!("CARGO_CRATE_NAME");
/// The most any other crate may log.
const LIBRARY_LEVEL: LevelFilter = LevelFilter::WARN;

/// Installs the global subscriber. Safe to call once per process.
pub fn init(level: LogLevel, format: LogFormat) {
    init_to(
        level,
        format,
        std::io::stderr,
        std::io::stderr().is_terminal(),
    );
}

/// Installs the global subscriber writing to `writer` (the Windows service's log file).
pub fn init_to<W>(level: LogLevel, format: LogFormat, writer: W, ansi: bool)
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let rust_log = std::env::var("RUST_LOG").ok();
    let (targets, bad_rust_log) = filter(level, rust_log.as_deref());
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi)
        .with_target(false);
    let registry = tracing_subscriber::registry().with(targets);
    match format {
        LogFormat::Text => registry.with(layer).init(),
        LogFormat::Json => registry.with(layer.json().flatten_event(true)).init(),
    }
    if let Some(error) = bad_rust_log {
        tracing::warn!(
            "RUST_LOG is not a list of target=level directives ({error}); using log_level = {}",
            level.as_str()
        );
    }
}

/// The filter for `level`, changed for our crate by `rust_log` when it parses; else the
/// parse error, to be logged once the subscriber is installed.
fn filter(level: LogLevel, rust_log: Option<&str>) -> (Targets, Option<String>) {
    let ours = match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    };
    let configured = Targets::new()
        .with_default(LIBRARY_LEVEL)
        .with_target(OUR_CRATE, ours);
    let Some(spec) = rust_log.filter(|spec| !spec.trim().is_empty()) else {
        return (configured, None);
    };
    let parsed = match spec.parse::<Targets>() {
        Ok(parsed) => parsed,
        Err(error) => return (configured, Some(error.to_string())),
    };
    let mut targets = configured;
    if let Some(bare) = parsed.default_level() {
        targets = targets.with_target(OUR_CRATE, bare);
    }
    let module_prefix = format!("{OUR_CRATE}::");
    for (target, level) in &parsed {
        if target == OUR_CRATE || target.starts_with(&module_prefix) {
            targets = targets.with_target(target, level);
        }
    }
    (targets, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    fn enabled(targets: &Targets, target: &str, level: Level) -> bool {
        targets.would_enable(target, &level)
    }

    #[test]
    fn the_configured_level_is_ours_and_libraries_stay_at_warn() {
        let (targets, error) = filter(LogLevel::Debug, None);
        assert_eq!(error, None);
        assert!(enabled(&targets, "imds_credd::imds::client", Level::DEBUG));
        assert!(!enabled(&targets, "imds_credd", Level::TRACE));
        assert!(enabled(&targets, "hyper_util::client", Level::WARN));
        assert!(!enabled(&targets, "hyper_util::client", Level::INFO));
    }

    #[test]
    fn rust_log_changes_our_crate_only() {
        let spec = "info,imds_credd::imds=trace,hyper=trace,rustls=debug";
        let (targets, error) = filter(LogLevel::Warn, Some(spec));
        assert_eq!(error, None);
        assert!(enabled(&targets, "imds_credd::refresh", Level::INFO));
        assert!(!enabled(&targets, "imds_credd::refresh", Level::DEBUG));
        assert!(enabled(&targets, "imds_credd::imds::client", Level::TRACE));
        for library in ["hyper", "rustls", "h2"] {
            assert!(!enabled(&targets, library, Level::INFO), "{library}");
        }
        let (targets, _) = filter(LogLevel::Info, Some("imds_credd=error"));
        assert!(!enabled(&targets, "imds_credd::daemon", Level::WARN));
    }

    #[test]
    fn a_bad_rust_log_is_reported_and_the_configured_level_used() {
        let (targets, error) = filter(LogLevel::Info, Some("imds_credd=loud"));
        assert!(error.is_some());
        assert!(enabled(&targets, "imds_credd", Level::INFO));
        assert!(!enabled(&targets, "imds_credd", Level::DEBUG));
        let (_, error) = filter(LogLevel::Info, Some("  "));
        assert_eq!(error, None);
    }
}
