//! One load-generator connection: sends a request of its protocol (HTTP
//! GET, echo, connect) and reads and checks the answer.

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, Result, ensure};

use super::{LoadArgs, Proto};

/// One client connection and its protocol.
pub(super) struct Conn {
    target: SocketAddr,
    proto: Proto,
    request: Vec<u8>,
    size: usize,
    expected: Arc<Vec<u8>>,
    check_body: bool,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    pub(super) fn new(a: &LoadArgs, expected: Arc<Vec<u8>>) -> Conn {
        let request = match a.proto {
            Proto::Http => format!(
                "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: accel-bench\r\n\r\n",
                a.path,
                a.target.ip()
            )
            .into_bytes(),
            Proto::Tcp => expected.to_vec(),
            Proto::Connect => vec![b'x'],
        };
        Conn {
            target: a.target,
            proto: a.proto,
            request,
            size: a.size,
            expected,
            check_body: a.expect_pattern,
            stream: None,
            buf: vec![0; 64 * 1024],
        }
    }

    fn connect(&self) -> io::Result<TcpStream> {
        let s = TcpStream::connect_timeout(&self.target, Duration::from_secs(5))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(s)
    }

    pub(super) fn ensure(&mut self) -> Result<()> {
        if self.stream.is_none() && self.proto != Proto::Connect {
            self.stream = Some(
                self.connect()
                    .with_context(|| format!("connecting to {}", self.target))?,
            );
        }
        Ok(())
    }

    pub(super) fn reset(&mut self) {
        self.stream = None;
    }

    /// One request; returns the application bytes moved (both directions).
    pub(super) fn request(&mut self) -> Result<u64> {
        match self.proto {
            Proto::Connect => self.connect_once(),
            Proto::Tcp => {
                self.ensure()?;
                let s = self.stream.as_mut().context("no connection")?;
                s.write_all(&self.request).context("send")?;
                let mut got = 0;
                while got < self.size {
                    let want = (self.size - got).min(self.buf.len());
                    let n = s.read(&mut self.buf[..want]).context("recv")?;
                    ensure!(n > 0, "echo server closed the connection");
                    ensure!(
                        self.buf[..n] == self.expected[got..got + n],
                        "echoed bytes differ at offset {got}"
                    );
                    got += n;
                }
                Ok(2 * self.size as u64)
            }
            Proto::Http => {
                self.ensure()?;
                self.http_get()
            }
        }
    }

    fn connect_once(&mut self) -> Result<u64> {
        let mut s = self.connect().context("connect")?;
        s.write_all(&self.request).context("send")?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).context("recv")?;
        ensure!(b == [b'x'], "echo returned {b:?}");
        // RST instead of FIN: no TIME_WAIT, so the port range never runs out.
        let l = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt on a socket we own with a correctly sized value.
        unsafe {
            use std::os::fd::AsRawFd;
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&l as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
        Ok(2)
    }

    fn http_get(&mut self) -> Result<u64> {
        let s = self.stream.as_mut().context("no connection")?;
        s.write_all(&self.request).context("send")?;
        // Headers: read until the blank line.
        let mut head = Vec::with_capacity(512);
        let body_start = loop {
            let n = s.read(&mut self.buf).context("recv")?;
            ensure!(n > 0, "server closed the connection");
            head.extend_from_slice(&self.buf[..n]);
            if let Some(p) = find(&head, b"\r\n\r\n") {
                break p + 4;
            }
            ensure!(head.len() < 64 * 1024, "response header too long");
        };
        let text = std::str::from_utf8(&head[..body_start]).context("header not UTF-8")?;
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .context("no status code")?;
        ensure!(status == 200, "HTTP status {status}");
        let len = text
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .context("no Content-Length")?;
        ensure!(
            len == self.size,
            "Content-Length {len}, expected {}",
            self.size
        );
        let mut body_got = head.len() - body_start;
        ensure!(
            body_got <= len,
            "more bytes than the response (pipelining?)"
        );
        if self.check_body {
            ensure!(
                head[body_start..] == self.expected[..body_got],
                "body differs from the pattern"
            );
        }
        while body_got < len {
            let want = (len - body_got).min(self.buf.len());
            let n = s.read(&mut self.buf[..want]).context("recv body")?;
            ensure!(n > 0, "server closed mid-body");
            if self.check_body {
                ensure!(
                    self.buf[..n] == self.expected[body_got..body_got + n],
                    "body differs from the pattern at offset {body_got}"
                );
            }
            body_got += n;
        }
        Ok((self.request.len() + body_start + len) as u64)
    }
}

pub(super) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
