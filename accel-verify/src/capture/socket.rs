//! Opening the AF_PACKET socket inside the target namespace: interface
//! lookup, socket filter, loopback de-duplication option and bind; plus the
//! small libc wrappers and the kernel drop counter.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::CaptureConfig;
use super::bpf::socket_filter;
use crate::error::{Result, VerifyError};
use crate::frame::LinkType;

// From <linux/if_packet.h>; defined here because not every libc target
// exports them.
pub(super) const PACKET_OUTGOING: u8 = 4;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_STATISTICS: libc::c_int = 6;

pub(super) struct OpenSocket {
    pub(super) fd: OwnedFd,
    pub(super) link: LinkType,
    pub(super) kernel_ignores_outgoing: bool,
}

pub(super) fn last_os_error() -> std::io::Error {
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
pub(super) fn open_in_netns(config: &CaptureConfig, ns_file: Option<File>) -> Result<OpenSocket> {
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

pub(super) fn kernel_drops(fd: RawFd) -> u64 {
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
