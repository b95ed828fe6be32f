//! serde_json values to and from gtmpl's (the template engine's) values.

use std::collections::HashMap;

use gtmpl::Value as Tv;
use serde_json::{Map, Number, Value};

pub fn to_template(v: &Value) -> Tv {
    match v {
        Value::Null => Tv::Nil,
        Value::Bool(b) => Tv::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Tv::from(u),
            (None, Some(i), _) => Tv::from(i),
            (None, None, Some(f)) => Tv::from(f),
            (None, None, None) => Tv::Nil,
        },
        Value::String(s) => Tv::String(s.clone()),
        Value::Array(a) => Tv::Array(a.iter().map(to_template).collect()),
        Value::Object(o) => Tv::Map(
            o.iter()
                .map(|(k, v)| (k.clone(), to_template(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

pub fn to_json(v: &Tv) -> Result<Value, String> {
    Ok(match v {
        Tv::NoValue | Tv::Nil => Value::Null,
        Tv::Bool(b) => Value::Bool(*b),
        Tv::String(s) => Value::String(s.clone()),
        Tv::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Value::from(u),
            (None, Some(i), _) => Value::from(i),
            (None, None, Some(f)) => Number::from_f64(f).map_or(Value::Null, Value::Number),
            (None, None, None) => Value::Null,
        },
        Tv::Array(a) => Value::Array(a.iter().map(to_json).collect::<Result<_, _>>()?),
        Tv::Map(m) | Tv::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                out.insert(k.clone(), to_json(v)?);
            }
            Value::Object(out)
        }
        Tv::Function(_) => return Err("a function is not data".into()),
    })
}
