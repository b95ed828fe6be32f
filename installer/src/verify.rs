//! `verify NAMESPACE/POD`: the node daemon's PSH-flag verification of one
//! pod, for operators with kubectl and no shell on the node (managed
//! clusters). Finds the pod's node and the add-on's daemon pod there, runs
//! `accel-daemon verify --pod` in it through the API (pods/exec) and prints
//! the daemon's per-connection table as the daemon printed it.

use std::fmt;
use std::time::Duration;

use anyhow::{anyhow, bail};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;

use accel_k8s::keys;
use accel_k8s::node::{self as knode, Eligibility};

use crate::cluster::Cluster;
use crate::exec::{self, ExecError, Exit};
use crate::nodes::{self, Rollout};
use crate::{Ui, exit};

/// What an operator's credentials need for `verify` (README, Permissions),
/// said with every 403.
pub const RBAC: &str = "verify needs get on pods in the pod's namespace, and get on daemonsets, \
     list on pods and get and create on pods/exec in the add-on's namespace \
     (installer/README.md, Permissions)";

/// Time for the exec beyond the capture: the API server, the kubelet and
/// the daemon's start and report. Also covers the daemon's default capture
/// (5 s) when `--duration` is not given.
const EXEC_MARGIN: Duration = Duration::from_secs(60);

/// `NAMESPACE/NAME` of the pod to verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for PodRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Parses `NAMESPACE/NAME` (the command line's value parser).
pub fn parse_pod(s: &str) -> Result<PodRef, String> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(PodRef {
                namespace: ns.to_string(),
                name: name.to_string(),
            })
        }
        _ => Err(format!(
            "{s:?} is not NAMESPACE/POD (e.g. default/web-7d4b9c8f6d-x2x9q)"
        )),
    }
}

pub struct Options<'a> {
    pub pod: &'a PodRef,
    /// The add-on's namespace (`--namespace`).
    pub namespace: &'a str,
    pub port: Option<u16>,
    pub duration: Option<Duration>,
}

impl Options<'_> {
    /// The daemon's command line.
    pub fn command(&self) -> Vec<String> {
        let mut c = vec![
            keys::DAEMON_BINARY.to_string(),
            "verify".into(),
            "--pod".into(),
            self.pod.to_string(),
        ];
        if let Some(p) = self.port {
            c.extend(["--port".into(), p.to_string()]);
        }
        if let Some(d) = self.duration {
            c.extend(["--duration".into(), format!("{}ms", d.as_millis())]);
        }
        c
    }
}

pub async fn run(cluster: &Cluster, ui: &mut Ui<'_>, opts: &Options<'_>) -> anyhow::Result<i32> {
    let target = opts.pod;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &target.namespace);
    let pod = pods.get_opt(&target.name).await.map_err(|e| {
        let what = format!("pods in namespace {}", target.namespace);
        cluster.explain_for(e, "get", &what, RBAC)
    })?;
    let Some(pod) = pod else {
        bail!(
            "pod {target} not found in context {}; check the name and namespace \
             (kubectl get pods -n {})",
            cluster.context,
            target.namespace
        );
    };
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Unknown");
    let Some(node) = nodes::pod_node(&pod).filter(|n| !n.is_empty()) else {
        bail!(
            "pod {target} is not scheduled to a node yet (phase {phase}), so it has no \
             connections to verify; see kubectl describe pod -n {} {}",
            target.namespace,
            target.name
        );
    };
    if phase == "Succeeded" || phase == "Failed" {
        bail!(
            "pod {target} has finished (phase {phase}) and its network namespace is gone; \
             verify a running pod"
        );
    }
    let daemon = daemon_pod(cluster, opts.namespace, node).await?;
    ui.line(format!(
        "pod {target} runs on node {node}; capturing{} for {} in its network namespace \
         through daemon pod {}/{daemon}",
        opts.port.map(|p| format!(" port {p}")).unwrap_or_default(),
        opts.duration
            .map(|d| format!("{d:?}"))
            .unwrap_or_else(|| "the daemon's default time".into()),
        opts.namespace,
    ));
    let command = opts.command();
    let deadline = opts
        .duration
        .unwrap_or_default()
        .saturating_add(EXEC_MARGIN);
    let api: Api<Pod> =
        Api::namespaced(cluster.client_with_read_timeout(deadline)?, opts.namespace);
    let out = exec::run(&api, &daemon, keys::DAEMONSET, &command, deadline).await;
    let place = format!("in daemon pod {}/{daemon} on node {node}", opts.namespace);
    let out = out.map_err(|e| match e {
        ExecError::Start(e) => {
            let what = format!("pods/exec in namespace {}", opts.namespace);
            cluster.explain_for(e, "get and create", &what, RBAC)
        }
        ExecError::Stream(_) => anyhow!(
            "`{}` {place}: {e}; run verify again (the API server or the node may have restarted)",
            command.join(" ")
        ),
        ExecError::Timeout(_) => anyhow!(
            "`{}` {place}: {e}; see the daemon's log (kubectl logs -n {} {daemon})",
            command.join(" "),
            opts.namespace
        ),
    })?;
    let stderr = one_line(&out.stderr);
    match out.exit {
        Exit::Code(0) => {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                ui.line(line);
            }
            if !stderr.is_empty() {
                ui.warn(format!("{} also said: {stderr}", keys::DAEMON_BINARY));
            }
            Ok(exit::OK)
        }
        Exit::Code(code) => {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                ui.line(line);
            }
            let said = if stderr.is_empty() {
                "(nothing on stderr)".to_string()
            } else {
                stderr
            };
            bail!(
                "`{}` failed {place} (exit status {code}): {said}",
                command.join(" ")
            )
        }
        Exit::NotRun(why) => bail!(
            "cannot run `{}` {place}: {why}; check that the DaemonSet runs the add-on's image \
             of this version (accel-installer status)",
            command.join(" ")
        ),
        Exit::Unknown => bail!(
            "`{}` {place} ended without an exit status (the API server, a proxy or the \
             kubelet closed the stream){}; run verify again",
            command.join(" "),
            if stderr.is_empty() {
                String::new()
            } else {
                format!("; stderr: {stderr}")
            }
        ),
    }
}

