//! `imds-credd service install|uninstall|run`: the daemon as a Windows service.
//!
//! - `install [--config FILE]` registers the service `imds-credd` (automatic start, runs as
//!   LocalSystem) with the command line `imds-credd.exe service run [--config FILE]`.
//! - `uninstall` stops it if running and deletes it.
//! - `run` is what the service control manager (SCM) starts: it is the same daemon as
//!   `imds-credd run`, logging to `%ProgramData%\imds-credd\imds-credd.log` (a service has
//!   no console), and an SCM stop or system shutdown cancels the daemon's stop token, so the
//!   pipe drains and the sinks stop as they do on SIGTERM. The service's exit code is the
//!   daemon's (service-specific code 2 for a bad config).
//!
//! The config is read once at start; there is no reload on Windows (restart the service).

use crate::cli::{resolve_config, ConfigArgs, EXIT_OK, EXIT_USAGE};
use crate::config::{ConfigOverrides, LogConfig};
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

/// `imds-credd service …`.
#[derive(Debug, clap::Args)]
pub struct ServiceArgs {
    #[command(subcommand)]
    pub action: ServiceAction,
}

#[derive(Debug, clap::Subcommand)]
pub enum ServiceAction {
    /// Register the Windows service (automatic start, LocalSystem).
    Install {
        /// Config file the service reads (default C:\ProgramData\imds-credd\config.toml).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Stop and delete the Windows service.
    Uninstall,
    /// Run as the service; only the service control manager starts this.
    Run(Box<ConfigArgs>),
}

/// Why a service command failed.
#[derive(Debug, Error)]
pub enum ServiceError {
    #[error("cannot {action} the service {SERVICE_NAME} (run as Administrator?)")]
    Manager {
        action: &'static str,
        #[source]
        source: windows_service::Error,
    },
    #[error("cannot find this program's path")]
    Executable(#[source] std::io::Error),
    #[error("the service {SERVICE_NAME} did not stop within {}s", STOP_WAIT.as_secs())]
    StopTimeout,
}

fn manager_error(action: &'static str) -> impl FnOnce(windows_service::Error) -> ServiceError {
    move |source| ServiceError::Manager { action, source }
}

/// Runs a `service` subcommand; returns the exit code.
pub fn run(args: ServiceArgs) -> u8 {
    let outcome = match args.action {
        ServiceAction::Install { config } => install(config.as_deref()),
        ServiceAction::Uninstall => uninstall(),
        ServiceAction::Run(config) => dispatch(*config),
    };
    match outcome {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("imds-credd service: {}", crate::imds::error_chain(&e));
            EXIT_USAGE
        }
    }
}

fn install(config: Option<&Path>) -> Result<(), ServiceError> {
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

fn uninstall() -> Result<(), ServiceError> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .map_err(manager_error("connect to the SCM to uninstall"))?;
    let access = ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE;
    let service = manager
        .open_service(SERVICE_NAME, access)
        .map_err(manager_error("open"))?;
    let status = service.query_status().map_err(manager_error("query"))?;
    if status.current_state != ServiceState::Stopped {
        service.stop().map_err(manager_error("stop"))?;
        let deadline = std::time::Instant::now() + STOP_WAIT;
        while service
            .query_status()
            .map_err(manager_error("query"))?
            .current_state
            != ServiceState::Stopped
        {
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

/// The config arguments of `service run`, for the service main the SCM calls.
static RUN_ARGS: OnceLock<(Option<PathBuf>, ConfigOverrides)> = OnceLock::new();

windows_service::define_windows_service!(ffi_service_main, service_main);

/// Hands this thread to the SCM, which calls [`service_main`] on another one.
fn dispatch(args: ConfigArgs) -> Result<(), ServiceError> {
    let _ = RUN_ARGS.set((args.config, args.overrides));
    service_dispatcher::start(SERVICE_NAME, ffi_service_main)
        .map_err(manager_error("start as (not started by the SCM?)"))
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
    let (path, overrides) = RUN_ARGS.get_or_init(Default::default);
    let code = match resolve_config(path.as_deref(), overrides) {
        Ok(config) => {
            init_file_logging(&config.log);
            crate::daemon::run_until(config, || resolve_config(path.as_deref(), overrides), stop)
        }
        Err(e) => {
            init_file_logging(&LogConfig::default());
            tracing::error!(error = %e, "cannot start the service: bad configuration");
            EXIT_USAGE
        }
    };
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
