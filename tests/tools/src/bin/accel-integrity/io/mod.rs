//! The send and receive interfaces under test, on raw file descriptors, so
//! each mode is exactly the syscall an application would make.
//!
//! Here: the modes themselves and the file-descriptor helpers both halves
//! use; the halves are in `send` and `recv`.

mod recv;
mod send;

use std::{
    io,
    os::fd::{FromRawFd, OwnedFd, RawFd},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use serde::Serialize;

use accel_test_harness::pattern::Rng;

pub(crate) use recv::{RecvEnd, RecvStats, is_reset, recv_stream};
pub(crate) use send::{message_sizes, message_sizes_from, send_stream};

/// Largest single send or read request the modes split messages into.
const PIPE_CHUNK: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum SendMode {
    /// write(2) of each whole message.
    Write,
    /// send(2) of each message in pieces, all but the last with MSG_MORE.
    MsgMore,
    /// Pieces written while TCP_CORK is set, then uncorked.
    Cork,
    /// writev(2) of each message split over up to 4 iovecs.
    Writev,
    /// sendfile(2) from a memfd holding the connection's stream.
    Sendfile,
    /// write into a pipe, then splice(2) from the pipe to the socket.
    Splice,
    /// write(2) on a non-blocking socket, waiting in poll(2) on EAGAIN: an
    /// event loop's writer. Not in `ALL`.
    Nonblock,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RecvMode {
    /// Blocking read(2) of random sizes.
    Read,
    /// Blocking recv(2) of random sizes.
    Recv,
    /// Blocking readv(2) into three buffers.
    Readv,
    /// recv(MSG_PEEK), then a read of what was peeked: both must agree.
    Peek,
    /// poll, then FIONREAD, then a read of exactly that many bytes.
    Fionread,
    /// Non-blocking socket, poll(2), then a recv(MSG_DONTWAIT).
    Poll,
    /// poll(2), then a recv(MSG_DONTWAIT) on a socket left blocking: a
    /// thread that never waits in a read while another thread writes, and
    /// waits in its writes, on the same socket.
    Dontwait,
    /// Non-blocking socket, edge-triggered epoll, read until EAGAIN.
    EpollEt,
    /// Non-blocking socket, small partial reads, poll on EAGAIN.
    Nonblock,
    /// splice(2) from the socket into a pipe, then read the pipe.
    Splice,
}

impl SendMode {
    pub(crate) const ALL: [SendMode; 6] = [
        SendMode::Write,
        SendMode::MsgMore,
        SendMode::Cork,
        SendMode::Writev,
        SendMode::Sendfile,
        SendMode::Splice,
    ];
}

impl RecvMode {
    pub(crate) const ALL: [RecvMode; 10] = [
        RecvMode::Read,
        RecvMode::Recv,
        RecvMode::Readv,
        RecvMode::Peek,
        RecvMode::Fionread,
        RecvMode::Poll,
        RecvMode::Dontwait,
        RecvMode::EpollEt,
        RecvMode::Nonblock,
        RecvMode::Splice,
    ];

    pub(crate) fn index(self) -> u8 {
        RecvMode::ALL.iter().position(|m| *m == self).unwrap_or(0) as u8
    }

    pub(crate) fn from_index(i: u8) -> Option<RecvMode> {
        RecvMode::ALL.get(i as usize).copied()
    }

    /// Whether the mode sets O_NONBLOCK on the socket (on its file, shared
    /// with every thread that writes on it).
    fn sets_nonblocking(self) -> bool {
        matches!(
            self,
            RecvMode::Poll | RecvMode::EpollEt | RecvMode::Nonblock
        )
    }
}

fn cvt(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

fn cvt_int(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn set_int_opt(fd: RawFd, level: libc::c_int, opt: libc::c_int, v: libc::c_int) -> Result<()> {
    // SAFETY: setsockopt with an int option.
    cvt_int(unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .with_context(|| format!("setsockopt {level}/{opt}"))?;
    Ok(())
}

pub(crate) fn set_nonblocking(fd: RawFd, on: bool) -> Result<()> {
    // SAFETY: fcntl on an fd we hold.
    let flags = cvt_int(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    let flags = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: as above.
    cvt_int(unsafe { libc::fcntl(fd, libc::F_SETFL, flags) })?;
    Ok(())
}

/// Closing with SO_LINGER {on, 0} sends a RST and discards unsent data.
pub(crate) fn set_linger_zero(fd: RawFd) -> Result<()> {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt with a struct linger.
    cvt_int(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    })
    .context("SO_LINGER")?;
    Ok(())
}

/// Writes all of `data` to the non-blocking socket `fd`, waiting in
/// poll(2) for room on EAGAIN, as an event loop's writer does. (On a
/// blocking socket EAGAIN is a defect to report, not to wait past: there
/// the callers write without this.)
pub(crate) fn write_all_polling(fd: RawFd, mut data: &[u8], timeout: Duration) -> Result<()> {
    while !data.is_empty() {
        // SAFETY: buffer of the stated length.
        let r = unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), 0) };
        match cvt(r) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !poll_fd(fd, libc::POLLOUT, timeout)? {
                    bail!("not writable for {timeout:?}");
                }
            }
            Err(e) => return Err(e).context("send"),
        }
    }
    Ok(())
}

/// poll(2) for `events`; Ok(false) on timeout.
pub(crate) fn poll_fd(fd: RawFd, events: libc::c_short, timeout: Duration) -> Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    loop {
        // SAFETY: one pollfd.
        let r = unsafe { libc::poll(&mut p, 1, timeout.as_millis() as libc::c_int) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e).context("poll");
        }
        return Ok(r > 0);
    }
}

/// An event loop's read: waits in poll(2) until `fd` is readable, then
/// reads once with MSG_DONTWAIT, whatever the socket's own blocking flag.
/// The inner result is the read's: WouldBlock is a wake-up that found
/// nothing, for the caller to count and retry.
pub(crate) fn poll_then_recv(fd: RawFd, buf: &mut [u8]) -> Result<io::Result<usize>> {
    const READABLE_TIMEOUT: Duration = Duration::from_secs(600);
    if !poll_fd(fd, libc::POLLIN, READABLE_TIMEOUT)? {
        bail!("poll: nothing readable for {READABLE_TIMEOUT:?}");
    }
    // SAFETY: buffer of the stated length.
    Ok(cvt(unsafe {
        libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT)
    }))
}

/// Peeks one byte without waiting: Ok(1) a byte is readable, Ok(0) EOF,
/// WouldBlock neither. Sees both of a sockhash socket's receive queues,
/// where FIONREAD may leave one out (I-4).
pub fn peek_one(fd: RawFd) -> io::Result<usize> {
    let mut b = [0u8; 1];
    // SAFETY: one-byte buffer.
    cvt(unsafe {
        libc::recv(
            fd,
            b.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    })
}

pub fn fionread(fd: RawFd) -> Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    cvt_int(unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) }).context("FIONREAD")?;
    Ok(n as usize)
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut p = [0i32; 2];
    // SAFETY: two fds out.
    cvt_int(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }).context("pipe")?;
    // SAFETY: fresh fds we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) })
}
/// Up to `parts` random split points of `len`.
fn split(len: usize, parts: usize, rng: &mut Rng) -> Vec<usize> {
    let mut cuts: Vec<usize> = (1..parts)
        .filter(|_| len > 1)
        .map(|_| rng.range(1, len as u64 - 1) as usize)
        .collect();
    cuts.push(0);
    cuts.push(len);
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}
