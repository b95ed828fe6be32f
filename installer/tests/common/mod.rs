//! The fake cluster the installer's tests run against: a fake API server, a
//! kubeconfig whose context "a" points at it, and the installer run
//! in-process with its exit code, stdout and stderr; and, for the manifest
//! tests, the files under manifests/ (`manifest_files`).
// Each test file uses part of it.
#![allow(dead_code)]

pub mod manifest_files;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use accel_fake_apiserver::{FakeApiServer, fixtures};
use accel_k8s::keys;
use accel_k8s::node::{NodeState, NodeStatus};
use serde_json::Value;

pub const NS: &str = keys::DEFAULT_NAMESPACE;

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    #[allow(clippy::new_without_default)]
    pub fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "accel-installer-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One fake cluster and a kubeconfig whose context "a" points at it.
pub struct Env {
    pub server: Arc<FakeApiServer>,
    pub kubeconfig: PathBuf,
    /// Holds the kubeconfig; removed on drop.
    pub dir: TempDir,
}

impl Env {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Env {
        let server = FakeApiServer::start().unwrap();
        let dir = TempDir::new();
        let kubeconfig = dir.0.join("kubeconfig");
        server.write_kubeconfig(&kubeconfig, "a").unwrap();
        Env {
            server: Arc::new(server),
            kubeconfig,
            dir,
        }
    }

    /// The usual worker nodes: three eligible kernels.
    pub fn with_workers(self) -> Env {
        for (name, kernel) in [
            ("n1", "5.10.134-16.al8.x86_64"),
            ("n2", "6.1.0-18-cloud-amd64"),
            ("n3", "5.10.134-17.3.al8.x86_64"),
        ] {
            self.server.upsert(fixtures::node(
                name,
                kernel,
                "Alibaba Cloud Linux 3.2104 U10",
            ));
        }
        self
    }

    pub fn run(&self, args: &[&str]) -> Run {
        run_with(&self.kubeconfig, args)
    }

    pub fn node(&self, name: &str) -> Value {
        self.server.get("v1", "Node", None, name).unwrap()
    }

    /// The installed DaemonSet; panics if there is none.
    pub fn daemonset(&self) -> Value {
        self.server
            .get("apps/v1", "DaemonSet", Some(NS), "accel-daemon")
            .expect("the DaemonSet is installed")
    }

    pub fn report(&self, node: &str, status: &NodeStatus) {
        let obj = self.node(node);
        let obj = fixtures::with_annotation(
            obj,
            keys::NODE_STATUS_ANNOTATION,
            &serde_json::to_string(status).unwrap(),
        );
        self.server.upsert(fixtures::with_label(
            obj,
            keys::ACCELERATED_LABEL,
            status.label_value(),
        ));
    }
}

/// A daemon's report: `state`, `reason` and `kernel` as given, the rest as a
/// 0.1.0 daemon with three meshed pods writes it.
pub fn status(state: NodeState, reason: &str, kernel: &str) -> NodeStatus {
    NodeStatus {
        state,
        reason: reason.into(),
        daemon_version: "0.1.0".into(),
        kernel: kernel.into(),
        meshed_pods: 3,
        failed_checks: Vec::new(),
        unload_token: None,
        updated: "2026-11-23T16:00:00Z".into(),
        heartbeat_seconds: 0,
    }
}

pub struct Run {
    pub code: i32,
    pub out: String,
    pub err: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.out, self.err
        )
    }
}

pub fn run_with(kubeconfig: &Path, args: &[&str]) -> Run {
    let mut argv = vec![
        "accel-installer".to_string(),
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
        "--poll-interval".into(),
        "50ms".into(),
    ];
    argv.extend(args.iter().map(|s| s.to_string()));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = accel_installer::run(argv.clone(), &mut out, &mut err, false);
    let r = Run {
        code,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
    };
    // ACCEL_SHOW_OUTPUT=1 prints every run, to review what operators see.
    if std::env::var_os("ACCEL_SHOW_OUTPUT").is_some() {
        eprintln!("$ {}\n{r:?}", argv[5..].join(" "));
    }
    r
}

/// The line of a table whose first column is `first`.
pub fn row<'a>(out: &'a str, first: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(first))
        .unwrap_or_else(|| panic!("no row {first} in:\n{out}"))
}

/// Asserts that the row of a table whose first column is `first` holds
/// every one of `parts`.
pub fn assert_row(out: &str, first: &str, parts: &[&str]) {
    let r = row(out, first);
    let missing: Vec<&&str> = parts.iter().filter(|p| !r.contains(**p)).collect();
    assert!(missing.is_empty(), "row {first} lacks {missing:?}: {r}");
}
