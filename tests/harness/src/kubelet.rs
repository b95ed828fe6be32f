//! The kubelet's part, for a test: a DaemonSet's pod, as `podman run`
//! arguments. Every field of the pod and its container is either carried
//! over (capabilities, user, read-only root, seccomp, host namespaces,
//! hostPath mounts with their propagation, environment with the downward
//! API, arguments with `$(VAR)` expansion, memory and CPU limits) or named
//! here as deliberately left out (scheduling, probes the test does itself);
//! anything else fails the test, so a manifest change cannot slip past it.

use std::{collections::BTreeMap, fs, path::PathBuf, time::Duration};

use serde_json::Value;

/// What a node gives the pod, and what the test sandbox changes.
pub struct Site {
    pub node_name: String,
    pub host_ip: String,
    /// hostPath -> the directory on this machine that stands in for it.
    pub host_paths: BTreeMap<String, PathBuf>,
    /// Daemon flags whose values the sandbox replaces or adds
    /// (`--cgroup`, `--pin-dir`, `--metrics-addr`, `--kubeconfig`).
    pub flags: Vec<(String, String)>,
    /// Extra read-only mounts (host path, container path), e.g. the
    /// kubeconfig that stands in for the service-account token.
    pub extra_mounts: Vec<(PathBuf, String)>,
}

/// A pod of the DaemonSet, ready for `podman run`.
#[derive(Debug)]
pub struct PodRun {
    /// Everything after `podman run`: options, the image, the arguments.
    pub args: Vec<String>,
    pub image: String,
    /// The container's capabilities, as the manifest adds them.
    pub cap_add: Vec<String>,
    /// Whether the runtime's default seccomp filter applies.
    pub seccomp_filtered: bool,
    pub grace: Duration,
    pub readiness_path: String,
}

/// Pod-spec fields that only steer scheduling or the API server.
const POD_IGNORED: &[&str] = &[
    "serviceAccountName",
    "priorityClassName",
    "dnsPolicy",
    "tolerations",
    "affinity",
    "nodeSelector",
];
const CONTAINER_IGNORED: &[&str] = &["name", "imagePullPolicy", "ports", "livenessProbe"];

fn unknown(what: &str, key: &str) -> ! {
    panic!(
        "the DaemonSet's {what} has `{key}`, which tests/src/kubelet.rs does not know how to \
         run under podman: teach it, so the image test keeps running the manifest as written"
    )
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v}"))
}

impl PodRun {
    pub fn from_daemonset(ds: &Value, site: &Site) -> PodRun {
        let pod = &ds["spec"]["template"]["spec"];
        let containers = pod["containers"].as_array().expect("containers");
        assert_eq!(containers.len(), 1, "one container: {containers:?}");
        let mut run = PodRun {
            args: Vec::new(),
            image: String::new(),
            cap_add: Vec::new(),
            seccomp_filtered: false,
            grace: Duration::from_secs(30),
            readiness_path: String::new(),
        };
        // Kubernetes leaves rlimits to the runtime; podman's own defaults
        // (1048576) need CAP_SYS_RESOURCE, which this machine may not have.
        let mut args = vec![
            "--ulimit".to_string(),
            rlimit("nofile", libc::RLIMIT_NOFILE),
            "--ulimit".into(),
            "nproc=4096:4096".into(),
        ];
        args.extend(pod_args(pod, &mut run));
        let volumes = host_path_volumes(pod, site);
        let daemon_args = container_args(&containers[0], &volumes, site, &mut run, &mut args);
        for (host, inside) in &site.extra_mounts {
            args.extend(["--volume".into(), format!("{}:{inside}:ro", host.display())]);
        }
        args.push(by_digest(&run.image));
        args.extend(daemon_args);
        run.args = args;
        run
    }
}

fn pod_args(pod: &Value, run: &mut PodRun) -> Vec<String> {
    let mut args = Vec::new();
    for (key, v) in pod.as_object().expect("pod spec") {
        match key.as_str() {
            k if POD_IGNORED.contains(&k) => {}
            "containers" | "volumes" => {}
            "hostNetwork" if v == true => args.extend(["--network".into(), "host".into()]),
            "hostPID" if v == true => args.extend(["--pid".into(), "host".into()]),
            "hostIPC" if v == true => args.extend(["--ipc".into(), "host".into()]),
            "hostNetwork" | "hostPID" | "hostIPC" => {}
            "terminationGracePeriodSeconds" => {
                run.grace = Duration::from_secs(v.as_u64().expect("grace seconds"))
            }
            k => unknown("pod spec", k),
        }
    }
    args
}

