//! Socket plumbing std does not offer, used by the `accel-pod` binary and
//! accel-bench: listeners, original destination, source bind.

use std::{
    io::{self, Read, Write},
    mem,
    net::{
        IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener, TcpStream,
    },
    os::fd::FromRawFd,
    thread,
};

const SO_ORIGINAL_DST: libc::c_int = 80;
const IP6T_SO_ORIGINAL_DST: libc::c_int = 80;

pub(crate) fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

pub fn to_raw(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in6.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

pub(crate) fn from_raw(ss: &libc::sockaddr_storage) -> io::Result<SocketAddr> {
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: family says sockaddr_in.
            let sin: libc::sockaddr_in =
                unsafe { std::ptr::read((ss as *const libc::sockaddr_storage).cast()) };
            Ok(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: family says sockaddr_in6.
            let sin6: libc::sockaddr_in6 =
                unsafe { std::ptr::read((ss as *const libc::sockaddr_storage).cast()) };
            Ok(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                0,
                sin6.sin6_scope_id,
            )))
        }
        f => Err(io::Error::other(format!("unexpected address family {f}"))),
    }
}

pub(crate) fn socket(addr: &SocketAddr) -> io::Result<libc::c_int> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2).
    cvt(unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })
}

pub(crate) fn setopt(
    fd: libc::c_int,
    level: libc::c_int,
    opt: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: setsockopt with an int option.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// A listener with SO_REUSEADDR and, for IPv6, IPV6_V6ONLY (so the same
/// port can be held by another process for IPv4).
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let fd = socket(&addr)?;
    // SAFETY: fd is ours; TcpListener closes it on drop (also on error below).
    let l = unsafe { TcpListener::from_raw_fd(fd) };
    setopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    if addr.is_ipv6() {
        setopt(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
    }
    let (ss, len) = to_raw(addr);
    // SAFETY: valid sockaddr of length len.
    cvt(unsafe { libc::bind(fd, (&ss as *const libc::sockaddr_storage).cast(), len) })?;
    // SAFETY: plain listen(2).
    cvt(unsafe { libc::listen(fd, 1024) })?;
    Ok(l)
}

/// The destination before NAT (REDIRECT) of an accepted connection:
/// `SO_ORIGINAL_DST` for IPv4, `IP6T_SO_ORIGINAL_DST` for IPv6.
pub fn original_dst(s: &TcpStream) -> io::Result<SocketAddr> {
    use std::os::fd::AsRawFd;
    let (level, opt) = if s.local_addr()?.is_ipv4() {
        (libc::SOL_IP, SO_ORIGINAL_DST)
    } else {
        (libc::SOL_IPV6, IP6T_SO_ORIGINAL_DST)
    };
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getsockopt into a buffer of len bytes.
    cvt(unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            level,
            opt,
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    })?;
    from_raw(&ss)
}

/// connect(2) to `dst` from `src` (port chosen by the kernel).
pub fn connect_from(src: IpAddr, dst: SocketAddr) -> io::Result<TcpStream> {
    let fd = socket(&dst)?;
    // SAFETY: fd is ours; TcpStream closes it on drop.
    let s = unsafe { TcpStream::from_raw_fd(fd) };
    let (ss, len) = to_raw(SocketAddr::new(src, 0));
    // SAFETY: valid sockaddr.
    cvt(unsafe { libc::bind(fd, (&ss as *const libc::sockaddr_storage).cast(), len) })?;
    let (ss, len) = to_raw(dst);
    // SAFETY: valid sockaddr; blocking connect.
    cvt(unsafe { libc::connect(fd, (&ss as *const libc::sockaddr_storage).cast(), len) })?;
    Ok(s)
}

/// connect(2) to `dst` from exactly `src` (address AND port), with
/// SO_REUSEADDR so several sockets can share that source at once.
pub fn connect_reusing(src: SocketAddr, dst: SocketAddr) -> io::Result<TcpStream> {
    let fd = socket(&dst)?;
    // SAFETY: fd is ours; TcpStream closes it on drop.
    let s = unsafe { TcpStream::from_raw_fd(fd) };
    setopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    let (ss, len) = to_raw(src);
    // SAFETY: valid sockaddr.
    cvt(unsafe { libc::bind(fd, (&ss as *const libc::sockaddr_storage).cast(), len) })?;
    let (ss, len) = to_raw(dst);
    // SAFETY: valid sockaddr; blocking connect.
    cvt(unsafe { libc::connect(fd, (&ss as *const libc::sockaddr_storage).cast(), len) })?;
    Ok(s)
}

/// Drops to `uid`/`gid` with no supplementary groups.
pub fn drop_privileges(uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: plain credential syscalls.
    unsafe {
        cvt(libc::setgroups(0, std::ptr::null()))?;
        cvt(libc::setgid(gid))?;
        cvt(libc::setuid(uid))?;
    }
    Ok(())
}

/// Copies both ways until both sides are done, propagating half-closes.
pub fn splice_both(a: TcpStream, b: TcpStream) {
    let (a2, b2) = match (a.try_clone(), b.try_clone()) {
        (Ok(a2), Ok(b2)) => (a2, b2),
        _ => return,
    };
    let t = thread::spawn(move || copy_half(a2, b2));
    copy_half(b, a);
    let _ = t.join();
}

/// Writes back everything read from `s` until EOF, then half-closes: an
/// echo server's connection.
pub fn echo_until_eof(s: TcpStream) {
    if let Ok(w) = s.try_clone() {
        copy_half(s, w);
    }
}

pub(crate) fn copy_half(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}
