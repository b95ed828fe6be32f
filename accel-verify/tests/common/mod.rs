//! What the root capture tests share: the root check, a private network
//! namespace with `lo` up, and a client/server pair that ping-pongs inside it.
// Each test file uses part of it.
#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use accel_verify::capture::NetnsTarget;

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "accel-verify integration tests need root (network namespaces + AF_PACKET); \
         run them as root, e.g. `sudo -E cargo test -p accel-verify`. Refusing to skip."
    );
}

/// Whether this test may run: as root, always. Without root (a plain
/// `cargo test` from the workspace root) it says on the terminal, past the
/// test harness's output capture, that it did not run and how to run it.
pub fn root_or_say_how(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    let _ = writeln!(
        std::io::stderr(),
        "NOT RUN (needs root): accel-verify {test} opens network namespaces and \
         AF_PACKET sockets; run `sudo -E cargo test -p accel-verify --test 'netns_capture_*'` \
         or scripts/test.sh"
    );
    false
}

/// A private network namespace with `lo` up, deleted on drop (also when the
/// test panics).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Netns {
        require_root();
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "accel-verify-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        run_ok(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]));
        ns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    pub fn target(&self) -> NetnsTarget {
        NetnsTarget::Path(self.path())
    }

    /// Runs `f` on a fresh thread that has entered this namespace.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let file = File::open(self.path()).expect("open netns file");
        std::thread::spawn(move || {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("netns thread panicked")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

pub fn run_ok(cmd: &mut Command) {
    let out = cmd.output().expect("spawn command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A client/server pair that exchanges `rounds` request/response messages.
pub struct Pair {
    client: TcpStream,
    server: TcpStream,
}

impl Pair {
    pub fn connect(listener: &TcpListener) -> Pair {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        // NODELAY + strict ping-pong: each write is exactly one PSH segment.
        client.set_nodelay(true).unwrap();
        server.set_nodelay(true).unwrap();
        Pair { client, server }
    }

    pub fn endpoints(&self) -> (SocketAddr, SocketAddr) {
        (
            self.client.local_addr().unwrap(),
            self.server.local_addr().unwrap(),
        )
    }

    pub fn ping_pong(&mut self, rounds: usize) {
        let mut req = [0u8; 100];
        let mut resp = [0u8; 50];
        for i in 0..rounds {
            self.client.write_all(&[i as u8; 100]).unwrap();
            self.server.read_exact(&mut req).unwrap();
            self.server.write_all(&[i as u8; 50]).unwrap();
            self.client.read_exact(&mut resp).unwrap();
        }
    }

    pub fn close(self) {
        let Pair { client, mut server } = self;
        drop(client);
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).unwrap();
        drop(server);
    }
}

pub fn ns_inode(path: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().ino()
}
