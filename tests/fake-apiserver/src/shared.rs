//! The state the server's tasks share: the store behind its lock, the watch control channel,
//! counters and settings, and the runtime the Gradual rollouts are spawned on.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::broadcast;

use crate::RolloutMode;
use crate::exec;
use crate::store::State;

#[derive(Debug, Clone, Copy)]
pub(crate) enum Control {
    Bookmark,
    Break,
}

pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    pub(crate) control_tx: broadcast::Sender<Control>,
    pub(crate) open_watches: AtomicUsize,
    pub(crate) bookmark_ms: AtomicU64,
    pub(crate) handle: tokio::runtime::Handle,
    pub(crate) execs: Mutex<exec::Execs>,
}

impl Shared {
    /// The state lock; a panicking test thread must not wedge the server for the others.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn bookmark_interval(&self) -> Duration {
        Duration::from_millis(self.bookmark_ms.load(Ordering::Relaxed).max(10))
    }

    /// Start the Gradual rollouts queued by writes (spawned outside the state lock).
    pub(crate) fn flush_rollouts(self: &Arc<Self>) {
        let (pending, mode) = {
            let mut st = self.lock();
            (std::mem::take(&mut st.pending_rollouts), st.rollout)
        };
        let RolloutMode::Gradual { per_step } = mode else {
            return;
        };
        for (key, epoch) in pending {
            let sh = self.clone();
            self.handle.spawn(async move {
                loop {
                    tokio::time::sleep(per_step).await;
                    if !sh.lock().rollout_step(&key, epoch) {
                        break;
                    }
                }
            });
        }
    }
}
