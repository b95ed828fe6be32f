//! Faults under load to the pins and what holds them (reliability issue,
//! section 2): a full sockhash, pin files removed, bpffs unmounted and
//! back, lost pins in status and metrics, the API server down. As in
//! faults.rs, every fault happens while 20 accelerated connections echo
//! patterned data that accel-loadgen checks byte for byte.
//!
//! Each test runs in its own cgroup and pin dir (accel_test_harness::TestEnv);
//! the bpffs test mounts its own private bpffs instance and never touches
//! /sys/fs/bpf itself. Requires root; fails loudly without it.

use std::{
    fs,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use accel_test_harness::{
    Capture, Daemon, PrivateBpffs, TestEnv, counter_of, daemon_bin, free_port,
};

#[path = "common/faults.rs"]
mod faults_support;

use faults_support::*;

/// A sockhash with room for 8 sockets under 20 continuous connections:
/// those that do not fit use TCP with every byte, the refusals are counted
/// in status and /metrics, and the map never holds more than its capacity.
#[test]
fn full_sockhash_under_load_falls_back_to_tcp_counted_in_status_and_metrics() {
    let env = TestEnv::new("f-full");
    let daemon = env.start_daemon(&["--sockhash-size", "8"]);
    let port = free_port();
    let cap = Capture::start(port);
    let (mut cmd, procs) = env.loadgen(
        LOADGEN.as_str(),
        port,
        &[
            "--conns",
            &CONNS.to_string(),
            "--sizes",
            SIZES,
            "--duration-ms",
            "3000",
        ],
    );
    let load = cmd
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn accel-loadgen");
    drop(procs);
    thread::sleep(Duration::from_millis(1500));
    let mid = env.status_json();
    let sockhash = mid["datapath"]["maps"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == "accel_sockhash"))
        .cloned()
        .unwrap_or_else(|| panic!("no sockhash in status: {mid}"));
    assert_eq!(sockhash["capacity"], 8, "{sockhash}");
    let entries = sockhash["entries"].as_u64().unwrap_or(u64::MAX);
    assert!((1..=8).contains(&entries), "sockhash holds {entries} of 8");
    finish_load(load);
    let counts = cap.stop();
    let status = env.status_json();
    let refused = counter_of(&status, "record_failed");
    assert!(refused > 0, "a full map must be counted: {status}");
    assert!(
        counter_of(&status, "redirect_bytes") > 0,
        "the ones that fit are accelerated"
    );
    assert!(counts.psh_data > 0, "the ones that did not fit use TCP");
    let (code, metrics) = daemon.http_get("/metrics");
    assert_eq!(code, 200);
    let line = format!(r#"sidecar_accel_datapath_events_total{{event="record_failed"}} {refused}"#);
    assert!(metrics.contains(&line), "expected `{line}` in\n{metrics}");
    assert!(
        metrics.contains(r#"sidecar_accel_map_capacity{map="accel_sockhash"} 8"#),
        "{metrics}"
    );
    // Once the connections closed, the map has room again.
    let (_, psh) = env.short_load(LOADGEN.as_str(), 2);
    assert_eq!(psh, 0, "freed entries are reused");
}

/// Someone deletes the pin files one by one (`rm`) while traffic flows: the
/// daemon notices at its next sync, pins them again, logs it, and the
/// restored pins hold the datapath when the daemon dies afterwards.
#[test]
fn pin_files_removed_under_load_are_detected_restored_and_hold_the_datapath() {
    let env = TestEnv::new("f-rmpins");
    let mut daemon = env.start_daemon(&["--endpoint-sync-secs", "1"]);
    let prog = program_id(&env.status_json());
    let load = spawn_load(&env, CONNS, 5000);
    thread::sleep(Duration::from_millis(1000));
    let mut removed = 0;
    for e in fs::read_dir(&env.pin_dir).expect("pin dir").flatten() {
        fs::remove_file(e.path()).expect("rm pin");
        removed += 1;
    }
    assert!(
        removed >= 10,
        "expected every map and the link pinned, removed {removed}"
    );
    assert!(
        wait_for("pins restored", Duration::from_secs(10), || {
            fs::read_dir(&env.pin_dir).map(|d| d.count()).unwrap_or(0) == removed
                && daemon.log().contains("pinned them again")
        }),
        "pins not restored:\n{}",
        daemon.log()
    );
    env.assert_one_attachment("after the pins were restored");
    assert_eq!(program_id(&env.status_json()), prog);
    finish_load(load);
    daemon.kill9();
    env.assert_one_attachment("with the daemon gone: the restored pins hold it");
    let (_, psh) = env.short_load(LOADGEN.as_str(), 5);
    assert_eq!(psh, 0);
}

/// The bpffs holding the pins is unmounted under load (a private instance:
/// never the host's /sys/fs/bpf). The datapath keeps running on the
/// daemon's handles, the daemon reports that it cannot pin again, and once
/// a bpffs is back it restores every pin, which then holds the datapath
/// without the daemon.
#[test]
fn bpffs_unmounted_under_load_is_reported_and_recovered_when_it_returns() {
    let env = TestEnv::new("f-umount");
    let bpffs = PrivateBpffs::new(&env, "");
    let pin_dir = bpffs.dir.join("v1");
    let mut daemon = Daemon::start(&args_with_pin_dir(
        &env,
        &pin_dir,
        &["--endpoint-sync-secs", "1"],
    ));
    let prog = program_id(&status_at(&pin_dir, &env.state_dir));
    let load = spawn_load(&env, CONNS, 7000);
    thread::sleep(Duration::from_millis(1000));

    bpffs.umount();
    assert!(!pin_dir.exists());
    assert!(
        wait_for("the daemon to report", Duration::from_secs(5), || {
            daemon.log().contains("cannot be restored")
        }),
        "the daemon did not report the lost pins:\n{}",
        daemon.log()
    );
    // The daemon's handles keep sock_ops attached meanwhile.
    assert_eq!(attached_ids(&env.cgroup), vec![prog]);

    bpffs.mount();
    assert!(
        wait_for("pins restored", Duration::from_secs(10), || {
            pin_dir.join("link_sockops").exists() && daemon.log().contains("pinned them again")
        }),
        "pins not restored after bpffs came back:\n{}",
        daemon.log()
    );
    finish_load(load);
    assert_eq!(program_id(&status_at(&pin_dir, &env.state_dir)), prog);
    daemon.kill9();
    assert_eq!(
        attached_ids(&env.cgroup),
        vec![prog],
        "the restored pins hold the datapath without the daemon"
    );
    let (_, psh) = env.short_load(LOADGEN.as_str(), 5);
    assert_eq!(psh, 0);
    let unload = Command::new(daemon_bin())
        .arg("unload")
        .arg("--pin-dir")
        .arg(&pin_dir)
        .stdin(Stdio::null())
        .output()
        .expect("unload");
    assert!(
        unload.status.success(),
        "{}",
        String::from_utf8_lossy(&unload.stderr)
    );
    assert!(env.attachments().is_empty());
}

/// While the pins are gone (bpffs unmounted) the daemon still runs the
/// datapath: `status` and /metrics must say so, not only the log.
/// Regression test for RELIABILITY.md finding F-3.
#[test]
fn lost_pins_are_visible_in_status_and_metrics() {
    let env = TestEnv::new("f-umount-report");
    let bpffs = PrivateBpffs::new(&env, "");
    let pin_dir = bpffs.dir.join("v1");
    let daemon = Daemon::start(&args_with_pin_dir(
        &env,
        &pin_dir,
        &["--endpoint-sync-secs", "1"],
    ));
    bpffs.umount();
    assert!(wait_for("report", Duration::from_secs(5), || {
        daemon.log().contains("cannot be restored")
    }));
    let status = status_at(&pin_dir, &env.state_dir);
    let (_, metrics) = daemon.http_get("/metrics");
    bpffs.mount();
    thread::sleep(Duration::from_millis(1500));
    drop(daemon);
    assert!(
        status["datapath"].is_object() || status["datapath_error"].is_string(),
        "status hides the running datapath whose pins are gone: {status}"
    );
    assert!(
        metrics.contains("pins"),
        "no metric says the pins are gone:\n{metrics}"
    );
}

/// The Kubernetes API server goes away for 3 s while 20 connections run
/// inside a meshed pod (loopback legs, accelerated because the pod's
/// namespace came from the pod watch): the datapath keeps redirecting,
/// the maps keep their state, the daemon stays ready, every byte arrives,
/// and the watch resumes when the server returns. (The Kubernetes source's
/// own test, kubernetes.rs, covers the 410 re-list after an outage.)
#[test]
fn api_server_down_under_load_leaves_the_datapath_untouched() {
    use accel_fake_apiserver::{FakeApiServer, fixtures};
    use accel_topology::{Mesh, Node};

    let env = TestEnv::new("f-apidown");
    let node = Node::new(&env, "ad");
    let a = node.meshed_pod("a", Mesh::default());
    let node_name = format!("node-{}", std::process::id());
    let api = FakeApiServer::start().expect("start the fake API server");
    let kernel = accel_test_harness::running_kernel();
    api.upsert(fixtures::node(&node_name, &kernel, "Debian GNU/Linux 12"));
    let ips = [
        std::net::IpAddr::from(a.ipv4).to_string(),
        std::net::IpAddr::from(a.ipv6).to_string(),
    ];
    api.upsert(fixtures::istio_pod(
        "shop",
        "a",
        &node_name,
        &[&ips[0], &ips[1]],
    ));
    let kubeconfig = env.state_dir.with_extension("kubeconfig");
    api.write_kubeconfig(&kubeconfig, "fake")
        .expect("kubeconfig");
    let kc = kubeconfig.display().to_string();
    let daemon = env.start_daemon(&[
        "--endpoint-source",
        "kubernetes",
        "--node-name",
        &node_name,
        "--kubeconfig",
        &kc,
        "--node-poll-secs",
        "1",
    ]);
    let endpoints = || {
        env.status_json()["datapath"]["maps"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["name"] == "accel_endpoints"))
            .and_then(|m| m["entries"].as_u64())
            .unwrap_or(0)
    };
    assert!(
        wait_for("the pod in the maps", Duration::from_secs(10), || {
            endpoints() == 2
        }),
        "pod a never reached the maps:\n{}",
        daemon.log()
    );
    // The pod's namespace is resolved a moment after its addresses.
    thread::sleep(Duration::from_millis(500));

    let mut cmd = a.command(LOADGEN.as_str());
    cmd.arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .args(["--conns", &CONNS.to_string(), "--sizes", SIZES])
        // Long enough to outlast the outage: stopping the fake server
        // waits up to 15 s for its connections and watches to end.
        .args(["--duration-ms", "20000"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut load = cmd.spawn().expect("spawn accel-loadgen in pod a");
    let started = Instant::now();
    thread::sleep(Duration::from_millis(1000));
    let before = env.counter("redirect_msgs");
    assert!(before > 0, "the pod's loopback traffic is not accelerated");

    api.stop();
    let stopped = started.elapsed();
    eprintln!("the API server was down {stopped:?} after the load started");
    thread::sleep(Duration::from_secs(3));
    let during = env.counter("redirect_msgs");
    assert!(
        during > before,
        "redirects stopped while the API server was down ({before} -> {during}); the server \
         was down {stopped:?} after the load started, the check {:?} after; {}; {} endpoints; \
         counters {}",
        started.elapsed(),
        load_state(&mut load),
        endpoints(),
        env.status_json()["datapath"]["counters"]
    );
    assert_eq!(endpoints(), 2, "maps changed while the API was down");
    assert_eq!(daemon.http_get("/readyz").0, 200);
    api.restart().expect("restart the fake API server");
    finish_load(load);
    // The watch resumes: a pod created after the outage reaches the maps.
    let back = Instant::now();
    api.upsert(fixtures::istio_pod(
        "shop",
        "c",
        &node_name,
        &["10.250.3.3"],
    ));
    assert!(
        wait_for("the watch to resume", Duration::from_secs(60), || {
            endpoints() == 3
        }),
        "the pod watch did not resume after the outage:\n{}",
        daemon.log()
    );
    eprintln!(
        "watch resumed {:?} after the API server returned",
        back.elapsed()
    );
    let _ = fs::remove_file(&kubeconfig);
    env.assert_one_attachment("after the outage");
}
