//! The send and receive interfaces under test, on raw file descriptors, so
//! each mode is exactly the syscall an application would make.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    time::Duration,
};

use anyhow::{Context, Result, bail, ensure};
use clap::ValueEnum;
use serde::Serialize;

use accel_test_harness::pattern::{self, Rng};

/// Largest single send or read request the modes split messages into.
const PIPE_CHUNK: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SendMode {
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecvMode {
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
    /// poll(2), then a non-blocking recv.
    Poll,
    /// Non-blocking socket, edge-triggered epoll, read until EAGAIN.
    EpollEt,
    /// Non-blocking socket, small partial reads, poll on EAGAIN.
    Nonblock,
    /// splice(2) from the socket into a pipe, then read the pipe.
    Splice,
}

impl SendMode {
    pub const ALL: [SendMode; 6] = [
        SendMode::Write,
        SendMode::MsgMore,
        SendMode::Cork,
        SendMode::Writev,
        SendMode::Sendfile,
        SendMode::Splice,
    ];
}

impl RecvMode {
    pub const ALL: [RecvMode; 9] = [
        RecvMode::Read,
        RecvMode::Recv,
        RecvMode::Readv,
        RecvMode::Peek,
        RecvMode::Fionread,
        RecvMode::Poll,
        RecvMode::EpollEt,
        RecvMode::Nonblock,
        RecvMode::Splice,
    ];

    pub fn index(self) -> u8 {
        RecvMode::ALL.iter().position(|m| *m == self).unwrap_or(0) as u8
    }

    pub fn from_index(i: u8) -> Option<RecvMode> {
        RecvMode::ALL.get(i as usize).copied()
    }

    fn blocking(self) -> bool {
        matches!(
            self,
            RecvMode::Read
                | RecvMode::Recv
                | RecvMode::Readv
                | RecvMode::Peek
                | RecvMode::Fionread
                | RecvMode::Splice
        )
    }
}

pub fn cvt(r: isize) -> io::Result<usize> {
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

pub fn set_int_opt(fd: RawFd, level: libc::c_int, opt: libc::c_int, v: libc::c_int) -> Result<()> {
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

pub fn set_nonblocking(fd: RawFd, on: bool) -> Result<()> {
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
pub fn set_linger_zero(fd: RawFd) -> Result<()> {
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

/// poll(2) for `events`; Ok(false) on timeout.
pub fn poll_fd(fd: RawFd, events: libc::c_short, timeout: Duration) -> Result<bool> {
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

fn fionread(fd: RawFd) -> Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    cvt_int(unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) }).context("FIONREAD")?;
    Ok(n as usize)
}

pub fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut p = [0i32; 2];
    // SAFETY: two fds out.
    cvt_int(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }).context("pipe")?;
    // SAFETY: fresh fds we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) })
}

fn write_all_fd(fd: RawFd, mut data: &[u8], flags: libc::c_int) -> Result<()> {
    while !data.is_empty() {
        // SAFETY: buffer of the stated length.
        let r = unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), flags) };
        match cvt(r) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("send"),
        }
    }
    Ok(())
}

fn pipe_write_all(fd: RawFd, mut data: &[u8]) -> Result<()> {
    while !data.is_empty() {
        // SAFETY: buffer of the stated length.
        let r = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        match cvt(r) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("write to pipe"),
        }
    }
    Ok(())
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

/// Message sizes of one connection: 1 byte and one `max` first (both ends
/// of the range on every connection that has room), then log-uniform.
pub fn message_sizes(total: u64, max: u64, rng: &mut Rng) -> Vec<u64> {
    message_sizes_from(total, 1, max, rng)
}

/// [`message_sizes`] with no message under `min` (but the last).
pub fn message_sizes_from(total: u64, min: u64, max: u64, rng: &mut Rng) -> Vec<u64> {
    let mut sizes = Vec::new();
    let mut left = total;
    for first in [min.min(max), max] {
        if left >= first {
            sizes.push(first);
            left -= first;
        }
    }
    while left > 0 {
        let s = rng.log_size(max).max(min).min(left);
        sizes.push(s);
        left -= s;
    }
    sizes
}