/// The container's options into `args`; returns the daemon's arguments,
/// expanded and with the sandbox's flags.
fn container_args(
    c: &Value,
    volumes: &BTreeMap<String, PathBuf>,
    site: &Site,
    run: &mut PodRun,
    args: &mut Vec<String>,
) -> Vec<String> {
    let mut env = BTreeMap::new();
    let mut daemon_args = Vec::new();
    for (key, v) in c.as_object().expect("container") {
        match key.as_str() {
            k if CONTAINER_IGNORED.contains(&k) => {}
            "image" => run.image = str_of(v, "image").to_string(),
            "args" => {
                let list = v.as_array().expect("args");
                daemon_args = list.iter().map(|a| str_of(a, "arg").to_string()).collect()
            }
            "env" => {
                for e in v.as_array().expect("env") {
                    let name = str_of(&e["name"], "env name").to_string();
                    let value = env_value(e, site);
                    args.extend(["--env".into(), format!("{name}={value}")]);
                    env.insert(name, value);
                }
            }
            "readinessProbe" => {
                run.readiness_path = str_of(&v["httpGet"]["path"], "probe path").to_string()
            }
            "resources" => args.extend(limits(&v["limits"])),
            "securityContext" => args.extend(security(v, run)),
            "volumeMounts" => {
                for m in v.as_array().expect("volumeMounts") {
                    args.extend(["--volume".into(), mount(m, volumes)]);
                }
            }
            k => unknown("container", k),
        }
    }
    let mut daemon_args: Vec<String> = daemon_args.iter().map(|a| expand(a, &env)).collect();
    for (flag, value) in &site.flags {
        override_flag(&mut daemon_args, flag, value);
    }
    daemon_args
}

/// NAME:TAG@DIGEST as NAME@DIGEST: the runtime resolves it by its digest,
/// and podman takes no tag next to a digest.
fn by_digest(image: &str) -> String {
    let Some((name, digest)) = image.split_once('@') else {
        return image.to_string();
    };
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    let repo = match name[slash..].rfind(':') {
        Some(i) => &name[..slash + i],
        None => name,
    };
    format!("{repo}@{digest}")
}

/// `name=soft:hard` at this process's own limits.
fn rlimit(name: &str, resource: libc::__rlimit_resource_t) -> String {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit into a struct we own.
    assert_eq!(unsafe { libc::getrlimit(resource, &mut r) }, 0, "getrlimit");
    let value = |v: libc::rlim_t| match v {
        libc::RLIM_INFINITY => "-1".to_string(),
        v => v.to_string(),
    };
    format!("{name}={}:{}", value(r.rlim_cur), value(r.rlim_max))
}

fn env_value(e: &Value, site: &Site) -> String {
    if let Some(v) = e.get("value") {
        return str_of(v, "env value").to_string();
    }
    let field = str_of(&e["valueFrom"]["fieldRef"]["fieldPath"], "fieldPath");
    match field {
        "spec.nodeName" => site.node_name.clone(),
        // hostNetwork: the pod's address is the node's.
        "status.hostIP" | "status.podIP" => site.host_ip.clone(),
        f => unknown("downward API", f),
    }
}

/// Kubernetes' `$(VAR)` expansion of container arguments.
fn expand(arg: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = arg.to_string();
    for (k, v) in env {
        out = out.replace(&format!("$({k})"), v);
    }
    out
}

/// Gives `flag` the value `value`, whether the manifest writes `--f=v` or
/// `--f v`; appends it when absent.
pub fn override_flag(args: &mut Vec<String>, flag: &str, value: &str) {
    let eq = format!("{flag}=");
    if let Some(i) = args.iter().position(|a| a.starts_with(&eq)) {
        args[i] = format!("{flag}={value}");
    } else if let Some(i) = args.iter().position(|a| a == flag) {
        args[i + 1] = value.to_string();
    } else {
        args.extend([flag.to_string(), value.to_string()]);
    }
}

fn limits(limits: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(mem) = limits["memory"].as_str() {
        let bytes: u64 =
            match mem.split_at(mem.find(|c: char| !c.is_ascii_digit()).unwrap_or(mem.len())) {
                (n, "Mi") => n.parse::<u64>().expect("memory") << 20,
                (n, "Gi") => n.parse::<u64>().expect("memory") << 30,
                (n, "") => n.parse().expect("memory"),
                _ => unknown("memory limit", mem),
            };
        out.extend(["--memory".into(), bytes.to_string()]);
    }
    if let Some(cpu) = limits["cpu"].as_str() {
        let cpus = match cpu.strip_suffix('m') {
            Some(milli) => milli.parse::<f64>().expect("cpu") / 1000.0,
            None => cpu.parse().expect("cpu"),
        };
        out.extend(["--cpus".into(), cpus.to_string()]);
    }
    out
}

