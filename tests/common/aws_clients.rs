//! The real AWS clients the interop tests and the benchmark drive: the AWS CLI (v1) and
//! boto3 from PyPI, in the venv `tests/support/setup-python.sh` makes under `target/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// `target/pyenv/bin`, made by the project's setup script when missing (once per test
/// binary: parallel tests must not build it twice).
pub fn python_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let status = Command::new("bash")
            .arg(root.join("tests/support/setup-python.sh"))
            .status()
            .expect("run tests/support/setup-python.sh");
        assert!(
            status.success(),
            "tests/support/setup-python.sh failed: {status}"
        );
        root.join("target/pyenv/bin")
    })
}
