//! Non-blocking sockets for the epoll workers: created non-blocking (so the
//! datapath sees an event-loop application from its first callback on) and
//! waited on with edge-triggered epoll, as nginx, Envoy and Go do.

use std::{
    io,
    net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::net::UnixStream,
    },
};

use anyhow::{Context, Result, bail};

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// accept4, non-blocking from the start when asked.
pub fn accept(l: &TcpListener, nonblocking: bool) -> io::Result<TcpStream> {
    let flags = libc::SOCK_CLOEXEC | if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
    // SAFETY: accept4 without an address on a listening socket we own.
    let fd = cvt(unsafe {
        libc::accept4(
            l.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            flags,
        )
    })?;
    // SAFETY: a fresh fd we own.
    Ok(unsafe { TcpStream::from_raw_fd(fd) })
}

/// connect(); a non-blocking socket waits for the handshake in epoll.
pub fn connect(addr: &str, nonblocking: bool) -> Result<TcpStream> {
    if !nonblocking {
        return Ok(TcpStream::connect(addr)?);
    }
    let to: SocketAddr = addr
        .to_socket_addrs()?
        .next()
        .with_context(|| format!("{addr} resolves to nothing"))?;
    let family = if to.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let (raw, len) = accel_topology::sock::to_raw(to);
    let ty = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: plain socket(2).
    let fd = cvt(unsafe { libc::socket(family, ty, 0) })?;
    // SAFETY: a fresh fd we own.
    let s = unsafe { TcpStream::from_raw_fd(fd) };
    // SAFETY: raw is a valid sockaddr of length len.
    if let Err(e) =
        cvt(unsafe { libc::connect(fd, (&raw as *const libc::sockaddr_storage).cast(), len) })
        && e.raw_os_error() != Some(libc::EINPROGRESS)
    {
        return Err(e.into());
    }
    Epoll::watch(fd)?.wait()?;
    if let Some(e) = s.take_error()? {
        bail!("connect: {e}");
    }
    Ok(s)
}

/// The Unix reference in the same I/O style as the TCP workers, so that
/// `unix/TCP` compares like with like: an epoll worker's Unix socket is
/// non-blocking too, and pays the same EAGAIN read and epoll_wait per
/// message. (A Unix socket has no datapath that could see its creation
/// flags, so setting them after connect or accept is the same.)
pub fn unix_styled(s: UnixStream, nonblocking: bool) -> io::Result<UnixStream> {
    s.set_nonblocking(nonblocking)?;
    Ok(s)
}

/// One socket in an edge-triggered epoll set, for reading and writing.
pub struct Epoll(OwnedFd);

impl Epoll {
    pub fn watch(fd: i32) -> io::Result<Self> {
        // SAFETY: plain epoll_create1.
        let ep = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: a fresh fd we own.
        let ep = unsafe { OwnedFd::from_raw_fd(ep) };
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: 0,
        };
        // SAFETY: both fds are valid; ev outlives the call.
        cvt(unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })?;
        Ok(Epoll(ep))
    }

    /// Waits for the next readiness edge (the caller retries its call).
    pub fn wait(&self) -> Result<()> {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        loop {
            // SAFETY: one event slot; a 10 s bound catches a stuck peer.
            let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), &mut ev, 1, 10_000) };
            match n {
                1 => return Ok(()),
                0 => bail!("no readiness in 10 s"),
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e).context("epoll_wait");
                    }
                }
            }
        }
    }
}
