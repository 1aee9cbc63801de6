//! Log output: text or JSON lines on stderr (journald captures it), or a file for the
//! Windows service. Only our own crate logs
//! below `warn`: libraries' trace output could carry request details we do not control.

use crate::config::{LogFormat, LogLevel};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

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
    let filter = EnvFilter::new(format!("warn,imds_credd={}", level.as_str()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi)
        .with_target(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
