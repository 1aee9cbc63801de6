//! `imds-credd`: keeps the EC2 instance-profile credentials fresh from IMDSv2 and
//! republishes them where programs without an AWS SDK can use them.
//!
//! # Layout
//! - [`config`]: the TOML file and CLI flags, resolved into one validated `Config`.
//! - [`imds`]: the IMDSv2 client (session token, retries, body cap).
//! - [`credentials`], [`secret`]: the credentials model; secrets never print.
//! - [`account`]: the AWS account id (12 digits) and reading it from an ARN.
//! - [`assume`]: `[[assume]]` profiles: STS `AssumeRole` chained on the instance role.
//! - [`hooks`]: commands and signals run after a sink publishes new credentials.
//! - [`pid_file`]: the checks that keep a hook's signal on the sink owner's own process.
//! - `privileges` (Linux): not dumpable at start; hooks' children without capabilities.
//! - [`refresh`]: when to ask IMDS again, and the loop that publishes on a watch channel.
//! - [`heartbeat`]: the refresher's check-in that the watchdog pings depend on.
//! - [`state`]: what the refresher publishes and every sink reads.
//! - [`supervisor`]: named daemon tasks; one that panics or ends takes the process down.
//! - [`simulator`]: a simulated IMDS on loopback, for `demo` and the tests.
//! - [`sink`]: the credentials-file and env-file sinks, written atomically.
//! - [`clock`]: wall-clock time, injectable so tests can fast-forward.
//! - [`socket`]: the HTTP API on the unix socket (peer checks, limits, systemd activation),
//!   or on a named pipe on Windows.
//! - `service` (Windows): `imds-credd service install|uninstall|run`, the SCM wrapper.
//! - [`client`]: the client commands (`credential-process`, `exec`, `env`, `status`) that
//!   ask the daemon over its socket.
//! - [`container`]: the optional loopback endpoint for `AWS_CONTAINER_CREDENTIALS_FULL_URI`.
//! - [`activation`]: the sockets systemd passed, picked by name.

pub mod account;
#[cfg(target_os = "linux")]
pub mod activation;
pub mod assume;
pub mod backoff;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
#[cfg(target_os = "linux")]
pub mod container;
pub mod credentials;
pub mod daemon;
pub mod demo;
pub mod health;
pub mod heartbeat;
pub mod hooks;
pub mod imds;
pub mod logging;
pub mod metrics;
#[cfg(unix)]
pub mod notify;
#[cfg(unix)]
pub mod pid_file;
#[cfg(target_os = "linux")]
pub mod privileges;
pub mod refresh;
pub mod render;
pub mod secret;
#[cfg(windows)]
pub mod service;
pub mod simulator;
pub mod sink;
pub mod socket;
pub mod state;
pub mod supervisor;
