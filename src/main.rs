//! The `imds-credd` binary: everything lives in the library; see `imds_credd::cli`.

fn main() -> std::process::ExitCode {
    imds_credd::cli::main()
}
