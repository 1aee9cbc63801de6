//! Network namespaces a test makes for itself (`ip netns`, as root): addresses a test puts
//! up live only inside them, never on the machine running the suite.

use std::os::fd::AsRawFd;
use std::process::Command;

/// A named network namespace with its loopback up, deleted (with any veth inside) on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// `ip netns add NAME`, then `lo` up. Callers make NAME unique per process and test.
    pub fn create(name: String) -> Netns {
        ip(&["netns", "add", &name]);
        let netns = Netns { name };
        ip(&["-n", &netns.name, "link", "set", "lo", "up"]);
        netns
    }

    /// The namespace's file, as `systemd-nspawn --network-namespace-path=` takes it.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs `ip ARGS…`, failing the test with ip's own message.
pub fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `start` on a thread that has entered the network namespace `namespace`: the
/// sockets it binds, and the threads of any runtime it builds, are in that namespace.
pub fn in_namespace<T: Send + 'static>(
    namespace: &str,
    start: impl FnOnce() -> T + Send + 'static,
) -> T {
    let file = std::fs::File::open(format!("/run/netns/{namespace}")).unwrap();
    std::thread::spawn(move || {
        // SAFETY: setns on a valid fd of a network namespace changes only this thread's
        // namespace; no memory is involved.
        let entered = unsafe { nix::libc::setns(file.as_raw_fd(), nix::libc::CLONE_NEWNET) };
        assert_eq!(entered, 0, "setns: {}", std::io::Error::last_os_error());
        start()
    })
    .join()
    .unwrap()
}
