//! The daemon's side of the cluster: it publishes its node's status (label
//! and annotation), raises an Event when the gate fails, and carries out
//! the installer's unload request (drain, detach, report, stay idle).
//!
//! Every call has a deadline: an API server that hangs must not stall the
//! daemon loop, and the datapath itself never waits on the API server.
//!
//! # API cost
//!
//! O(1) per node at rest. The unload request arrives by a watch of the
//! node's own object ([`accel_k8s::node_watch`]): the agent wakes when it
//! changes, and otherwise every [`LOCAL_TICK`] to look at the daemon's own
//! state, which costs no request. The status is patched when it changes and
//! once per heartbeat ([`accel_k8s::report::HEARTBEAT`], 5 min). At rest a
//! node's daemon sends about 0.6 requests per minute: 0.2 heartbeat patches
//! and the two watches' renewals (one each per 290 s server-side timeout).
//! Failed writes back off up to [`RETRY_MAX`].

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use accel_bpf::abi;
use accel_k8s::{
    node::{NodeState, NodeStatus},
    node_watch::NodeView,
    report::NodeReporter,
    throttle::Throttle,
};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::{
    datapath::{Datapath, DatapathError},
    held::Announcement,
    lend::Owner,
    state::{DaemonState, State},
};

#[cfg(test)]
mod api_cost;
#[cfg(test)]
mod tests;

const API_DEADLINE: Duration = Duration::from_secs(5);

/// How often the agent looks at the daemon's state for a status change
/// (no request unless it changed or the heartbeat is due).
pub const LOCAL_TICK: Duration = Duration::from_secs(1);

/// The longest wait between retries of a failed status patch or Event.
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// Wakes the agent: on its own node's changes at once, else every [`LOCAL_TICK`].
pub struct Wake {
    tick: tokio::time::Interval,
    node: watch::Receiver<NodeView>,
    node_open: bool,
}

impl Wake {
    pub async fn next(&mut self) {
        tokio::select! {
            _ = self.tick.tick() => {}
            changed = self.node.changed(), if self.node_open => {
                // The watcher task ended (shutdown): ticks only.
                self.node_open = changed.is_ok();
            }
        }
    }
}

