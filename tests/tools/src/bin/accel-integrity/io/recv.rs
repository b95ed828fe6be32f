//! The receiving half of the interfaces under test: one stream read to EOF
//! through each `RecvMode`, every byte checked against its pattern.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    time::Duration,
};

use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;

use accel_test_harness::pattern::{self, Rng};

use super::{
    PIPE_CHUNK, RecvMode, cvt, cvt_int, fionread, peek_one, pipe, poll_fd, poll_then_recv,
    set_nonblocking, split,
};

/// What a receiver saw besides the bytes themselves.
#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct RecvStats {
    pub(crate) bytes: u64,
    pub(crate) reads: u64,
    /// Non-blocking reads that found nothing after poll/epoll said readable.
    pub(crate) empty_wakeups: u64,
}

/// How a receive ended when it did not end at EOF.
#[derive(Debug)]
pub(crate) enum RecvEnd {
    /// ECONNRESET (or EPIPE) after `bytes` correct bytes.
    Reset(RecvStats),
}

/// Reads stream `seed` until EOF through `mode`, checking every byte; a
/// reset is returned as such (the bytes before it were all checked).
#[allow(clippy::too_many_arguments)] // each is one knob of the reader under test
pub(crate) fn recv_stream(
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
    set_nonblocking(fd, mode.sets_nonblocking())?;
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
            RecvMode::Poll | RecvMode::Dontwait => match poll_then_recv(fd, &mut buf[..want])? {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    st.empty_wakeups += 1;
                    continue;
                }
                r => r,
            },
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
            // Only a blocking read gets here with EAGAIN: the other modes
            // poll and retry themselves.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => bail!(
                "{mode:?}: a BLOCKING read returned EAGAIN after {} correct bytes \
                 (tcp_bpf_recvmsg wake-up without data, I-5)",
                st.bytes
            ),
            Err(e) => return Err(e).with_context(|| format!("{mode:?} after {} bytes", st.bytes)),
        }
    }
}

pub(crate) fn is_reset(e: &io::Error) -> bool {
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
        return match peek_one(fd) {
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
            // MSG_PEEK, not FIONREAD: on a sockhash socket FIONREAD can
            // leave out bytes that came by TCP (I-4).
            ensure!(
                !matches!(peek_one(fd), Ok(1)),
                "edge-triggered epoll: bytes readable but no event for 10 s"
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
