//! What kind of failure an error is, as each error type answers it (`fault()`): whose move
//! it is to fix it. `cli::exit` maps each kind to an exit code in one match; nothing below
//! `cli` names a code.

/// Whose move it is after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The operator fixes it in what they wrote (the config file, a flag, an environment
    /// variable the daemon honours, the command line), or there is no daemon to ask.
    Setup,
    /// The machine or a service, not the operator's text: no credentials could be had this
    /// time, or the daemon could not start; a retry or a restart may do better.
    Unavailable,
    /// A supervised task of the daemon panicked or ended unasked.
    TaskFailed,
    /// `exec`'s command exists but cannot be run.
    CannotExecute,
    /// `exec`'s command does not exist.
    CommandNotFound,
}
