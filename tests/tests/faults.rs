//! Faults under load (reliability issue, section 2): every fault happens
//! while 20 accelerated connections echo patterned data that accel-loadgen
//! checks byte for byte. A fault passes when the traffic ends with no
//! connection error, every byte intact, and the datapath in the state the
//! fault promises (one attachment, nothing left, restored pins...).
//!
//! Each test runs in its own cgroup and pin dir (accel_test_harness::TestEnv).
//! Requires root; fails loudly without it. Faults to the pins and what
//! holds them (a full sockhash, pin files, bpffs, the API server) are in
//! faults_pins.rs; the helpers both use in common/faults.rs.
//!
//! Already covered in tests/tests/daemon.rs and not repeated here: one
//! kill -9 under load, unload under load after a graceful stop, unload that
//! waits for unread queues, pins removed while idle, a full sockhash with 40
//! short connections, retiring an idle old version.

use std::{
    fs,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use accel_test_harness::{Daemon, TestEnv, Value, counter_of, set_flag};

#[path = "common/faults.rs"]
mod faults_support;

use faults_support::*;

/// Three (ACCEL_SOAK=1: twenty) kill -9 / restart cycles, each under traffic: each restart
/// adopts the same program (no second attachment, no reinstall), and the
/// datapath keeps redirecting while no daemon runs.
#[test]
fn repeated_kill9_and_restart_under_load_adopt_the_same_program() {
    let env = TestEnv::new("f-kill9x3");
    let mut daemon = env.start_daemon(&[]);
    let prog = program_id(&env.status_json());
    let cycles: u64 = if soak() { 20 } else { 3 };
    // Traffic per cycle: each kill must find connections running, and they
    // must still run through the check after it. Reaping the killed daemon
    // alone took 2.3 s on an idle 2-vCPU VM; under the suite's load a 6 s
    // load had ended, every byte exact, by the time the check gave up.
    let t0 = Instant::now();
    for cycle in 0..cycles {
        let mut load = spawn_load(&env, CONNS, 15_000);
        thread::sleep(Duration::from_millis(700));
        daemon.kill9();
        env.assert_one_attachment(&format!("after kill -9 #{cycle}"));
        let gone = env.counter("redirect_msgs");
        assert!(
            wait_for("redirects without a daemon", Duration::from_secs(3), || {
                env.counter("redirect_msgs") > gone
            }),
            "redirects must continue while the daemon is away (cycle {cycle}); {}; \
             datapath: {}",
            load_state(&mut load),
            env.status_json()["datapath"]["counters"]
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