/// The next wake-up of `w`, or never.
pub async fn wake(w: &mut Option<Wake>) {
    match w {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}

/// What the loop must do after a tick.
pub enum Next {
    Continue,
    /// The uninstall was withdrawn after the datapath was removed: exit so
    /// the kubelet restarts the daemon, which loads it afresh.
    Restart,
}

pub struct NodeAgent {
    reporter: NodeReporter,
    node: watch::Receiver<NodeView>,
    state: NodeState,
    /// The unload request handled (or being refused), by token.
    handled: Option<String>,
    reason_override: Option<String>,
    pin_dir: PathBuf,
    drain_timeout: Duration,
    gate_event_sent: bool,
    quiet: Throttle,
    /// After a failed write: not before then, and the wait after the next failure.
    retry: Option<(Instant, Duration)>,
}

async fn deadline<T>(f: impl Future<Output = Result<T, kube::Error>>) -> Result<T, String> {
    match tokio::time::timeout(API_DEADLINE, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {API_DEADLINE:?}")),
    }
}

impl NodeAgent {
    /// Starts the watch of the node's object: call inside the runtime.
    pub fn new(reporter: NodeReporter, pin_dir: PathBuf, drain_timeout: Duration) -> Self {
        let node = accel_k8s::node_watch::spawn_node_watcher(
            reporter.client().clone(),
            reporter.node_name(),
        );
        NodeAgent {
            reporter,
            node,
            state: NodeState::Unaccelerated,
            handled: None,
            reason_override: None,
            pin_dir,
            drain_timeout,
            gate_event_sent: false,
            quiet: Throttle::default(),
            retry: None,
        }
    }

    /// What wakes [`NodeAgent::tick`]; create inside the runtime.
    pub fn waker(&self) -> Wake {
        let mut tick = tokio::time::interval(LOCAL_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Wake {
            tick,
            node: self.node.clone(),
            node_open: true,
        }
    }

    /// Before the gate: is an uninstall pending for this node? Then the
    /// daemon must not load anything (and removes what a previous run left).
    /// Waits for the node watch's first list, at most [`API_DEADLINE`].
    pub async fn pending_unload(&mut self) -> Option<String> {
        let mut rx = self.node.clone();
        let first =
            tokio::time::timeout(API_DEADLINE, rx.wait_for(|v| v.synced || v.error.is_some()))
                .await;
        let view = match first {
            Ok(Ok(v)) => v.clone(),
            Ok(Err(_)) => NodeView::default(),
            Err(_) => NodeView {
                error: Some(format!("no answer within {API_DEADLINE:?}")),
                ..NodeView::default()
            },
        };
        if !view.synced {
            warn!(
                error = view.error.as_deref().unwrap_or("node watch ended"),
                "cannot read this node's object; assuming no uninstall is pending"
            );
        }
        view.unload_request
    }

    /// Removes the datapath for an uninstall that was pending at start.
    pub async fn unload_at_start(&mut self, token: String, state: &State) {
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

    fn finish_unload(&mut self, token: String, outcome: Result<(), String>, state: &State) {
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
        state.set_unaccelerated(self.reason_override.clone().unwrap_or_default());
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
        // Pods the datapath accelerates: none on a node without one, however
        // many meshed pods the watch lists.
        let meshed_pods = if state.accelerated() {
            u32::try_from(daemon.pods.len()).unwrap_or(u32::MAX)
        } else {
            0
        };
        NodeStatus {
            state,
            reason,
            daemon_version: daemon.version.clone(),
            kernel: daemon.kernel_release.clone(),
            meshed_pods,
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
            heartbeat_seconds: 0,
        }
    }

    /// After a failed write: back off (1 s, doubling, up to [`RETRY_MAX`])
    /// and log, at most once a minute.
    fn failed(&mut self, what: &str, error: &str) {
        let delay = self
            .retry
            .map_or(LOCAL_TICK, |(_, d)| (d * 2).min(RETRY_MAX));
        self.retry = Some((Instant::now() + delay, delay));
        if let Some(r) = self.quiet.failure() {
            warn!(%error, failures = r.failures, suppressed = r.suppressed, retry_in = ?delay,
                "{what} failed; will retry (logged at most once a minute)");
        }
    }

    async fn publish(&mut self, state: &State) {
        if self.retry.is_some_and(|(at, _)| Instant::now() < at) {
            return;
        }
        let status = state.read(|daemon| self.status(daemon));
        match deadline(self.reporter.publish(&status)).await {
            Ok(sent) => {
                self.retry = None;
                if let Some(failures) = self.quiet.success() {
                    info!(failures, "node status written again after failures");
                }
                if sent {
                    info!(node = self.reporter.node_name(), state = ?status.state, reason = %status.reason, "node status published");
                }
            }
            Err(e) => return self.failed("publishing node status", &e),
        }
        if status.state == NodeState::Unaccelerated && !self.gate_event_sent {
            match deadline(self.reporter.gate_failed(&status.reason)).await {
                Ok(()) => self.gate_event_sent = true,
                Err(e) => self.failed("emitting the gate event", &e),
            }
        }
    }

    /// The status as it would be published now (tests).
    #[cfg(test)]
    pub fn current_status(&self, state: &State) -> NodeStatus {
        state.read(|daemon| self.status(daemon))
    }

    /// One round: follow the unload request, publish the status, announce
    /// the held-back sockets `held` lists. The datapath is the loop's: an
    /// uninstall takes it, a withdrawn refusal resumes it.
    pub async fn tick(
        &mut self,
        state: &State,
        datapath: &mut Owner<Datapath>,
        held: &mut Vec<Announcement>,
    ) -> Next {
        // Unknown until the node watch has listed the node (and while the
        // node object is gone): nothing to follow.
        let request = {
            let view = self.node.borrow();
            (view.synced && view.exists).then(|| view.unload_request.clone())
        };
        match request {
            Some(Some(token)) if self.handled.as_ref() != Some(&token) => {
                self.unload(token, state, datapath).await;
            }
            Some(None) if self.handled.is_some() => {
                let resume = || {
                    datapath
                        .get_mut()
                        .as_mut()
                        .map(|dp| dp.set_mode(abi::MODE_ACCELERATE))
                };
                if let Next::Restart = self.withdrawn(resume, state) {
                    return Next::Restart;
                }
            }
            _ => {}
        }
        self.publish(state).await;
        self.announce_held(std::mem::take(held)).await;
        Next::Continue
    }

    /// The uninstall request was withdrawn: a removed datapath needs a
    /// restart; a refused one is set back to accelerate by `resume`.
    fn withdrawn(
        &mut self,
        resume: impl FnOnce() -> Option<Result<(), DatapathError>>,
        state: &State,
    ) -> Next {
        self.handled = None;
        self.reason_override = None;
        match self.state {
            NodeState::Unloaded => {
                info!(
                    "uninstall withdrawn after the datapath was removed; restarting to load it again"
                );
                return Next::Restart;
            }
            NodeState::UnloadRefused => match resume() {
                Some(Ok(())) => {
                    info!("uninstall withdrawn; accelerating again");
                    state.set_accelerating();
                }
                other => warn!(
                    ?other,
                    "uninstall withdrawn but the datapath cannot be resumed"
                ),
            },
            _ => {}
        }
        self.state = NodeState::Unaccelerated;
        Next::Continue
    }

    /// An Event on each pod whose application sockets the guard kept off
    /// the redirect path (once per pod and reason, then at each tenfold).
    async fn announce_held(&mut self, queue: Vec<Announcement>) {
        for a in queue {
            let Some((namespace, pod)) = a.pod.split_once('/') else {
                continue;
            };
            if let Err(e) = deadline(self.reporter.pod_held_back(namespace, pod, &a.note)).await {
                warn!(pod = %a.pod, error = %e, "could not post the held-back Event");
            }
        }
    }

    async fn unload(&mut self, token: String, state: &State, datapath: &mut Owner<Datapath>) {
        info!(%token, "uninstall requested: draining accelerated connections, then removing the datapath");
        self.state = NodeState::Unloading;
        let draining = "uninstall: draining accelerated receive queues";
        self.reason_override = Some(draining.into());
        self.publish(state).await;
        let dp = datapath.take();
        state.set_unaccelerated(draining);
        let outcome = self.remove_datapath(dp).await;
        if outcome.is_err() && self.pin_dir.exists() {
            // Refused: the datapath is pinned and in passthrough; keep a
            // handle so metrics still read it and a withdrawal can resume it.
            if let Ok(dp) = Datapath::open(&self.pin_dir) {
                datapath.put(dp);
            }
        }
        self.finish_unload(token, outcome, state);
    }
}
