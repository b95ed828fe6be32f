//! `app-proxy`: an application talking to its sidecar, as in a pod.
//!
//! The sidecar end's sockets belong to the proxy's user (uid 1337) and use
//! non-blocking I/O driven by poll, as Envoy does. The application end uses
//! the I/O style under test: blocking, non-blocking (from socket creation
//! or accept4), non-blocking sizing each read with `FIONREAD` (nginx, Java's
//! `available()`, .NET's `Socket.Available`), or a connect with a timeout
//! (non-blocking connect, then blocking I/O: C client libraries and classic
//! Java do this). Each
//! connection exchanges request/answer rounds, then the application shuts
//! down writing and reads the sidecar's last answer to EOF: a blocking read
//! after our own FIN, the shape that showed EAGAIN on sockhash sockets.
//! Every byte is compared; any EAGAIN on a blocking socket is an error.

use std::{
    io::{self, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    os::fd::{AsRawFd, FromRawFd},
    time::Duration,
};

use anyhow::{Context, Result, bail, ensure};
use serde_json::json;

use accel_test_harness::pattern;

use crate::{
    io::{fionread, peek_one, poll_fd, set_nonblocking, write_all_polling},
    owner::{self, End},
};

/// How the application end does its I/O.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AppIo {
    Blocking,
    Nonblocking,
    /// Non-blocking; after each poll it asks `FIONREAD` how much to read,
    /// and a 0 while a byte is readable is an error.
    Fionread,
    /// Client only: non-blocking connect, then blocking.
    ConnectTimeout,
}

#[derive(clap::Args, Debug)]
pub struct AppProxyArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    #[arg(long, default_value_t = 20)]
    pub conns: usize,
    #[arg(long, default_value_t = 20)]
    pub rounds: usize,
    #[arg(long, default_value_t = 65536)]
    pub max_msg: u64,
    #[arg(long, value_enum)]
    pub app: AppIo,
    #[arg(long, value_enum)]
    pub app_side: End,
    /// The sidecar sends a greeting first, which the application reads
    /// before it sends anything (SMTP, MySQL, SSH: server speaks first).
    #[arg(long)]
    pub sidecar_first: bool,
    /// Bind the listener, print `listening ADDR`, and connect only after a
    /// line on stdin (a listener older than the datapath).
    #[arg(long)]
    pub hold: bool,
}

const POLL: Duration = Duration::from_secs(30);

/// Blocking or poll-driven reads and writes on one socket.
struct Io {
    s: TcpStream,
    polled: bool,
    /// Sizes each read with FIONREAD (polled only).
    fionread: bool,
    eagain: u64,
}

impl Io {
    fn new(s: TcpStream, polled: bool, fionread: bool) -> Self {
        Io {
            s,
            polled,
            fionread: polled && fionread,
            eagain: 0,
        }
    }

