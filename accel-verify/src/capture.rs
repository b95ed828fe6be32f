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

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::conn::{ConnTable, Filter};
use crate::error::{Result, VerifyError};
use crate::frame::{self, FrameError, LinkType};

// From <linux/if_packet.h>; defined here because not every libc target
// exports them.
const PACKET_OUTGOING: u8 = 4;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_STATISTICS: libc::c_int = 6;

/// Receive buffer: large enough for a 64 KiB GSO super-packet on `lo` plus
/// headroom for BIG TCP; anything longer is parsed from what fits (the IP
/// header still gives the real length).
const RECV_BUF: usize = 256 * 1024;
/// How often the loop wakes up to check the cancel flag and deadline.
const POLL_SLICE: Duration = Duration::from_millis(100);
/// How often the progress callback is called at most.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// Which network namespace to capture in.
///
/// `#[non_exhaustive]` because `Pod { namespace, name }` (resolved to a pid
/// through the CRI) will be added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum NetnsTarget {
    /// The namespace of the calling process.
    Host,
    /// A namespace file, e.g. `/run/netns/NAME` or `/proc/PID/ns/net`.
    Path(PathBuf),
    /// The network namespace of a running process.
    Pid(u32),
}

impl NetnsTarget {
    /// Label used in connection keys and reports.
    pub fn label(&self) -> String {
        match self {
            NetnsTarget::Host => "host".to_string(),
            NetnsTarget::Path(p) => p.display().to_string(),
            NetnsTarget::Pid(pid) => format!("pid:{pid}"),
        }
    }

    /// The namespace file to `setns` into, if any.
    pub fn ns_path(&self) -> Option<PathBuf> {
        match self {
            NetnsTarget::Host => None,
            NetnsTarget::Path(p) => Some(p.clone()),
            NetnsTarget::Pid(pid) => Some(PathBuf::from(format!("/proc/{pid}/ns/net"))),
        }
    }

    /// Shell prefix that runs a command in this namespace (empty for host),
    /// for the printed tcpdump cross-check.
    pub fn shell_prefix(&self) -> String {
        match self {
            NetnsTarget::Host => String::new(),
            NetnsTarget::Path(p) => match (p.parent(), p.file_name()) {
                (Some(dir), Some(name)) if dir == Path::new("/run/netns") => {
                    format!("ip netns exec {} ", shell_quote(&name.to_string_lossy()))
                }
                _ => format!("nsenter --net={} ", shell_quote(&p.to_string_lossy())),
            },
            NetnsTarget::Pid(pid) => format!("nsenter -t {pid} -n "),
        }
    }

    /// Opens the namespace file on the calling thread, mapping errors to
    /// operator-facing ones. `None` for [`NetnsTarget::Host`].
    fn open(&self) -> Result<Option<File>> {
        let Some(path) = self.ns_path() else {
            return Ok(None);
        };
        if let NetnsTarget::Pid(0) = self {
            return Err(VerifyError::BadValue {
                flag: "--pid",
                value: "0".into(),
                hint: "give the pid of a process in the target namespace",
            });
        }
        match File::open(&path) {
            Ok(f) => Ok(Some(f)),
            Err(e) => Err(match (self, e.kind()) {
                (NetnsTarget::Pid(pid), std::io::ErrorKind::NotFound) => {
                    VerifyError::NoSuchPid(*pid)
                }
                (_, std::io::ErrorKind::NotFound) => VerifyError::NetnsNotFound(path),
                _ => VerifyError::from_io("opening the network namespace file", e),
            }),
        }
    }
}

/// Quotes `s` for a POSIX shell when it contains anything unusual.
pub(crate) fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:@%+=,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

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

struct OpenSocket {
    fd: OwnedFd,
    link: LinkType,
    kernel_ignores_outgoing: bool,
}

fn last_os_error() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn ifreq_for(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = *src as libc::c_char;
    }
    ifr
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, opt: libc::c_int, val: &T) -> std::io::Result<()> {
    // SAFETY: val points to a live T of the given size for the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (val as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(last_os_error())
    }
}

