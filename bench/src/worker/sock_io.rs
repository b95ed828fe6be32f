//! The workers' socket I/O: blocking or epoll-driven sends and receives
//! that count EAGAIN where a blocking socket must never return it, and the
//! byte pattern every workload writes.

use std::{
    io::{self, Read, Write},
    net::{Shutdown, TcpStream},
    os::{fd::AsRawFd, unix::net::UnixStream},
};

use anyhow::{Context, Result, bail};

use super::IoStyle;
use crate::nonblock;

pub(super) trait Conn: Read + Write + AsRawFd {
    fn shutdown_write(&self) -> io::Result<()>;
}

impl Conn for TcpStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

impl Conn for UnixStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

/// EAGAIN seen on a *blocking* socket, which must never happen. A sockmap
/// ingress redirect does return it (send: peer receive memory exhausted;
/// recv: a wake-up without data). The workers count every one (the driver
/// reports them as an anomaly), wait for readiness, and retry. An epoll
/// worker expects EAGAIN and waits in epoll_wait instead.
#[derive(Default)]
pub(super) struct Eagain {
    pub(super) send: u64,
    pub(super) recv: u64,
    epoll: Option<nonblock::Epoll>,
}

impl Eagain {
    pub(super) fn for_socket(io: IoStyle, s: &impl AsRawFd) -> Result<Self> {
        Ok(Eagain {
            epoll: match io {
                IoStyle::Blocking => None,
                IoStyle::Epoll => Some(nonblock::Epoll::watch(s.as_raw_fd())?),
            },
            ..Default::default()
        })
    }

    /// The socket said EAGAIN: count it if it is blocking, and wait.
    fn wait(&mut self, fd: i32, events: libc::c_short) -> Result<()> {
        match &self.epoll {
            Some(ep) => ep.wait(),
            None => {
                if events == libc::POLLOUT {
                    self.send += 1;
                } else {
                    self.recv += 1;
                }
                wait_ready(fd, events);
                Ok(())
            }
        }
    }
}

fn wait_ready(fd: i32, events: libc::c_short) {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: poll on one valid pollfd; sched_yield has no preconditions.
    unsafe {
        libc::poll(&mut pfd, 1, 100);
        libc::sched_yield();
    }
}

pub(super) fn send_all<C: Conn>(s: &mut C, mut buf: &[u8], ea: &mut Eagain) -> Result<()> {
    while !buf.is_empty() {
        match s.write(buf) {
            Ok(0) => bail!("write returned 0"),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                ea.wait(s.as_raw_fd(), libc::POLLOUT)?;
            }
            Err(e) => return Err(e).context("send"),
        }
    }
    Ok(())
}

/// One read(2); 0 means EOF.
pub(super) fn recv<C: Conn>(s: &mut C, buf: &mut [u8], ea: &mut Eagain) -> Result<usize> {
    loop {
        match s.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                ea.wait(s.as_raw_fd(), libc::POLLIN)?;
            }
            Err(e) => return Err(e).context("recv"),
        }
    }
}

/// Fills `buf` completely; false on a clean EOF before the first byte.
pub(super) fn read_full<C: Conn>(s: &mut C, buf: &mut [u8], ea: &mut Eagain) -> Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match recv(s, &mut buf[got..], ea)? {
            0 if got == 0 => return Ok(false),
            0 => bail!("EOF after {got} of {} bytes", buf.len()),
            n => got += n,
        }
    }
    Ok(true)
}

/// Reads to EOF; returns how many bytes came.
pub(super) fn drain<C: Conn>(s: &mut C, ea: &mut Eagain) -> Result<u64> {
    let mut buf = [0u8; 4096];
    let mut n = 0u64;
    loop {
        match recv(s, &mut buf, ea)? {
            0 => return Ok(n),
            k => n += k as u64,
        }
    }
}

/// `size` bytes of the tests' byte pattern, stream `salt`: what a worker
/// sends, and what the echo it checks must hold.
pub(super) fn pattern(size: usize, salt: u8) -> Vec<u8> {
    accel_test_harness::pattern::bytes(u64::from(salt), 0, size)
}
