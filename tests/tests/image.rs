//! The daemon's container image, run the way the DaemonSet runs it: built
//! by scripts/image.sh from the binary `cargo build` made, loaded into a
//! private podman storage, installed with `accel-installer install --image`
//! against the fake API server, and started from the DaemonSet the
//! installer applied (its capabilities, user, mounts, host namespaces,
//! limits and arguments; see accel_test_harness::kubelet). The daemon attaches to
//! this test's own cgroup and pins under its own directory, never the
//! machine's root cgroup. Requires root and podman; fails loudly without.

mod common;

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use accel_fake_apiserver::{FakeApiServer, fixtures};
use accel_test_harness::{
    TestEnv, cgroup2_mount, counter_of, daemon_bin, free_port,
    kubelet::{PodRun, Site},
    map_entries, pattern,
    podman::{Container, Podman},
    running_kernel, sha256_hex, wait_until,
};
use accel_topology::{ECHO_PORT, Node, Pod};
use common::run_installer;
use serde_json::Value;

const NS: &str = "shop";
/// The applications' uid in both pods: neither root nor the sidecar's.
const APP_UID: u32 = 1000;

/// What scripts/image.sh recorded (`KEY=value` lines).
struct Image {
    dir: PathBuf,
    record: BTreeMap<String, String>,
}

