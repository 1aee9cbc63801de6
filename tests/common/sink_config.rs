//! `[[file]]` and `[[env]]` sinks as a config file states them: a path, a mode, a profile
//! or a format, and every other key left out.

use imds_credd::config::{EnvFormat, EnvSinkConfig, FileSinkConfig};
use serde::de::DeserializeOwned;
use serde_json::json;
use std::path::Path;

/// `[[file]]` writing `profile` to `path` with `mode`.
pub fn file_sink(path: &Path, profile: &str, mode: u32) -> FileSinkConfig {
    sink(path, mode, json!({ "profile": profile }))
}

/// `[[env]]` writing `format` to `path` with `mode`.
pub fn env_sink(path: &Path, format: EnvFormat, mode: u32) -> EnvSinkConfig {
    EnvSinkConfig {
        format,
        ..sink(path, mode, json!({}))
    }
}

/// Reads `keys` plus `path` and `mode` the way the config file's keys are read.
fn sink<T: DeserializeOwned>(path: &Path, mode: u32, mut keys: serde_json::Value) -> T {
    keys["path"] = json!(path);
    keys["mode"] = json!(format!("{mode:04o}"));
    serde_json::from_value(keys).expect("a valid sink")
}
