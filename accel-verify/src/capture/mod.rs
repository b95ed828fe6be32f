//! Live capture on an AF_PACKET socket, optionally inside another network
//! namespace.
//!
//! ## Namespaces
//! A packet socket is bound to the namespace it was created in, and stays
//! there. So the capture runs on a dedicated thread that `setns`es into the
//! target namespace, opens the socket, and reads from it until done; the
//! caller's thread never changes namespace. The namespace file is opened on
//! the caller's thread first so "no such pid / path" errors come back before
//! any thread is spawned.
//!
//! ## Loopback duplicates
//! On `lo`, every packet passes the packet taps twice: once on transmit
//! (`PACKET_OUTGOING`) and once on the receive path (`PACKET_HOST`). tcpdump
//! (libpcap) drops the outgoing copy on loopback devices, so `tcpdump -i lo`
//! shows each segment once; we match that by setting `PACKET_IGNORE_OUTGOING`
//! on loopback (Linux ≥ 4.20) and, for older kernels or if that fails, by
//! dropping `PACKET_OUTGOING` copies in userspace. On other link types (veth,
//! bridge) outgoing packets are the only copy of what this namespace sends,
//! so they are kept.
//!
//! ## Kernel filter
//! A classic BPF socket filter keeps only IPv4/IPv6 TCP (optionally to/from a
//! port) so that a busy interface does not flood userspace. It is an
//! optimization only: [`crate::frame`] and [`crate::conn::Filter`] re-check
//! everything, and packets the filter cannot judge cheaply (VLAN-tagged,
//! IPv6 with extension headers) are passed up.
//!
//! ## Layout
//! * `netns` — [`NetnsTarget`] and opening its namespace file.
//! * `socket` — opening, filtering and binding the packet socket.
//! * `recv_loop` — the capture thread's poll/receive/parse loop.
//! * `bpf` — the classic BPF socket filter ([`socket_filter`]).

mod bpf;
mod netns;
mod recv_loop;
mod socket;

pub use bpf::socket_filter;
pub use netns::NetnsTarget;
pub(crate) use netns::shell_quote;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;

use crate::conn::{ConnTable, Filter};
use crate::error::{Result, VerifyError};
use crate::frame::LinkType;

use recv_loop::capture_loop;
use socket::open_in_netns;

/// What to capture and for how long.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// Interface name in the target namespace.
    pub interface: String,
    /// Namespace to capture in.
    pub netns: NetnsTarget,
    /// Connection filter (also compiled into the kernel filter where cheap).
    pub filter: Filter,
    /// Stop after this long. `None` = until the budget or cancellation.
    pub duration: Option<Duration>,
    /// Stop after this many TCP segments that passed the filter.
    pub packet_budget: Option<u64>,
    /// Keep loopback's `PACKET_OUTGOING` copies (each segment then counts
    /// twice). Off by default; exists to demonstrate and test the
    /// duplication.
    pub include_loopback_outgoing: bool,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            interface: "lo".into(),
            netns: NetnsTarget::Host,
            filter: Filter::default(),
            duration: Some(Duration::from_secs(5)),
            packet_budget: None,
            include_loopback_outgoing: false,
        }
    }
}

/// Live progress, for a CLI status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// TCP segments that passed the filter so far.
    pub packets: u64,
    /// Connections in the table so far.
    pub connections: usize,
    /// Time since capture start.
    pub elapsed: Duration,
}

/// Progress callback; runs on the capture thread.
pub type ProgressFn = Box<dyn FnMut(&Progress) + Send>;

/// Why the capture stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The configured duration elapsed.
    Duration,
    /// The packet budget was reached.
    PacketBudget,
    /// The cancellation flag was set.
    Cancelled,
}

/// Frame counters for one capture.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CaptureStats {
    /// Frames the kernel filter passed up to us (before de-duplication).
    pub frames_received: u64,
    /// Loopback `PACKET_OUTGOING` copies dropped in userspace (0 when the
    /// kernel honoured `PACKET_IGNORE_OUTGOING`).
    pub loopback_outgoing_dropped: u64,
    /// TCP segments parsed.
    pub tcp_segments: u64,
    /// TCP segments that passed the connection filter.
    pub matched_segments: u64,
    /// Frames that were not TCP or were later IP fragments.
    pub not_tcp: u64,
    /// Frames that were malformed or truncated before the TCP header.
    pub malformed: u64,
    /// Packets the kernel dropped because we read too slowly.
    pub kernel_drops: u64,
}

/// Result of a finished capture.
#[derive(Debug, Clone)]
pub struct CaptureOutput {
    /// Per-connection table.
    pub table: ConnTable,
    /// Frame counters.
    pub stats: CaptureStats,
    /// Actual capture length.
    pub elapsed: Duration,
    /// Why it stopped.
    pub stop_reason: StopReason,
    /// Link type of the interface.
    pub link: LinkType,
    /// Whether the kernel accepted `PACKET_IGNORE_OUTGOING`.
    pub kernel_ignores_outgoing: bool,
}

/// A running capture. The socket is open and bound (packets are being
/// collected) by the time [`spawn`] returns one.
#[derive(Debug)]
pub struct CaptureHandle {
    thread: JoinHandle<Result<CaptureOutput>>,
    cancel: Arc<AtomicBool>,
}

impl CaptureHandle {
    /// Asks the capture to stop at its next wake-up (≤ 100 ms).
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    /// Waits for the capture to finish.
    pub fn join(self) -> Result<CaptureOutput> {
        self.thread
            .join()
            .map_err(|_| VerifyError::CaptureThreadPanicked)?
    }
}

/// Starts a capture on a dedicated thread and returns once the socket is
/// bound, or with the error that prevented it.
pub fn spawn(
    config: CaptureConfig,
    cancel: Arc<AtomicBool>,
    progress: Option<ProgressFn>,
) -> Result<CaptureHandle> {
    if config.interface.is_empty()
        || config.interface.len() >= libc::IFNAMSIZ
        || config.interface.contains('\0')
    {
        return Err(VerifyError::BadInterfaceName(config.interface));
    }
    let ns_file = config.netns.open()?;
    let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<()>>(1);
    let thread_cancel = cancel.clone();
    let thread = std::thread::Builder::new()
        .name("accel-verify-capture".into())
        .spawn(move || {
            let opened = open_in_netns(&config, ns_file);
            match opened {
                Ok(sock) => {
                    // The receiver only disappears if spawn() itself is gone.
                    let _ = ready_tx.send(Ok(()));
                    capture_loop(&config, sock, &thread_cancel, progress)
                }
                Err(e) => {
                    // The error travels through the channel; spawn() discards
                    // this return value.
                    let _ = ready_tx.send(Err(e));
                    Err(VerifyError::CaptureThreadPanicked)
                }
            }
        })
        .map_err(|e| VerifyError::from_io("spawning the capture thread", e))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(CaptureHandle { thread, cancel }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(VerifyError::CaptureThreadPanicked)
        }
    }
}

/// Runs a capture to completion on a dedicated thread (blocking the caller).
pub fn capture(
    config: CaptureConfig,
    cancel: Arc<AtomicBool>,
    progress: Option<ProgressFn>,
) -> Result<CaptureOutput> {
    spawn(config, cancel, progress)?.join()
}
