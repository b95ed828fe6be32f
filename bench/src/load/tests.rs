//! End-to-end checks of the generator against local servers.

use std::{
    io::{Read, Write},
    net::TcpListener,
};

use super::{conn::find, echo::serve_echo, *};

fn echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || serve_echo(l));
    addr
}

/// A keep-alive HTTP server answering every GET with the pattern body.
fn http(size: usize) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let body = accel_test_harness::pattern::bytes(size as u64, 0, size);
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let body = body.clone();
            thread::spawn(move || {
                let mut buf = vec![0u8; 4096];
                let mut pending = Vec::new();
                loop {
                    let n = match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(p) = find(&pending, b"\r\n\r\n") {
                        pending.drain(..p + 4);
                        let mut resp =
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                                .into_bytes();
                        resp.extend_from_slice(&body);
                        if s.write_all(&resp).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

fn args(target: SocketAddr, proto: Proto, size: usize) -> LoadArgs {
    LoadArgs {
        target,
        proto,
        path: "/f".into(),
        size,
        expect_pattern: true,
        connections: 2,
        qps: 0.0,
        duration: 0.3,
        warmup: 0.05,
        labels: format!("mode=baseline size={size}"),
        json: "-".into(),
        cpus: vec![],
    }
}

#[test]
fn tcp_echo_max_rate_round_trips_through_the_fortio_format() {
    let a = args(echo(), Proto::Tcp, 4096);
    let r = generate(&a).unwrap();
    let x = r.accel_bench.clone().unwrap();
    assert_eq!(x.errors, 0);
    assert!(r.duration_histogram.count > 50, "{r:?}");
    assert_eq!(x.bytes, r.duration_histogram.count * 2 * 4096);
    assert_eq!(r.requested_qps, "max");
    assert_eq!(r.num_threads, 2);
    // What we write, the parser reads back identically.
    let text = serde_json::to_string_pretty(&r).unwrap();
    let back = RunnerResults::parse(&text, "mem").unwrap();
    assert_eq!(back.duration_histogram.count, r.duration_histogram.count);
    assert_eq!(
        back.duration_histogram.data.len(),
        r.duration_histogram.data.len()
    );
    assert_eq!(back.accel_bench, r.accel_bench);
    assert_eq!(back.labels, r.labels);
    assert_eq!(back.payload_size(), Some(4096));
    let (p50, p99) = (
        back.percentile(50.0).unwrap(),
        back.percentile(99.0).unwrap(),
    );
    assert!(p50 > 0.0 && p50 <= p99, "{p50} {p99}");
}

#[test]
fn http_fixed_rate_is_scheduled_and_checked() {
    let size = 1500;
    let mut a = args(http(size), Proto::Http, size);
    a.qps = 400.0;
    a.duration = 0.5;
    let r = generate(&a).unwrap();
    let n = r.duration_histogram.count;
    // 400/s for 0.5 s: 200 intended sends in the window.
    assert!((190..=201).contains(&n), "{n} requests");
    assert!(r.accel_bench.as_ref().unwrap().from_intended_time);
    assert_eq!(r.requested_qps, "400");
    assert_eq!(r.ret_codes.get("200"), Some(&n));
    // A wrong expected size is an error, not a silent success.
    let mut bad = args(a.target, Proto::Http, size + 1);
    bad.duration = 0.1;
    assert!(generate(&bad).is_err());
}

#[test]
fn connect_rate() {
    let mut a = args(echo(), Proto::Connect, 1);
    a.connections = 1;
    let r = generate(&a).unwrap();
    assert!(r.duration_histogram.count > 20);
    assert_eq!(r.run_type, "TCP-connect");
}