fn security(sc: &Value, run: &mut PodRun) -> Vec<String> {
    let mut out = Vec::new();
    if sc.get("seccompProfile").is_none() {
        // Kubernetes' default (without the kubelet's --seccomp-default).
        out.extend(["--security-opt".into(), "seccomp=unconfined".into()]);
    }
    for (key, v) in sc.as_object().expect("securityContext") {
        match key.as_str() {
            "capabilities" => {
                for d in v["drop"].as_array().into_iter().flatten() {
                    out.extend(["--cap-drop".into(), str_of(d, "cap").to_lowercase()]);
                }
                for a in v["add"].as_array().into_iter().flatten() {
                    run.cap_add.push(str_of(a, "cap").to_string());
                    out.extend(["--cap-add".into(), str_of(a, "cap").to_string()]);
                }
            }
            "readOnlyRootFilesystem" if v == true => {
                // Kubernetes adds no tmpfs on /tmp or /run; podman would.
                out.extend(["--read-only".into(), "--read-only-tmpfs=false".into()]);
            }
            "readOnlyRootFilesystem" => {}
            "allowPrivilegeEscalation" if v == false => {
                out.extend(["--security-opt".into(), "no-new-privileges".into()]);
            }
            "allowPrivilegeEscalation" => {}
            "runAsUser" => out.extend(["--user".into(), v.to_string()]),
            "seccompProfile" => match v["type"].as_str() {
                Some("Unconfined") => {
                    out.extend(["--security-opt".into(), "seccomp=unconfined".into()])
                }
                Some("RuntimeDefault") => run.seccomp_filtered = true,
                _ => unknown("seccompProfile", &v.to_string()),
            },
            k => unknown("securityContext", k),
        }
    }
    out
}

/// Volume name -> the host directory standing in for its hostPath.
fn host_path_volumes(pod: &Value, site: &Site) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for v in pod["volumes"].as_array().into_iter().flatten() {
        let name = str_of(&v["name"], "volume name").to_string();
        let hp = v
            .get("hostPath")
            .unwrap_or_else(|| unknown("volume (not a hostPath)", &name));
        let path = str_of(&hp["path"], "hostPath");
        let host = site
            .host_paths
            .get(path)
            .cloned()
            .unwrap_or_else(|| PathBuf::from(path));
        match hp["type"].as_str() {
            Some("DirectoryOrCreate") => fs::create_dir_all(&host).expect("create hostPath"),
            Some("Directory") => assert!(
                host.is_dir(),
                "hostPath {path} ({}) missing",
                host.display()
            ),
            t => unknown("hostPath type", &format!("{t:?}")),
        }
        out.insert(name, host);
    }
    out
}

fn mount(m: &Value, volumes: &BTreeMap<String, PathBuf>) -> String {
    for key in m.as_object().expect("volumeMount").keys() {
        if !["name", "mountPath", "readOnly", "mountPropagation"].contains(&key.as_str()) {
            unknown("volumeMount", key);
        }
    }
    let name = str_of(&m["name"], "mount name");
    let host = volumes
        .get(name)
        .unwrap_or_else(|| panic!("volumeMount {name} has no volume"));
    let mut opts = Vec::new();
    if m["readOnly"] == true {
        opts.push("ro");
    }
    match m["mountPropagation"].as_str() {
        None | Some("None") => {}
        Some("HostToContainer") => opts.push("rslave"),
        Some("Bidirectional") => opts.push("rshared"),
        Some(p) => unknown("mountPropagation", p),
    }
    let path = str_of(&m["mountPath"], "mountPath");
    match opts.is_empty() {
        true => format!("{}:{path}", host.display()),
        false => format!("{}:{path}:{}", host.display(), opts.join(",")),
    }
}

/// Capability numbers (linux/capability.h) of the ones a manifest may add.
fn cap_bit(name: &str) -> u32 {
    match name {
        "DAC_READ_SEARCH" => 2,
        "SETGID" => 6,
        "SETUID" => 7,
        "NET_ADMIN" => 12,
        "NET_RAW" => 13,
        "SYS_PTRACE" => 19,
        "SYS_ADMIN" => 21,
        "SYS_RESOURCE" => 24,
        "PERFMON" => 38,
        "BPF" => 39,
        other => panic!("add CAP_{other}'s number to tests/src/kubelet.rs"),
    }
}

/// A capability mask line (`CapEff:`, `CapBnd:`) of /proc/PID/status.
fn caps_of(pid: u32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    u64::from_str_radix(hex.trim(), 16).expect("capability mask")
}

impl PodRun {
    /// Asserts that the container's process `pid` has exactly the added
    /// capabilities this machine can grant (those in this process's own
    /// bounding set); returns the ones it cannot.
    pub fn assert_capabilities(&self, pid: u32) -> Vec<String> {
        let own = caps_of(std::process::id(), "CapBnd:");
        let wanted: u64 = self.cap_add.iter().map(|c| 1u64 << cap_bit(c)).sum();
        assert_eq!(
            caps_of(pid, "CapEff:"),
            wanted & own,
            "the daemon's effective capabilities are not the manifest's ({:?})",
            self.cap_add
        );
        self.cap_add
            .iter()
            .filter(|c| own & (1 << cap_bit(c)) == 0)
            .cloned()
            .collect()
    }
}
