//! Faults under load (reliability issue, section 2): every fault happens
//! while 20 accelerated connections echo patterned data that accel-loadgen
//! checks byte for byte. A fault passes when the traffic ends with no
//! connection error, every byte intact, and the datapath in the state the
//! fault promises (one attachment, nothing left, restored pins...).
//!
//! Each test runs in its own cgroup and pin dir (accel_test_harness::TestEnv); the
//! bpffs test mounts its own private bpffs instance and never touches
//! /sys/fs/bpf itself. Requires root; fails loudly without it.
//!
//! Already covered in tests/tests/daemon.rs and not repeated here: one
//! kill -9 under load, unload under load after a graceful stop, unload that
//! waits for unread queues, pins removed while idle, a full sockhash with 40
//! short connections, retiring an idle old version.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use accel_test_harness::{
    Capture, Daemon, LoadReport, TestEnv, Value, assert_clean_load, counter_of, daemon_bin,
    free_port, set_flag,
};

static LOADGEN: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| accel_test_harness::loadgen_bin().display().to_string());
/// Concurrent connections kept busy through every fault.
const CONNS: usize = 20;
/// Message sizes each connection cycles through: a byte, a segment, 64 KiB.
const SIZES: &str = "1,1500,65536";

/// Continuous echo traffic inside the test's cgroup.
fn spawn_load(env: &TestEnv, conns: usize, duration_ms: u64) -> Child {
    let (mut cmd, _procs) = env.loadgen(
        LOADGEN.as_str(),
        free_port(),
        &[
            "--conns",
            &conns.to_string(),
            "--sizes",
            SIZES,
            "--duration-ms",
            &duration_ms.to_string(),
        ],
    );
    cmd.stdin(Stdio::null())
        .spawn()
        .expect("spawn accel-loadgen")
}

fn finish_load(child: Child) -> LoadReport {
    let out = child.wait_with_output().expect("wait accel-loadgen");
    let r = assert_clean_load(&out, CONNS);
    eprintln!(
        "traffic: {} connections, {} messages, {} bytes each way, byte-exact",
        r.connections, r.messages, r.bytes_each_way
    );
    r
}

fn status_at(pin_dir: &Path, state_dir: &Path) -> Value {
    let out = Command::new(daemon_bin())
        .arg("status")
        .arg("--json")
        .arg("--pin-dir")
        .arg(pin_dir)
        .arg("--state-dir")
        .arg(state_dir)
        .stdin(Stdio::null())
        .output()
        .expect("accel-daemon status");
    assert!(
        out.status.success(),
        "status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status --json is JSON")
}

fn program_id(status: &Value) -> u64 {
    status["datapath"]["sock_ops_program_id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no datapath in status: {status}"))
}

/// Program ids attached to the cgroup (bpftool's view, not the daemon's).
fn attached_ids(cgroup: &Path) -> Vec<u64> {
    let out = Command::new("bpftool")
        .args(["cgroup", "show"])
        .arg(cgroup)
        .arg("-j")
        .output()
        .expect("bpftool");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(vec![]));
    v.as_array()
        .map(|a| a.iter().filter_map(|p| p["id"].as_u64()).collect())
        .unwrap_or_default()
}

/// `run` arguments of `env` with another pin dir.
fn args_with_pin_dir(env: &TestEnv, pin_dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = env.run_args(extra);
    set_flag(&mut args, "--pin-dir", &pin_dir.display().to_string());
    args
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ok() {
            return true;
        }
        thread::sleep(Duration::from_millis(100));
    }
    eprintln!("gave up waiting for {what} after {timeout:?}");
    ok()
}

/// Long variants run with ACCEL_SOAK=1.
fn soak() -> bool {
    std::env::var_os("ACCEL_SOAK").is_some()
}