/// Runs on the capture thread: enter the namespace, open, filter and bind.
fn open_in_netns(config: &CaptureConfig, ns_file: Option<File>) -> Result<OpenSocket> {
    let label = config.netns.label();
    if let Some(f) = ns_file {
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(
            |errno| match errno {
                nix::errno::Errno::EINVAL => {
                    VerifyError::NotANetns(config.netns.ns_path().unwrap_or_default())
                }
                e => VerifyError::from_io("entering the network namespace", e.into()),
            },
        )?;
    }
    // Protocol 0: the socket receives nothing until bind() names a protocol,
    // so no unfiltered packet (from any interface) can slip in before the
    // filter is attached.
    // SAFETY: plain syscall.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(VerifyError::from_io(
            "opening an AF_PACKET socket",
            last_os_error(),
        ));
    }
    // SAFETY: raw is a fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };

    let mut ifr = ifreq_for(&config.interface);
    // SAFETY: ifr is a valid ifreq for SIOCGIFINDEX.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFINDEX as _, &mut ifr) } < 0 {
        let e = last_os_error();
        return Err(if e.raw_os_error() == Some(libc::ENODEV) {
            VerifyError::UnknownInterface {
                name: config.interface.clone(),
                netns: label,
            }
        } else {
            VerifyError::from_io("looking up the interface", e)
        });
    }
    // SAFETY: SIOCGIFINDEX filled the ifindex member.
    let ifindex = unsafe { ifr.ifr_ifru.ifru_ifindex };

    let mut ifr = ifreq_for(&config.interface);
    // SAFETY: ifr is a valid ifreq for SIOCGIFHWADDR.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR as _, &mut ifr) } < 0 {
        return Err(VerifyError::from_io(
            "reading the interface link type",
            last_os_error(),
        ));
    }
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member.
    let hatype = unsafe { ifr.ifr_ifru.ifru_hwaddr.sa_family };
    let link = LinkType::from_arphrd(hatype).ok_or_else(|| VerifyError::UnsupportedLinkType {
        name: config.interface.clone(),
        hatype,
    })?;

    let prog = socket_filter(link, config.filter.port);
    let fprog = libc::sock_fprog {
        len: prog.len() as libc::c_ushort,
        filter: prog.as_ptr().cast_mut(),
    };
    setsockopt(
        fd.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_ATTACH_FILTER,
        &fprog,
    )
    .map_err(|e| VerifyError::from_io("attaching the socket filter", e))?;

    let mut kernel_ignores_outgoing = false;
    if link == LinkType::Loopback && !config.include_loopback_outgoing {
        let one: libc::c_int = 1;
        // Failure is fine (kernel < 4.20): the loop drops the copies itself.
        kernel_ignores_outgoing = setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            PACKET_IGNORE_OUTGOING,
            &one,
        )
        .is_ok();
    }
    // Bursts of small segments on lo arrive faster than we parse; a larger
    // buffer keeps kernel_drops at 0. Best effort: the default still works.
    let rcvbuf: libc::c_int = 8 << 20;
    let _ = setsockopt(
        fd.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_RCVBUFFORCE,
        &rcvbuf,
    )
    .or_else(|_| setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, &rcvbuf));

    // SAFETY: sockaddr_ll is plain old data.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as libc::c_ushort;
    sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    sll.sll_ifindex = ifindex;
    // SAFETY: sll is a valid sockaddr_ll of the given size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(VerifyError::from_io(
            "binding the packet socket",
            last_os_error(),
        ));
    }
    tracing::debug!(
        interface = %config.interface,
        netns = %label,
        ifindex,
        ?link,
        kernel_ignores_outgoing,
        "packet socket bound"
    );
    Ok(OpenSocket {
        fd,
        link,
        kernel_ignores_outgoing,
    })
}

fn kernel_drops(fd: RawFd) -> u64 {
    #[repr(C)]
    #[derive(Default)]
    struct TpacketStats {
        tp_packets: u32,
        tp_drops: u32,
    }
    let mut st = TpacketStats::default();
    let mut len = std::mem::size_of::<TpacketStats>() as libc::socklen_t;
    // SAFETY: st/len describe a writable buffer of the right size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            PACKET_STATISTICS,
            (&mut st as *mut TpacketStats).cast(),
            &mut len,
        )
    };
    if rc == 0 { u64::from(st.tp_drops) } else { 0 }
}

