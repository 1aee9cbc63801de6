//! The whole path on any IMDS and STS answer: validation, then every renderer (socket and
//! container answers, env formats, credentials-file merge, status text and JSON, metrics,
//! the masked key of the log line) never panics and never shows a secret where none
//! belongs. The checks live in `tests/support/whole_path.rs`, shared with the property test
//! `tests/whole_path.rs` that runs in `cargo test`.
#![no_main]

#[path = "../../tests/support/whole_path.rs"]
mod whole_path;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    imds: Vec<u8>,
    sts: Vec<u8>,
    existing_file: String,
    profile: String,
    asked_after: u32,
}

fuzz_target!(|input: Input| {
    whole_path::exercise(&whole_path::Answers {
        imds: &input.imds,
        sts: &input.sts,
        existing_file: &input.existing_file,
        profile: &input.profile,
        asked_after: input.asked_after,
    });
});
