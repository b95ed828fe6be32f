//! Direct access to the store for tests: upsert, delete, get and list objects by kind,
//! bypassing faults, RBAC and the namespace check.

use serde_json::Value;

use crate::store::{State, WriteKind};
use crate::{FakeApiServer, resources};

impl FakeApiServer {
    fn resolve(api_version: &str, kind: &str) -> usize {
        resources::by_kind(api_version, kind)
            .unwrap_or_else(|| panic!("fake apiserver does not serve {api_version} {kind}"))
    }

    /// Create or replace `obj` (must carry apiVersion, kind, metadata.name and for namespaced
    /// kinds metadata.namespace, else "default"), firing ADDED/MODIFIED to watchers. Status is
    /// stored as given; uid/creationTimestamp are filled in when absent. Returns the stored
    /// object. Panics on a kind the server does not serve or a nameless object (test bugs).
    pub fn upsert(&self, obj: Value) -> Value {
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
        let res = Self::resolve(api_version, kind);
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
        let out = self
            .shared
            .lock()
            .write(res, ns.as_deref(), obj, WriteKind::Raw, false)
            .unwrap_or_else(|e| panic!("upsert failed: {}", e.message));
        self.shared.flush_rollouts();
        out
    }

    /// Delete an object (a Namespace takes its contents along); false when it was absent.
    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> bool {
        let res = Self::resolve(api_version, kind);
        let key = State::key_for(res, namespace, name);
        let ok = self.shared.lock().delete(&key).is_ok();
        self.shared.flush_rollouts();
        ok
    }

    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let res = Self::resolve(api_version, kind);
        let key = State::key_for(res, namespace, name);
        self.shared.lock().objects.get(&key).cloned()
    }

    /// All objects of a kind, in every namespace, ordered by namespace then name.
    pub fn list(&self, api_version: &str, kind: &str) -> Vec<Value> {
        let res = Self::resolve(api_version, kind);
        self.shared
            .lock()
            .objects
            .iter()
            .filter(|(k, _)| k.res == res)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The current cluster-wide resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }
}