/// Sends stream `seed` as the messages `sizes` through `mode`.
pub fn send_stream(
    fd: RawFd,
    seed: u64,
    sizes: &[u64],
    mode: SendMode,
    rng: &mut Rng,
) -> Result<()> {
    let total: u64 = sizes.iter().sum();
    let file = match mode {
        SendMode::Sendfile => Some(stream_memfd(seed, total)?),
        _ => None,
    };
    let pipe = match mode {
        SendMode::Splice => Some(pipe()?),
        _ => None,
    };
    let mut offset = 0u64;
    let mut buf = Vec::new();
    for &size in sizes {
        let len = size as usize;
        if mode != SendMode::Sendfile {
            buf.resize(len, 0);
            pattern::fill(seed, offset, &mut buf);
        }
        match mode {
            SendMode::Write => write_all_fd(fd, &buf, 0)?,
            SendMode::MsgMore => {
                let cuts = split(len, 3, rng);
                for w in cuts.windows(2) {
                    let more = if w[1] < len { libc::MSG_MORE } else { 0 };
                    write_all_fd(fd, &buf[w[0]..w[1]], more)?;
                }
            }
            SendMode::Cork => {
                set_int_opt(fd, libc::IPPROTO_TCP, libc::TCP_CORK, 1)?;
                for w in split(len, 3, rng).windows(2) {
                    write_all_fd(fd, &buf[w[0]..w[1]], 0)?;
                }
                set_int_opt(fd, libc::IPPROTO_TCP, libc::TCP_CORK, 0)?;
            }
            SendMode::Writev => writev_all(fd, &buf, &split(len, 4, rng))?,
            SendMode::Sendfile => {
                let src = file.as_ref().map(AsRawFd::as_raw_fd).unwrap_or(-1);
                let mut off = offset as libc::off_t;
                let end = off + len as libc::off_t;
                while off < end {
                    // SAFETY: valid fds; the kernel advances `off`.
                    let r = unsafe { libc::sendfile(fd, src, &mut off, (end - off) as usize) };
                    match cvt(r) {
                        Ok(0) => bail!("sendfile made no progress"),
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e).context("sendfile"),
                    }
                }
            }
            SendMode::Splice => {
                let (r, w) = pipe
                    .as_ref()
                    .map(|(r, w)| (r.as_raw_fd(), w.as_raw_fd()))
                    .unwrap_or((-1, -1));
                for chunk in buf.chunks(PIPE_CHUNK) {
                    pipe_write_all(w, chunk)?;
                    let mut left = chunk.len();
                    while left > 0 {
                        // SAFETY: valid fds, no offsets (pipe and socket).
                        let n = unsafe {
                            libc::splice(
                                r,
                                std::ptr::null_mut(),
                                fd,
                                std::ptr::null_mut(),
                                left,
                                libc::SPLICE_F_MOVE,
                            )
                        };
                        match cvt(n) {
                            Ok(0) => bail!("splice to the socket made no progress"),
                            Ok(n) => left -= n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => return Err(e).context("splice pipe -> socket"),
                        }
                    }
                }
            }
        }
        offset += size;
    }
    Ok(())
}

fn writev_all(fd: RawFd, buf: &[u8], cuts: &[usize]) -> Result<()> {
    let mut pieces: Vec<&[u8]> = cuts.windows(2).map(|w| &buf[w[0]..w[1]]).collect();
    while pieces.iter().any(|p| !p.is_empty()) {
        let iov: Vec<libc::iovec> = pieces
            .iter()
            .map(|p| libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            })
            .collect();
        // SAFETY: iovecs point into `buf`, alive for the call.
        let r = unsafe { libc::writev(fd, iov.as_ptr(), iov.len() as libc::c_int) };
        let mut n = match cvt(r) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("writev"),
        };
        for p in pieces.iter_mut() {
            let k = n.min(p.len());
            *p = &p[k..];
            n -= k;
        }
        pieces.retain(|p| !p.is_empty());
    }
    Ok(())
}

