//! The workspace binaries a test runs, each built once per test process.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Mutex,
};

/// The profile directory this process runs from (`target/debug`): a test
/// binary lives in its `deps/`, a tool binary in the directory itself.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("an executable lives in a directory");
    match dir.file_name() {
        Some(name) if name == "deps" => dir.parent().unwrap_or(dir).to_path_buf(),
        _ => dir.to_path_buf(),
    }
}

/// `bin` of the workspace package `package`, as the tests run it: the path
/// in the environment variable `env_override` if set (nothing is built
/// then), else the binary in this process's profile directory, built once
/// per process with `cargo build -p PACKAGE --bin BIN`. A running
/// `cargo test` holds no build lock, so the nested build cannot deadlock;
/// it uses the same target directory and profile as the test binary, and is
/// a no-op when `cargo build --workspace --bins` ran before.
pub fn workspace_bin(package: &str, bin: &str, env_override: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env_override) {
        let path = PathBuf::from(path);
        assert!(
            path.exists(),
            "FAILING LOUDLY: {env_override}={} does not exist",
            path.display()
        );
        return path;
    }
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let profile_dir = profile_dir();
    let path = profile_dir.join(bin);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|b| b == bin) {
        cargo_build(&profile_dir, package, bin);
        built.push(bin.to_string());
    }
    assert!(
        path.exists(),
        "FAILING LOUDLY: {} does not exist after building it",
        path.display()
    );
    path
}

/// `cargo build -p PACKAGE --bin BIN` into the target directory and profile
/// that `profile_dir` (`<target>/<profile>`) belongs to.
fn cargo_build(profile_dir: &Path, package: &str, bin: &str) {
    let target_dir = profile_dir.parent().unwrap_or(profile_dir);
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .args(["--quiet", "-p", package, "--bin", bin]);
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(profile) => {
            cmd.args(["--profile", profile]);
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "accel-test-harness: building {bin} ({cmd:?})"
    );
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("FAILING LOUDLY: running {cmd:?}: {e}"));
    assert!(
        status.success(),
        "FAILING LOUDLY: {cmd:?} failed ({status}); fix the build, or set the binary's \
         path in its environment variable"
    );
}

/// The real daemon binary, built on first use (see [`workspace_bin`]);
/// `ACCEL_DAEMON_BIN` names another one.
pub fn daemon_bin() -> PathBuf {
    workspace_bin("accel-daemon", "accel-daemon", "ACCEL_DAEMON_BIN")
}

/// The pod workload binary (echo server/client, IPv6 sidecar proxy), built
/// on first use; `ACCEL_POD_BIN` names another one.
pub fn pod_bin() -> PathBuf {
    workspace_bin("accel-test-tools", "accel-pod", "ACCEL_POD_BIN")
}

/// The loopback load generator with its own echo server, built on first
/// use; `ACCEL_LOADGEN_BIN` names another one.
pub fn loadgen_bin() -> PathBuf {
    workspace_bin("accel-test-tools", "accel-loadgen", "ACCEL_LOADGEN_BIN")
}

/// The traffic driver of the integrity suites, built on first use;
/// `ACCEL_INTEGRITY_BIN` names another one.
pub fn integrity_bin() -> PathBuf {
    workspace_bin("accel-test-tools", "accel-integrity", "ACCEL_INTEGRITY_BIN")
}
