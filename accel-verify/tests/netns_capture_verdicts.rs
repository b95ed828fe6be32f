//! Root integration tests of whole verify runs in a private network
//! namespace: a connection whose handshake predates the window is Unknown
//! and counts neither for nor against `--expect`, and a window with nothing
//! conclusive exits inconclusive, stopped by its duration or packet budget.
//!
//! Need root (CAP_SYS_ADMIN for namespaces, CAP_NET_RAW for packet sockets);
//! without it each test says that it did not run and how to run it.

mod common;

use std::fs::File;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use accel_verify::capture;
use accel_verify::{
    EXIT_EXPECTATION_FAILED, EXIT_INCONCLUSIVE, EXIT_OK, Expectation, Report, StopReason, Verdict,
    VerifyArgs,
};

use common::{Netns, Pair, root_or_say_how};

/// Starts `run_with` on a thread and waits until its socket is bound (the
/// first progress callback fires from inside the capture loop).
fn start_run(args: VerifyArgs, cancel: Arc<AtomicBool>) -> std::thread::JoinHandle<(Report, i32)> {
    let (tx, rx) = mpsc::sync_channel(1);
    let h = std::thread::spawn(move || {
        let cb = Box::new(move |p: &capture::Progress| {
            let _ = tx.try_send(p.packets);
        });
        accel_verify::run_with(&args, None, cancel, Some(cb)).unwrap()
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("capture did not start");
    h
}

#[test]
fn unknown_when_handshake_outside_window_and_expect_codes() {
    if !root_or_say_how("unknown_when_handshake_outside_window_and_expect_codes") {
        return;
    }
    let ns = Netns::new();
    // Established before the capture starts.
    let (tx_go, rx_go) = mpsc::channel::<()>();
    let (tx_ep, rx_ep) = mpsc::channel();
    let ns_path = ns.path();
    let early = std::thread::spawn(move || {
        let f = File::open(&ns_path).unwrap();
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut p = Pair::connect(&listener);
        p.ping_pong(1);
        tx_ep
            .send((p.endpoints(), listener.local_addr().unwrap()))
            .unwrap();
        rx_go.recv().unwrap();
        p.ping_pong(4);
        // A fresh connection to the same port, fully inside the window.
        let mut q = Pair::connect(&listener);
        q.ping_pong(2);
        let fresh = q.endpoints();
        q.close();
        p.close();
        fresh
    });
    let ((ec, es), server) = rx_ep.recv().unwrap();

    let cancel = Arc::new(AtomicBool::new(false));
    let args = |expect| VerifyArgs {
        netns: Some(ns.path()),
        port: Some(server.port()),
        duration: Some(Duration::from_secs(60)),
        expect: Some(expect),
        ..Default::default()
    };
    let run_a = start_run(args(Expectation::NotAccelerated), cancel.clone());
    let run_b = start_run(args(Expectation::Accelerated), cancel.clone());
    tx_go.send(()).unwrap();
    let (fc, fs) = early.join().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    cancel.store(true, Ordering::SeqCst);
    let (report, code) = run_a.join().unwrap();
    let (_, code_b) = run_b.join().unwrap();
    eprintln!("{}", report.render_table());

    let old = report.find(ec, es).expect("pre-existing connection");
    assert_eq!(old.verdict, Verdict::Unknown);
    assert!(!old.handshake_seen);
    assert_eq!(
        old.stats.psh_data_segments, 8,
        "4 rounds seen in the window"
    );
    let new = report.find(fc, fs).expect("fresh connection");
    assert!(matches!(new.verdict, Verdict::NotAccelerated { .. }));
    assert_eq!(new.stats.psh_data_segments, 4);
    assert_eq!(report.summary.unknown, 1);
    assert_eq!(report.summary.not_accelerated, 1);
    // Unknown rows do not count against or for the expectation.
    assert_eq!(code, EXIT_OK);
    assert_eq!(code_b, EXIT_EXPECTATION_FAILED);
}

#[test]
fn inconclusive_exit_code_and_stop_conditions() {
    if !root_or_say_how("inconclusive_exit_code_and_stop_conditions") {
        return;
    }
    let ns = Netns::new();
    // Nothing at all in the window.
    let args = VerifyArgs {
        netns: Some(ns.path()),
        duration: Some(Duration::from_millis(300)),
        expect: Some(Expectation::Accelerated),
        ..Default::default()
    };
    let (report, code) = accel_verify::run(&args, None).unwrap();
    assert_eq!(code, EXIT_INCONCLUSIVE);
    assert!(report.connections.is_empty());
    let info = report.capture.as_ref().unwrap();
    assert_eq!(info.stop_reason, StopReason::Duration);
    assert!(
        info.duration_ms >= 300 && info.duration_ms < 2000,
        "{info:?}"
    );

    // Only traffic whose handshake predates the window: still inconclusive.
    let (tx_go, rx_go) = mpsc::channel::<()>();
    let (tx_port, rx_port) = mpsc::channel();
    let ns_path = ns.path();
    let t = std::thread::spawn(move || {
        let f = File::open(&ns_path).unwrap();
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut p = Pair::connect(&listener);
        tx_port.send(listener.local_addr().unwrap().port()).unwrap();
        rx_go.recv().unwrap();
        p.ping_pong(50);
        p
    });
    let port = rx_port.recv().unwrap();
    let cancel = Arc::new(AtomicBool::new(false));
    let budget = VerifyArgs {
        netns: Some(ns.path()),
        port: Some(port),
        packets: Some(10),
        expect: Some(Expectation::NotAccelerated),
        ..Default::default()
    };
    let h = start_run(budget, cancel.clone());
    tx_go.send(()).unwrap();
    let pair = t.join().unwrap();
    let (report, code) = h.join().unwrap();
    let info = report.capture.as_ref().unwrap();
    assert_eq!(info.stop_reason, StopReason::PacketBudget);
    assert_eq!(info.stats.matched_segments, 10);
    assert_eq!(report.summary.unknown, 1);
    assert_eq!(code, EXIT_INCONCLUSIVE);
    drop(pair);
}
