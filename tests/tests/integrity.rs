//! Data integrity through accelerated connections (reliability issue,
//! sections 1 and 1b): every byte of every connection is checked against a
//! per-connection, position-dependent stream (accel-integrity's pattern),
//! and every test proves that the path under test really was the sockmap
//! one (redirect counters, zero PSH segments where no fallback is allowed).
//!
//! nginx through two sidecars and the backpressure test are in
//! integrity_mesh.rs; the helpers both use in common/integrity.rs.
//!
//! Default sizes run in CI; `ACCEL_SOAK=1` runs the long variants.

use std::process::Output;

use accel_test_harness::{
    TestEnv, Value,
    traffic::{Delta, assert_clean},
};

#[path = "common/integrity.rs"]
mod integrity_support;

use integrity_support::*;

// ---------------------------------------------------------------------------
// 1. Traffic shapes and interfaces
// ---------------------------------------------------------------------------

/// Every connection is read by one thread and written, blocking, by another
/// at the same time, at both ends; the reading threads poll and read with
/// MSG_DONTWAIT, since a blocking read there can return EAGAIN in `all`
/// (I-5). Blocking readers are covered in the default mode (transparency.rs).
#[test]
fn a_thousand_concurrent_connections_with_random_sizes_are_byte_exact() {
    let (_shared, env, _daemon) = shared_env_with_daemon("int-echo");
    let (conns, msgs) = if soak() {
        ("1000", "40")
    } else {
        ("1000", "6")
    };
    let (out, report, d, counts) = drive_captured(
        &env,
        "echo",
        &[
            "--conns",
            conns,
            "--msgs",
            msgs,
            "--max-msg",
            "65536",
            "--big-conns",
            "16",
            "--big-max",
            "4194304",
        ],
    );
    eprintln!(
        "echo: {report}\ncounters: {}\ncapture: {counts:?}",
        d.show()
    );
    assert_clean("1000 connections", &out, &report);
    let bytes = report["bytes_each_way"].as_u64().expect("bytes");
    let n: u64 = conns.parse().expect("conns");
    assert!(
        d.of("active_paired") >= n && d.of("passive_paired") >= n,
        "every connection paired: {}",
        d.show()
    );
    assert_eq!(d.of("redirect_failed"), 0, "{}", d.show());
    // Both directions, every byte: by redirect, or by TCP where flow control
    // sent a lagging reader's bytes over TCP (counted as pass_bytes).
    assert_eq!(
        d.of("redirect_bytes") + d.of("pass_bytes"),
        2 * bytes,
        "every byte accounted for: {}",
        d.show()
    );
    // The 16 connections with messages up to 4 MiB outrun their echo reader
    // by more than the flow-control budget now and then, and flow control
    // then (correctly) sends by TCP; the other 984 never can.
    assert!(
        d.of("redirect_bytes") > d.of("pass_bytes"),
        "most bytes redirected: {}",
        d.show()
    );
    if d.of("pass_bytes") == 0 {
        assert_eq!(
            counts.psh_data, 0,
            "nothing sent by TCP, yet PSH segments: {counts:?}"
        );
    }
    assert_maps_drained(&env);
}

#[test]
fn every_send_interface_against_every_receive_interface_is_byte_exact() {
    let (_shared, env, _daemon) = shared_env_with_daemon("int-matrix");
    let (conns, bytes, max_msg) = if soak() {
        (4u64, 16u64 << 20, 4u64 << 20)
    } else {
        (2, 2 << 20, 1 << 20)
    };
    let over_budget = bytes + 16 >= FLOW_BUDGET;
    let recv = if over_budget {
        recv_working_over_budget()
    } else {
        RECV_WORKING.to_string()
    };
    let pairs = (SEND_ALL.split(',').count() * recv.split(',').count()) as u64;
    let (out, report, d, counts) = drive_captured(
        &env,
        "stream",
        &[
            "--send",
            SEND_ALL,
            "--recv",
            &recv,
            "--conns",
            &conns.to_string(),
            "--bytes",
            &bytes.to_string(),
            "--max-msg",
            &max_msg.to_string(),
            "--timeout-secs",
            "240",
        ],
    );
    eprintln!(
        "matrix: {report}\ncounters: {}\ncapture: {counts:?}",
        d.show()
    );
    assert_clean("send x receive matrix", &out, &report);
    let n = pairs * conns;
    assert!(d.of("active_paired") >= n, "{}", d.show());
    assert_eq!(d.of("redirect_failed"), 0, "{}", d.show());
    // Each connection also sends a 16-byte header naming its receive mode.
    let total = n * (bytes + 16);
    assert_eq!(
        d.of("redirect_bytes") + d.of("pass_bytes"),
        total,
        "every byte accounted for: {}",
        d.show()
    );
    if !over_budget {
        // A reader cannot lag by more than the whole stream: flow control
        // can never engage, so every byte must have been redirected.
        assert_eq!(d.of("pass_bytes"), 0, "{}", d.show());
        assert_eq!(counts.psh_data, 0, "accelerated, yet PSH: {counts:?}");
    } else {
        // Soak: 16 MiB streams of up to 4 MiB messages do outrun readers;
        // flow control's TCP share is reported, integrity is the subject.
        assert!(d.of("redirect_bytes") > 0, "{}", d.show());
    }
    assert_maps_drained(&env);
}

