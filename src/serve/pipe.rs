//! The API on Windows: the same HTTP/1.1 routes ([`Api`]) on a named pipe, by default
//! `\\.\pipe\imds-credd` (`[socket] path`).
//!
//! # Who may connect
//! The pipe's DACL (SDDL `D:P(D;;GA;;;NU)(A;;GA;;;SY)(A;;GA;;;BA)` plus `(A;;GRGW;;;SID)`
//! per `[socket] allow_sids`) admits SYSTEM, the Administrators group and the configured
//! accounts, and denies network logons; the pipe also rejects remote clients outright. The
//! kernel enforces it at open time, so there is no per-request peer check as on unix.
//! The first instance is created with `FILE_FLAG_FIRST_PIPE_INSTANCE`: if another process
//! already owns the name, the daemon refuses to start rather than share it. Read/write
//! access lets an admitted account create further instances of the pipe (Windows ties that
//! right to write access), so only admit accounts trusted with the credentials anyway.
//!
//! # Limits and shutdown
//! The accept loop, limits and graceful shutdown are those of [`super::server`]; connections
//! are also capped below [`MAX_INSTANCES`] pipe instances.

use super::api::{Api, Body, Endpoint};
use super::consumers::Consumer;
use super::refusals::RefusalLog;
use super::server::{self, Admission, Frontend, Listener, ServerLimits, Share};
use crate::config::SocketConfig;
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::ffi::OsStr;
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;
use tokio::net::windows::named_pipe::{NamedPipeServer, ServerOptions};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use windows_sys::Win32::Foundation::LocalFree;
use windows_sys::Win32::Security::Authorization::{
    ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{PSECURITY_DESCRIPTOR, SECURITY_ATTRIBUTES};

/// Pipe instances at once, i.e. connections served at once (Windows allows at most 254).
pub const MAX_INSTANCES: usize = 254;

/// Why the pipe could not be opened. Nothing is served, and the daemon should stop.
#[derive(Debug, Error)]
pub enum PipeError {
    /// The pipe's access list could not be built.
    #[error("cannot build the security descriptor of pipe {path} from {sddl:?}")]
    SecurityDescriptor {
        /// The pipe's name.
        path: PathBuf,
        /// The access list, as SDDL.
        sddl: String,
        /// Why.
        source: io::Error,
    },
    /// The pipe could not be created.
    #[error("cannot create the pipe {path} (another process may own the name)")]
    Create {
        /// The pipe's name.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// The DACL of the pipe, in SDDL (see the module doc). `allow_sids` are checked SIDs
/// (config validation allows only `S-1-` and digits).
pub fn pipe_sddl(allow_sids: &[String]) -> String {
    let mut sddl = String::from("D:P(D;;GA;;;NU)(A;;GA;;;SY)(A;;GA;;;BA)");
    for sid in allow_sids {
        sddl.push_str(&format!("(A;;GRGW;;;{sid})"));
    }
    sddl
}

/// A security descriptor built from SDDL, freed on drop.
struct SecurityDescriptor(PSECURITY_DESCRIPTOR);

// SAFETY: the descriptor is immutable after creation and only read by the system calls
// that create pipe instances, so moving it to another thread is sound.
unsafe impl Send for SecurityDescriptor {}
// SAFETY: as for `Send`: shared references only ever read it.
unsafe impl Sync for SecurityDescriptor {}

impl SecurityDescriptor {
    fn from_sddl(sddl: &str) -> io::Result<Self> {
        let wide: Vec<u16> = OsStr::new(sddl).encode_wide().chain([0]).collect();
        let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: `wide` is NUL-terminated and outlives the call; on success the function
        // stores a LocalAlloc'd descriptor in `descriptor`, which Drop frees.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                wide.as_ptr(),
                SDDL_REVISION_1,
                &mut descriptor,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(SecurityDescriptor(descriptor))
    }
}

impl Drop for SecurityDescriptor {
    fn drop(&mut self) {
        // SAFETY: allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW.
        unsafe { LocalFree(self.0) };
    }
}

/// An open pipe (its first instance), not yet served.
pub struct PipeServer {
    listener: PipeListener,
    api: Arc<Api>,
}

impl PipeServer {
    /// Creates the first instance of `config.path` with the ACL of the module doc. Call it
    /// inside the tokio runtime.
    pub fn open(config: &SocketConfig, api: Arc<Api>) -> Result<Self, PipeError> {
        let path = config.path.clone();
        let sddl = pipe_sddl(&config.allow_sids);
        let descriptor = SecurityDescriptor::from_sddl(&sddl).map_err(|source| {
            PipeError::SecurityDescriptor {
                path: path.clone(),
                sddl,
                source,
            }
        })?;
        let first =
            create_instance(&path, &descriptor, true).map_err(|source| PipeError::Create {
                path: path.clone(),
                source,
            })?;
        Ok(PipeServer {
            listener: PipeListener {
                path,
                descriptor,
                listening: Mutex::new(Some(first)),
            },
            api,
        })
    }

    /// Serves until `shutdown` is cancelled, then drains (see the module doc).
    pub async fn serve(self, limits: ServerLimits, shutdown: CancellationToken) {
        let limits = ServerLimits {
            max_connections: limits.max_connections.min(MAX_INSTANCES - 1),
            ..limits
        };
        let frontend = Arc::new(PipeFrontend {
            api: self.api,
            refusals: RefusalLog::default(),
        });
        server::serve(self.listener, frontend, limits, shutdown).await;
    }
}

/// The pipe's instances: one always waits for the next client.
struct PipeListener {
    path: PathBuf,
    descriptor: SecurityDescriptor,
    /// The instance clients open next; `None` after creating one failed (retried on the
    /// next call, after the server loop's pause).
    listening: Mutex<Option<NamedPipeServer>>,
}

impl Listener for PipeListener {
    type Stream = NamedPipeServer;

    async fn next_connection(&self) -> io::Result<NamedPipeServer> {
        let mut listening = self.listening.lock().await;
        let instance = match listening.take() {
            Some(instance) => instance,
            None => create_instance(&self.path, &self.descriptor, false)?,
        };
        // On error this instance is dropped (the client left at once); the next call makes
        // a fresh one.
        instance.connect().await?;
        // The next client needs an instance to open while this one is served.
        match create_instance(&self.path, &self.descriptor, false) {
            Ok(next) => *listening = Some(next),
            Err(error) => {
                tracing::warn!(error = %crate::error_chain::render(&error), path = %self.path.display(), "cannot create another pipe instance; retrying")
            }
        }
        Ok(instance)
    }
}

/// The pipe's side of the server: the DACL already decided who may connect, so every
/// connection is admitted and every route served.
struct PipeFrontend {
    api: Arc<Api>,
    refusals: RefusalLog,
}

impl Frontend for PipeFrontend {
    type Stream = NamedPipeServer;
    type Peer = ();
    const NAME: &'static str = "pipe";
    const ENDPOINT: Endpoint = Endpoint::Socket;

    /// The pipe has no uids to share slots by: every connection is in one uncapped share,
    /// as the pipe caps its instances itself.
    async fn admit(&self, _: &NamedPipeServer) -> Admission<()> {
        self.api.note_connection();
        Admission::Admit {
            peer: (),
            share: Share::Exempt,
        }
    }

    fn api(&self) -> &Api {
        &self.api
    }

    async fn respond(&self, _: &(), request: &Request<Incoming>) -> Response<Body> {
        self.api.respond(
            Endpoint::Socket,
            &Consumer::unknown(),
            request.method(),
            request.uri(),
        )
    }

    fn refusals(&self) -> &RefusalLog {
        &self.refusals
    }
}

/// One instance of the pipe with our DACL; `first` refuses a name someone else created.
fn create_instance(
    path: &Path,
    descriptor: &SecurityDescriptor,
    first: bool,
) -> io::Result<NamedPipeServer> {
    let mut attributes = SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: descriptor.0,
        bInheritHandle: 0,
    };
    // SAFETY: `attributes` points at a valid descriptor that lives as long as `descriptor`,
    // and the call only reads it.
    unsafe {
        ServerOptions::new()
            .first_pipe_instance(first)
            .reject_remote_clients(true)
            .max_instances(MAX_INSTANCES)
            .create_with_security_attributes_raw(
                path,
                (&mut attributes as *mut SECURITY_ATTRIBUTES).cast(),
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dacl_admits_system_administrators_and_configured_sids_only() {
        assert_eq!(pipe_sddl(&[]), "D:P(D;;GA;;;NU)(A;;GA;;;SY)(A;;GA;;;BA)");
        let sid = "S-1-5-21-1-2-3-1001".to_string();
        assert!(pipe_sddl(&[sid]).ends_with("(A;;GRGW;;;S-1-5-21-1-2-3-1001)"));
    }
}