fn stream_memfd(seed: u64, total: u64) -> Result<OwnedFd> {
    // SAFETY: a fresh anonymous file.
    let fd = cvt_int(unsafe { libc::memfd_create(c"accel-integrity".as_ptr(), libc::MFD_CLOEXEC) })
        .context("memfd_create")?;
    // SAFETY: fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut off = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    while off < total {
        let n = (total - off).min(buf.len() as u64) as usize;
        pattern::fill(seed, off, &mut buf[..n]);
        pipe_write_all(fd.as_raw_fd(), &buf[..n])?;
        off += n as u64;
    }
    Ok(fd)
}

/// What a receiver saw besides the bytes themselves.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RecvStats {
    pub bytes: u64,
    pub reads: u64,
    /// Non-blocking reads that found nothing after poll/epoll said readable.
    pub empty_wakeups: u64,
}

/// How a receive ended when it did not end at EOF.
#[derive(Debug)]
pub enum RecvEnd {
    /// ECONNRESET (or EPIPE) after `bytes` correct bytes.
    Reset(RecvStats),
}

/// Reads stream `seed` until EOF through `mode`, checking every byte; a
/// reset is returned as such (the bytes before it were all checked).
#[allow(clippy::too_many_arguments)] // each is one knob of the reader under test
pub fn recv_stream(
    fd: RawFd,
    seed: u64,
    start: u64,
    mode: RecvMode,
    max_read: usize,
    delay: Duration,
    limit: Option<u64>,
    rng: &mut Rng,
) -> Result<std::result::Result<RecvStats, RecvEnd>> {
    let mut st = RecvStats::default();
    let mut scratch = Vec::new();
    let mut buf = vec![0u8; max_read.max(16)];
    set_nonblocking(fd, !mode.blocking())?;
    let epoll = if mode == RecvMode::EpollEt {
        Some(epoll_for(fd)?)
    } else {
        None
    };
    let pipe = if mode == RecvMode::Splice {
        Some(pipe()?)
    } else {
        None
    };
    let offset = |st: &RecvStats| start + st.bytes;
    loop {
        let mut want = rng.log_size(max_read as u64) as usize;
        if let Some(limit) = limit {
            if st.bytes >= limit {
                return Ok(Ok(st));
            }
            want = want.min((limit - st.bytes) as usize);
        }
        let got: io::Result<usize> = match mode {
            RecvMode::Read => {
                // SAFETY: buffer of the stated length.
                cvt(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), want) })
            }
            RecvMode::Recv => {
                // SAFETY: as above.
                cvt(unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), want, 0) })
            }
            RecvMode::Readv => readv3(fd, &mut buf[..want], rng),
            RecvMode::Peek => peek_then_read(fd, &mut buf[..want]),
            RecvMode::Fionread => match fionread_then_read(fd, &mut buf, want, &mut st)? {
                Some(r) => r,
                None => continue,
            },
            RecvMode::Poll => {
                if !poll_fd(fd, libc::POLLIN, Duration::from_secs(600))? {
                    bail!("poll: nothing readable for 600 s");
                }
                // SAFETY: buffer of the stated length.
                match cvt(unsafe {
                    libc::recv(fd, buf.as_mut_ptr().cast(), want, libc::MSG_DONTWAIT)
                }) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        st.empty_wakeups += 1;
                        continue;
                    }
                    r => r,
                }
            }
            RecvMode::Nonblock => {
                // Small reads: the point is many partial reads.
                let want = want.min(4096);
                // SAFETY: buffer of the stated length.
                match cvt(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), want) }) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        poll_fd(fd, libc::POLLIN, Duration::from_secs(1))?;
                        continue;
                    }
                    r => r,
                }
            }
            RecvMode::EpollEt => {
                let ep = epoll.as_ref().map(AsRawFd::as_raw_fd).unwrap_or(-1);
                match epoll_et_drain(
                    ep,
                    fd,
                    &mut buf,
                    seed,
                    start,
                    limit,
                    &mut st,
                    &mut scratch,
                    rng,
                )? {
                    EtEnd::Eof => return Ok(Ok(st)),
                    EtEnd::Reset => return Ok(Err(RecvEnd::Reset(st))),
                }
            }
            RecvMode::Splice => {
                let (r, w) = pipe
                    .as_ref()
                    .map(|(r, w)| (r.as_raw_fd(), w.as_raw_fd()))
                    .unwrap_or((-1, -1));
                splice_then_read(fd, r, w, &mut buf[..want.min(PIPE_CHUNK)])
            }
        };
        match got {
            Ok(0) => return Ok(Ok(st)),
            Ok(n) => {
                if let Err(at) = pattern::check(seed, offset(&st), &buf[..n], &mut scratch) {
                    bail!(
                        "{mode:?}: wrong byte at stream offset {} (read of {n} at {})",
                        offset(&st) + at as u64,
                        offset(&st)
                    );
                }
                st.bytes += n as u64;
                st.reads += 1;
                if !delay.is_zero() {
                    std::thread::sleep(delay);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_reset(&e) => return Ok(Err(RecvEnd::Reset(st))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                bail!(
                    "{mode:?}: a BLOCKING read returned EAGAIN after {} correct bytes \
                     (tcp_bpf_recvmsg wake-up without data)",
                    st.bytes
                )
            }
            Err(e) => return Err(e).with_context(|| format!("{mode:?} after {} bytes", st.bytes)),
        }
    }
}

