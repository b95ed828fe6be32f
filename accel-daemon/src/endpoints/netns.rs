//! Network namespace cookies of the pods, cached by the namespace's inode.

use std::{
    collections::HashMap,
    fs, io,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
};

use super::NetnsRef;

/// Cookies of network namespaces, cached by the namespace's inode so a sync
/// does not enter every pod's namespace every time.
#[derive(Default)]
pub struct NetnsCookies {
    by_inode: HashMap<(u64, u64), u64>,
}

impl NetnsCookies {
    pub fn cookie(&mut self, r: &NetnsRef) -> io::Result<u64> {
        let path = r.path();
        let file = fs::File::open(&path)?;
        let meta = file.metadata()?;
        let key = (meta.dev(), meta.ino());
        if let Some(c) = self.by_inode.get(&key) {
            return Ok(*c);
        }
        let cookie = netns_cookie_of(&file)?;
        self.by_inode.insert(key, cookie);
        Ok(cookie)
    }
}

/// SO_NETNS_COOKIE (5.14+) of a socket opened inside the namespace, on a
/// short-lived thread so the daemon's own threads never change namespace.
fn netns_cookie_of(ns: &fs::File) -> io::Result<u64> {
    const SO_NETNS_COOKIE: libc::c_int = 71;
    let fd = ns.as_raw_fd();
    std::thread::scope(|s| {
        s.spawn(move || -> io::Result<u64> {
            // SAFETY: setns on a namespace fd we hold; this thread ends next.
            if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: plain socket(2); closed below.
            let sock =
                unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
            if sock < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut cookie: u64 = 0;
            let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
            // SAFETY: valid socket and output buffer of the stated length.
            let rc = unsafe {
                libc::getsockopt(
                    sock,
                    libc::SOL_SOCKET,
                    SO_NETNS_COOKIE,
                    (&mut cookie as *mut u64).cast(),
                    &mut len,
                )
            };
            let err = io::Error::last_os_error();
            // SAFETY: closing the socket we opened.
            unsafe { libc::close(sock) };
            if rc != 0 {
                return Err(err);
            }
            Ok(cookie)
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("netns cookie thread panicked")))
    })
}
