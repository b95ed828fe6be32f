//! The part of JSON Schema that values.schema.json uses, so values are
//! checked here as `helm install` checks them. A keyword this does not know
//! is an error, never silently skipped.

use serde_json::{Map, Value};

const KNOWN: &[&str] = &[
    "$schema",
    "$ref",
    "title",
    "description",
    "definitions",
    "type",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "properties",
    "additionalProperties",
    "required",
    "items",
];

/// The first problem with `value`, as `path: what is wrong`.
pub fn validate(root: &Value, value: &Value) -> Result<(), String> {
    check(root, root, value, "")
}

fn check(root: &Value, schema: &Value, v: &Value, path: &str) -> Result<(), String> {
    let s = schema
        .as_object()
        .ok_or_else(|| format!("values.schema.json at {}: not an object", at(path)))?;
    if let Some(k) = s.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!(
            "values.schema.json at {}: keyword {k:?} is not supported by accel-installer",
            at(path)
        ));
    }
    if let Some(r) = s.get("$ref") {
        let target = r
            .as_str()
            .and_then(|r| r.strip_prefix('#'))
            .and_then(|p| root.pointer(p))
            .ok_or_else(|| format!("values.schema.json at {}: bad $ref {r}", at(path)))?;
        check(root, target, v, path)?;
    }
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::String(t) => vec![t.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !types.iter().any(|t| is_type(v, t)) {
            let want: Vec<String> = types.iter().map(|t| article(t)).collect();
            return Err(format!("{}: {v} is not {}", at(path), want.join(" or ")));
        }
    }
    if let Some(Value::Array(allowed)) = s.get("enum")
        && !allowed.contains(v)
    {
        let list: Vec<String> = allowed.iter().map(plain).collect();
        return Err(format!(
            "{}: {v} is not one of {}",
            at(path),
            list.join(", ")
        ));
    }
    if let (Some(n), Some(min)) = (v.as_f64(), s.get("minimum").and_then(Value::as_f64))
        && n < min
    {
        return Err(format!("{}: {v} is below the minimum {min}", at(path)));
    }
    if let (Some(n), Some(max)) = (v.as_f64(), s.get("maximum").and_then(Value::as_f64))
        && n > max
    {
        return Err(format!("{}: {v} is above the maximum {max}", at(path)));
    }
    if let (Some(text), Some(min)) = (v.as_str(), s.get("minLength").and_then(Value::as_u64))
        && (text.chars().count() as u64) < min
    {
        return Err(format!(
            "{}: {v} is shorter than {min} character(s)",
            at(path)
        ));
    }
    if let Value::Object(map) = v {
        object(root, s, map, path)?;
    }
    if let (Value::Array(items), Some(item)) = (v, s.get("items")) {
        for (i, x) in items.iter().enumerate() {
            check(root, item, x, &format!("{path}[{i}]"))?;
        }
    }
    Ok(())
}

fn object(
    root: &Value,
    s: &Map<String, Value>,
    map: &Map<String, Value>,
    path: &str,
) -> Result<(), String> {
    for req in s
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(k) = req.as_str()
            && !map.contains_key(k)
        {
            return Err(format!("{}: missing", join(path, k)));
        }
    }
    let props = s.get("properties").and_then(Value::as_object);
    for (k, x) in map {
        let p = join(path, k);
        match (props.and_then(|p| p.get(k)), s.get("additionalProperties")) {
            (Some(sub), _) => check(root, sub, x, &p)?,
            (None, Some(Value::Bool(false))) => {
                return Err(format!(
                    "{p}: unknown value (the chart has no such setting)"
                ));
            }
            (None, Some(sub @ Value::Object(_))) => check(root, sub, x, &p)?,
            (None, _) => {}
        }
    }
    Ok(())
}

fn is_type(v: &Value, t: &str) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => false,
    }
}

fn article(t: &str) -> String {
    match t {
        "integer" | "array" | "object" => format!("an {t}"),
        "null" => "null".into(),
        _ => format!("a {t}"),
    }
}

/// An enum member as an operator types it: strings without quotes.
fn plain(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn at(path: &str) -> &str {
    if path.is_empty() { "(top level)" } else { path }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_the_value_and_what_is_wrong() {
        let schema = json!({
            "type": "object", "additionalProperties": false,
            "properties": {
                "mode": {"type": "string", "enum": ["a", "b"]},
                "n": {"$ref": "#/definitions/port"},
                "l": {"type": "array", "items": {"type": "string"}}
            },
            "definitions": {"port": {"type": "integer", "minimum": 1, "maximum": 65535}}
        });
        let err = |v: Value| validate(&schema, &v).unwrap_err();
        assert_eq!(err(json!({"mode": "c"})), r#"mode: "c" is not one of a, b"#);
        assert_eq!(err(json!({"n": "x"})), r#"n: "x" is not an integer"#);
        assert_eq!(err(json!({"n": 0})), "n: 0 is below the minimum 1");
        assert_eq!(err(json!({"l": ["x", 1]})), "l[1]: 1 is not a string");
        assert_eq!(
            err(json!({"typo": 1})),
            "typo: unknown value (the chart has no such setting)"
        );
        assert!(validate(&schema, &json!({"mode": "a", "n": 80, "l": []})).is_ok());
        let unsupported = json!({"pattern": "x"});
        assert!(
            validate(&unsupported, &json!("y"))
                .unwrap_err()
                .contains("pattern")
        );
    }
}