pub fn is_reset(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ECONNRESET) | Some(libc::EPIPE))
}

fn readv3(fd: RawFd, buf: &mut [u8], rng: &mut Rng) -> io::Result<usize> {
    let cuts = split(buf.len(), 3, rng);
    let base = buf.as_mut_ptr();
    let iov: Vec<libc::iovec> = cuts
        .windows(2)
        .map(|w| libc::iovec {
            // SAFETY: w[0] <= buf.len().
            iov_base: unsafe { base.add(w[0]) }.cast(),
            iov_len: w[1] - w[0],
        })
        .collect();
    // SAFETY: iovecs cover disjoint parts of `buf`.
    cvt(unsafe { libc::readv(fd, iov.as_ptr(), iov.len() as libc::c_int) })
}

/// MSG_PEEK, then reads exactly what was peeked; both must be the same bytes.
fn peek_then_read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buffer of the stated length.
    let p = cvt(unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_PEEK) })?;
    if p == 0 {
        return Ok(0);
    }
    let peeked = buf[..p].to_vec();
    let mut got = 0;
    while got < p {
        // SAFETY: buffer of the stated length.
        got += cvt(unsafe { libc::recv(fd, buf[got..p].as_mut_ptr().cast(), p - got, 0) })?;
    }
    if buf[..p] != peeked[..] {
        return Err(io::Error::other(format!(
            "MSG_PEEK returned {p} bytes that differ from the bytes read next"
        )));
    }
    Ok(p)
}

