//! The host under the tests: cgroup v2, bpffs, attachments, cleanup.

use std::{
    fs,
    os::{fd::AsRawFd, unix::process::CommandExt},
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::Duration,
};

use accel_bpf::host::{BPF_FS_MAGIC, parse_cgroup2_mount};
use serde_json::Value;

/// `uname -r`: the release a node object of this machine would report.
pub fn running_kernel() -> String {
    let out = Command::new("uname").arg("-r").output().expect("uname");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The cgroup v2 mount point, from /proc/self/mountinfo.
pub fn find_cgroup2_mount() -> Option<PathBuf> {
    parse_cgroup2_mount(&fs::read_to_string("/proc/self/mountinfo").ok()?)
}

pub fn cgroup2_mount() -> PathBuf {
    find_cgroup2_mount().expect("FAILING LOUDLY: no cgroup v2 mount on this machine")
}

/// Mounts bpffs at /sys/fs/bpf unless it is already there. Test binaries
/// run in parallel: the check and the mount hold a lock, or two of them
/// stack two bpffs mounts there on a fresh machine.
pub fn mount_bpffs_if_needed() -> Result<(), String> {
    let lock = fs::File::create("/run/accel-tests-bpffs.lock")
        .map_err(|e| format!("creating /run/accel-tests-bpffs.lock: {e}"))?;
    // SAFETY: flock on a file we hold; released when `lock` drops.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(format!("locking: {}", std::io::Error::last_os_error()));
    }
    let path = c"/sys/fs/bpf";
    // SAFETY: statfs into a zeroed struct we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and output buffer.
    if unsafe { libc::statfs(path.as_ptr(), &mut st) } == 0 && st.f_type as i64 == BPF_FS_MAGIC {
        return Ok(());
    }
    let status = Command::new("mount")
        .args(["-t", "bpf", "bpf", "/sys/fs/bpf"])
        .status()
        .map_err(|e| format!("running mount -t bpf: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err("cannot mount bpffs at /sys/fs/bpf".into())
    }
}

pub(crate) fn ensure_bpffs() {
    mount_bpffs_if_needed().expect("FAILING LOUDLY: bpffs is needed");
}

pub fn attachments(cgroup: &Path) -> Vec<String> {
    let out = Command::new("bpftool")
        .args(["cgroup", "show"])
        .arg(cgroup)
        .arg("-j")
        .output()
        .expect("FAILING LOUDLY: bpftool is needed (apt-get install bpftool)");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(vec![]));
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Makes `cmd` move itself into `cgroup` before exec. The returned file must
/// outlive the spawn (it is the open cgroup.procs).
pub fn join_cgroup_on_exec(cmd: &mut Command, cgroup: &Path) -> fs::File {
    let procs = fs::OpenOptions::new()
        .write(true)
        .open(cgroup.join("cgroup.procs"))
        .expect("open cgroup.procs");
    let fd = procs.as_raw_fd();
    // SAFETY: only write(2) on an fd opened before fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    procs
}

/// Kills every process in `cgroup` and its children (cgroup.kill, then
/// SIGKILL for kernels without it) and removes the child cgroups.
pub fn kill_cgroup_tree(cgroup: &Path) {
    if !cgroup.exists() {
        return;
    }
    if let Ok(entries) = fs::read_dir(cgroup) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                kill_cgroup_tree(&e.path());
            }
        }
    }
    let _ = fs::write(cgroup.join("cgroup.kill"), "1");
    for _ in 0..100 {
        let procs = fs::read_to_string(cgroup.join("cgroup.procs")).unwrap_or_default();
        if procs.trim().is_empty() {
            break;
        }
        for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
            // SAFETY: plain kill(2).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        thread::sleep(Duration::from_millis(20));
    }
    if let Ok(entries) = fs::read_dir(cgroup) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                let _ = fs::remove_dir(e.path());
            }
        }
    }
}

/// Removes a directory tree file by file (bpffs has no recursive rmdir).
pub fn remove_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                remove_tree(&p);
            } else {
                let _ = fs::remove_file(&p);
            }
        }
    }
    let _ = fs::remove_dir(dir);
}
