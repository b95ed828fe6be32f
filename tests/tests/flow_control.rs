//! Flow control: a fast writer and a slow reader must not make the kernel
//! queue much more than plain TCP would, on loopback (pinned to one core and
//! unpinned) and through both sidecars of the pod topology; every stream
//! completes byte-exact. One test function in its own binary, since the
//! kernel's TCP memory counter (/proc/net/sockstat) is node-wide: other TCP
//! traffic on the machine during the run (another test binary, a benchmark)
//! inflates the peaks. Cargo runs test binaries one at a time.
//!
//! Default: 1 run of 2 connections per case. `ACCEL_SOAK=1`: 10 runs of 10.

use std::process::Stdio;

use accel_test_harness::{
    TestEnv, counter_of, free_port, parse_load_report, peak_tcp_mem, pod_bin, spawn_listening,
};
use accel_topology::Node;

static LOADGEN: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| accel_test_harness::loadgen_bin().display().to_string());
const STREAM: u64 = 32 << 20;

fn soak() -> (usize, usize) {
    if std::env::var_os("ACCEL_SOAK").is_some() {
        (10, 10)
    } else {
        (1, 2)
    }
}

/// Loopback stream into a slow reader inside meshed pod `pod`: in the
/// daemon's cgroup (accelerated) or outside it (plain TCP, same namespace).
fn loopback_stream(
    pod: &accel_topology::Pod,
    accelerated: bool,
    pinned: bool,
    conns: usize,
) -> u64 {
    peak_tcp_mem(|| {
        let program = if pinned { "taskset" } else { LOADGEN.as_str() };
        let mut cmd = if accelerated {
            pod.command(program)
        } else {
            pod.admin(program)
        };
        if pinned {
            cmd.args(["-c", "0", LOADGEN.as_str()]);
        }
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{}", free_port()))
            .args([
                "--conns",
                &conns.to_string(),
                "--stream-bytes",
                &STREAM.to_string(),
            ])
            .args(["--read-size", "16384", "--reader-delay-us", "500"])
            .stdin(Stdio::null());
        let out = cmd.output().expect("loadgen");
        let r = parse_load_report(&out);
        assert!(
            r.errors.is_empty() && out.status.success(),
            "stream broke (accelerated {accelerated}, pinned {pinned}): {:?} {}",
            r.errors,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(r.bytes_each_way, STREAM * conns as u64, "byte count");
    })
}

/// Pod A's fast writer -> both sidecars -> pod B's slow reader.
fn mesh_stream(a: &accel_topology::Pod, b: &accel_topology::Pod, conns: usize) -> u64 {
    let port = 9100;
    let (mut sink, mut lines) = spawn_listening(
        b.command(pod_bin())
            .args([
                "sink",
                "--listen",
                &format!("0.0.0.0:{port}"),
                "--conns",
                &conns.to_string(),
            ])
            .args(["--read-size", "16384", "--delay-us", "500"]),
    );
    let peak = peak_tcp_mem(|| {
        let out = a
            .command(pod_bin())
            .args(["source", "--connect", &b.addr_v4(port).to_string()])
            .args([
                "--conns",
                &conns.to_string(),
                "--bytes",
                &STREAM.to_string(),
            ])
            .output()
            .expect("source");
        assert!(
            out.status.success(),
            "writer broke: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    let report = lines.next().and_then(Result::ok).unwrap_or_default();
    let status = sink.wait().expect("sink");
    assert!(status.success(), "reader broke: {report}");
    let v: accel_test_harness::Value = serde_json::from_str(&report).expect("sink report");
    let received: Vec<u64> = v["received"]
        .as_array()
        .expect("received")
        .iter()
        .filter_map(|x| x.as_u64())
        .collect();
    assert_eq!(received, vec![STREAM; conns], "every stream complete");
    peak
}

fn assert_bounded(what: &str, accel: u64, plain: u64, conns: usize) {
    let limit = (4 * plain).max(16 * conns as u64 * (1 << 20));
    eprintln!(
        "{what}: peak TCP memory plain {} KiB, accelerated {} KiB (limit {} KiB)",
        plain >> 10,
        accel >> 10,
        limit >> 10
    );
    assert!(
        accel <= limit,
        "{what}: accelerated queued {accel} B, plain {plain} B"
    );
}

#[test]
fn slow_readers_never_make_the_kernel_queue_much_more_than_plain_tcp() {
    let (runs, conns) = soak();
    let env = TestEnv::new("flow");
    let node = Node::new(&env, "fl");
    let [a, b] = node.meshed_pods(["a", "b"]);

    // Baselines first, with nothing attached.
    let mesh_plain = mesh_stream(&a, &b, conns);
    let pods = accel_topology::PodsFile::write(&env, &[(&a, ""), (&b, "")]).expect("pods file");
    let _daemon = env.start_daemon(&["--pods-file", &pods.arg()]);
    let status = env.status_json();
    let flow = accel_test_harness::check_named(&status, "flow control");
    assert_eq!(
        flow["ok"], true,
        "flow control must be available on this kernel: {flow}"
    );

    let mut engaged = 0;
    for run in 0..runs {
        for pinned in [true, false] {
            let plain = loopback_stream(&a, false, pinned, conns);
            let before = env.status_json();
            let accel = loopback_stream(&a, true, pinned, conns);
            let after = env.status_json();
            let delta = |c: &str| counter_of(&after, c) - counter_of(&before, c);
            assert!(delta("redirect_bytes") > 0, "not accelerated at all");
            // Many connections on two cores can leave the writers too slow
            // to outrun a reader by a whole budget in one case; the bound
            // must hold in every case, engagement once per run.
            engaged += delta("flow_reader_behind_to_tcp");
            assert_bounded(
                &format!("loopback run {run} pinned {pinned}"),
                accel,
                plain,
                conns,
            );
        }
        let before = env.status_json();
        let accel = mesh_stream(&a, &b, conns);
        let after = env.status_json();
        assert!(counter_of(&after, "redirect_bytes") > counter_of(&before, "redirect_bytes"));
        assert_bounded(
            &format!("through both sidecars, run {run}"),
            accel,
            mesh_plain,
            conns,
        );
    }
    assert!(engaged > 0, "the slow readers never engaged flow control");
}
