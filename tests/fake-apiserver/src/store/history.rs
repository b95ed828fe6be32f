//! Resource versions and the event history: every committed change bumps the cluster-wide
//! resourceVersion, is kept (bounded) for watch replay and is sent to open watches.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{ObjKey, State, metadata_mut};

/// Events kept for watch replay; older ones are compacted away (watching from before → 410).
pub const HISTORY_MAX: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub res: usize,
    pub ns: String,
    pub etype: EventType,
    pub object: Value,
    /// The previous state for MODIFIED, so selector watches can turn it into ADDED/DELETED.
    pub old: Option<Value>,
}

impl State {
    /// Stamp the resourceVersion, store or remove, record history and notify watchers.
    pub(super) fn commit(
        &mut self,
        key: &ObjKey,
        etype: EventType,
        mut obj: Value,
        old: Option<Value>,
    ) -> Value {
        self.rv += 1;
        metadata_mut(&mut obj).insert("resourceVersion".into(), json!(self.rv.to_string()));
        match etype {
            EventType::Deleted => {
                self.objects.remove(key);
                self.appliers.remove(key);
            }
            _ => {
                self.objects.insert(key.clone(), obj.clone());
            }
        }
        let ev = Arc::new(Event {
            rv: self.rv,
            res: key.res,
            ns: key.ns.clone(),
            etype,
            object: obj.clone(),
            old,
        });
        self.history.push_back(ev.clone());
        while self.history.len() > self.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.compacted_rv = dropped.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.events_tx.send(ev);
        obj
    }
}
