//! Values as Helm merges them: the chart's values.yaml, then each
//! `--values` file, then each `--set`, later ones winning key by key.

use serde_json::{Map, Value};

/// Merges `over` into `base`: maps key by key, anything else replaced; a
/// null removes the key (Helm's way to drop a default), and a null `over`
/// changes nothing.
pub fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (_, Value::Null) => {}
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    b.remove(k);
                    continue;
                }
                match b.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// One `--set` argument (`a.b=1,c=x`) as a values tree. Values are typed as
/// Helm types them: true/false, null, whole numbers, `{x,y}` lists of those;
/// anything else is a string. `\,` and `\.` escape a comma or a dot.
pub fn parse_set(arg: &str) -> Result<Value, String> {
    let mut out = Value::Object(Map::new());
    for pair in split_unescaped(arg, ',', true) {
        let (key, val) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not KEY=VALUE"))?;
        let path: Vec<String> = split_unescaped(key, '.', false)
            .into_iter()
            .map(|k| k.replace("\\.", "."))
            .collect();
        if path.iter().any(|k| k.is_empty() || k.contains(['[', ']'])) {
            return Err(format!(
                "{key:?}: keys are dotted names (list indices are not supported: use --values FILE)"
            ));
        }
        let value = typed(&val.replace("\\,", ","));
        let mut tree = value;
        for k in path.iter().rev() {
            let mut m = Map::new();
            m.insert(k.clone(), tree);
            tree = Value::Object(m);
        }
        merge_keep_null(&mut out, &tree);
    }
    Ok(out)
}

/// Like `merge`, but a null stays (so that a later merge removes the key).
fn merge_keep_null(base: &mut Value, over: &Value) {
    if let (Value::Object(b), Value::Object(o)) = (&mut *base, over) {
        for (k, v) in o {
            match b.get_mut(k) {
                Some(slot) if slot.is_object() && v.is_object() => merge_keep_null(slot, v),
                _ => {
                    b.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

fn typed(s: &str) -> Value {
    if let Some(inner) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
        if inner.is_empty() {
            return Value::Array(Vec::new());
        }
        return Value::Array(inner.split(',').map(scalar).collect());
    }
    scalar(s)
}

fn scalar(s: &str) -> Value {
    match s {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "null" => Value::Null,
        _ if (s == "0" || !s.starts_with('0')) && !s.starts_with('+') => match s.parse::<i64>() {
            Ok(n) => Value::from(n),
            Err(_) => Value::String(s.to_string()),
        },
        _ => Value::String(s.to_string()),
    }
}

/// Splits on `sep` not preceded by a backslash; `braces`: not inside `{...}` either.
fn split_unescaped(s: &str, sep: char, braces: bool) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    let mut prev = '\0';
    for c in s.chars() {
        if braces && c == '{' {
            depth += 1;
        } else if braces && c == '}' {
            depth = depth.saturating_sub(1);
        }
        if c == sep && prev != '\\' && depth == 0 {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
        prev = c;
    }
    parts.push(cur);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_types_values_as_helm_does() {
        let v = parse_set("a.b=1,a.c=true,d=x,e=007,f={--x,--y},g=null,h=a\\,b").unwrap();
        assert_eq!(
            v,
            json!({"a": {"b": 1, "c": true}, "d": "x", "e": "007",
                   "f": ["--x", "--y"], "g": null, "h": "a,b"})
        );
        assert!(parse_set("novalue").is_err());
        assert!(parse_set("list[0]=x").is_err());
    }

    #[test]
    fn merge_replaces_leaves_and_null_removes() {
        let mut base = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge(&mut base, &json!({"a": {"b": 3, "c": null}, "l": [9]}));
        assert_eq!(base, json!({"a": {"b": 3}, "l": [9]}));
    }
}
