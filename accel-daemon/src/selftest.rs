//! Self-test before ready: prove on this very kernel, byte for byte, that
//! a loopback connection is paired and redirected.
//!
//! The traffic runs in a child process placed in its own short-lived child
//! cgroup of the attach cgroup, so it exercises the real attachment and
//! touches nothing else on the node.

use std::{
    fs,
    io::{Read, Write},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream},
    os::{fd::AsRawFd, unix::process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use accel_bpf::{
    abi::{DECISION_REDIRECT, SockState},
    map,
};
use anyhow::{Context, Result, anyhow, bail, ensure};
use aya::maps::{Map, MapData, SkStorage};
use serde::{Deserialize, Serialize};

const SIZES: &[usize] = &[1, 100, 1500, 65_536, 1 << 20];
const TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Serialize, Deserialize)]
pub struct WorkerReport {
    pub families: Vec<String>,
    pub bytes_each_way: u64,
    pub redirected_bytes: u64,
}

/// Runs the worker in `<cgroup>/accel-selftest-<pid>` against the staged
/// pins, its sockets owned by `proxy_uid` (the sidecar proxy's, which every
/// mode accelerates).
pub fn run(cgroup: &Path, pin_dir: &Path, proxy_uid: u32) -> Result<WorkerReport> {
    let child_cg = cgroup.join(format!("accel-selftest-{}", std::process::id()));
    let _ = fs::remove_dir(&child_cg);
    fs::create_dir(&child_cg)
        .with_context(|| format!("creating self-test cgroup {}", child_cg.display()))?;
    let guard = CgroupGuard(child_cg.clone());
    let procs = fs::OpenOptions::new()
        .write(true)
        .open(child_cg.join("cgroup.procs"))
        .with_context(|| format!("opening {}/cgroup.procs", child_cg.display()))?;
    let procs_fd = procs.as_raw_fd();

    let exe = std::env::current_exe().context("locating own executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("self-test-worker")
        .arg("--pin-dir")
        .arg(pin_dir)
        .arg("--as-uid")
        .arg(proxy_uid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only an async-signal-safe write(2) on an fd opened before fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::write(procs_fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("spawning self-test worker")?;
    drop(procs);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("self-test worker did not finish within {TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.stdout.take() {
        s.read_to_string(&mut out)?;
    }
    if let Some(mut s) = child.stderr.take() {
        s.read_to_string(&mut err)?;
    }
    drop(guard);
    ensure!(status.success(), "worker failed: {}", err.trim());
    serde_json::from_str(out.trim()).context("parsing worker report")
}

struct CgroupGuard(PathBuf);

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        // The worker has exited, so the cgroup is empty and rmdir works;
        // retry briefly because the kernel frees the task asynchronously.
        for _ in 0..50 {
            if fs::remove_dir(&self.0).is_ok() || !self.0.exists() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!(cgroup = %self.0.display(), "could not remove self-test cgroup");
    }
}

/// The worker body (runs inside the self-test cgroup).
pub fn worker(pin_dir: &Path, as_uid: u32) -> Result<WorkerReport> {
    let data = MapData::from_pin(pin_dir.join(map::SOCK_STATE.name))
        .context("opening the socket-state map pin")?;
    // A socket's owner (sk_uid) is the creator's fsuid; only this thread
    // creates sockets, and an accepted one inherits its listener's owner.
    // SAFETY: setfsuid has no memory effects; it cannot fail for root.
    unsafe { libc::setfsuid(as_uid) };
    let storage: SkStorage<MapData, SockState> =
        SkStorage::try_from(Map::SkStorage(data)).context("socket-state map type")?;
    let mut families = Vec::new();
    let mut redirected = 0;
    let total: u64 = SIZES.iter().map(|s| *s as u64).sum();
    let addrs: [SocketAddr; 2] = [
        (Ipv4Addr::LOCALHOST, 0).into(),
        (Ipv6Addr::LOCALHOST, 0).into(),
    ];
    for addr in addrs {
        let listener = match TcpListener::bind(addr) {
            Ok(l) => l,
            // A host without IPv6 loopback still passes on IPv4.
            Err(_) if addr.is_ipv6() => continue,
            Err(e) => return Err(e).context("binding loopback listener"),
        };
        let (client, server) = connect_pair(&listener)?;
        echo_exchange(&client, &server)?;
        for (side, sock) in [("client", &client), ("server", &server)] {
            let st = storage
                .get(sock, 0)
                .map_err(|e| anyhow!("{side} socket was not recorded by sock_ops: {e}"))?;
            ensure!(
                st.decision == DECISION_REDIRECT,
                "{side} socket decided {} (reason {}), expected redirect",
                st.decision,
                st.reason
            );
            ensure!(
                st.redirected_bytes == total,
                "{side} socket redirected {} of {total} bytes",
                st.redirected_bytes
            );
            redirected += st.redirected_bytes;
        }
        families.push(if addr.is_ipv4() { "ipv4" } else { "ipv6" }.to_string());
    }
    Ok(WorkerReport {
        families,
        bytes_each_way: total,
        redirected_bytes: redirected,
    })
}

fn connect_pair(listener: &TcpListener) -> Result<(TcpStream, TcpStream)> {
    let client = TcpStream::connect(listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    for s in [&client, &server] {
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.set_write_timeout(Some(Duration::from_secs(5)))?;
    }
    Ok((client, server))
}

/// Client sends each size, server echoes it back; both compare every byte.
fn echo_exchange(client: &TcpStream, server: &TcpStream) -> Result<()> {
    let mut server_r = server.try_clone()?;
    let echo = thread::spawn(move || -> Result<()> {
        for &n in SIZES {
            let mut buf = vec![0u8; n];
            server_r.read_exact(&mut buf)?;
            ensure!(
                buf == pattern(n, 7),
                "server received corrupted {n}-byte message"
            );
            server_r.write_all(&pattern(n, 13))?;
        }
        Ok(())
    });
    let mut c = client.try_clone()?;
    for &n in SIZES {
        c.write_all(&pattern(n, 7))?;
        let mut buf = vec![0u8; n];
        c.read_exact(&mut buf)?;
        ensure!(
            buf == pattern(n, 13),
            "client received corrupted {n}-byte reply"
        );
    }
    echo.join().map_err(|_| anyhow!("echo thread panicked"))?
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}