/// Three (ACCEL_SOAK=1: twenty) kill -9 / restart cycles, each under traffic: each restart
/// adopts the same program (no second attachment, no reinstall), and the
/// datapath keeps redirecting while no daemon runs.
#[test]
fn repeated_kill9_and_restart_under_load_adopt_the_same_program() {
    let env = TestEnv::new("f-kill9x3");
    let mut daemon = env.start_daemon(&[]);
    let prog = program_id(&env.status_json());
    let cycles: u64 = if soak() { 20 } else { 3 };
    // Traffic per cycle: a restart can take seconds on a loaded machine,
    // and each kill must find connections running.
    let t0 = Instant::now();
    for cycle in 0..cycles {
        let load = spawn_load(&env, CONNS, 6_000);
        thread::sleep(Duration::from_millis(700));
        daemon.kill9();
        env.assert_one_attachment(&format!("after kill -9 #{cycle}"));
        let gone = env.counter("redirect_msgs");
        assert!(
            wait_for("redirects without a daemon", Duration::from_secs(3), || {
                env.counter("redirect_msgs") > gone
            }),
            "redirects must continue while the daemon is away (cycle {cycle})"
        );
        daemon = env.start_daemon(&[]);
        assert!(daemon.log().contains("adopted"), "{}", daemon.log());
        env.assert_one_attachment(&format!("after restart #{cycle}"));
        assert_eq!(
            program_id(&env.status_json()),
            prog,
            "a restart must adopt, not reinstall"
        );
        assert_eq!(attached_ids(&env.cgroup), vec![prog]);
        finish_load(load);
        eprintln!("cycle {cycle} done at {:?}", t0.elapsed());
    }
    let (_, psh) = env.short_load(LOADGEN.as_str(), 5);
    assert_eq!(psh, 0, "new connections after the restarts are accelerated");
}

/// An upgrade as a DaemonSet rolling update does it: the old daemon (ABI
/// directory v0) is stopped, the new one (v1) starts, retires v0 (passthrough,
/// drain, detach, unpin) and installs itself, all while traffic flows.
/// Connections of the old datapath continue over TCP with every byte; new
/// connections run on the new program; one attachment at the end.
#[test]
fn upgrade_under_load_retires_the_old_version_and_loses_nothing() {
    let env = TestEnv::new("f-upgrade");
    let old_pin = env.pin_root.join("v0");
    let mut old = Daemon::start(&args_with_pin_dir(&env, &old_pin, &[]));
    let old_prog = program_id(&status_at(&old_pin, &env.state_dir));
    let load = spawn_load(&env, CONNS, 7000);
    thread::sleep(Duration::from_millis(1500));
    let old_redirected = counter_of(&status_at(&old_pin, &env.state_dir), "redirect_msgs");
    assert!(
        old_redirected > 0,
        "the old version accelerates the traffic"
    );
    assert_eq!(old.terminate(), Some(0));

    let new = env.start_daemon(&[]);
    let log = new.log();
    assert!(
        log.contains("retiring datapath of another version") && log.contains("retired datapath"),
        "{log}"
    );
    assert!(!old_pin.exists(), "old pins left behind");
    env.assert_one_attachment("after the upgrade");
    let new_prog = program_id(&env.status_json());
    assert_ne!(new_prog, old_prog, "a new program was installed");
    assert_eq!(attached_ids(&env.cgroup), vec![new_prog]);

    // While the old connections still run: new ones get the new version.
    let before = env.counter("redirect_msgs");
    let (_, psh) = env.short_load(LOADGEN.as_str(), 5);
    assert_eq!(psh, 0, "new connections are accelerated by v1");
    assert!(env.counter("redirect_msgs") > before);
    finish_load(load);
}

