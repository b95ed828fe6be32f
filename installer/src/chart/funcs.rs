//! The Helm functions the chart uses, for gtmpl (Go's text/template):
//! `include`, `toYaml`, `nindent`, `quote`, `default`, `int64`, `fail`.
//! A template calling anything else fails to parse, so the chart cannot
//! start using a Helm function this renderer lacks without a test noticing.

use std::cell::RefCell;

use gtmpl::{Context, Func, FuncError, Template, Value};

use super::convert;

pub const FUNCS: &[(&str, Func)] = &[
    ("include", include),
    ("toYaml", to_yaml),
    ("nindent", nindent),
    ("quote", quote),
    ("default", default),
    ("int64", int64),
    ("fail", fail),
];

thread_local! {
    /// The chart's `_*.tpl` files while a render runs on this thread: what
    /// `include` looks named templates up in (gtmpl functions are plain
    /// `fn`s, without access to the template set).
    static HELPERS: RefCell<Vec<(String, String)>> = const { RefCell::new(Vec::new()) };
}

/// Makes `helpers` visible to `include` until the guard drops.
pub struct HelpersGuard(());

pub fn with_helpers(helpers: &[(String, String)]) -> HelpersGuard {
    HELPERS.with(|h| *h.borrow_mut() = helpers.to_vec());
    HelpersGuard(())
}

impl Drop for HelpersGuard {
    fn drop(&mut self) {
        HELPERS.with(|h| h.borrow_mut().clear());
    }
}

/// A template named `name` with the Helm functions and the helpers.
pub fn template(name: &str) -> Result<Template, String> {
    let mut t = Template::with_name(name);
    t.add_funcs(FUNCS);
    let helpers = HELPERS.with(|h| h.borrow().clone());
    for (file, text) in helpers {
        t.add_template(file.clone(), text)
            .map_err(|e| format!("{file}: {e}"))?;
    }
    Ok(t)
}

fn generic(msg: impl Into<String>) -> FuncError {
    FuncError::Generic(msg.into())
}

fn arg<'a>(name: &str, args: &'a [Value], i: usize, n: usize) -> Result<&'a Value, FuncError> {
    if args.len() != n {
        return Err(FuncError::ExactlyXArgs(name.into(), n));
    }
    Ok(&args[i])
}

fn string(name: &str, v: &Value) -> Result<String, FuncError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        other => Err(generic(format!("{name}: {other} is not a string"))),
    }
}

/// `include NAME CONTEXT`: a named template's output, as a string.
fn include(args: &[Value]) -> Result<Value, FuncError> {
    let name = string("include", arg("include", args, 0, 2)?)?;
    if name.contains(['"', '\\', '`']) {
        return Err(generic(format!("include: bad template name {name:?}")));
    }
    let mut t = template("include").map_err(generic)?;
    t.parse(format!("{{{{ template \"{name}\" . }}}}"))
        .map_err(|e| generic(format!("include {name:?}: {e}")))?;
    t.render(&Context::from(args[1].clone()))
        .map(Value::String)
        .map_err(|e| generic(format!("include {name:?}: {e}")))
}

/// `toYaml VALUE`, without the trailing newline (as Helm's).
fn to_yaml(args: &[Value]) -> Result<Value, FuncError> {
    let json = convert::to_json(arg("toYaml", args, 0, 1)?).map_err(generic)?;
    let text = serde_saphyr::to_string(&json).map_err(|e| generic(format!("toYaml: {e}")))?;
    Ok(Value::String(text.trim_end_matches('\n').to_string()))
}

/// `nindent N TEXT`: a newline, then every line of TEXT indented by N spaces.
fn nindent(args: &[Value]) -> Result<Value, FuncError> {
    let n = match arg("nindent", args, 0, 2)? {
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
    .ok_or_else(|| generic("nindent: the width is not a number"))?;
    let text = display(&args[1]);
    let pad = " ".repeat(usize::try_from(n).unwrap_or(0));
    let lines: Vec<String> = text.split('\n').map(|l| format!("{pad}{l}")).collect();
    Ok(Value::String(format!("\n{}", lines.join("\n"))))
}

/// `quote VALUE`: a double-quoted string (Go's %q).
fn quote(args: &[Value]) -> Result<Value, FuncError> {
    let parts: Vec<String> = args
        .iter()
        .filter(|v| !matches!(v, Value::Nil | Value::NoValue))
        .map(|v| serde_json::Value::String(display(v)).to_string())
        .collect();
    Ok(Value::String(parts.join(" ")))
}

/// `default DEFAULT VALUE`: VALUE unless it is empty (nil, "", 0, false, empty list or map).
fn default(args: &[Value]) -> Result<Value, FuncError> {
    match args {
        [d] => Ok(d.clone()),
        [d, v] if empty(v) => Ok(d.clone()),
        [_, v] => Ok(v.clone()),
        _ => Err(FuncError::AtLeastXArgs("default".into(), 1)),
    }
}

/// `int64 VALUE`: a whole number printed as one (Helm reads values.yaml
/// numbers as float64, which Go prints as 4.194304e+06 without it).
fn int64(args: &[Value]) -> Result<Value, FuncError> {
    let v = arg("int64", args, 0, 1)?;
    let n = match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    n.map(Value::from)
        .ok_or_else(|| generic(format!("int64: {v} is not a whole number")))
}

/// `fail MESSAGE`: stops rendering with MESSAGE.
fn fail(args: &[Value]) -> Result<Value, FuncError> {
    Err(generic(display(arg("fail", args, 0, 1)?)))
}

fn empty(v: &Value) -> bool {
    match v {
        Value::NoValue | Value::Nil => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Map(m) | Value::Object(m) => m.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0) || n.as_i64() == Some(0),
        Value::Function(_) => false,
    }
}

/// How Go prints a value in a template (strings as they are).
fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::NoValue | Value::Nil => String::new(),
        other => other.to_string(),
    }
}
