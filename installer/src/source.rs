//! Where `render` and `install` take their objects from: the embedded
//! kustomize manifests (the default) or a Helm chart directory (`--chart`),
//! and the check that the daemon image is this installer's version.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use serde_json::{Value, json};

use accel_k8s::keys;

use crate::chart::{self, Chart, Request};
use crate::manifests::{self, Monitor};
use crate::version::{self, ImageRef};
use crate::{Cli, DaemonOptions};

#[derive(Args, Debug, Clone, Default)]
pub struct ChartArgs {
    /// Render a Helm chart directory (manifests/helm/sidecar-accel) instead of the built-in
    /// kustomize manifests.
    #[arg(long, value_name = "DIR")]
    pub chart: Option<PathBuf>,
    /// A chart value, as `helm --set` (KEY=VALUE[,KEY=VALUE]); repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", requires = "chart")]
    pub sets: Vec<String>,
    /// A chart values file, as `helm --values`; repeatable, later files win.
    #[arg(long = "values", short = 'f', value_name = "FILE", requires = "chart")]
    pub values: Vec<PathBuf>,
}

/// Whether the command asks for a Prometheus Operator monitor: `Some(false)`
/// none, `Some(true)` one (PodMonitor with --pod-monitor), `None` the
/// source's own choice (the chart's values; none from kustomize).
pub type MonitorChoice = Option<bool>;

/// The objects to apply, in apply order, with the image's version checked.
pub fn objects(
    cli: &Cli,
    daemon: &DaemonOptions,
    chart_args: &ChartArgs,
    monitor: MonitorChoice,
) -> anyhow::Result<Vec<Value>> {
    let objects = match &chart_args.chart {
        None => {
            let monitor = match (monitor, daemon.pod_monitor) {
                (Some(true), false) => Monitor::ServiceMonitor,
                (Some(true), true) => Monitor::PodMonitor,
                _ => Monitor::None,
            };
            let opts = manifests::Options {
                namespace: cli.namespace.clone(),
                image: cli.image(),
                log_level: daemon.log_level.clone(),
                monitor,
            };
            manifests::render(&opts)?
        }
        Some(dir) => {
            let chart = Chart::load(dir)?;
            chart.render(&chart_request(cli, daemon, chart_args, monitor)?)?
        }
    };
    if !cli.allow_version_mismatch {
        for image in daemon_images(&objects) {
            version::check_image(&image, version::OURS)?;
        }
    }
    Ok(objects)
}

fn chart_request(
    cli: &Cli,
    daemon: &DaemonOptions,
    args: &ChartArgs,
    monitor: MonitorChoice,
) -> anyhow::Result<Request> {
    // --namespace first, so that values files and --set can still choose.
    let mut files = vec![json!({"namespace": {"name": cli.namespace}})];
    for f in &args.values {
        files.push(chart::read_yaml(f).with_context(|| format!("--values {}", f.display()))?);
    }
    let mut overrides = json!({});
    if let Some(image) = &cli.image {
        let r = ImageRef::parse(image);
        overrides["image"] = json!({
            "repository": r.repository,
            "tag": r.tag.unwrap_or_default(),
            "digest": r.digest.unwrap_or_default(),
        });
    }
    if let Some(level) = &daemon.log_level {
        overrides["logLevel"] = json!(level);
    }
    if let Some(on) = monitor {
        overrides["metrics"] = json!({
            "serviceMonitor": {"enabled": on && !daemon.pod_monitor},
            "podMonitor": {"enabled": on && daemon.pod_monitor},
        });
    }
    Ok(Request {
        release: "sidecar-accel".into(),
        namespace: cli.namespace.clone(),
        files,
        sets: args.sets.clone(),
        overrides,
    })
}

/// The images of the daemon's containers.
fn daemon_images(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .filter(|o| o["kind"] == "DaemonSet")
        .flat_map(|o| {
            o.pointer("/spec/template/spec/containers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter(|c| c["name"] == keys::DAEMONSET)
        .filter_map(|c| c["image"].as_str().map(str::to_string))
        .collect()
}

/// The namespace the DaemonSet is rendered in (what install waits on).
pub fn daemon_namespace(objects: &[Value]) -> Option<String> {
    objects
        .iter()
        .find(|o| o["kind"] == "DaemonSet")
        .and_then(|o| o["metadata"]["namespace"].as_str())
        .map(str::to_string)
}
