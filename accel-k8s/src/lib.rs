//! The Kubernetes side of sidecar acceleration, shared by the node daemon and
//! the installer: which pods are meshed ([`mesh`]), which nodes qualify
//! ([`node`], [`kernel`]), the names both sides use ([`keys`]), and the
//! daemon's pod and node watchers and node reporter ([`watch`],
//! [`node_watch`], [`report`]).

pub mod kernel;
pub mod keys;
pub mod mesh;
pub mod names;
pub mod net;
pub mod node;
pub mod node_watch;
pub mod pods_file;
pub mod report;
pub mod throttle;
pub mod watch;
