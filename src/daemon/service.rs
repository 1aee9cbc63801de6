//! `imds-credd service install|uninstall|run`: the daemon as a Windows service.
//!
//! - `install [--config FILE]` registers the service `imds-credd` (automatic start, runs as
//!   LocalSystem) with the command line `imds-credd.exe service run [--config FILE]`.
//! - `uninstall` stops it if running and deletes it.
//! - `run` is what the service control manager (SCM) starts: it is the same daemon as
//!   `imds-credd run`, logging to `%ProgramData%\imds-credd\imds-credd.log` (a service has
//!   no console), and an SCM stop or system shutdown cancels the daemon's stop token, so the
//!   pipe drains and the sinks stop as they do on SIGTERM. The service's exit code is the
//!   daemon's, as `cli` maps it (service-specific code 2 for a bad config).
//!
//! The command line (`ServiceArgs`) and the exit codes belong to `cli`, which hands
//! [`dispatch`] the service's whole run as a [`ServiceRun`].
//!
//! The config is read once at start; there is no reload on Windows (restart the service).

use crate::config::{Config, ConfigError, LogConfig};
use crate::daemon::RunError;
use crate::error_chain;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use windows_service::service::{
    ServiceAccess, ServiceControl, ServiceControlAccept, ServiceErrorControl, ServiceExitCode,
    ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_dispatcher;
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};

/// The service's name in the SCM (`sc query imds-credd`).
pub const SERVICE_NAME: &str = "imds-credd";
const DISPLAY_NAME: &str = "imds-credd (EC2 instance credentials)";
const DESCRIPTION: &str =
    "Keeps the EC2 instance-role credentials fresh from IMDSv2 and republishes them locally.";
