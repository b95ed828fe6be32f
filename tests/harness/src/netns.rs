//! A bare private network namespace (the topology crate builds whole nodes).

use std::process::Command;

use crate::{next_seq, require_root};

/// A private network namespace for a test, removed in Drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        require_root();
        let name = format!("accel-test-{}-{}-{tag}", std::process::id(), next_seq());
        let ns = Netns { name };
        ns.ip(&["netns", "add", &ns.name]);
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    fn ip(&self, args: &[&str]) {
        let st = Command::new("ip")
            .args(args)
            .status()
            .expect("FAILING LOUDLY: iproute2 is needed");
        assert!(st.success(), "ip {args:?} failed");
    }

    /// Runs a command inside the namespace and asserts it succeeded.
    pub fn exec_ok(&self, args: &[&str]) {
        let st = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .status()
            .expect("ip netns exec");
        assert!(st.success(), "in {}: {args:?} failed", self.name);
    }

    /// A command that will run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}
