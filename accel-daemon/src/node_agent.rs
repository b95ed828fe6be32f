//! The daemon's side of the cluster: it publishes its node's status (label
//! and annotation), raises an Event when the gate fails, and carries out
//! the installer's unload request (drain, detach, report, stay idle).
//!
//! Every call has a deadline: an API server that hangs must not stall the
//! daemon loop, and the datapath itself never waits on the API server.

use std::{
    path::PathBuf,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use accel_bpf::abi;
use accel_k8s::{
    node::{NodeState, NodeStatus},
    report::NodeReporter,
};
use tracing::{info, warn};

use crate::{datapath::Datapath, report::DaemonState, server::Shared};

const API_DEADLINE: Duration = Duration::from_secs(5);

/// What the loop must do after a tick.
pub enum Next {
    Continue,
    /// The uninstall was withdrawn after the datapath was removed: exit so
    /// the kubelet restarts the daemon, which loads it afresh.
    Restart,
}

pub struct NodeAgent {
    reporter: NodeReporter,
    state: NodeState,
    /// The unload request handled (or being refused), by token.
    handled: Option<String>,
    reason_override: Option<String>,
    pin_dir: PathBuf,
    drain_timeout: Duration,
    gate_event_sent: bool,
    api_errors: u64,
}

async fn deadline<T>(f: impl Future<Output = Result<T, kube::Error>>) -> Result<T, String> {
    match tokio::time::timeout(API_DEADLINE, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {API_DEADLINE:?}")),
    }
}

impl NodeAgent {
    pub fn new(reporter: NodeReporter, pin_dir: PathBuf, drain_timeout: Duration) -> Self {
        NodeAgent {
            reporter,
            state: NodeState::Unaccelerated,
            handled: None,
            reason_override: None,
            pin_dir,
            drain_timeout,
            gate_event_sent: false,
            api_errors: 0,
        }
    }

    /// Before the gate: is an uninstall pending for this node? Then the
    /// daemon must not load anything (and removes what a previous run left).
    pub async fn pending_unload(&mut self) -> Option<String> {
        match deadline(self.reporter.unload_request()).await {
            Ok(token) => token,
            Err(e) => {
                warn!(error = %e, "cannot read this node's object; assuming no uninstall is pending");
                None
            }
        }
    }

    /// Removes the datapath for an uninstall that was pending at start.
    pub async fn unload_at_start(&mut self, token: String, state: &mut DaemonState) {
        let outcome = self.remove_datapath(None).await;
        self.finish_unload(token, outcome, state);
    }

    /// Drains and removes the datapath (the daemon's own handles, else the
    /// pins), off the async runtime: the drain waits up to its timeout.
    async fn remove_datapath(&self, dp: Option<Datapath>) -> Result<(), String> {
        let pin_dir = self.pin_dir.clone();
        let timeout = self.drain_timeout;
        tokio::task::spawn_blocking(move || {
            let dp = match dp {
                Some(dp) => dp,
                None if pin_dir.exists() => Datapath::open(&pin_dir).map_err(|e| e.to_string())?,
                None => return Ok(()),
            };
            dp.unload(timeout, false)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()))
    }

    fn finish_unload(
        &mut self,
        token: String,
        outcome: Result<(), String>,
        state: &mut DaemonState,
    ) {
        match outcome {
            Ok(()) => {
                info!(%token, "datapath removed on the installer's request; staying idle");
                self.state = NodeState::Unloaded;
                self.reason_override =
                    Some("removed on request of `accel-installer uninstall`".into());
            }
            Err(e) => {
                warn!(%token, error = %e, "uninstall refused: the datapath stays");
                self.state = NodeState::UnloadRefused;
                self.reason_override = Some(e);
            }
        }
        state.accelerated = false;
        state.reason = self.reason_override.clone().unwrap_or_default();
        self.handled = Some(token);
    }

    fn status(&self, daemon: &DaemonState) -> NodeStatus {
        let state = match self.state {
            NodeState::Unloaded | NodeState::UnloadRefused | NodeState::Unloading => self.state,
            _ if daemon.accelerated => NodeState::Accelerating,
            _ => NodeState::Unaccelerated,
        };
        let reason = match (&self.reason_override, state) {
            (Some(r), _) => r.clone(),
            (None, NodeState::Accelerating) => format!(
                "accelerating new connections of {} meshed pods on this node",
                daemon.pods.len()
            ),
            (None, _) => daemon.reason.clone(),
        };
        NodeStatus {
            state,
            reason,
            daemon_version: daemon.version.clone(),
            kernel: daemon.kernel_release.clone(),
            meshed_pods: u32::try_from(daemon.pods.len()).unwrap_or(u32::MAX),
            failed_checks: daemon
                .checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| format!("{}: {}", c.name, c.detail))
                .collect(),
            unload_token: match self.state {
                NodeState::Unloaded | NodeState::UnloadRefused => self.handled.clone(),
                _ => None,
            },
            updated: accel_k8s::node::now_rfc3339(),
        }
    }

    async fn publish(&mut self, daemon: &DaemonState) {
        let status = self.status(daemon);
        match deadline(self.reporter.publish(&status)).await {
            Ok(true) => {
                info!(node = self.reporter.node_name(), state = ?status.state, reason = %status.reason, "node status published")
            }
            Ok(false) => {}
            Err(e) => {
                self.api_errors += 1;
                // Once, then quietly: the API server may be away for long.
                if self.api_errors == 1 || self.api_errors.is_multiple_of(100) {
                    warn!(error = %e, "publishing node status failed; will retry");
                }
            }
        }
        if status.state == NodeState::Unaccelerated && !self.gate_event_sent {
            match deadline(self.reporter.gate_failed(&status.reason)).await {
                Ok(()) => self.gate_event_sent = true,
                Err(e) => warn!(error = %e, "emitting the gate event failed; will retry"),
            }
        }
    }

    /// One round: follow the unload request, publish the status.
    pub async fn tick(&mut self, shared: &Arc<Shared>, daemon: &mut DaemonState) -> Next {
        // A failed read is retried next tick (publish below counts errors).
        let request = deadline(self.reporter.unload_request()).await.ok();
        match request {
            Some(Some(token)) if self.handled.as_ref() != Some(&token) => {
                self.unload(token, shared, daemon).await;
            }
            Some(None) if self.handled.is_some() => {
                self.handled = None;
                self.reason_override = None;
                match self.state {
                    NodeState::Unloaded => {
                        info!(
                            "uninstall withdrawn after the datapath was removed; restarting to load it again"
                        );
                        return Next::Restart;
                    }
                    NodeState::UnloadRefused => {
                        let resumed = shared.datapath.lock().ok().and_then(|mut g| {
                            g.as_mut().map(|dp| dp.set_mode(abi::MODE_ACCELERATE))
                        });
                        match resumed {
                            Some(Ok(())) => {
                                info!("uninstall withdrawn; accelerating again");
                                daemon.accelerated = true;
                                daemon.reason.clear();
                                shared.accelerated.store(true, Ordering::Relaxed);
                            }
                            other => warn!(
                                ?other,
                                "uninstall withdrawn but the datapath cannot be resumed"
                            ),
                        }
                    }
                    _ => {}
                }
                self.state = NodeState::Unaccelerated;
            }
            _ => {}
        }
        self.publish(daemon).await;
        Next::Continue
    }

    async fn unload(&mut self, token: String, shared: &Arc<Shared>, daemon: &mut DaemonState) {
        info!(%token, "uninstall requested: draining accelerated connections, then removing the datapath");
        self.state = NodeState::Unloading;
        self.reason_override = Some("uninstall: draining accelerated receive queues".into());
        self.publish(daemon).await;
        let dp = shared.datapath.lock().ok().and_then(|mut g| g.take());
        shared.accelerated.store(false, Ordering::Relaxed);
        let outcome = self.remove_datapath(dp).await;
        if outcome.is_err() && self.pin_dir.exists() {
            // Refused: the datapath is pinned and in passthrough; keep a
            // handle so metrics still read it and a withdrawal can resume it.
            if let (Ok(dp), Ok(mut g)) = (Datapath::open(&self.pin_dir), shared.datapath.lock()) {
                *g = Some(dp);
            }
        }
        self.finish_unload(token, outcome, daemon);
        if let Ok(mut r) = shared.reason.lock() {
            r.clone_from(&daemon.reason);
        }
    }
}