/// How long `uninstall` waits for a running service to stop before deleting it.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// Why a service command failed.
#[derive(Debug, Error)]
pub enum ServiceError {
    /// The service manager refused a step.
    #[error("cannot {action} the service {SERVICE_NAME} (run as Administrator?)")]
    Manager {
        /// The step (`open`, `create`, `stop`, `delete`…).
        action: &'static str,
        /// The manager's error.
        #[source]
        source: windows_service::Error,
    },
    /// This program's path, which the service runs, could not be found.
    #[error("cannot find this program's path")]
    Executable(#[source] std::io::Error),
    /// The service did not stop in time for its removal.
    #[error("the service {SERVICE_NAME} did not stop within {}s", STOP_WAIT.as_secs())]
    StopTimeout,
}

/// Why the service's daemon did not run to a clean stop.
#[derive(Debug, Error)]
pub enum ServiceRunError {
    /// The configuration could not be read.
    #[error(transparent)]
    Config(ConfigError),
    /// The daemon could not start or stopped on a failure.
    #[error(transparent)]
    Run(RunError),
}

/// The service's whole run, called once on the SCM's thread with the token an SCM stop
/// cancels; returns the exit code to report (0 for a clean stop).
pub type ServiceRun = Box<dyn Fn(CancellationToken) -> u8 + Send + Sync>;

fn manager_error(action: &'static str) -> impl FnOnce(windows_service::Error) -> ServiceError {
    move |source| ServiceError::Manager { action, source }
}

/// Registers the service, to run `service run [--config FILE]`.
pub fn install(config: Option<&Path>) -> Result<(), ServiceError> {
    let manager = ServiceManager::local_computer(
        None::<&str>,
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
    )
    .map_err(manager_error("connect to the SCM to install"))?;
    let mut launch_arguments = vec![OsString::from("service"), OsString::from("run")];
    if let Some(config) = config {
        let absolute = std::path::absolute(config).map_err(ServiceError::Executable)?;
        launch_arguments.extend([OsString::from("--config"), absolute.into_os_string()]);
    }
    let info = ServiceInfo {
        name: SERVICE_NAME.into(),
        display_name: DISPLAY_NAME.into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: std::env::current_exe().map_err(ServiceError::Executable)?,
        launch_arguments,
        dependencies: Vec::new(),
        account_name: None,
        account_password: None,
    };
    let service = manager
        .create_service(&info, ServiceAccess::CHANGE_CONFIG)
        .map_err(manager_error("create"))?;
    service
        .set_description(DESCRIPTION)
        .map_err(manager_error("describe"))?;
    println!("installed the service {SERVICE_NAME}; start it with `sc start {SERVICE_NAME}`");
    Ok(())
}

/// Stops the service if it runs, and deletes it.
pub fn uninstall() -> Result<(), ServiceError> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .map_err(manager_error("connect to the SCM to uninstall"))?;
    let access = ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE;
    let service = manager
        .open_service(SERVICE_NAME, access)
        .map_err(manager_error("open"))?;
    let status = service.query_status().map_err(manager_error("query"))?;
    if status.current_state != ServiceState::Stopped {
        service.stop().map_err(manager_error("stop"))?;
        // Monotonic: how long the service may take to stop, whatever the wall clock does.
        #[allow(clippy::disallowed_methods)]
        let deadline = std::time::Instant::now() + STOP_WAIT;
        while service
            .query_status()
            .map_err(manager_error("query"))?
            .current_state
            != ServiceState::Stopped
        {
            #[allow(clippy::disallowed_methods)] // Monotonic, as `deadline`.
            if std::time::Instant::now() > deadline {
                return Err(ServiceError::StopTimeout);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    service.delete().map_err(manager_error("delete"))?;
    println!("uninstalled the service {SERVICE_NAME}");
    Ok(())
}

/// What `service run` runs, for the service main the SCM calls.
static SERVICE_RUN: OnceLock<ServiceRun> = OnceLock::new();

windows_service::define_windows_service!(ffi_service_main, service_main);

/// Hands this thread to the SCM, which calls [`service_main`] on another one, and that
/// calls `run`.
pub fn dispatch(run: ServiceRun) -> Result<(), ServiceError> {
    let _ = SERVICE_RUN.set(run);
    service_dispatcher::start(SERVICE_NAME, ffi_service_main)
        .map_err(manager_error("start as (not started by the SCM?)"))
}

/// The daemon as the service runs it: the config from `resolve` (read again never: there
/// is no reload on Windows), logging to the service's file, until `stop` is cancelled.
pub fn run_daemon(
    resolve: impl Fn() -> Result<Config, ConfigError>,
    stop: CancellationToken,
) -> Result<(), ServiceRunError> {
    match resolve() {
        Ok(config) => {
            init_file_logging(&config.log);
            crate::daemon::run_until(config, resolve, stop).map_err(ServiceRunError::Run)
        }
        Err(e) => {
            init_file_logging(&LogConfig::default());
            tracing::error!(error = %error_chain::render(&e), "cannot start the service: bad configuration");
            Err(ServiceRunError::Config(e))
        }
    }
}

fn service_main(_arguments: Vec<OsString>) {
    let stop = CancellationToken::new();
    let handler_stop = stop.clone();
    let handler = move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            handler_stop.cancel();
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let Ok(status) = service_control_handler::register(SERVICE_NAME, handler) else {
        return;
    };
    let report = |state, accept, code: u8| {
        let _ = status.set_service_status(ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted: accept,
            exit_code: match code {
                0 => ServiceExitCode::Win32(0),
                code => ServiceExitCode::ServiceSpecific(code.into()),
            },
            checkpoint: 0,
            wait_hint: Duration::ZERO,
            process_id: None,
        });
    };
    report(
        ServiceState::Running,
        ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN,
        0,
    );
    let run = SERVICE_RUN
        .get()
        .expect("dispatch sets the service's run before the SCM starts it");
    let code = run(stop);
    report(ServiceState::Stopped, ServiceControlAccept::empty(), code);
}

/// `%ProgramData%\imds-credd\imds-credd.log`, appended to. If it cannot be opened the
/// service logs nowhere rather than failing to start.
fn init_file_logging(log: &LogConfig) {
    let program_data =
        std::env::var_os("ProgramData").unwrap_or_else(|| OsString::from(r"C:\ProgramData"));
    let folder = PathBuf::from(program_data).join("imds-credd");
    let file = std::fs::create_dir_all(&folder).and_then(|()| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(folder.join("imds-credd.log"))
    });
    if let Ok(file) = file {
        crate::daemon::logging::init_to(log.level, log.format, Mutex::new(file), false);
    }
}
