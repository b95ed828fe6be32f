//! Label and field selectors as the API server parses them from query parameters.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

#[derive(Debug, Clone, PartialEq)]
enum FieldReq {
    Eq(String, String),
    NotEq(String, String),
}

/// A parsed `labelSelector` + `fieldSelector` pair; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector {
    labels: Vec<LabelReq>,
    fields: Vec<FieldReq>,
}

/// Split at commas that are not inside parentheses (`a in (x,y),b` is two requirements).
fn split_top(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c);
            }
            ')' => {
                depth = depth.saturating_sub(1);
                cur.push(c);
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

fn parse_set(s: &str) -> Result<Vec<String>, String> {
    let s = s.trim();
    let inner = s
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("expected a parenthesised set, found {s:?}"))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

fn parse_label(req: &str) -> Result<LabelReq, String> {
    if let Some(key) = req.strip_prefix('!') {
        return Ok(LabelReq::NotExists(key.trim().to_string()));
    }
    if let Some((k, v)) = req.split_once("!=") {
        return Ok(LabelReq::NotEq(k.trim().into(), v.trim().into()));
    }
    if let Some((k, v)) = req.split_once("==") {
        return Ok(LabelReq::Eq(k.trim().into(), v.trim().into()));
    }
    if let Some((k, v)) = req.split_once('=') {
        return Ok(LabelReq::Eq(k.trim().into(), v.trim().into()));
    }
    let words: Vec<&str> = req.splitn(3, ' ').collect();
    if words.len() >= 2 {
        let key = words[0].to_string();
        let rest = req[key.len()..].trim_start();
        if let Some(set) = rest.strip_prefix("notin") {
            return Ok(LabelReq::NotIn(key, parse_set(set)?));
        }
        if let Some(set) = rest.strip_prefix("in") {
            return Ok(LabelReq::In(key, parse_set(set)?));
        }
        return Err(format!("unable to parse requirement: {req:?}"));
    }
    Ok(LabelReq::Exists(req.to_string()))
}

fn parse_field(req: &str) -> Result<FieldReq, String> {
    if let Some((k, v)) = req.split_once("!=") {
        return Ok(FieldReq::NotEq(k.trim().into(), v.trim().into()));
    }
    if let Some((k, v)) = req.split_once("==") {
        return Ok(FieldReq::Eq(k.trim().into(), v.trim().into()));
    }
    if let Some((k, v)) = req.split_once('=') {
        return Ok(FieldReq::Eq(k.trim().into(), v.trim().into()));
    }
    Err(format!("invalid field selector: {req:?}"))
}

impl Selector {
    /// Parse both selectors; the error text is what goes into a 400 BadRequest Status.
    pub fn parse(label: Option<&str>, field: Option<&str>) -> Result<Self, String> {
        let mut sel = Selector::default();
        for req in split_top(label.unwrap_or("")) {
            sel.labels.push(parse_label(&req)?);
        }
        for req in split_top(field.unwrap_or("")) {
            let f = parse_field(&req)?;
            let key = match &f {
                FieldReq::Eq(k, _) | FieldReq::NotEq(k, _) => k.as_str(),
            };
            if field_value(&Value::Null, key).is_none() {
                return Err(format!(
                    "field label not supported: {key} (the fake server knows metadata.name, metadata.namespace, spec.nodeName, status.phase)"
                ));
            }
            sel.fields.push(f);
        }
        Ok(sel)
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        let labels_ok = self.labels.iter().all(|r| match r {
            LabelReq::Eq(k, v) => label(k) == Some(v.as_str()),
            LabelReq::NotEq(k, v) => label(k) != Some(v.as_str()),
            LabelReq::In(k, vs) => label(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelReq::NotIn(k, vs) => label(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            LabelReq::Exists(k) => label(k).is_some(),
            LabelReq::NotExists(k) => label(k).is_none(),
        });
        labels_ok
            && self.fields.iter().all(|r| match r {
                FieldReq::Eq(k, v) => field_value(obj, k).unwrap_or_default() == *v,
                FieldReq::NotEq(k, v) => field_value(obj, k).unwrap_or_default() != *v,
            })
    }
}

/// The value of a supported field label (absent fields compare as ""), None when unsupported.
fn field_value(obj: &Value, key: &str) -> Option<String> {
    let ptr = match key {
        "metadata.name" => "/metadata/name",
        "metadata.namespace" => "/metadata/namespace",
        "spec.nodeName" => "/spec/nodeName",
        "status.phase" => "/status/phase",
        _ => return None,
    };
    Some(
        obj.pointer(ptr)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_forms() {
        let o = json!({"metadata": {"name": "a", "labels": {"app": "x", "tier": "web"}}, "spec": {"nodeName": "n1"}});
        let m = |l: &str| Selector::parse(Some(l), None).unwrap().matches(&o);
        assert!(m("app=x"));
        assert!(m("app==x,tier"));
        assert!(!m("app!=x"));
        assert!(m("app in (y, x),!missing"));
        assert!(!m("app notin (x)"));
        assert!(m("missing notin (x)"));
        assert!(!m("tier in (db),app"));
        let f = |s: &str| Selector::parse(None, Some(s)).unwrap().matches(&o);
        assert!(f("spec.nodeName=n1,metadata.name=a"));
        assert!(f("spec.nodeName!=n2"));
        assert!(!f("metadata.namespace=x"));
        assert!(Selector::parse(None, Some("spec.bogus=1")).is_err());
    }
}