fn capture_loop(
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

// ---- classic BPF socket filter -------------------------------------------

const BPF_LD_H_ABS: u16 = 0x28;
const BPF_LD_B_ABS: u16 = 0x30;
const BPF_LD_H_IND: u16 = 0x48;
const BPF_LDX_B_MSH: u16 = 0xb1;
const BPF_ALU_AND_K: u16 = 0x54;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JSET_K: u16 = 0x45;
const BPF_RET_K: u16 = 0x06;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lbl {
    Next,
    Accept,
    Drop,
    V4,
    V6,
    V6Ext,
}

struct Asm {
    code: Vec<(u16, Lbl, Lbl, u32)>,
    labels: Vec<(Lbl, usize)>,
}

impl Asm {
    fn op(&mut self, code: u16, k: u32) {
        self.code.push((code, Lbl::Next, Lbl::Next, k));
    }
    fn jeq(&mut self, k: u32, t: Lbl, f: Lbl) {
        self.code.push((BPF_JEQ_K, t, f, k));
    }
    fn jset(&mut self, k: u32, t: Lbl, f: Lbl) {
        self.code.push((BPF_JSET_K, t, f, k));
    }
    fn label(&mut self, l: Lbl) {
        self.labels.push((l, self.code.len()));
    }
    fn finish(self) -> Vec<libc::sock_filter> {
        let at = |l: Lbl, pc: usize| -> u8 {
            if l == Lbl::Next {
                return 0;
            }
            let target = self
                .labels
                .iter()
                .find(|(x, _)| *x == l)
                .map_or(pc + 1, |(_, t)| *t);
            // Programs here are < 64 instructions; offsets always fit.
            (target - pc - 1) as u8
        };
        self.code
            .iter()
            .enumerate()
            .map(|(pc, &(code, t, f, k))| libc::sock_filter {
                code,
                jt: at(t, pc),
                jf: at(f, pc),
                k,
            })
            .collect()
    }
}

/// Builds the classic BPF program: pass IPv4/IPv6 TCP (to/from `port` when
/// given) and whatever cannot be judged cheaply; drop the rest.
pub fn socket_filter(link: LinkType, port: Option<u16>) -> Vec<libc::sock_filter> {
    let l: u32 = match link {
        LinkType::Ethernet | LinkType::Loopback => 14,
        LinkType::RawIp => 0,
    };
    let mut a = Asm {
        code: Vec::new(),
        labels: Vec::new(),
    };
    match link {
        LinkType::Ethernet | LinkType::Loopback => {
            a.op(BPF_LD_H_ABS, 12);
            a.jeq(frame::ETHERTYPE_IPV4.into(), Lbl::V4, Lbl::Next);
            a.jeq(frame::ETHERTYPE_IPV6.into(), Lbl::V6, Lbl::Next);
            // VLAN-tagged frames are rare on the links we capture; let the
            // parser walk the tags instead of unrolling that here.
            a.jeq(frame::ETHERTYPE_VLAN.into(), Lbl::Accept, Lbl::Next);
            a.jeq(frame::ETHERTYPE_QINQ.into(), Lbl::Accept, Lbl::Next);
            a.jeq(frame::ETHERTYPE_QINQ_OLD.into(), Lbl::Accept, Lbl::Drop);
        }
        LinkType::RawIp => {
            a.op(BPF_LD_B_ABS, 0);
            a.op(BPF_ALU_AND_K, 0xf0);
            a.jeq(0x40, Lbl::V4, Lbl::Next);
            a.jeq(0x60, Lbl::V6, Lbl::Drop);
        }
    }
    a.label(Lbl::V4);
    a.op(BPF_LD_B_ABS, l + 9);
    match port {
        None => a.jeq(6, Lbl::Accept, Lbl::Drop),
        Some(p) => {
            a.jeq(6, Lbl::Next, Lbl::Drop);
            a.op(BPF_LD_H_ABS, l + 6);
            a.jset(0x1fff, Lbl::Drop, Lbl::Next);
            a.op(BPF_LDX_B_MSH, l);
            a.op(BPF_LD_H_IND, l);
            a.jeq(p.into(), Lbl::Accept, Lbl::Next);
            a.op(BPF_LD_H_IND, l + 2);
            a.jeq(p.into(), Lbl::Accept, Lbl::Drop);
        }
    }
    a.label(Lbl::V6);
    a.op(BPF_LD_B_ABS, l + 6);
    match port {
        None => a.jeq(6, Lbl::Accept, Lbl::Next),
        Some(p) => {
            // Direct TCP: check ports at the fixed offset.
            a.jeq(6, Lbl::Next, Lbl::V6Ext);
            a.op(BPF_LD_H_ABS, l + 40);
            a.jeq(p.into(), Lbl::Accept, Lbl::Next);
            a.op(BPF_LD_H_ABS, l + 42);
            a.jeq(p.into(), Lbl::Accept, Lbl::Drop);
            a.label(Lbl::V6Ext);
        }
    }
    // Extension headers: pass up for the parser to walk.
    for nh in [0u32, 43, 44, 51, 60] {
        a.jeq(nh, Lbl::Accept, Lbl::Next);
    }
    a.op(BPF_RET_K, 0);
    a.label(Lbl::Drop);
    a.op(BPF_RET_K, 0);
    a.label(Lbl::Accept);
    // Whole packet: the kernel clamps to the real length.
    a.op(BPF_RET_K, u32::MAX);
    a.finish()
}