    /// How many bytes to read next, as a FIONREAD reader decides: what
    /// FIONREAD announces, or 1 where it says 0 and the socket is at EOF or
    /// in error (the read then returns what plain TCP gives).
    fn fionread_size(&mut self, want: usize) -> Result<usize> {
        let fd = self.s.as_raw_fd();
        loop {
            ensure!(poll_fd(fd, libc::POLLIN, POLL)?, "poll timed out");
            let avail = fionread(fd)?;
            if avail > 0 {
                return Ok(avail.min(want));
            }
            match peek_one(fd) {
                Ok(0) => return Ok(1), // EOF: the read returns 0
                Ok(_) => bail!("FIONREAD said 0 while a byte was readable"),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {} // an empty wake-up
                Err(_) => return Ok(1), // a socket error: the read reports it
            }
        }
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        let mut got = 0;
        while got < buf.len() {
            let end = if self.fionread {
                got + self.fionread_size(buf.len() - got)?
            } else {
                buf.len()
            };
            match self.s.read(&mut buf[got..end]) {
                Ok(0) => bail!("EOF after {got} of {} bytes", buf.len()),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && self.polled => {
                    ensure!(
                        poll_fd(self.s.as_raw_fd(), libc::POLLIN, POLL)?,
                        "poll timed out"
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.eagain += 1;
                    bail!("a BLOCKING read returned EAGAIN after {got} bytes");
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("read"),
            }
        }
        Ok(())
    }

    fn read_eof(&mut self) -> Result<()> {
        let mut b = [0u8; 1];
        match self.read_exact(&mut b) {
            Err(e) if e.to_string().starts_with("EOF after 0") => Ok(()),
            Err(e) => Err(e),
            Ok(()) => bail!("bytes after the last answer"),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> Result<()> {
        if self.polled {
            return write_all_polling(self.s.as_raw_fd(), buf, POLL);
        }
        self.s.write_all(buf).context("write")
    }
}

fn seed(conn: usize, round: usize, from_app: bool) -> u64 {
    ((conn as u64) << 32) | ((round as u64) << 1) | u64::from(from_app)
}

fn size(conn: usize, round: usize, max: u64) -> usize {
    pattern::Rng::new(seed(conn, round, true)).log_size(max) as usize
}

/// The application's side of one connection.
fn app_side(mut io: Io, conn: usize, a: &AppProxyArgs) -> Result<u64> {
    if a.sidecar_first {
        let mut g = vec![0u8; 64];
        io.read_exact(&mut g)?;
        ensure!(g == pattern::bytes(seed(conn, 0, false), 0, 64), "greeting");
    }
    for r in 0..a.rounds {
        let n = size(conn, r, a.max_msg);
        io.write_all(&pattern::bytes(seed(conn, r, true), 0, n))?;
        let mut back = vec![0u8; n];
        io.read_exact(&mut back)
            .with_context(|| format!("round {r}"))?;
        ensure!(
            back == pattern::bytes(seed(conn, r, false), 0, n),
            "round {r}: wrong answer"
        );
    }
    io.s.shutdown(Shutdown::Write)?;
    let mut last = vec![0u8; 1000];
    io.read_exact(&mut last)
        .context("after shutdown(SHUT_WR)")?;
    ensure!(
        last == pattern::bytes(seed(conn, a.rounds, false), 0, 1000),
        "wrong last answer"
    );
    io.read_eof().context("EOF after the last answer")?;
    Ok(io.eagain)
}

/// The sidecar's side: answer each request with as many bytes of its own.
fn sidecar_side(mut io: Io, conn: usize, a: &AppProxyArgs) -> Result<()> {
    if a.sidecar_first {
        io.write_all(&pattern::bytes(seed(conn, 0, false), 0, 64))?;
    }
    for r in 0..a.rounds {
        let n = size(conn, r, a.max_msg);
        let mut req = vec![0u8; n];
        io.read_exact(&mut req)?;
        ensure!(
            req == pattern::bytes(seed(conn, r, true), 0, n),
            "round {r}: wrong request"
        );
        io.write_all(&pattern::bytes(seed(conn, r, false), 0, n))?;
    }
    io.read_eof().context("application's FIN")?;
    io.write_all(&pattern::bytes(seed(conn, a.rounds, false), 0, 1000))?;
    io.s.shutdown(Shutdown::Write)?;
    Ok(())
}

/// accept4 with the flags the application would give it.
fn accept(l: &TcpListener, nonblocking: bool) -> Result<TcpStream> {
    let flags = libc::SOCK_CLOEXEC | if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
    // SAFETY: plain accept4 without an address.
    let fd = unsafe {
        libc::accept4(
            l.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            flags,
        )
    };
    ensure!(fd >= 0, "accept4: {}", io::Error::last_os_error());
    // SAFETY: a fresh fd we own.
    Ok(unsafe { TcpStream::from_raw_fd(fd) })
}

/// connect(), non-blocking from socket creation when asked.
fn connect(to: SocketAddr, nonblocking: bool) -> Result<TcpStream> {
    if !nonblocking {
        return owner::created_by(End::Client, || TcpStream::connect(to)).context("connect");
    }
    let family = if to.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let ty = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: plain socket(2).
    let fd = owner::created_by(End::Client, || unsafe { libc::socket(family, ty, 0) });
    ensure!(fd >= 0, "socket: {}", io::Error::last_os_error());
    // SAFETY: fresh fd we own.
    let s = unsafe { TcpStream::from_raw_fd(fd) };
    let (ss, len) = accel_topology::sock::to_raw(to);
    // SAFETY: a valid sockaddr of length len.
    let r = unsafe { libc::connect(fd, (&ss as *const libc::sockaddr_storage).cast(), len) };
    if r < 0 {
        let e = io::Error::last_os_error();
        ensure!(e.raw_os_error() == Some(libc::EINPROGRESS), "connect: {e}");
        ensure!(poll_fd(fd, libc::POLLOUT, POLL)?, "connect timed out");
    }
    if let Some(e) = s.take_error()? {
        bail!("connect: {e}");
    }
    Ok(s)
}

pub fn app_proxy(a: AppProxyArgs) -> Result<()> {
    ensure!(
        a.app != AppIo::ConnectTimeout || a.app_side == End::Client,
        "connect-timeout is a client's pattern"
    );
    owner::set_sidecar_end(Some(match a.app_side {
        End::Client => End::Server,
        End::Server => End::Client,
    }));
    let listener = owner::created_by(End::Server, || TcpListener::bind(a.listen))?;
    let target = listener.local_addr()?;
    if a.hold {
        println!("listening {target}");
        io::stdout().flush()?;
        io::stdin()
            .read_line(&mut String::new())
            .context("waiting for the go line")?;
    }
    let a = std::sync::Arc::new(a);
    let app_polled = a.app != AppIo::Blocking && a.app != AppIo::ConnectTimeout;
    let app_fionread = a.app == AppIo::Fionread;
    let server = {
        let a = a.clone();
        std::thread::spawn(move || -> Vec<Result<u64>> {
            let mut handles = Vec::new();
            for _ in 0..a.conns {
                let a = a.clone();
                let nb = a.app_side == End::Client || app_polled;
                let s = match accept(&listener, nb) {
                    Ok(s) => s,
                    Err(e) => return vec![Err(e)],
                };
                handles.push(std::thread::spawn(move || {
                    // Both ends name a connection by the client's port:
                    // accept order is not connect order.
                    let conn = usize::from(s.peer_addr()?.port());
                    let app = a.app_side == End::Server;
                    let io = Io::new(s, nb, app && app_fionread);
                    if app {
                        app_side(io, conn, &a)
                    } else {
                        sidecar_side(io, conn, &a).map(|()| 0)
                    }
                }));
            }
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| bail!("panicked")))
                .collect()
        })
    };
    let mut clients = Vec::new();
    for _ in 0..a.conns {
        let a = a.clone();
        clients.push(std::thread::spawn(move || -> Result<u64> {
            let app = a.app_side == End::Client;
            let nb = !app || a.app != AppIo::Blocking;
            let s = connect(target, nb)?;
            let conn = usize::from(s.local_addr()?.port());
            let polled = !app || app_polled;
            if !polled {
                set_nonblocking(s.as_raw_fd(), false)?;
            }
            let io = Io::new(s, polled, app && app_fionread);
            if app {
                app_side(io, conn, &a)
            } else {
                sidecar_side(io, conn, &a).map(|()| 0)
            }
        }));
    }
    let mut errors = Vec::new();
    let mut eagain = 0;
    let results = clients
        .into_iter()
        .map(|h| h.join().unwrap_or_else(|_| bail!("panicked")))
        .chain(
            server
                .join()
                .unwrap_or_else(|_| vec![Err(anyhow::anyhow!("panicked"))]),
        );
    for r in results {
        match r {
            Ok(n) => eagain += n,
            Err(e) => {
                if format!("{e:#}").contains("EAGAIN") {
                    eagain += 1;
                }
                errors.push(format!("{e:#}"));
            }
        }
    }
    errors.truncate(20);
    crate::commands::print_report(&json!({
        "conns": a.conns,
        "app": a.app,
        "app_side": a.app_side,
        "eagain_on_blocking": eagain,
        "errors": errors,
    }))?;
    ensure!(errors.is_empty(), "{} errors", errors.len());
    Ok(())
}