/// poll, FIONREAD, then a non-blocking recv of exactly that many bytes,
/// which must return all of them. None: an empty wake-up, try again.
fn fionread_then_read(
    fd: RawFd,
    buf: &mut Vec<u8>,
    cap: usize,
    st: &mut RecvStats,
) -> Result<Option<io::Result<usize>>> {
    if !poll_fd(fd, libc::POLLIN, Duration::from_secs(600))? {
        bail!("poll: nothing readable for 600 s");
    }
    let avail = fionread(fd)?;
    // Reading fewer than announced is fine; fewer than asked is not.
    let n = avail.min(cap.max(1));
    if avail == 0 {
        let mut b = [0u8; 1];
        // SAFETY: one-byte buffer.
        return match cvt(unsafe {
            libc::recv(
                fd,
                b.as_mut_ptr().cast(),
                1,
                libc::MSG_DONTWAIT | libc::MSG_PEEK,
            )
        }) {
            Ok(0) => Ok(Some(Ok(0))),
            Ok(_) => bail!("FIONREAD said 0 while a byte was readable"),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                st.empty_wakeups += 1;
                Ok(None)
            }
            Err(e) => Ok(Some(Err(e))),
        };
    }
    if buf.len() < n {
        buf.resize(n, 0);
    }
    // SAFETY: buffer of at least n bytes.
    match cvt(unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), n, libc::MSG_DONTWAIT) }) {
        Ok(got) if got != n => {
            bail!("FIONREAD said {avail} bytes, a read of {n} returned {got}")
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            bail!("FIONREAD said {avail} bytes, a non-blocking read returned EAGAIN")
        }
        r => Ok(Some(r)),
    }
}

fn splice_then_read(fd: RawFd, r: RawFd, w: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: valid fds, no offsets.
    let n = cvt(unsafe {
        libc::splice(
            fd,
            std::ptr::null_mut(),
            w,
            std::ptr::null_mut(),
            buf.len(),
            libc::SPLICE_F_MOVE,
        )
    })?;
    let mut got = 0;
    while got < n {
        // SAFETY: buffer of the stated length.
        got += cvt(unsafe { libc::read(r, buf[got..n].as_mut_ptr().cast(), n - got) })?;
    }
    Ok(n)
}

fn epoll_for(fd: RawFd) -> Result<OwnedFd> {
    // SAFETY: plain epoll_create1.
    let ep =
        cvt_int(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) }).context("epoll_create1")?;
    // SAFETY: fresh fd we own.
    let ep = unsafe { OwnedFd::from_raw_fd(ep) };
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLET | libc::EPOLLRDHUP) as u32,
        u64: 0,
    };
    // SAFETY: valid fds and event.
    cvt_int(unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })
        .context("epoll_ctl")?;
    Ok(ep)
}

enum EtEnd {
    Eof,
    Reset,
}

/// Edge-triggered reader: after each event, reads until EAGAIN. A missed
/// edge (bytes readable, no event for 10 s) is an error, not a retry.
#[allow(clippy::too_many_arguments)]
fn epoll_et_drain(
    ep: RawFd,
    fd: RawFd,
    buf: &mut [u8],
    seed: u64,
    start: u64,
    limit: Option<u64>,
    st: &mut RecvStats,
    scratch: &mut Vec<u8>,
    rng: &mut Rng,
) -> Result<EtEnd> {
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 4];
    loop {
        // SAFETY: events buffer of the stated length.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), 4, 10_000) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e).context("epoll_wait");
        }
        if n == 0 {
            let pending = fionread(fd)?;
            ensure!(
                pending == 0,
                "edge-triggered epoll: {pending} bytes readable but no event for 10 s"
            );
            continue;
        }
        let mut drained_any = false;
        loop {
            let mut want = rng.log_size(buf.len() as u64) as usize;
            if let Some(limit) = limit {
                if st.bytes >= limit {
                    return Ok(EtEnd::Eof);
                }
                want = want.min((limit - st.bytes) as usize);
            }
            // SAFETY: buffer of the stated length.
            match cvt(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), want) }) {
                Ok(0) => return Ok(EtEnd::Eof),
                Ok(k) => {
                    let off = start + st.bytes;
                    if let Err(at) = pattern::check(seed, off, &buf[..k], scratch) {
                        bail!("EpollEt: wrong byte at stream offset {}", off + at as u64);
                    }
                    st.bytes += k as u64;
                    st.reads += 1;
                    drained_any = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_reset(&e) => return Ok(EtEnd::Reset),
                Err(e) => return Err(e).context("EpollEt read"),
            }
        }
        if !drained_any {
            st.empty_wakeups += 1;
        }
    }
}
