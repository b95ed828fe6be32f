//! Sockets the application guard kept off the redirect path, per pod and
//! reason (the `accel_pod_held` map, see guard.h): what `status`, `/metrics`,
//! `verify` and the log tell an operator about a pod that is not fully
//! accelerated, and what to change.

use std::collections::BTreeMap;

use accel_bpf::abi;
use serde::Serialize;
use tracing::info;

use crate::datapath::{Datapath, DatapathError};

/// One pod's count for one reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Held {
    /// The daemon's pod id (0: a namespace no pod source listed).
    pub pod: u16,
    pub reason: &'static str,
    pub sockets: u64,
}

/// A reason's name in status, metrics and logs.
pub fn reason_name(reason: u16) -> &'static str {
    match reason {
        abi::HELD_BLOCKING => "blocking",
        abi::HELD_NO_FILE => "no_file",
        abi::HELD_APP_READS_TCP => "receives_by_tcp",
        _ => "unknown",
    }
}

/// What the reason means for the pod, and what (if anything) to change.
pub fn hint(reason: &str) -> &'static str {
    match reason {
        "blocking" => {
            "its application uses blocking sockets, which stay on TCP (a blocking read on a \
             sockmap socket can return EAGAIN); nothing to change: event-loop (non-blocking) \
             applications are accelerated"
        }
        "no_file" => "kernel-owned sockets (no file) stay on TCP",
        "receives_by_tcp" => {
            "bytes to its application go by TCP (mode auto: receive-side splice stays exact, \
             and FIONREAD where the node's check \"FIONREAD counts TCP bytes\" passed); if the \
             application reads with read/recv and does not rely on FIONREAD, annotate the pod \
             sidecar-accel.io/accelerate=app-safe"
        }
        _ => "",
    }
}

/// Every pod's counts, in pod then reason order.
pub fn read(dp: &Datapath) -> Result<Vec<Held>, DatapathError> {
    let mut rows: Vec<Held> = dp
        .entries(&accel_bpf::map::POD_HELD)?
        .into_iter()
        .map(|(k, n)| Held {
            pod: k.pod,
            reason: reason_name(k.reason),
            sockets: n,
        })
        .collect();
    rows.sort_by_key(|h| (h.pod, h.reason));
    Ok(rows)
}

/// A pod's name for people: its `namespace/name`, or what pod 0 is.
pub fn pod_label(names: &BTreeMap<u16, String>, pod: u16) -> String {
    match (pod, names.get(&pod)) {
        (_, Some(name)) => name.clone(),
        (0, None) => "(namespaces no pod source listed)".into(),
        (id, None) => format!("(pod id {id}, gone)"),
    }
}

/// Logs each pod's first held-back socket of each reason, and then each
/// tenfold growth: one calm line per pod and reason, not one per socket.
/// The same moments are announced for a Kubernetes Event on the pod.
#[derive(Debug, Default)]
pub struct HeldLog {
    logged: BTreeMap<(u16, &'static str), u64>,
    announced: Vec<Announcement>,
}

/// Announcements waiting for their Event at most.
pub const ANNOUNCE_MAX: usize = 256;

/// What to tell a pod's owner: `pod` is `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    pub pod: String,
    pub note: String,
}

impl HeldLog {
    pub fn update(&mut self, rows: &[Held], names: &BTreeMap<u16, String>) {
        for h in rows {
            let last = self.logged.entry((h.pod, h.reason)).or_insert(0);
            if h.sockets > 0 && (*last == 0 || h.sockets >= last.saturating_mul(10)) {
                *last = h.sockets;
                if let Some(pod) = names.get(&h.pod) {
                    self.announced.push(Announcement {
                        pod: pod.clone(),
                        note: format!(
                            "{} application sockets kept off the redirect path ({}): {}",
                            h.sockets,
                            h.reason,
                            hint(h.reason)
                        ),
                    });
                }
                info!(
                    pod = %pod_label(names, h.pod),
                    reason = h.reason,
                    sockets = h.sockets,
                    "application sockets kept off the redirect path: {}",
                    hint(h.reason)
                );
            }
        }
    }

    /// Hands the announcements since the last call to `queue`, which keeps
    /// the newest [`ANNOUNCE_MAX`] (a daemon without a Kubernetes source
    /// never empties it).
    pub fn announce_into(&mut self, queue: &mut Vec<Announcement>) {
        queue.append(&mut self.announced);
        let excess = queue.len().saturating_sub(ANNOUNCE_MAX);
        queue.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_a_name_and_a_hint() {
        for r in [
            abi::HELD_BLOCKING,
            abi::HELD_NO_FILE,
            abi::HELD_APP_READS_TCP,
        ] {
            assert_ne!(reason_name(r), "unknown");
            assert!(!hint(reason_name(r)).is_empty());
        }
    }

    #[test]
    fn the_log_speaks_once_then_at_each_tenfold() {
        let names = BTreeMap::from([(3, "shop/cart".to_string())]);
        let mut log = HeldLog::default();
        let row = |n| Held {
            pod: 3,
            reason: "blocking",
            sockets: n,
        };
        for n in [1, 2, 9, 10, 11, 99, 100] {
            log.update(&[row(n)], &names);
        }
        assert_eq!(log.logged[&(3, "blocking")], 100);
        let mut queue = Vec::new();
        log.announce_into(&mut queue);
        // 1, 10, 100: three announcements, each naming the pod.
        assert_eq!(queue.len(), 3);
        assert!(queue.iter().all(|a| a.pod == "shop/cart"));
        assert!(queue[2].note.starts_with("100 application sockets"));
        assert_eq!(pod_label(&names, 3), "shop/cart");
        assert!(pod_label(&names, 0).contains("no pod source"));
    }
}