/// The running daemon pod on `node`, or why there is none.
async fn daemon_pod(cluster: &Cluster, namespace: &str, node: &str) -> anyhow::Result<String> {
    let ds = nodes::try_daemonset(cluster, namespace)
        .await
        .map_err(|e| {
            let what = format!("daemonsets in namespace {namespace}");
            cluster.explain_for(e, "get", &what, RBAC)
        })?;
    let Some(ds) = ds else {
        bail!(
            "the add-on is not installed in context {}: no DaemonSet {namespace}/{}; install \
             it (accel-installer install), or name its namespace with --namespace",
            cluster.context,
            keys::DAEMONSET
        );
    };
    let pods = nodes::try_daemon_pods_on(cluster, namespace, &ds, node)
        .await
        .map_err(|e| {
            let what = format!("pods in namespace {namespace}");
            cluster.explain_for(e, "list", &what, RBAC)
        })?;
    let running = |p: &&Pod| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            && p.metadata.deletion_timestamp.is_none()
    };
    // A ready one first; during a rolling update the old pod may linger.
    let chosen = pods
        .iter()
        .filter(running)
        .max_by_key(|p| nodes::pod_ready(p));
    if let Some(name) = chosen.and_then(|p| p.metadata.name.clone()) {
        return Ok(name);
    }
    if let Some(p) = pods.first() {
        let name = p.metadata.name.as_deref().unwrap_or("?");
        let phase = p
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Unknown");
        bail!(
            "the daemon pod {namespace}/{name} on node {node} is {phase}, not running; wait \
             for it (kubectl describe pod -n {namespace} {name})"
        );
    }
    Err(no_daemon(cluster, namespace, &ds, node).await)
}

/// Why the DaemonSet has no pod on `node`, as far as the node tells.
async fn no_daemon(
    cluster: &Cluster,
    namespace: &str,
    ds: &DaemonSet,
    node: &str,
) -> anyhow::Error {
    let head = format!("no daemon pod of the add-on on node {node}");
    let api: Api<Node> = Api::all(cluster.client.clone());
    // Reading the node only explains; an operator may not be allowed to.
    if let Ok(Some(n)) = api.get_opt(node).await {
        if !nodes::targeted(&n) {
            let why = match knode::eligibility(&n) {
                Eligibility::NotEligible(why) => why,
                Eligibility::Eligible => "not a Linux node".into(),
            };
            return anyhow!(
                "{head}: the DaemonSet does not run there ({why}), so its pods are never \
                 accelerated"
            );
        }
        if let Some((k, v)) = excluded_by_node_selector(ds, &n) {
            return anyhow!(
                "{head}: the DaemonSet's nodeSelector {k}={v} leaves it out (the chart's \
                 nodeSelector value), so its pods are not accelerated; label the node or \
                 change the selector to include it"
            );
        }
    }
    anyhow!(
        "{head}: the DaemonSet ({}) has not started one there; check kubectl get pods -n \
         {namespace} -o wide -l {} and kubectl describe daemonset -n {namespace} {}",
        Rollout::of(ds).describe(),
        nodes::pod_selector(Some(ds)),
        keys::DAEMONSET
    )
}

/// The first `nodeSelector` entry of the DaemonSet's pods that `node` lacks.
fn excluded_by_node_selector<'a>(ds: &'a DaemonSet, node: &Node) -> Option<(&'a str, &'a str)> {
    let selector = ds
        .spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .node_selector
        .as_ref()?;
    let labels = node.metadata.labels.as_ref();
    selector
        .iter()
        .find(|(k, v)| labels.and_then(|l| l.get(*k)) != Some(*v))
        .map(|(k, v)| (k.as_str(), v.as_str()))
}

/// Output as one line for an error message: trimmed lines joined by "; ",
/// the daemon's own `error: ` prefix dropped.
fn one_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_refs() {
        let p = parse_pod("default/web-1").unwrap();
        assert_eq!(
            (p.namespace.as_str(), p.name.as_str()),
            ("default", "web-1")
        );
        assert_eq!(p.to_string(), "default/web-1");
        for bad in ["web-1", "/web-1", "default/", "a/b/c", ""] {
            assert!(
                parse_pod(bad).unwrap_err().contains("NAMESPACE/POD"),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_daemon_command() {
        let pod = parse_pod("shop/cart-0").unwrap();
        let mut o = Options {
            pod: &pod,
            namespace: keys::DEFAULT_NAMESPACE,
            port: None,
            duration: None,
        };
        assert_eq!(
            o.command(),
            ["accel-daemon", "verify", "--pod", "shop/cart-0"]
        );
        o.port = Some(9080);
        o.duration = Some(Duration::from_millis(1500));
        assert_eq!(o.command()[4..], ["--port", "9080", "--duration", "1500ms"]);
    }

    #[test]
    fn stderr_on_one_line() {
        assert_eq!(
            one_line(b"error: pod x is not a meshed pod\n\n  more  \n"),
            "pod x is not a meshed pod; more"
        );
        assert_eq!(one_line(b""), "");
    }
}
