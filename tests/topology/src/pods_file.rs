//! The pods file an operator would write.

use std::{fs, path::PathBuf};

use accel_test_harness::TestEnv;

use crate::pod::*;

/// The pods file (docs/reference.md, "Pods file") an operator would write for `pods`,
/// each with extra TOML lines such as opt-outs; removed on drop.
pub struct PodsFile {
    pub path: PathBuf,
}

impl PodsFile {
    pub fn write(env: &TestEnv, pods: &[(&Pod, &str)]) -> std::io::Result<Self> {
        let mut text = String::from("# meshed pods on this node\n");
        for (pod, extra) in pods {
            text += &format!(
                "[[pod]]\nname = \"default/{}\"\nips = [\"{}\", \"{}\"]\nnetns = \"{}\"\n{extra}\n",
                pod.name,
                pod.ipv4,
                pod.ipv6,
                pod.netns_path.display()
            );
        }
        let path = env.state_dir.with_extension("pods.toml");
        fs::write(&path, text)?;
        Ok(PodsFile { path })
    }

    /// The `--pods-file` argument.
    pub fn arg(&self) -> String {
        self.path.display().to_string()
    }
}

impl Drop for PodsFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}