fn half_close(env: &TestEnv, first: &str, recv: &str) -> (Output, Value, Delta) {
    let conns = if soak() { "500" } else { "50" };
    let (out, report, d) = drive_measured(
        env,
        &[
            "half-close",
            "--first",
            first,
            "--recv",
            recv,
            "--conns",
            conns,
            "--bytes",
            "262144",
            "--timeout-secs",
            if soak() { "600" } else { "60" },
        ],
    );
    eprintln!(
        "half-close first={first} recv={recv}: {report}\ncounters: {}",
        d.show()
    );
    (out, report, d)
}

/// Half-close in both directions (the connecting side shuts down first, or
/// the accepting side does), read by non-blocking readers driven by poll or
/// edge-triggered epoll, which tolerate an empty wake-up: every byte of both
/// halves arrives, in order, then EOF. Blocking readers: see the next test.
#[test]
fn half_close_in_both_directions_delivers_every_byte_then_eof() {
    let (_shared, env, _daemon) = shared_env_with_daemon("int-half");
    for first in ["client", "server"] {
        for recv in ["poll", "epoll-et", "nonblock"] {
            let (out, report, d) = half_close(&env, first, recv);
            assert_clean(&format!("half-close {first} first, {recv}"), &out, &report);
            let conns = report["conns"].as_u64().expect("conns");
            assert!(d.of("active_paired") >= conns, "{}", d.show());
            assert!(
                d.of("redirect_bytes") > 0,
                "half-close traffic was not redirected: {}",
                d.show()
            );
        }
    }
    assert_maps_drained(&env);
}

fn rst(env: &TestEnv, conns: &str, recv: &str) -> (Output, Value, Delta) {
    let (out, report, d) = drive_measured(
        env,
        &[
            "rst",
            "--conns",
            conns,
            "--bytes",
            "4194304",
            "--every",
            "4",
            "--recv",
            recv,
            "--timeout-secs",
            "120",
        ],
    );
    eprintln!("rst (readers: {recv}): {report}\ncounters: {}", d.show());
    (out, report, d)
}

/// A quarter of the connections are reset mid-stream (SO_LINGER 0 close),
/// half of those by the sender, half by the reader. Readers are
/// non-blocking (poll), since a blocking reader can see EAGAIN after a
/// reset (next test). Every byte a reader got is checked, a reset reader
/// sees ECONNRESET or EOF, and the other connections complete intact.
#[test]
fn rst_mid_stream_never_delivers_wrong_bytes_and_spares_other_connections() {
    let (_shared, env, _daemon) = shared_env_with_daemon("int-rst");
    let conns = if soak() { "400" } else { "100" };
    let (out, report, d) = rst(&env, conns, "poll");
    assert_clean("RST mid-stream", &out, &report);
    let n: u64 = conns.parse().expect("conns");
    assert_eq!(report["intact"].as_u64(), Some(n * 3 / 4), "{report}");
    assert_eq!(
        report["reset_by_sender"].as_u64().unwrap_or(0)
            + report["reset_by_reader"].as_u64().unwrap_or(0),
        n / 4,
        "{report}"
    );
    assert!(d.of("active_paired") >= n, "{}", d.show());
    assert!(d.of("redirect_bytes") > 0, "{}", d.show());
    // A reader that resets takes its socket out of the sockhash; a send
    // racing that close finds no peer and goes to TCP, which the RST then
    // refuses, as it would without us. Only those senders may see it.
    let reset_by_reader = report["reset_by_reader"].as_u64().unwrap_or(0);
    assert!(
        d.of("redirect_failed") <= reset_by_reader,
        "redirect_failed beyond the {reset_by_reader} reader-reset connections: {}",
        d.show()
    );
    assert_maps_drained(&env);
}

// ---------------------------------------------------------------------------
// End to end: nginx -> two sidecars -> curl
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// 1b. Backpressure
// ---------------------------------------------------------------------------