/// The same upgrade when the old daemon is still running as the new one
/// starts (a surge rollout, or a pod stuck in termination): the retired
/// version must be detached although the old daemon still holds its link,
/// and the old daemon must not pin it again. Regression test for
/// RELIABILITY.md finding F-1 (aya's `FdLink::detach` only closed an fd).
#[test]
fn upgrade_with_the_old_daemon_still_running_leaves_one_datapath() {
    let env = TestEnv::new("f-upgrade-live");
    let old_pin = env.pin_root.join("v0");
    let old_state = env.state_dir.with_extension("old");
    let mut args = args_with_pin_dir(&env, &old_pin, &["--endpoint-sync-secs", "1"]);
    set_flag(&mut args, "--state-dir", &old_state.display().to_string());
    let old = Daemon::start(&args);
    let load = spawn_load(&env, CONNS, 6000);
    thread::sleep(Duration::from_millis(1000));

    let new = env.start_daemon(&[]);
    assert!(new.log().contains("retired datapath"), "{}", new.log());
    // Three sync ticks of the old daemon.
    thread::sleep(Duration::from_millis(3500));
    let attached_with_old_alive = env.attachments().len();
    let repinned = old_pin.exists();
    let old_log = old.log();
    drop(old);
    let _ = fs::remove_dir_all(&old_state);
    finish_load(load);
    let attached_after = env.attachments().len();
    assert!(
        attached_with_old_alive == 1 && !repinned && attached_after == 1,
        "after retiring v0 with its daemon alive: {attached_with_old_alive} attachments, \
         v0 pinned again: {repinned}; after the old daemon exited: {attached_after} \
         attachments\nold daemon log:\n{old_log}"
    );
}

/// `accel-daemon unload` under load while the daemon is still running (the
/// existing test stops the daemon first): the unload must stick, although
/// the daemon holds the link, and the daemon must not pin the datapath
/// again at its next sync. Regression test for RELIABILITY.md finding F-1.
#[test]
fn unload_under_load_with_the_daemon_still_running_leaves_nothing() {
    let env = TestEnv::new("f-unload-live");
    let daemon = env.start_daemon(&["--endpoint-sync-secs", "1"]);
    let load = spawn_load(&env, CONNS, 5000);
    thread::sleep(Duration::from_millis(1500));
    env.unload_ok();
    let attached_right_after = env.attachments().len();
    // Give the still-running daemon three sync ticks.
    thread::sleep(Duration::from_millis(3500));
    let repinned = env.pin_dir.exists();
    let mode = if repinned {
        env.status_json()["datapath"]["mode"].to_string()
    } else {
        String::new()
    };
    let log = daemon.log();
    finish_load(load);
    assert!(
        attached_right_after == 0 && !repinned,
        "unload said success; {attached_right_after} sock_ops attachments right after; pinned \
         again by the running daemon: {repinned} (mode {mode})\ndaemon log:\n{log}"
    );
}

