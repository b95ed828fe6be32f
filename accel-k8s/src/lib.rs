//! The Kubernetes side of sidecar acceleration, shared by the node daemon and
//! the installer: which pods are meshed ([`mesh`]), which nodes qualify
//! ([`node`], [`kernel`]), the names both sides use ([`keys`]), and the
//! daemon's pod watcher and node reporter ([`watch`], [`report`]).

pub mod kernel;
pub mod keys;
pub mod mesh;
pub mod net;
pub mod node;
pub mod pods_file;
pub mod report;
pub mod throttle;
pub mod watch;
