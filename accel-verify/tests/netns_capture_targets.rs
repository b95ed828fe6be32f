//! Root integration tests of what a capture is pointed at: the port filter
//! runs in the kernel, a pid names its network namespace, and every wrong
//! target or missing privilege (unknown interface, missing netns, no such
//! pid, not a netns, bad interface name, both netns and pid, no
//! CAP_NET_RAW) is an error that says what to do.
//!
//! Need root (CAP_SYS_ADMIN for namespaces, CAP_NET_RAW for packet sockets);
//! without it each test says that it did not run and how to run it.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use accel_verify::capture::{self, CaptureConfig, NetnsTarget};
use accel_verify::{Filter, Report, VerifyArgs, VerifyError};

use common::{Netns, Pair, ns_inode, require_root, root_or_say_how};

#[test]
fn port_filter_runs_in_kernel_and_pid_target_works() {
    if !root_or_say_how("port_filter_runs_in_kernel_and_pid_target_works") {
        return;
    }
    let ns = Netns::new();
    // A process living in the namespace, to address it by pid.
    let mut sleeper = Command::new("ip")
        .args(["netns", "exec", &ns.name, "sleep", "60"])
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let pid = sleeper.id();
    let _guard = Kill(&mut sleeper);
    // `ip netns exec` execs in place; wait until the pid is in the netns.
    let want = ns_inode(ns.path().to_str().unwrap());
    for _ in 0..100 {
        if std::fs::metadata(format!("/proc/{pid}/ns/net"))
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .ok()
            == Some(want)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let (l1, l2) = ns.run(|| {
        (
            TcpListener::bind("127.0.0.1:0").unwrap(),
            TcpListener::bind("127.0.0.1:0").unwrap(),
        )
    });
    let port = l1.local_addr().unwrap().port();
    let cancel = Arc::new(AtomicBool::new(false));
    let cfg = CaptureConfig {
        netns: NetnsTarget::Pid(pid),
        filter: Filter {
            port: Some(port),
            host: Some("127.0.0.1".parse().unwrap()),
        },
        duration: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    let h = capture::spawn(cfg.clone(), cancel.clone(), None).unwrap();
    let (l1, l2) = ns.run(move || {
        for l in [&l1, &l2, &l1] {
            let mut p = Pair::connect(l);
            p.ping_pong(3);
            p.close();
        }
        (l1, l2)
    });
    std::thread::sleep(Duration::from_millis(200));
    cancel.store(true, Ordering::SeqCst);
    let out = h.join().unwrap();
    drop((l1, l2));
    let report = Report::from_capture(&out, &cfg, None);
    assert_eq!(report.netns, format!("pid:{pid}"));
    assert_eq!(report.connections.len(), 2, "{}", report.render_table());
    assert!(report.connections.iter().all(|c| c.key.has_port(port)));
    // The kernel filter already dropped the other port's traffic: every
    // frame that reached userspace was a match.
    assert_eq!(out.stats.frames_received, out.stats.matched_segments);
    assert!(out.stats.matched_segments > 0);
    assert!(
        report
            .tcpdump_command
            .starts_with(&format!("nsenter -t {pid} -n tcpdump"))
    );
}

#[test]
fn operator_errors() {
    if !root_or_say_how("operator_errors") {
        return;
    }
    require_root();
    let ns = Netns::new();
    let cancel = || Arc::new(AtomicBool::new(false));
    let err = |cfg: CaptureConfig| capture::spawn(cfg, cancel(), None).unwrap_err();

    let e = err(CaptureConfig {
        interface: "nosuch0".into(),
        netns: ns.target(),
        ..Default::default()
    });
    assert!(matches!(e, VerifyError::UnknownInterface { .. }), "{e}");
    assert!(e.to_string().contains("ip link") && e.to_string().contains("nosuch0"));

    let e = err(CaptureConfig {
        netns: NetnsTarget::Path("/run/netns/accel-verify-does-not-exist".into()),
        ..Default::default()
    });
    assert!(matches!(e, VerifyError::NetnsNotFound(_)), "{e}");
    assert!(e.to_string().contains("ip netns list"));

    let e = err(CaptureConfig {
        netns: NetnsTarget::Pid(u32::MAX - 1),
        ..Default::default()
    });
    assert!(matches!(e, VerifyError::NoSuchPid(_)), "{e}");

    let e = err(CaptureConfig {
        netns: NetnsTarget::Path("/etc/hostname".into()),
        ..Default::default()
    });
    assert!(matches!(e, VerifyError::NotANetns(_)), "{e}");

    let e = err(CaptureConfig {
        interface: "x".repeat(20),
        ..Default::default()
    });
    assert!(matches!(e, VerifyError::BadInterfaceName(_)), "{e}");

    let both = VerifyArgs {
        netns: Some(ns.path()),
        pid: Some(1),
        ..Default::default()
    };
    let e = accel_verify::run(&both, None).unwrap_err();
    assert!(e.to_string().contains("only one"), "{e}");
}

/// An unprivileged caller must get the "needs root / CAP_NET_RAW" error.
/// Linux credentials are per thread and the raw setresuid syscall (unlike
/// glibc's wrapper) changes only the calling thread, so this thread drops
/// root and the capture thread it spawns inherits that, while the rest of
/// the test process stays root.
#[test]
fn permission_denied_without_cap_net_raw() {
    if !root_or_say_how("permission_denied_without_cap_net_raw") {
        return;
    }
    require_root();
    let e = std::thread::spawn(|| {
        // SAFETY: plain syscall affecting only this thread's credentials.
        let rc = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
        assert_eq!(rc, 0, "setresuid: {}", std::io::Error::last_os_error());
        capture::spawn(
            CaptureConfig::default(),
            Arc::new(AtomicBool::new(false)),
            None,
        )
        .map(|h| h.cancel())
        .unwrap_err()
    })
    .join()
    .unwrap();
    assert!(matches!(e, VerifyError::PermissionDenied { .. }), "{e}");
    assert!(e.to_string().contains("CAP_NET_RAW"), "{e}");
}