/// Every program and map of the datapath: the sock_ops program the link
/// runs, and the programs (sk_msg) that use the same maps.
fn datapath_objects(env: &TestEnv) -> (Vec<u64>, Vec<u64>) {
    let sockops = program_id(&env.status_json());
    let out = Command::new("bpftool")
        .args(["prog", "show", "-j"])
        .output()
        .expect("bpftool prog show");
    let progs: Value = serde_json::from_slice(&out.stdout).expect("bpftool JSON");
    let progs = progs.as_array().cloned().unwrap_or_default();
    let maps: Vec<u64> = progs
        .iter()
        .find(|p| p["id"].as_u64() == Some(sockops))
        .and_then(|p| p["map_ids"].as_array())
        .map(|ids| ids.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    assert!(!maps.is_empty(), "sock_ops program {sockops} uses no map?");
    let programs: Vec<u64> = progs
        .iter()
        .filter(|p| {
            p["map_ids"].as_array().is_some_and(|ids| {
                ids.iter()
                    .any(|id| id.as_u64().is_some_and(|i| maps.contains(&i)))
            })
        })
        .filter_map(|p| p["id"].as_u64())
        .collect();
    (programs, maps)
}

fn kernel_has(kind: &str, id: u64) -> bool {
    Command::new("bpftool")
        .args([kind, "show", "id", &id.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Uninstall under load, checked in the kernel rather than in bpffs: after
/// the daemon stops and `unload` returns, every program and every map of
/// the datapath is freed (the kernel releases them a moment after the last
/// reference goes), not only unpinned and detached.
#[test]
fn unload_under_load_frees_every_program_and_map_in_the_kernel() {
    let env = TestEnv::new("f-unload-kernel");
    let mut daemon = env.start_daemon(&[]);
    let (programs, maps) = datapath_objects(&env);
    assert!(
        programs.len() >= 2,
        "sock_ops and sk_msg expected: {programs:?}"
    );
    let load = spawn_load(&env, CONNS, 4000);
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(daemon.terminate(), Some(0));
    env.unload_ok();
    finish_load(load);
    assert!(env.attachments().is_empty(), "sock_ops still attached");
    assert!(!env.pin_dir.exists(), "pins left behind");
    // The kernel frees maps from a work item after an RCU grace period:
    // under a loaded CI machine that can take seconds.
    let freed = wait_for(
        "the kernel to free the datapath",
        Duration::from_secs(30),
        || {
            programs.iter().all(|id| !kernel_has("prog", *id))
                && maps.iter().all(|id| !kernel_has("map", *id))
        },
    );
    let left_progs: Vec<&u64> = programs
        .iter()
        .filter(|id| kernel_has("prog", **id))
        .collect();
    let left_maps: Vec<&u64> = maps.iter().filter(|id| kernel_has("map", **id)).collect();
    // Who holds them (bpftool lists the processes with an fd).
    let holders: String = left_progs
        .iter()
        .map(|id| ("prog", **id))
        .chain(left_maps.iter().map(|id| ("map", **id)))
        .map(|(kind, id)| {
            let out = Command::new("bpftool")
                .args([kind, "show", "id", &id.to_string()])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            format!("{kind} {id}: {out}")
        })
        .collect();
    assert!(
        freed,
        "still in the kernel after unload: programs {left_progs:?}, maps {left_maps:?}\n{holders}"
    );
}

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

/// A private bpffs instance, mounted on a directory of the test and
/// unmounted in Drop (which also releases whatever is pinned in it).
struct PrivateBpffs {
    dir: PathBuf,
}

impl PrivateBpffs {
    fn new(env: &TestEnv) -> Self {
        let dir = std::env::temp_dir().join(format!("{}-bpffs", env.name));
        fs::create_dir_all(&dir).expect("mkdir bpffs mount point");
        let fs = PrivateBpffs { dir };
        fs.mount();
        fs
    }

    fn mount(&self) {
        let st = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&self.dir)
            .status()
            .expect("mount");
        assert!(st.success(), "mount -t bpf {}", self.dir.display());
    }

    fn umount(&self) {
        let st = Command::new("umount")
            .arg(&self.dir)
            .status()
            .expect("umount");
        assert!(st.success(), "umount {}", self.dir.display());
    }

    fn mounted(&self) -> bool {
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split_whitespace().nth(4) == self.dir.to_str())
    }
}

impl Drop for PrivateBpffs {
    fn drop(&mut self) {
        while self.mounted() {
            if !Command::new("umount")
                .arg(&self.dir)
                .status()
                .is_ok_and(|s| s.success())
            {
                break;
            }
        }
        let _ = fs::remove_dir(&self.dir);
    }
}

/// The bpffs holding the pins is unmounted under load (a private instance:
/// never the host's /sys/fs/bpf). The datapath keeps running on the
/// daemon's handles, the daemon reports that it cannot pin again, and once
/// a bpffs is back it restores every pin, which then holds the datapath
/// without the daemon.
#[test]
fn bpffs_unmounted_under_load_is_reported_and_recovered_when_it_returns() {
    let env = TestEnv::new("f-umount");
    let bpffs = PrivateBpffs::new(&env);
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
    let bpffs = PrivateBpffs::new(&env);
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
        .args(["--duration-ms", "6000"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let load = cmd.spawn().expect("spawn accel-loadgen in pod a");
    thread::sleep(Duration::from_millis(1000));
    let before = env.counter("redirect_msgs");
    assert!(before > 0, "the pod's loopback traffic is not accelerated");

    api.stop();
    thread::sleep(Duration::from_secs(3));
    let during = env.counter("redirect_msgs");
    assert!(
        during > before,
        "redirects stopped while the API server was down ({before} -> {during})"
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
