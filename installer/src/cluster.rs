//! Connecting to one cluster (kubeconfig + context, kubectl-style) and
//! turning client errors into one line an operator can act on.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// A connected cluster and how to name it in messages.
pub struct Cluster {
    pub client: Client,
    /// The kubeconfig context (or "in-cluster").
    pub context: String,
    pub url: String,
    /// What `client` was built from, for clients with other timeouts.
    config: Config,
}

/// Who may do what for install and uninstall, said with every 403.
const INSTALL_RBAC: &str =
    "install and uninstall need cluster-admin-like rights (namespaces, RBAC, DaemonSets, nodes)";

/// Resolves `context` (None: the kubeconfig's current context) and builds a
/// client. Nothing is sent yet: an unreachable server shows on the first call.
pub async fn connect(kubeconfig: Option<&Path>, context: Option<&str>) -> anyhow::Result<Cluster> {
    let (kc, source) = match kubeconfig {
        Some(p) => {
            let kc = Kubeconfig::read_from(p)
                .map_err(|e| anyhow!("cannot read kubeconfig {}: {}", p.display(), chain(&e)))?;
            (Some(kc), p.display().to_string())
        }
        None => match Kubeconfig::read() {
            Ok(kc) => (Some(kc), "$KUBECONFIG or ~/.kube/config".to_string()),
            Err(e) if context.is_some() => bail!(
                "--context needs a kubeconfig, and none could be read ({}); pass --kubeconfig or set KUBECONFIG",
                chain(&e)
            ),
            Err(_) => (None, String::new()),
        },
    };
    let (mut config, name) = match kc {
        Some(kc) => {
            let available = || {
                let names: Vec<&str> = kc.contexts.iter().map(|c| c.name.as_str()).collect();
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            };
            let name = match context {
                Some(c) => c.to_string(),
                None => kc.current_context.clone().ok_or_else(|| {
                    anyhow!(
                        "kubeconfig {source} has no current-context; choose one with --context (available: {})",
                        available()
                    )
                })?,
            };
            if !kc.contexts.iter().any(|c| c.name == name) {
                bail!(
                    "context {name:?} not found in kubeconfig {source}; available contexts: {}",
                    available()
                );
            }
            let options = KubeConfigOptions {
                context: Some(name.clone()),
                ..Default::default()
            };
            let config = Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| anyhow!("context {name:?} in {source}: {}", chain(&e)))?;
            (config, name)
        }
        None => {
            let config = Config::incluster().map_err(|e| {
                anyhow!(
                    "no kubeconfig ($KUBECONFIG, ~/.kube/config) and not running in a cluster: {}",
                    chain(&e)
                )
            })?;
            (config, "in-cluster".to_string())
        }
    };
    // A server that accepts the connection and never answers must not hang the installer.
    config.read_timeout = Some(Duration::from_secs(30));
    // kube's default retry backs off for minutes on 503/429; an operator at a
    // terminal wants the answer now. The waits retry on their own schedule.
    config.default_retry = false;
    let url = config
        .cluster_url
        .to_string()
        .trim_end_matches('/')
        .to_string();
    let client = Client::try_from(config.clone())
        .with_context(|| format!("cannot build a client for {url} (context {name})"))?;
    Ok(Cluster {
        client,
        context: name,
        url,
        config,
    })
}

/// The error and its causes, outermost first, on one line; repeats dropped.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut last = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        last = s.to_string();
        cur = s.source();
    }
    last
}

impl Cluster {
    /// A client whose reads may wait `idle` between bytes, where the default
    /// client gives up after 30 s: for a stream that stays quiet while the
    /// other end works (an exec that prints only when done).
    pub fn client_with_read_timeout(&self, idle: Duration) -> anyhow::Result<Client> {
        let mut config = self.config.clone();
        config.read_timeout = Some(idle);
        Client::try_from(config).with_context(|| {
            format!(
                "cannot build a client for {} (context {})",
                self.url, self.context
            )
        })
    }

    /// One clear line for a failed call: `verb` on `resource` (plural, as RBAC names it).
    pub fn explain(&self, e: kube::Error, verb: &str, resource: &str) -> anyhow::Error {
        self.explain_for(e, verb, resource, INSTALL_RBAC)
    }

    /// [`Cluster::explain`], with `rbac` saying what the command needs when forbidden.
    pub fn explain_for(
        &self,
        e: kube::Error,
        verb: &str,
        resource: &str,
        rbac: &str,
    ) -> anyhow::Error {
        let (ctx, url) = (&self.context, &self.url);
        match &e {
            kube::Error::Api(status) if status.code == 403 => anyhow!(
                "forbidden: the credentials of context {ctx} may not {verb} {resource} ({}); {rbac}",
                status.message
            ),
            kube::Error::Api(status) if status.code == 401 => anyhow!(
                "unauthorized: the API server at {url} rejected the credentials of context {ctx} ({})",
                status.message
            ),
            kube::Error::Api(status) if status.code == 503 || status.code == 504 => anyhow!(
                "the API server at {url} (context {ctx}) is unavailable ({} {}) while trying to {verb} {resource}",
                status.code,
                status.message
            ),
            kube::Error::Api(status) => anyhow!(
                "the API server at {url} (context {ctx}) refused to {verb} {resource}: {} ({} {})",
                status.message,
                status.code,
                status.reason
            ),
            kube::Error::HyperError(_) | kube::Error::Service(_) => anyhow!(
                "cannot reach the API server at {url} (context {ctx}): {}",
                root_cause(&e)
            ),
            _ => anyhow!(
                "{verb} {resource} failed against {url} (context {ctx}): {}",
                chain(&e)
            ),
        }
    }
}

/// Worth trying again within a wait (server away or overloaded), as opposed
/// to a refusal that will not change (403, 401, 404, bad request).
pub fn transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => matches!(s.code, 429 | 500 | 502 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// `Result<T, kube::Error>` to a one-line `anyhow` error naming the call.
pub trait Explain<T> {
    fn explain(self, cluster: &Cluster, verb: &str, resource: &str) -> anyhow::Result<T>;
}

impl<T> Explain<T> for Result<T, kube::Error> {
    fn explain(self, cluster: &Cluster, verb: &str, resource: &str) -> anyhow::Result<T> {
        self.map_err(|e| cluster.explain(e, verb, resource))
    }
}
