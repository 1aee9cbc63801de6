//! Our binaries at a path other uids can run. The target dir may sit under a 0700 folder
//! (a clone in `/root`), which no other uid can enter; so every test that runs one of our
//! binaries as another uid (`setpriv`, `Command::uid`) runs it from here.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// The imds-credd binary at a path every test user can run: see [`reachable`].
pub fn reachable_binary() -> PathBuf {
    reachable(Path::new(env!("CARGO_BIN_EXE_imds-credd")))
}

/// `program` (a binary under the target dir) at a path another uid can run: a folder under
/// `/tmp` made once per test process (random name, owned by us, 0755) holding a hard link
/// to the binary, or a copy where a link cannot be made, owned by us and 0755, so no test
/// user can swap it. The folder is removed when the process exits.
pub fn reachable(program: &Path) -> PathBuf {
    static COPIES: Mutex<BTreeMap<PathBuf, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut copies = COPIES.lock().unwrap();
    if let Some(copy) = copies.get(program) {
        return copy.clone();
    }
    let copy = reachable_folder().join(program.file_name().expect("a binary's path"));
    let me = nix::unistd::geteuid().as_raw();
    let linked = std::fs::hard_link(program, &copy).is_ok() && {
        let meta = std::fs::metadata(&copy).unwrap();
        // A link shares the file: only as good as the original's owner and mode.
        meta.uid() == me && meta.mode() & 0o7777 == 0o755
    };
    if !linked {
        let _ = std::fs::remove_file(&copy);
        std::fs::copy(program, &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    copies.insert(program.to_path_buf(), copy.clone());
    copy
}

/// The folder [`reachable`] fills, made on first use and removed at exit.
fn reachable_folder() -> &'static Path {
    static FOLDER: OnceLock<PathBuf> = OnceLock::new();
    extern "C" fn remove_folder() {
        if let Some(folder) = FOLDER.get() {
            let _ = std::fs::remove_dir_all(folder);
        }
    }
    extern "C" {
        fn atexit(callback: extern "C" fn()) -> std::ffi::c_int;
    }
    FOLDER.get_or_init(|| {
        let folder = tempfile::Builder::new()
            .prefix("imds-credd-bin-")
            .tempdir_in("/tmp")
            .unwrap()
            .keep();
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
        // SAFETY: atexit(3) takes a plain function of no arguments; this one only reads the
        // OnceLock and removes files.
        assert_eq!(unsafe { atexit(remove_folder) }, 0, "atexit");
        folder
    })
}
