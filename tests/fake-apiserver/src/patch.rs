//! Patch bodies: RFC 7386 merge patch (also used for strategic merge and as the apply merge),
//! and RFC 6902 JSON patch.

use serde_json::Value;

/// RFC 7386: objects merge recursively, `null` removes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// True when applying `applied` (an apply configuration) would change some value in `current`:
/// the minimal stand-in for server-side apply's per-field conflict detection.
pub fn would_change(current: &Value, applied: &Value) -> bool {
    match (current, applied) {
        (Value::Object(c), Value::Object(a)) => a.iter().any(|(k, av)| match c.get(k) {
            Some(cv) => would_change(cv, av),
            None => !av.is_null(),
        }),
        (c, a) => c != a,
    }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(path: &str) -> Result<(String, String), String> {
    if path.is_empty() {
        return Err("the whole document cannot be a patch target here".into());
    }
    let idx = path
        .rfind('/')
        .ok_or_else(|| format!("invalid JSON pointer {path:?}"))?;
    Ok((path[..idx].to_string(), unescape(&path[idx + 1..])))
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let (parent, last) = split_pointer(path)?;
    let target = doc
        .pointer_mut(&parent)
        .ok_or_else(|| format!("path {parent:?} does not exist"))?;
    match target {
        Value::Object(m) => {
            m.insert(last, value);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
                return Ok(());
            }
            let i: usize = last
                .parse()
                .map_err(|_| format!("invalid array index {last:?}"))?;
            if i > a.len() {
                return Err(format!("array index {i} out of bounds"));
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err(format!("path {parent:?} is not a container")),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_pointer(path)?;
    let target = doc
        .pointer_mut(&parent)
        .ok_or_else(|| format!("path {parent:?} does not exist"))?;
    match target {
        Value::Object(m) => m
            .remove(&last)
            .ok_or_else(|| format!("path {path:?} does not exist")),
        Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|_| format!("invalid array index {last:?}"))?;
            if i >= a.len() {
                return Err(format!("array index {i} out of bounds"));
            }
            Ok(a.remove(i))
        }
        _ => Err(format!("path {parent:?} is not a container")),
    }
}

/// RFC 6902 (add, remove, replace, move, copy, test); all-or-nothing like the API server.
pub fn json_patch(doc: &Value, ops: &Value) -> Result<Value, String> {
    let ops = ops
        .as_array()
        .ok_or("a JSON patch must be an array of operations")?;
    let mut out = doc.clone();
    for op in ops {
        let kind = op.get("op").and_then(Value::as_str).unwrap_or_default();
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or("operation without path")?;
        let value = || op.get("value").cloned().ok_or("operation without value");
        let from = || {
            op.get("from")
                .and_then(Value::as_str)
                .ok_or("operation without from")
        };
        match kind {
            "add" => add(&mut out, path, value()?)?,
            "remove" => {
                remove(&mut out, path)?;
            }
            "replace" => {
                let slot = out
                    .pointer_mut(path)
                    .ok_or_else(|| format!("replace: path {path:?} does not exist"))?;
                *slot = value()?;
            }
            "move" => {
                let v = remove(&mut out, from()?)?;
                add(&mut out, path, v)?;
            }
            "copy" => {
                let v = out
                    .pointer(from()?)
                    .cloned()
                    .ok_or("copy: from does not exist")?;
                add(&mut out, path, v)?;
            }
            "test" => {
                if out.pointer(path) != Some(&value()?) {
                    return Err(format!("test operation failed at {path:?}"));
                }
            }
            other => return Err(format!("unsupported JSON patch op {other:?}")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_and_json_patch() {
        let mut d = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(&mut d, &json!({"a": {"b": null, "d": 3}, "l": [9]}));
        assert_eq!(d, json!({"a": {"c": 2, "d": 3}, "l": [9]}));
        let p = json!([
            {"op": "add", "path": "/a/e~1f", "value": 5},
            {"op": "replace", "path": "/l/0", "value": 7},
            {"op": "add", "path": "/l/-", "value": 8},
            {"op": "remove", "path": "/a/c"},
            {"op": "test", "path": "/a/d", "value": 3}
        ]);
        let r = json_patch(&d, &p).unwrap();
        assert_eq!(r, json!({"a": {"d": 3, "e/f": 5}, "l": [7, 8]}));
        assert!(json_patch(&d, &json!([{"op": "replace", "path": "/zz", "value": 1}])).is_err());
        assert!(would_change(&d, &json!({"a": {"c": 3}})));
        assert!(!would_change(&d, &json!({"a": {"c": 2}})));
    }
}
