//! Which end of the driver's connections is the "sidecar": its sockets are
//! created as the proxy's user (uid 1337), so the datapath's default mode
//! treats them as the proxy's and the other end as the application's.
//!
//! A socket's owner is its creator's fsuid, and an accepted socket inherits
//! its listener's. setfsuid(2) changes only the calling thread (the raw
//! system call; glibc does not broadcast it), so the creating thread sets
//! it around the socket call alone.

use std::sync::OnceLock;

use accel_topology::SIDECAR_UID;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum End {
    Client,
    Server,
}

static SIDECAR_END: OnceLock<End> = OnceLock::new();

/// Chooses the sidecar end for the whole run (once, from the command line).
pub fn set_sidecar_end(end: Option<End>) {
    if let Some(end) = end {
        let _ = SIDECAR_END.set(end);
    }
}

/// Runs `create` with this thread's fsuid set to the proxy's if `end` is
/// the sidecar end.
pub fn created_by<T>(end: End, create: impl FnOnce() -> T) -> T {
    if SIDECAR_END.get() != Some(&end) {
        return create();
    }
    // SAFETY: setfsuid has no memory effects; the previous value is restored.
    let before = unsafe { libc::syscall(libc::SYS_setfsuid, SIDECAR_UID) };
    let out = create();
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_setfsuid, before) };
    out
}
