//! A string that must never be shown: the secret access key, the session token, the IMDS
//! token. It is zeroized on drop, and `Debug`/`Display` print a fixed placeholder, so a
//! stray `{:?}` in a log line or an error cannot leak it.

use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A secret value; read it only where it is written out on purpose, through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Secret(String);

impl Secret {
    /// Takes ownership of the value, which is zeroized when the `Secret` is dropped.
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The value itself: call it only to put the secret where it belongs (a response body,
    /// a credentials file, a child's environment), never into a message.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty (a refused document), without exposing it.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let secret = Secret::new("wJalrXUtnFEMI/K7MDENG".to_string());
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        assert_eq!(format!("{secret}"), "<redacted>");
        assert_eq!(secret.expose(), "wJalrXUtnFEMI/K7MDENG");
    }
}
