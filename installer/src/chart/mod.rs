//! The Helm chart (`manifests/helm/sidecar-accel`) rendered without helm:
//! values merged as Helm merges them, checked against the chart's
//! values.schema.json, and the templates run through gtmpl (Go's
//! text/template) with the few Helm functions the chart uses (funcs.rs).

mod convert;
mod funcs;
mod schema;
pub mod values;

use std::path::{Path, PathBuf};

use gtmpl::Context;
use serde_json::{Map, Value, json};

use crate::manifests;

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path} does not parse: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("--set {arg}: {reason}")]
    Set { arg: String, reason: String },
    #[error("invalid values: {0}")]
    Values(String),
    #[error("template {file}: {reason}")]
    Template { file: String, reason: String },
    #[error("template {file} renders {what}")]
    Output { file: String, what: String },
}

/// A chart directory, read.
#[derive(Clone, Debug)]
pub struct Chart {
    pub dir: PathBuf,
    /// Chart.yaml.
    pub meta: Value,
    /// values.yaml.
    pub values: Value,
    schema: Option<Value>,
    /// `templates/_*.tpl`: named templates only.
    helpers: Vec<(String, String)>,
    /// The other `templates/*.yaml`, by name.
    templates: Vec<(String, String)>,
}

/// What `helm install NAME CHART -n NAMESPACE` would be given.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub release: String,
    pub namespace: String,
    /// `--values` files' contents, in order.
    pub files: Vec<Value>,
    /// `--set` arguments, in order.
    pub sets: Vec<String>,
    /// Applied last (the installer's own flags: --image, --log-level ...).
    pub overrides: Value,
}

fn read(path: &Path) -> Result<String, ChartError> {
    std::fs::read_to_string(path).map_err(|e| ChartError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// One YAML document (an empty file is an empty map).
pub fn read_yaml(path: &Path) -> Result<Value, ChartError> {
    let text = read(path)?;
    let v: Value = serde_saphyr::from_str(&text).map_err(|e| ChartError::Parse {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(if v.is_null() { json!({}) } else { v })
}

impl Chart {
    pub fn load(dir: &Path) -> Result<Chart, ChartError> {
        let meta = read_yaml(&dir.join("Chart.yaml"))?;
        let values = read_yaml(&dir.join("values.yaml"))?;
        let schema_path = dir.join("values.schema.json");
        let schema = if schema_path.exists() {
            let text = read(&schema_path)?;
            Some(serde_json::from_str(&text).map_err(|e| ChartError::Parse {
                path: schema_path,
                reason: e.to_string(),
            })?)
        } else {
            None
        };
        let tdir = dir.join("templates");
        let entries = std::fs::read_dir(&tdir).map_err(|e| ChartError::Read {
            path: tdir.clone(),
            reason: e.to_string(),
        })?;
        let mut helpers = Vec::new();
        let mut templates = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|e| ChartError::Read {
                    path: tdir.clone(),
                    reason: e.to_string(),
                })?
                .path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            if name.starts_with('_') {
                helpers.push((name, read(&path)?));
            } else if name.ends_with(".yaml") || name.ends_with(".yml") {
                templates.push((name, read(&path)?));
            }
        }
        helpers.sort();
        templates.sort();
        Ok(Chart {
            dir: dir.to_path_buf(),
            meta,
            values,
            schema,
            helpers,
            templates,
        })
    }

    /// The values a render of `req` sees, checked against the schema.
    pub fn values_for(&self, req: &Request) -> Result<Value, ChartError> {
        let mut v = self.values.clone();
        for f in &req.files {
            values::merge(&mut v, f);
        }
        for arg in &req.sets {
            let set = values::parse_set(arg).map_err(|reason| ChartError::Set {
                arg: arg.clone(),
                reason,
            })?;
            values::merge(&mut v, &set);
        }
        values::merge(&mut v, &req.overrides);
        if let Some(s) = &self.schema {
            schema::validate(s, &v).map_err(ChartError::Values)?;
        }
        Ok(v)
    }

    /// Every object the chart renders for `req`, in apply order.
    pub fn render(&self, req: &Request) -> Result<Vec<Value>, ChartError> {
        let ctx = json!({
            "Values": self.values_for(req)?,
            "Release": {
                "Name": req.release,
                "Namespace": req.namespace,
                "Service": "Helm",
                "IsInstall": true,
                "IsUpgrade": false,
                "Revision": 1,
            },
            "Chart": chart_object(&self.meta),
        });
        let ctx = Context::from(convert::to_template(&ctx));
        let _helpers = funcs::with_helpers(&self.helpers);
        let mut out = Vec::new();
        for (file, text) in &self.templates {
            let err = |reason: String| ChartError::Template {
                file: file.clone(),
                reason,
            };
            let mut t = funcs::template(file).map_err(err)?;
            t.parse(text.as_str()).map_err(|e| err(e.to_string()))?;
            let rendered = t.render(&ctx).map_err(|e| err(e.to_string()))?;
            let docs: Vec<Value> =
                serde_saphyr::from_multiple(&rendered).map_err(|e| ChartError::Output {
                    file: file.clone(),
                    what: format!("YAML that does not parse ({e}):\n{rendered}"),
                })?;
            for doc in docs.into_iter().filter(|d| !d.is_null()) {
                let (api, kind) = (doc["apiVersion"].as_str(), doc["kind"].as_str());
                if manifests::kind_info(api.unwrap_or_default(), kind.unwrap_or_default()).is_none()
                {
                    return Err(ChartError::Output {
                        file: file.clone(),
                        what: format!("an object accel-installer cannot apply: {api:?} {kind:?}"),
                    });
                }
                out.push(doc);
            }
        }
        manifests::sort_for_apply(&mut out);
        Ok(out)
    }
}

/// `.Chart`: Chart.yaml's fields as Helm names them (Name, Version, AppVersion ...).
fn chart_object(meta: &Value) -> Value {
    let mut out = Map::new();
    for (k, v) in meta.as_object().into_iter().flatten() {
        let name = match k.as_str() {
            "apiVersion" => "APIVersion".to_string(),
            _ => {
                let mut c = k.chars();
                c.next()
                    .map(|f| f.to_uppercase().chain(c).collect())
                    .unwrap_or_default()
            }
        };
        out.insert(name, v.clone());
    }
    Value::Object(out)
}
