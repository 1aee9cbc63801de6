//! `Config::parse` on any text: it never panics, and every refusal names a line of the
//! text (1-based, at most one past the last line break).
#![no_main]

use imds_credd::config::{Config, ConfigError};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|text: &str| {
    match Config::parse(text, Path::new("/etc/imds-credd/config.toml")) {
        Ok(_) => {}
        Err(ConfigError::Invalid {
            line, ref message, ..
        }) => {
            let lines = text.matches('\n').count() + 1;
            assert!(
                line >= 1 && line <= lines,
                "line {line} of a {lines}-line text"
            );
            assert!(!message.is_empty(), "an error says what is wrong");
        }
        Err(other) => panic!("parse gave an error that names no line: {other}"),
    }
});
