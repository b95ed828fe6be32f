//! What `FIONREAD` tells an application whose socket is in a sockhash
//! (known issue I-4), found by asking this kernel.
//!
//! Kernels with the 2026 change "bpf, sockmap: Fix FIONREAD for sockmap"
//! (reported in 6.6.128+, 6.12.75+, 6.18.14+, 6.19+; Debian's 6.12.117
//! counts TCP bytes, 6.18.44 does not, so the release number cannot tell)
//! answer `FIONREAD` on a sockhash
//! socket with what waits in its psock's ingress queue only. Bytes that
//! arrived by TCP are left out: an application that sizes its reads with
//! `FIONREAD` (nginx, Java's `available()`, .NET's `Socket.Available`) is
//! told 0 while they wait. In `auto` an application's socket receives by TCP
//! while it is in the sockhash, so on such a kernel it must stay out.
//!
//! The probe: a loopback connection of the daemon's own, its accepted end
//! put into the probe object's sockhash, one byte sent by TCP, `FIONREAD`
//! asked. Both ends are blocking sockets of an application (not the proxy),
//! which a datapath already attached in `auto`, `app-safe` or `proxy-only`
//! never records; where one in `all` redirects the byte anyway, TCP_INFO
//! shows it and the probe answers "unknown", which counts as "misses".

use std::{
    io::Write,
    net::{Ipv4Addr, TcpListener, TcpStream},
    os::fd::{AsFd, AsRawFd, RawFd},
    time::Duration,
};

use aya::{Ebpf, maps::Map};

use crate::bpf_sys;

use super::Feature;

pub const FIONREAD_COUNTS_TCP: &str = "FIONREAD counts TCP bytes on sockhash sockets (I-4)";

/// Where the probe's socket goes: the probe object's one-entry sockhash.
const PROBE_SOCKHASH: &str = "probe_sockhash";
const WAIT: Duration = Duration::from_secs(2);

pub fn probe(ebpf: &Ebpf) -> Feature {
    let (available, detail) = match counts_tcp_bytes(ebpf) {
        Ok(true) => (true, String::new()),
        Ok(false) => (
            false,
            "this kernel's FIONREAD reads 0 for bytes that arrived by TCP on a sockhash socket"
                .to_string(),
        ),
        Err(e) => (false, format!("could not be probed: {e}")),
    };
    Feature {
        name: FIONREAD_COUNTS_TCP,
        essential: false,
        available,
        detail,
    }
}

fn counts_tcp_bytes(ebpf: &Ebpf) -> Result<bool, String> {
    let map = match ebpf.map(PROBE_SOCKHASH) {
        Some(Map::SockHash(data)) => data.fd().as_fd(),
        _ => return Err(format!("{PROBE_SOCKHASH} missing from the probe object")),
    };
    let io = |what: &str, e: std::io::Error| format!("{what}: {e}");
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| io("loopback listener", e))?;
    let to = listener
        .local_addr()
        .map_err(|e| io("listener address", e))?;
    let mut client = TcpStream::connect_timeout(&to, WAIT).map_err(|e| io("connect", e))?;
    let (server, _) = listener.accept().map_err(|e| io("accept", e))?;
    // The map's key and value are both u64 (the value is the socket's fd).
    let (key, fd) = (0u64, server.as_raw_fd() as u64);
    bpf_sys::map_update(map, &key, &fd)
        .map_err(|e| io(&format!("adding a socket to {PROBE_SOCKHASH}"), e))?;
    let answer = (|| {
        client.write_all(b"x").map_err(|e| io("send", e))?;
        if !readable(server.as_raw_fd())? {
            return Err(format!("the probe's byte did not arrive within {WAIT:?}"));
        }
        if bytes_received_by_tcp(server.as_raw_fd())? != 1 {
            return Err("the probe's byte was redirected, not sent by TCP".into());
        }
        Ok(fionread(server.as_raw_fd())? == 1)
    })();
    // Closing the socket would take it out as well; say so explicitly.
    let _ = bpf_sys::map_delete(map, &key);
    answer
}

/// poll, not a blocking read: on a sockhash socket a blocking read can
/// return EAGAIN after a wake-up without data (I-2), which would make a
/// kernel that counts TCP bytes look like one that could not be probed.
fn readable(fd: RawFd) -> Result<bool, String> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd, as stated.
    let n = unsafe { libc::poll(&mut p, 1, WAIT.as_millis() as libc::c_int) };
    if n < 0 {
        return Err(format!("poll: {}", std::io::Error::last_os_error()));
    }
    Ok(n == 1 && p.revents & libc::POLLIN != 0)
}

fn bytes_received_by_tcp(fd: RawFd) -> Result<u64, String> {
    // SAFETY: a plain C struct, valid when zeroed.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: TCP_INFO writes at most `len` bytes into `info`.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(format!("TCP_INFO: {}", std::io::Error::last_os_error()));
    }
    Ok(info.tcpi_bytes_received)
}

fn fionread(fd: RawFd) -> Result<libc::c_int, String> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) } < 0 {
        return Err(format!("FIONREAD: {}", std::io::Error::last_os_error()));
    }
    Ok(n)
}
