//! A private bpffs instance for the tests that take the pins' filesystem
//! away or make it read-only: never the host's /sys/fs/bpf.

use std::{fs, path::PathBuf, process::Command};

use crate::TestEnv;

/// Mounted on a directory of the test with `opts` (`""`: the defaults);
/// unmounted in Drop, which also releases whatever is pinned in it.
pub struct PrivateBpffs {
    pub dir: PathBuf,
    opts: String,
}

impl PrivateBpffs {
    pub fn new(env: &TestEnv, opts: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("{}-bpffs", env.name));
        fs::create_dir_all(&dir).expect("mkdir bpffs mount point");
        let fs = PrivateBpffs {
            dir,
            opts: opts.into(),
        };
        fs.mount();
        fs
    }

    pub fn mount(&self) {
        let mut cmd = Command::new("mount");
        cmd.args(["-t", "bpf"]);
        if !self.opts.is_empty() {
            cmd.args(["-o", &self.opts]);
        }
        let st = cmd.arg("bpf").arg(&self.dir).status().expect("mount");
        assert!(
            st.success(),
            "mount -t bpf -o {:?} {}",
            self.opts,
            self.dir.display()
        );
    }

    pub fn umount(&self) {
        let st = Command::new("umount")
            .arg(&self.dir)
            .status()
            .expect("umount");
        assert!(st.success(), "umount {}", self.dir.display());
    }

    pub fn mounted(&self) -> bool {
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
