//! Rules that refuse a configuration putting secrets within other users' reach: a sink
//! file others may read or the group may change, and a socket anyone may connect to with
//! nobody filtering who. (The `[[assume]]` rules that STS would refuse, role chaining's 1h
//! and plain-http endpoints, are checked with the other STS limits in `assume::sts`; the
//! socket's folder, which needs the file system, in `socket_folder`.)

use super::{Config, Spot};

/// Mode bits a secrets file must not have: group write, and anything for others.
const SINK_FORBIDDEN_BITS: u32 = 0o027;
/// A unix socket accepts connections from whoever may write it.
const SOCKET_OTHERS_WRITE: u32 = 0o002;

impl Config {
    /// The mode rules for `[[file]]`, `[[env]]` and `[socket]`; see the module doc.
    pub(super) fn check_exposure(&self) -> Result<(), (Spot, String)> {
        for (table, index, sink) in self.sinks() {
            let mode = sink.mode.0;
            if mode & SINK_FORBIDDEN_BITS != 0 {
                return Err((
                    Spot::EntryKey(table, index, "mode"),
                    format!(
                        "key `{table}.mode`: {mode:04o} lets other users read the credentials or the group change them; use \"0600\" (or \"0640\" with a group)"
                    ),
                ));
            }
        }
        let socket = &self.socket;
        let filtered = !socket.allow_uids.is_empty() || !socket.allow_gids.is_empty();
        if socket.mode.0 & SOCKET_OTHERS_WRITE != 0 && !filtered {
            return Err((
                Spot::Key("socket", "mode"),
                format!(
                    "key `socket.mode`: {:04o} lets every local user connect and take the credentials; use \"0660\" with a group, or set allow_uids / allow_gids",
                    socket.mode.0
                ),
            ));
        }
        Ok(())
    }
}
