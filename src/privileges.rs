//! What the daemon gives up so that its secrets and capabilities stay its own (Linux):
//! - [`forbid_core_dumps`], at start: not dumpable, so no core file is written (whatever
//!   `RLIMIT_CORE` says) and no process of the same uid (an `on_rotate` hook) can ptrace it
//!   or read its `/proc/PID/mem` or `environ`; `/proc/PID` then belongs to root.
//! - [`drop_capabilities`], in an `on_rotate` child between fork and exec: the child holds
//!   no capability (ambient, inheritable, permitted, effective cleared; the bounding set
//!   emptied when the daemon may, that is when it holds `CAP_SETPCAP`, as root does), so a
//!   hook runs with the plain rights of the daemon's uid.
//!
//! nix 0.31 has neither `capset` nor the ambient/bounding `prctl`s; they are raw system
//! calls here, async-signal-safe (no allocation, no lock) as the code after fork must be.

use nix::libc;

/// Makes the process not dumpable (`PR_SET_DUMPABLE` 0). Call once, first thing in `run`.
pub(crate) fn forbid_core_dumps() -> nix::Result<()> {
    nix::sys::prctl::set_dumpable(false)
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`; version 3 takes two (capabilities 0–31 and 32–63).
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
/// Above the highest capability any kernel knows: `PR_CAPBSET_DROP` says `EINVAL` past
/// the kernel's own last one, where the loop stops.
const CAPABILITY_LIMIT: libc::c_ulong = 64;

/// Drops every capability of the calling process (see the module doc). Only system calls:
/// safe between fork and exec. Fails only if clearing the ambient set or `capset` fails;
/// a bounding set the process may not change is left as it is.
pub(crate) fn drop_capabilities() -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    // Needs CAP_SETPCAP in the effective set, so before capset clears it.
    for capability in 0..CAPABILITY_LIMIT {
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, capability, 0, 0, 0) };
        if rc != 0 {
            // EINVAL: past the kernel's last capability. EPERM: no CAP_SETPCAP.
            break;
        }
    }
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let none = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset reads one header and two data structs of the layout above.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            none.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
