//! What the daemon knows about its node, kept in one place.
//!
//! The serve loop and the node agent change it through [`State`]'s setters,
//! which mark it changed; the loop writes the state file (read by `status`
//! and `verify`) once per turn when something changed. `/metrics` and the
//! node reporter read the same value, so no reader can disagree with another.

use std::{
    collections::BTreeMap,
    fs,
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use accel_k8s::{pods_file::Acceleration, watch::WatchHealth};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::{endpoints::Snapshot, probes::ProbeReport};

pub const STATE_FILE: &str = "status.json";

/// The state file: written by `run` into its state dir whenever its view
/// changes, so that `status` can explain the gate decision even when the
/// daemon is gone.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DaemonState {
    pub pid: u32,
    pub version: String,
    pub kernel_release: String,
    pub kernel_release_overridden: bool,
    pub accelerated: bool,
    /// Why acceleration is off (empty when on).
    pub reason: String,
    pub checks: Vec<Check>,
    pub cgroup: PathBuf,
    pub pin_dir: PathBuf,
    pub adopted: bool,
    pub metrics_addr: String,
    pub endpoint_source: String,
    /// Every local address that takes part.
    pub endpoints: Vec<String>,
    /// The pods (or plain addresses) they belong to, with their opt-outs.
    #[serde(default)]
    pub pods: Vec<crate::endpoints::LocalEndpoint>,
    /// Loopback takes part only inside the listed pods' namespaces.
    #[serde(default)]
    pub loopback_meshed_only: bool,
    /// Empty, or why the running datapath has no pins.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pin_problem: String,
    /// `namespace/name` of each pod id in the datapath's maps.
    #[serde(default)]
    pub pod_names: BTreeMap<u16, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

impl Check {
    pub fn new(name: impl Into<String>, ok: bool, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            ok,
            detail: detail.into(),
        }
    }
}

