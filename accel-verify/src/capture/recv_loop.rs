//! The capture thread's loop: poll with a short timeout, drain the socket,
//! drop loopback outgoing copies, parse frames into the connection table,
//! and stop on cancellation, deadline or packet budget.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::socket::{OpenSocket, PACKET_OUTGOING, kernel_drops, last_os_error};
use super::{CaptureConfig, CaptureOutput, CaptureStats, Progress, ProgressFn, StopReason};
use crate::conn::ConnTable;
use crate::error::{Result, VerifyError};
use crate::frame::{self, FrameError, LinkType};

/// Receive buffer: large enough for a 64 KiB GSO super-packet on `lo` plus
/// headroom for BIG TCP; anything longer is parsed from what fits (the IP
/// header still gives the real length).
const RECV_BUF: usize = 256 * 1024;
/// How often the loop wakes up to check the cancel flag and deadline.
const POLL_SLICE: Duration = Duration::from_millis(100);
/// How often the progress callback is called at most.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

pub(super) fn capture_loop(
    config: &CaptureConfig,
    sock: OpenSocket,
    cancel: &AtomicBool,
    mut progress: Option<ProgressFn>,
) -> Result<CaptureOutput> {
    let fd = sock.fd.as_raw_fd();
    let mut table = ConnTable::new(&config.netns.label(), config.filter);
    let mut stats = CaptureStats::default();
    let mut buf = vec![0u8; RECV_BUF];
    let start = Instant::now();
    let deadline = config.duration.map(|d| start + d);
    let mut last_progress = start;
    let drop_outgoing = sock.link == LinkType::Loopback && !config.include_loopback_outgoing;

    let stop_reason = loop {
        if cancel.load(Ordering::SeqCst) {
            break StopReason::Cancelled;
        }
        if config
            .packet_budget
            .is_some_and(|b| stats.matched_segments >= b)
        {
            break StopReason::PacketBudget;
        }
        let now = Instant::now();
        let wait = match deadline {
            Some(d) if now >= d => break StopReason::Duration,
            Some(d) => (d - now).min(POLL_SLICE),
            None => POLL_SLICE,
        };
        if let Some(cb) = progress.as_mut()
            && now.duration_since(last_progress) >= PROGRESS_EVERY
        {
            last_progress = now;
            cb(&Progress {
                packets: stats.matched_segments,
                connections: table.len(),
                elapsed: now - start,
            });
        }

        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let timeout_ms = wait.as_millis().clamp(1, 1000) as libc::c_int;
        // SAFETY: pfd is a valid pollfd array of length 1.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if n < 0 {
            let e = last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(VerifyError::from_io("waiting for packets", e));
        }
        if n == 0 {
            continue;
        }
        // Drain what is queued without blocking, then go back to checking
        // the stop conditions.
        loop {
            // SAFETY: sockaddr_ll is plain old data.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut sll_len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: buf and sll are valid writable buffers of the given sizes.
            let got = unsafe {
                libc::recvfrom(
                    fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&mut sll as *mut libc::sockaddr_ll).cast(),
                    &mut sll_len,
                )
            };
            if got < 0 {
                let e = last_os_error();
                match e.kind() {
                    std::io::ErrorKind::WouldBlock => break,
                    std::io::ErrorKind::Interrupted => continue,
                    _ => return Err(VerifyError::from_io("reading packets", e)),
                }
            }
            let ts = SystemTime::now();
            stats.frames_received += 1;
            if drop_outgoing && sll.sll_pkttype == PACKET_OUTGOING {
                stats.loopback_outgoing_dropped += 1;
                continue;
            }
            let len = (got as usize).min(buf.len());
            match frame::parse(sock.link, &buf[..len]) {
                Ok(seg) => {
                    stats.tcp_segments += 1;
                    if table.observe(&seg, ts) {
                        stats.matched_segments += 1;
                    }
                }
                Err(
                    FrameError::NotIp(_) | FrameError::NotTcp(_) | FrameError::NonFirstFragment,
                ) => stats.not_tcp += 1,
                Err(_) => stats.malformed += 1,
            }
            if config
                .packet_budget
                .is_some_and(|b| stats.matched_segments >= b)
            {
                break;
            }
        }
    };
    stats.kernel_drops = kernel_drops(fd);
    if stats.kernel_drops > 0 {
        // Counts are then lower bounds; say so rather than silently under-report.
        tracing::warn!(
            drops = stats.kernel_drops,
            "kernel dropped packets during capture; counts are lower bounds"
        );
    }
    let elapsed = start.elapsed();
    if let Some(cb) = progress.as_mut() {
        cb(&Progress {
            packets: stats.matched_segments,
            connections: table.len(),
            elapsed,
        });
    }
    Ok(CaptureOutput {
        table,
        stats,
        elapsed,
        stop_reason,
        link: sock.link,
        kernel_ignores_outgoing: sock.kernel_ignores_outgoing,
    })
}
