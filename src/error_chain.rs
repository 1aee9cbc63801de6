//! The one way an error becomes text for a person: its message, then each cause's, joined
//! by `: ` (`cannot write /x: Permission denied (os error 13)`). Logs, `status`'s
//! `last error:`, the API's `503` bodies and the commands' stderr lines all go through
//! [`render`].
//!
//! The convention it relies on (`docs/ARCHITECTURE.md`, errors): a `Display` says what
//! failed and never repeats its source; the source is reached through
//! [`Error::source`] (`#[source]`, `#[from]`), and a wrapper
//! that adds nothing is `#[error(transparent)]`.

use std::error::Error;

/// The error and its causes on one line of text: `message: cause: cause`.
pub fn render(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use thiserror::Error;

    #[derive(Debug, Error)]
    #[error("cannot write {path}")]
    struct WriteFailed {
        path: &'static str,
        source: std::io::Error,
    }

    #[derive(Debug, Error)]
    #[error("sink failed")]
    struct SinkFailed(#[source] WriteFailed);

    #[test]
    fn each_cause_follows_its_error_once() {
        let error = SinkFailed(WriteFailed {
            path: "/x",
            source: std::io::Error::other("disk full"),
        });
        assert_eq!(render(&error), "sink failed: cannot write /x: disk full");
    }

    #[test]
    fn a_cause_is_shown_even_when_its_words_already_appear() {
        // No substring guessing: a Display that repeated its source would show it twice,
        // which the convention forbids, and a cause that happens to echo a word is kept.
        let error = WriteFailed {
            path: "disk full",
            source: std::io::Error::other("disk full"),
        };
        assert_eq!(render(&error), "cannot write disk full: disk full");
    }
}
