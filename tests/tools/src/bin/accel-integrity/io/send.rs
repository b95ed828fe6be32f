//! The sending half of the interfaces under test: message sizes, and one
//! stream sent through each `SendMode`.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
};

use anyhow::{Context, Result, bail};

use accel_test_harness::pattern::{self, Rng};

use super::{
    PIPE_CHUNK, SendMode, cvt, cvt_int, pipe, set_int_opt, set_nonblocking, split,
    write_all_polling,
};

/// How long a non-blocking writer waits for room before it gives up.
const WRITABLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

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

/// Message sizes of one connection: 1 byte and one `max` first (both ends
/// of the range on every connection that has room), then log-uniform.
pub(crate) fn message_sizes(total: u64, max: u64, rng: &mut Rng) -> Vec<u64> {
    message_sizes_from(total, 1, max, rng)
}

/// [`message_sizes`] with no message under `min` (but the last).
pub(crate) fn message_sizes_from(total: u64, min: u64, max: u64, rng: &mut Rng) -> Vec<u64> {
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
pub(crate) fn send_stream(
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
    if mode == SendMode::Nonblock {
        set_nonblocking(fd, true)?;
    }
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
            SendMode::Nonblock => write_all_polling(fd, &buf, WRITABLE_TIMEOUT)?,
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
