//! The DaemonSet controller stand-in: which nodes a DaemonSet selects and the status it reports.

use std::time::Duration;

use serde_json::{Value, json};

/// How DaemonSet status evolves after a create/update (or a node change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutMode {
    /// Status reports a finished rollout right after the write (as a separate MODIFIED event).
    Instant,
    /// updated/ready/available (and currentNumberScheduled) climb by one node per step.
    Gradual { per_step: Duration },
    /// desiredNumberScheduled is set but no pod ever becomes updated or ready.
    Stuck,
}

fn labels(node: &Value) -> Option<&serde_json::Map<String, Value>> {
    node.pointer("/metadata/labels").and_then(Value::as_object)
}

fn expr_matches(node: &Value, expr: &Value) -> bool {
    let key = expr.get("key").and_then(Value::as_str).unwrap_or_default();
    let op = expr
        .get("operator")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let values: Vec<&str> = expr
        .get("values")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let label = labels(node)
        .and_then(|l| l.get(key))
        .and_then(Value::as_str);
    let num = |s: Option<&str>| s.and_then(|s| s.parse::<i64>().ok());
    match op {
        "In" => label.is_some_and(|l| values.contains(&l)),
        "NotIn" => label.is_none_or(|l| !values.contains(&l)),
        "Exists" => label.is_some(),
        "DoesNotExist" => label.is_none(),
        "Gt" => matches!((num(label), num(values.first().copied())), (Some(a), Some(b)) if a > b),
        "Lt" => matches!((num(label), num(values.first().copied())), (Some(a), Some(b)) if a < b),
        _ => false,
    }
}

/// Does the DaemonSet's pod template schedule onto `node`? Taints are treated as tolerated.
pub fn selects(ds: &Value, node: &Value) -> bool {
    let pod = ds
        .pointer("/spec/template/spec")
        .cloned()
        .unwrap_or(Value::Null);
    if let Some(sel) = pod.get("nodeSelector").and_then(Value::as_object) {
        let nl = labels(node);
        if !sel
            .iter()
            .all(|(k, v)| nl.and_then(|l| l.get(k)) == Some(v))
        {
            return false;
        }
    }
    let terms = pod
        .pointer("/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
        .and_then(Value::as_array);
    match terms {
        // Terms are ORed; expressions inside a term are ANDed; an empty term matches nothing.
        Some(terms) if !terms.is_empty() => terms.iter().any(|t| {
            let exprs = t.get("matchExpressions").and_then(Value::as_array);
            match exprs {
                Some(e) if !e.is_empty() => e.iter().all(|x| expr_matches(node, x)),
                _ => false,
            }
        }),
        _ => true,
    }
}

pub fn desired_nodes(ds: &Value, nodes: &[&Value]) -> i64 {
    nodes.iter().filter(|n| selects(ds, n)).count() as i64
}

/// A DaemonSet status with `scheduled` pods placed and `updated` of them updated, ready and
/// available, for the DaemonSet's current generation.
pub fn status(ds: &Value, desired: i64, scheduled: i64, updated: i64) -> Value {
    let gen_ = ds
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let mut s = json!({
        "desiredNumberScheduled": desired,
        "currentNumberScheduled": scheduled.max(updated),
        "updatedNumberScheduled": updated,
        "numberReady": updated,
        "numberAvailable": updated,
        "numberMisscheduled": 0,
        "observedGeneration": gen_,
    });
    if desired > updated {
        s["numberUnavailable"] = json!(desired - updated);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_and_selector() {
        let node = json!({"metadata": {"labels": {"kubernetes.io/os": "linux", "type": "worker"}}});
        let vk = json!({"metadata": {"labels": {"kubernetes.io/os": "linux", "type": "virtual-kubelet"}}});
        let ds = json!({"spec": {"template": {"spec": {
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "type", "operator": "NotIn", "values": ["virtual-kubelet"]}]}
            ]}}}
        }}}});
        assert!(selects(&ds, &node));
        assert!(!selects(&ds, &vk));
        assert_eq!(desired_nodes(&ds, &[&node, &vk]), 1);
        let st = status(&ds, 2, 1, 1);
        assert_eq!(st["numberUnavailable"], 1);
    }
}
