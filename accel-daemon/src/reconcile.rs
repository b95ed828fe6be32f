//! The difference between what a map holds and what it should hold.

use std::collections::BTreeMap;

/// What turns `have` into `want`: keys only in `want`, keys in both with
/// another value, keys only in `have`.
#[derive(Debug, PartialEq, Eq)]
pub struct Changes<'a, K, V> {
    pub inserts: Vec<(&'a K, &'a V)>,
    pub updates: Vec<(&'a K, &'a V)>,
    pub removes: Vec<&'a K>,
}

pub fn reconcile<'a, K: Ord, V: PartialEq>(
    have: &'a BTreeMap<K, V>,
    want: &'a BTreeMap<K, V>,
) -> Changes<'a, K, V> {
    let mut changes = Changes {
        inserts: Vec::new(),
        updates: Vec::new(),
        removes: have.keys().filter(|k| !want.contains_key(*k)).collect(),
    };
    for (k, v) in want {
        match have.get(k) {
            None => changes.inserts.push((k, v)),
            Some(old) if old != v => changes.updates.push((k, v)),
            Some(_) => {}
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_updates_and_removes_in_key_order() {
        let have = BTreeMap::from([(1, 'a'), (2, 'b'), (4, 'd')]);
        let want = BTreeMap::from([(2, 'B'), (3, 'c'), (4, 'd'), (0, 'z')]);
        let c = reconcile(&have, &want);
        assert_eq!(c.inserts, vec![(&0, &'z'), (&3, &'c')]);
        assert_eq!(c.updates, vec![(&2, &'B')]);
        assert_eq!(c.removes, vec![&1]);
    }

    #[test]
    fn equal_sets_change_nothing() {
        let both = BTreeMap::from([(1, 1), (2, 2)]);
        let c = reconcile(&both, &both);
        assert!(c.inserts.is_empty() && c.updates.is_empty() && c.removes.is_empty());
    }
}
