//! `accel-daemon verify --pod NAMESPACE/NAME`: capture in a meshed pod's
//! network namespace as the running daemon found it (its state file), so an
//! operator without a shell on the node (`accel-installer verify`, through
//! `kubectl exec`) needs neither a PID nor a namespace path.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use accel_k8s::pods_file::NetnsRef;

use crate::state::{DaemonState, STATE_FILE};

/// Where to capture for `pod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodNetns {
    Path(PathBuf),
    Pid(u32),
}

/// Looks `pod` up in the daemon's state and checks that the namespace it
/// recorded still holds one of the pod's addresses (a process that exited
/// can leave a stale path, and its PID can be reused by another pod).
pub fn resolve(pod: &str, state_dir: &Path) -> Result<PodNetns, String> {
    let state = DaemonState::read(state_dir);
    let (target, ips) = lookup(state.as_ref(), pod, state_dir)?;
    let file = match &target {
        PodNetns::Path(p) => p.clone(),
        PodNetns::Pid(pid) => PathBuf::from(format!("/proc/{pid}/ns/net")),
    };
    let stale = |why: String| {
        format!(
            "the network namespace the daemon recorded for pod {pod} ({}) {why}; the pod may \
             have restarted: retry in a few seconds",
            file.display()
        )
    };
    let held = crate::kubernetes::addresses_in(&file)
        .map_err(|e| stale(format!("cannot be read ({e})")))?;
    if !ips.is_empty() && !ips.iter().any(|ip| held.contains(ip)) {
        return Err(stale(format!(
            "no longer holds its addresses ({})",
            list(&ips)
        )));
    }
    Ok(target)
}

/// The recorded namespace and addresses of `pod`, or what to do instead.
fn lookup(
    state: Option<&DaemonState>,
    pod: &str,
    state_dir: &Path,
) -> Result<(PodNetns, Vec<IpAddr>), String> {
    if !pod
        .split_once('/')
        .is_some_and(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains('/'))
    {
        return Err(format!(
            "--pod {pod:?}: give the pod as NAMESPACE/NAME, e.g. default/web-7d4b9c8f6d-x2x9q"
        ));
    }
    let Some(state) = state else {
        return Err(format!(
            "no daemon state in {}: `accel-daemon run` has not run on this node with \
             --state-dir {}, so no pod is known here; check the daemon pod on this node",
            state_dir.join(STATE_FILE).display(),
            state_dir.display()
        ));
    };
    let Some(ep) = state.pods.iter().find(|p| p.name == pod) else {
        let known: Vec<&str> = state.pods.iter().map(|p| p.name.as_str()).collect();
        let shown = if known.is_empty() {
            "none".to_string()
        } else if known.len() > 8 {
            format!("{}, ... ({} in all)", known[..8].join(", "), known.len())
        } else {
            known.join(", ")
        };
        return Err(format!(
            "pod {pod} is not a meshed pod of this node's daemon (meshed pods here: {shown}); \
             only pods with a sidecar on this node take part. Check the pod's node and its \
             sidecar.istio.io/status annotation"
        ));
    };
    match ep.netns_ref() {
        Some(NetnsRef::Path { netns }) => Ok((PodNetns::Path(netns), ep.ips.clone())),
        Some(NetnsRef::Pid { pid }) => Ok((PodNetns::Pid(pid), ep.ips.clone())),
        None => Err(format!(
            "the daemon has not found the network namespace of pod {pod} yet (no process in \
             its cgroup holds {}); retry in a few seconds, or see the daemon's log",
            list(&ep.ips)
        )),
    }
}

fn list(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::LocalEndpoint;

    fn state(pods: Vec<LocalEndpoint>) -> DaemonState {
        DaemonState {
            pods,
            ..Default::default()
        }
    }

    fn pod(name: &str, netns: Option<&str>, pid: Option<u32>) -> LocalEndpoint {
        LocalEndpoint {
            name: name.into(),
            ips: vec!["172.20.0.5".parse().unwrap()],
            netns: netns.map(PathBuf::from),
            pid,
            ..Default::default()
        }
    }

    #[test]
    fn finds_the_recorded_namespace_or_says_why_not() {
        let dir = Path::new("/run/sidecar-accel");
        let s = state(vec![
            pod("default/web", Some("/host/proc/42/ns/net"), None),
            pod("default/by-pid", None, Some(7)),
            pod("default/early", None, None),
        ]);
        assert_eq!(
            lookup(Some(&s), "default/web", dir).unwrap().0,
            PodNetns::Path("/host/proc/42/ns/net".into())
        );
        assert_eq!(
            lookup(Some(&s), "default/by-pid", dir).unwrap().0,
            PodNetns::Pid(7)
        );
        let e = lookup(Some(&s), "default/early", dir).unwrap_err();
        assert!(
            e.contains("not found the network namespace") && e.contains("172.20.0.5"),
            "{e}"
        );
        let e = lookup(Some(&s), "shop/cart", dir).unwrap_err();
        assert!(
            e.contains("pod shop/cart is not a meshed pod")
                && e.contains("default/web, default/by-pid, default/early"),
            "{e}"
        );
        let e = lookup(None, "default/web", dir).unwrap_err();
        assert!(e.contains("/run/sidecar-accel/status.json"), "{e}");
        for bad in ["web", "/web", "default/", "a/b/c"] {
            let e = lookup(Some(&s), bad, dir).unwrap_err();
            assert!(e.contains("NAMESPACE/NAME"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_stale_path_is_refused() {
        let dir = std::env::temp_dir().join(format!("verify-pod-{}", std::process::id()));
        let s = state(vec![pod("default/web", Some("/nonexistent/ns/net"), None)]);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(STATE_FILE), serde_json::to_string(&s).unwrap()).unwrap();
        let e = resolve("default/web", &dir).unwrap_err();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(e.contains("cannot be read") && e.contains("retry"), "{e}");
    }
}
