//! Small stable pod ids, handed out round-robin.

use std::collections::{BTreeMap, BTreeSet};

/// Small stable ids for pods, carried by the endpoint and netns maps into
/// each socket's state, so redirected traffic can be counted per pod pair.
/// Ids are handed out round-robin: one is reused only after 65,535 others,
/// long after sockets of its old pod are gone.
#[derive(Debug, Default)]
pub struct PodIds {
    pub(super) by_name: BTreeMap<String, u16>,
    last: u16,
}

impl PodIds {
    /// Pod name by id, for metric labels.
    pub fn names(&self) -> BTreeMap<u16, String> {
        self.by_name
            .iter()
            .map(|(n, id)| (*id, n.clone()))
            .collect()
    }

    pub(super) fn allocate(&mut self, taken: &BTreeSet<u16>) -> Option<u16> {
        let mut id = self.last;
        for _ in 0..u16::MAX {
            id = if id == u16::MAX { 1 } else { id + 1 };
            if !taken.contains(&id) {
                self.last = id;
                return Some(id);
            }
        }
        None
    }
}