impl DaemonState {
    /// The last state a daemon wrote into `state_dir`, if any.
    pub fn read(state_dir: &Path) -> Option<Self> {
        let text = fs::read_to_string(state_dir.join(STATE_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// Atomic write (temp file + rename) so readers never see half a file.
fn write_state_file(state_dir: &Path, text: &str) -> Result<()> {
    fs::create_dir_all(state_dir)
        .with_context(|| format!("creating state dir {}", state_dir.display()))?;
    let tmp = state_dir.join(format!(".{STATE_FILE}.{}", std::process::id()));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, state_dir.join(STATE_FILE))?;
    Ok(())
}

/// What the daemon knows beyond the state file: figures for `/metrics`
/// and `/readyz` only.
#[derive(Debug, Default)]
pub struct Live {
    /// The daemon serves (after the gate).
    pub ready: bool,
    /// Meshed pods kept on TCP because their annotations cannot be read.
    pub invalid_pods: u64,
    /// Pins re-created after someone removed them.
    pub pins_restored: u64,
    /// Health of the endpoint source (Kubernetes list/watch failures).
    pub source_health: Option<Arc<WatchHealth>>,
}

#[derive(Debug)]
struct Inner {
    file: DaemonState,
    live: Live,
    /// Something in `file` changed since it was last written.
    changed: bool,
}

/// The daemon's node state: one owner for the state file, `/metrics` and
/// the node reporter. Cloning shares it (the HTTP handlers read it).
#[derive(Clone, Debug)]
pub struct State(Arc<Mutex<Inner>>);

impl State {
    /// Starts from `file`, not yet written.
    pub fn new(file: DaemonState) -> Self {
        State(Arc::new(Mutex::new(Inner {
            file,
            live: Live::default(),
            changed: true,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update is a plain assignment: a panic elsewhere cannot
        // leave the value half changed, so a poisoned lock is still good.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads what the state file holds (or will hold at the next write).
    pub fn read<R>(&self, f: impl FnOnce(&DaemonState) -> R) -> R {
        f(&self.lock().file)
    }

    /// Reads the state file's part and the live figures at once.
    pub fn view<R>(&self, f: impl FnOnce(&DaemonState, &Live) -> R) -> R {
        let inner = self.lock();
        f(&inner.file, &inner.live)
    }

    /// Applies `f` to the state file's part; it returns whether it changed
    /// anything.
    fn change(&self, f: impl FnOnce(&mut DaemonState) -> bool) {
        let mut inner = self.lock();
        if f(&mut inner.file) {
            inner.changed = true;
        }
    }

    fn live(&self, f: impl FnOnce(&mut Live)) {
        f(&mut self.lock().live);
    }

    pub fn accelerated(&self) -> bool {
        self.read(|d| d.accelerated)
    }

    pub fn reason(&self) -> String {
        self.read(|d| d.reason.clone())
    }

    pub fn add_check(&self, check: Check) {
        self.change(|d| {
            d.checks.push(check);
            true
        });
    }

    pub fn add_probes(&self, probes: &ProbeReport) {
        for f in &probes.features {
            let kind = if f.essential {
                "probe"
            } else {
                "probe (optional)"
            };
            self.add_check(Check::new(
                format!("{kind}: {}", f.name),
                f.available,
                f.detail.clone(),
            ));
        }
    }

    /// The datapath runs: acceleration is on, and there is no reason it is off.
    pub fn set_accelerating(&self) {
        self.change(|d| {
            let changed = !d.accelerated || !d.reason.is_empty();
            d.accelerated = true;
            d.reason.clear();
            changed
        });
    }

    /// The datapath was adopted from pins a previous daemon left.
    pub fn set_adopted(&self, adopted: bool) {
        self.change(|d| std::mem::replace(&mut d.adopted, adopted) != adopted);
    }

    /// No datapath runs (any more), because of `reason`.
    pub fn set_unaccelerated(&self, reason: impl Into<String>) {
        let reason = reason.into();
        self.change(|d| {
            let changed = d.accelerated || d.reason != reason;
            d.accelerated = false;
            d.reason = reason;
            changed
        });
    }

    /// Records the endpoint set, each pod with the acceleration it really
    /// gets (its own, else `default`), and the datapath's pod ids.
    pub fn set_endpoints(
        &self,
        snap: &Snapshot,
        default: Acceleration,
        pod_names: BTreeMap<u16, String>,
    ) {
        let endpoints: Vec<String> = snap.ips().iter().map(|ip| ip.to_string()).collect();
        let pods: Vec<_> = snap
            .endpoints
            .iter()
            .map(|p| crate::endpoints::LocalEndpoint {
                acceleration: Some(p.acceleration.unwrap_or(default)),
                ..p.clone()
            })
            .collect();
        self.change(|d| {
            let changed = d.endpoints != endpoints
                || d.pods != pods
                || d.pod_names != pod_names
                || d.loopback_meshed_only != snap.loopback_meshed_only;
            d.endpoints = endpoints;
            d.pods = pods;
            d.pod_names = pod_names;
            d.loopback_meshed_only = snap.loopback_meshed_only;
            changed
        });
    }

    /// Empty, or why the running datapath has no pins.
    pub fn set_pin_problem(&self, problem: String) {
        self.change(|d| {
            let changed = d.pin_problem != problem;
            d.pin_problem = problem;
            changed
        });
    }

    pub fn set_ready(&self) {
        self.live(|l| l.ready = true);
    }

    pub fn ready(&self) -> bool {
        self.lock().live.ready
    }

    pub fn set_invalid_pods(&self, n: u64) {
        self.live(|l| l.invalid_pods = n);
    }

    pub fn count_pins_restored(&self, n: u64) {
        self.live(|l| l.pins_restored = l.pins_restored.saturating_add(n));
    }

    pub fn set_source_health(&self, health: Option<Arc<WatchHealth>>) {
        self.live(|l| l.source_health = health);
    }

    /// Writes the state file into `state_dir` if something changed since
    /// the last write; a failed write is tried again at the next flush.
    pub fn flush(&self, state_dir: &Path) -> Result<()> {
        let text = {
            let mut inner = self.lock();
            if !inner.changed {
                return Ok(());
            }
            let text = serde_json::to_string_pretty(&inner.file)?;
            inner.changed = false;
            text
        };
        let written = write_state_file(state_dir, &text);
        if written.is_err() {
            self.lock().changed = true;
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("accel-daemon-state-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn the_file_is_written_once_per_change() {
        let dir = temp_dir("once");
        let state = State::new(DaemonState {
            pid: 7,
            ..Default::default()
        });
        state.flush(&dir).expect("first write");
        let written = || fs::metadata(dir.join(STATE_FILE)).and_then(|m| m.modified());
        let first = written().expect("state file");
        fs::remove_file(dir.join(STATE_FILE)).expect("remove");
        // Nothing changed: no write.
        state.set_unaccelerated("");
        state.set_pin_problem(String::new());
        state.set_invalid_pods(3);
        state.flush(&dir).expect("flush");
        assert!(written().is_err(), "written without a change");
        state.set_unaccelerated("kernel too old");
        state.flush(&dir).expect("flush");
        assert!(written().is_ok_and(|t| t >= first));
        let back = DaemonState::read(&dir).expect("read back");
        assert_eq!((back.pid, back.reason.as_str()), (7, "kernel too old"));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_write_is_tried_again() {
        let dir = temp_dir("retry");
        // A file where the state dir should be: the write fails.
        fs::write(&dir, "not a directory").expect("blocker");
        let state = State::new(DaemonState::default());
        assert!(state.flush(&dir).is_err());
        fs::remove_file(&dir).expect("remove blocker");
        state.flush(&dir).expect("second try");
        assert!(DaemonState::read(&dir).is_some());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn acceleration_and_its_reason_change_together() {
        let state = State::new(DaemonState::default());
        state.set_unaccelerated("uninstall refused: sockets hold unread data");
        assert!(!state.accelerated());
        state.set_accelerating();
        assert!(state.accelerated());
        assert_eq!(
            state.reason(),
            "",
            "a running datapath has no reason to be off"
        );
    }

    #[test]
    fn the_state_file_keeps_its_fields() {
        let text = serde_json::to_value(DaemonState {
            pin_problem: "gone".into(),
            ..Default::default()
        })
        .expect("serialize");
        let keys: Vec<&str> = text
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        // `status --json`, the end-to-end tests and `verify` read these.
        let mut want = vec![
            "pid",
            "version",
            "kernel_release",
            "kernel_release_overridden",
            "accelerated",
            "reason",
            "checks",
            "cgroup",
            "pin_dir",
            "adopted",
            "metrics_addr",
            "endpoint_source",
            "endpoints",
            "pods",
            "loopback_meshed_only",
            "pin_problem",
            "pod_names",
        ];
        let mut got = keys.clone();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want);
    }
}