impl Image {
    /// Builds the image from the daemon binary the tests run.
    fn build(env: &TestEnv) -> Image {
        let dir = std::env::temp_dir().join(format!("{}-image", env.name));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/image.sh");
        let mut image = Image {
            dir,
            record: BTreeMap::new(),
        };
        let out = Command::new(&script)
            .arg("--binary")
            .arg(daemon_bin())
            .arg("--out")
            .arg(&image.dir)
            .output()
            .unwrap_or_else(|e| panic!("FAILING LOUDLY: cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "scripts/image.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let record = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        image.record = record;
        image
    }

    fn get(&self, key: &str) -> &str {
        self.record
            .get(key)
            .unwrap_or_else(|| panic!("scripts/image.sh recorded no {key}: {:?}", self.record))
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The daemon got exactly the manifest's capabilities, less those this
/// machine cannot grant, which must be ones the daemon is documented not
/// to need on this kernel (SECURITY.md: memlock does not limit BPF memory
/// since 5.11).
fn assert_capabilities(run: &PodRun, pid: u32) {
    let release = running_kernel();
    let mut v = release.split(|c: char| !c.is_ascii_digit());
    let mut next = || v.next().and_then(|x| x.parse::<u32>().ok()).unwrap_or(0);
    let version = (next(), next());
    for cap in run.assert_capabilities(pid) {
        assert!(
            cap == "SYS_RESOURCE" && version >= (5, 11),
            "FAILING LOUDLY: this machine cannot grant CAP_{cap} (not in its bounding set), \
             which the DaemonSet needs on {release}"
        );
        eprintln!(
            "note: this machine's bounding set lacks CAP_{cap}; the container ran without it"
        );
    }
}

/// Everything one run of the image needs, torn down in field order: the
/// API server, the pods, podman's storage, the image, then the cgroup and
/// pins. Containers borrow `podman` and so go first.
struct Setup {
    api: FakeApiServer,
    kubeconfig: PathBuf,
    node_name: String,
    node: Node,
    a: Pod,
    b: Pod,
    /// B's application (uid [`APP_UID`]).
    echo_pid: u32,
    podman: Podman,
    image: Image,
    /// The DaemonSet `accel-installer install --image` applied.
    ds: Value,
    env: TestEnv,
}

impl Setup {
    /// The image built and loaded, two meshed pods whose processes are
    /// not root (A: its sidecar, 1337; B: its sidecar and its application,
    /// 1000), both in the fake API server, the add-on installed.
    fn new(tag: &str) -> Setup {
        let env = TestEnv::new(tag);
        let started = Instant::now();
        let image = Image::build(&env);
        let built = started.elapsed();
        let podman = Podman::new(&env.name);
        podman.load(Path::new(image.get("archive")));
        let loaded = podman.ok(&[
            "image",
            "inspect",
            "--format",
            "{{.Digest}}",
            image.get("image"),
        ]);
        assert_eq!(loaded, image.get("digest"), "loading changed the digest");
        eprintln!(
            "image {}: {} bytes, built in {built:?}, loaded at {:?}",
            image.get("ref"),
            image.get("size_bytes"),
            started.elapsed()
        );
        let node = Node::new(&env, tag);
        let [a, b] = node.meshed_pods(["a", "b"]);
        let echo_pid = b.start_echo_as(APP_UID, APP_UID);

        let api = FakeApiServer::start().expect("start the fake API server");
        let node_name = format!("node-{}", env.name);
        api.upsert(fixtures::node(
            &node_name,
            &running_kernel(),
            "Debian GNU/Linux 12 (bookworm)",
        ));
        for pod in [&a, &b] {
            // Every socket of these pods takes part (the node mode stays
            // the manifest's), so no leg may carry a TCP data segment.
            let ip = pod.ipv4.to_string();
            api.upsert(fixtures::with_annotation(
                fixtures::istio_pod(NS, &pod.name, &node_name, &[&ip]),
                "sidecar-accel.io/accelerate",
                "all",
            ));
        }
        let kubeconfig = env.state_dir.with_extension("kubeconfig");
        api.write_kubeconfig(&kubeconfig, "fake")
            .expect("kubeconfig");
        let reference = image.get("ref").to_string();
        let (code, out) = run_installer(&kubeconfig, &["render", "--image", &reference]);
        assert!(code == 0 && out.contains(&reference), "render: {out}");
        let (code, out) = run_installer(
            &kubeconfig,
            &["install", "--image", &reference, "--timeout", "60s"],
        );
        assert_eq!(code, 0, "install: {out}");
        let ds = daemonset(&api).expect("the installed DaemonSet");
        Setup {
            api,
            kubeconfig,
            node_name,
            node,
            a,
            b,
            echo_pid,
            podman,
            image,
            ds,
            env,
        }
    }

    /// How the sandbox differs from a node: the test's own cgroup, pin
    /// dir, state dir and metrics port, and the API server by kubeconfig
    /// instead of the service account. On a hybrid cgroup host the cgroup
    /// v2 mount stands in for /sys/fs/cgroup (manifests/README.md).
    fn site(&self, metrics: &str) -> Site {
        let cg_root = cgroup2_mount();
        let cg_rel = self.env.cgroup.strip_prefix(&cg_root).expect("test cgroup");
        let kubeconfig = "/var/run/accel-test/kubeconfig";
        Site {
            node_name: self.node_name.clone(),
            host_ip: "127.0.0.1".into(),
            host_paths: BTreeMap::from([
                ("/sys/fs/cgroup".to_string(), cg_root),
                ("/run/sidecar-accel".to_string(), self.env.state_dir.clone()),
            ]),
            flags: vec![
                (
                    "--cgroup".into(),
                    format!("/host/sys/fs/cgroup/{}", cg_rel.display()),
                ),
                ("--pin-dir".into(), self.env.pin_dir.display().to_string()),
                ("--metrics-addr".into(), metrics.to_string()),
                ("--kubeconfig".into(), kubeconfig.into()),
            ],
            extra_mounts: vec![(self.kubeconfig.clone(), kubeconfig.into())],
        }
    }

    /// Starts the pod of `ds` and waits for its readiness probe.
    fn start(&self, ds: &Value) -> (PodRun, Container<'_>, String) {
        let metrics = format!("127.0.0.1:{}", free_port());
        let run = PodRun::from_daemonset(ds, &self.site(&metrics));
        assert_eq!(
            run.image,
            self.image.get("ref"),
            "the DaemonSet runs another image"
        );
        eprintln!("podman run {}", run.args.join(" "));
        let mut ctr = self.podman.start(&self.env.name, &run.args);
        let ready = ctr.wait_http_ok(&metrics, &run.readiness_path);
        eprintln!("ready {ready:?} after start");
        (run, ctr, metrics)
    }

    fn meshed_netns(&self) -> u64 {
        map_entries(&self.env.status_json(), "accel_meshed_netns")
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.kubeconfig);
    }
}

fn daemonset(api: &FakeApiServer) -> Option<Value> {
    api.get(
        "apps/v1",
        "DaemonSet",
        Some("sidecar-accel-system"),
        "accel-daemon",
    )
}

/// `accel-daemon verify` in B's network namespace (by its application's
/// pid), run with `podman exec` as an operator runs it with `kubectl
/// exec`: the container's capabilities, seccomp filter and /proc.
fn spawn_verify(s: &Setup, ctr: &Container) -> std::process::Child {
    let pid = s.echo_pid.to_string();
    let port = ECHO_PORT.to_string();
    let pin = s.env.pin_dir.display().to_string();
    s.podman
        .cmd()
        .args(["exec", &ctr.name, "/usr/local/bin/accel-daemon", "verify"])
        .args([
            "--pid",
            &pid,
            "-i",
            "lo",
            "--port",
            &port,
            "--duration",
            "4s",
        ])
        .args(["--json", "--expect", "accelerated", "--pin-dir", &pin])
        .args(["--state-dir", "/run/sidecar-accel"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn podman exec verify")
}

#[test]
fn the_image_runs_as_the_daemonset_says_accelerates_and_uninstalls_clean() {
    let s = Setup::new("image");
    let started = Instant::now();
    let (run, mut ctr, _metrics) = s.start(&s.ds);
    let pid = ctr.host_pid();
    assert_capabilities(&run, pid);
    if run.seccomp_filtered {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        assert!(
            status.lines().any(|l| l == "Seccomp:\t2"),
            "RuntimeDefault, but no seccomp filter on the daemon"
        );
    }
    assert_eq!(
        s.env.attachments(),
        ["accel_sockops"],
        "not attached once ready; log:\n{}",
        ctr.log()
    );
    // Both pods' namespaces found from inside the container, though no
    // process in them runs as root.
    let found = wait_until(Duration::from_secs(15), "both pods' namespaces", || {
        s.meshed_netns() == 2
    });
    eprintln!("pod namespaces resolved {found:?} after ready");

    const BYTES: usize = 512 * 1024;
    let before = s.env.status_json();
    let verify = spawn_verify(&s, &ctr);
    std::thread::sleep(Duration::from_millis(800));
    let legs = s.node.capture_legs(&s.a, &s.b, ECHO_PORT);
    let client = s.a.echo_client(s.b.addr_v4(ECHO_PORT), BYTES);
    client.report.assert_pattern_echoed(BYTES);
    assert_eq!(
        client.report.received_sha256,
        sha256_hex(&pattern::bytes(1, 0, BYTES))
    );
    client.finish();
    let (a_lo, bridge, b_lo) = legs.stop();
    let after = s.env.status_json();
    eprintln!("PSH: A lo {a_lo:?}, bridge {bridge:?}, B lo {b_lo:?}");
    let delta = |c: &str| counter_of(&after, c) - counter_of(&before, c);
    assert!(delta("passive_paired") >= 3, "three legs paired: {after}");
    assert_eq!(delta("redirect_failed"), 0, "{after}");
    assert_eq!(a_lo.psh_data, 0, "leg 1 (app -> sidecar in A) crossed TCP");
    assert_eq!(
        bridge.psh_data, 0,
        "leg 2 (sidecar A -> sidecar B) crossed TCP"
    );
    assert_eq!(b_lo.psh_data, 0, "leg 3 (sidecar B -> app) crossed TCP");
    let out = verify.wait_with_output().expect("verify");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify in the container printed no JSON ({e}; exit {:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let summary = &report["summary"];
    eprintln!("verify in the container: {summary}");
    assert!(
        out.status.success()
            && summary["accelerated"].as_u64().unwrap_or(0) >= 1
            && summary["not_accelerated"] == 0,
        "verify in the container (exit {:?}): {report}",
        out.status.code()
    );
    if let Some(peak) = ctr.memory_peak() {
        eprintln!("container memory peak: {} KiB", peak / 1024);
    }

    // Uninstall as in a cluster: the node drains and unloads, the
    // installer deletes the DaemonSet, the kubelet stops the pod.
    let (code, out) = run_installer(&s.kubeconfig, &["uninstall", "--timeout", "120s"]);
    assert!(code == 0 && out.contains("uninstalled"), "uninstall: {out}");
    assert!(daemonset(&s.api).is_none(), "the DaemonSet is left");
    let (exit, took) = ctr.stop(run.grace);
    assert_eq!(exit, Some(0), "stopped daemon exit; log:\n{}", ctr.log());
    assert!(
        took < run.grace,
        "stop took {took:?}, past the grace period"
    );
    assert!(s.env.attachments().is_empty(), "sock_ops left attached");
    assert!(!s.env.pin_dir.exists(), "pins left after uninstall");
    let left: Vec<_> = fs::read_dir(&s.env.pin_root)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left on bpffs: {left:?}");
    eprintln!("run to uninstall {:?}", started.elapsed());
}

/// `ds` without the capability `cap`.
fn without_cap(ds: &Value, cap: &str) -> Value {
    let mut ds = ds.clone();
    let add = ds
        .pointer_mut("/spec/template/spec/containers/0/securityContext/capabilities/add")
        .and_then(Value::as_array_mut)
        .expect("capabilities.add");
    let before = add.len();
    add.retain(|c| c != cap);
    assert_eq!(add.len() + 1, before, "the DaemonSet does not add {cap}");
    ds
}

/// What SECURITY.md says each of these is for, shown by taking it away:
/// SETUID (the default mode's self-test), hostPID and SYS_PTRACE (pods
/// whose processes are not root: their namespaces are never found).
#[test]
fn setuid_host_pid_and_sys_ptrace_are_each_needed() {
    let s = Setup::new("image-needs");
    let (_, mut ctr, _) = s.start(&without_cap(&s.ds, "SETUID"));
    let status = fs::read_to_string(s.env.state_dir.join("status.json")).unwrap_or_default();
    assert!(
        status.contains("self-test failed"),
        "without SETUID: no failed self-test in {status}\n{}",
        ctr.log()
    );
    assert!(s.env.attachments().is_empty(), "attached without SETUID");
    ctr.stop(Duration::from_secs(10));
    drop(ctr);

    let mut no_host_pid = s.ds.clone();
    let pod = no_host_pid
        .pointer_mut("/spec/template/spec")
        .and_then(Value::as_object_mut)
        .expect("pod spec");
    assert!(
        pod.remove("hostPID").is_some(),
        "the DaemonSet has no hostPID"
    );
    for (what, ds) in [
        ("without hostPID", no_host_pid),
        ("without SYS_PTRACE", without_cap(&s.ds, "SYS_PTRACE")),
    ] {
        let (_, mut ctr, _) = s.start(&ds);
        assert_eq!(
            s.env.attachments(),
            ["accel_sockops"],
            "{what}: {}",
            ctr.log()
        );
        // Found within milliseconds when they can be; three rescans here.
        std::thread::sleep(Duration::from_secs(6));
        assert_eq!(s.meshed_netns(), 0, "{what}: a pod namespace was found");
        ctr.stop(Duration::from_secs(10));
    }
    s.env.unload_ok();
}
