//! Which pods take part: meshed pods (an Istio or ASM sidecar), minus opt-outs,
//! with Istio's per-pod interception exclusions.
//!
//! Anything we cannot read with certainty keeps the pod on TCP: accelerating a
//! pod whose exclusions we misread would bypass what its owner asked for.

use std::{collections::BTreeMap, net::IpAddr};

use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;

use crate::{keys, net::Cidr, pods_file::Acceleration};

/// A meshed pod, as the datapath needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MeshedPod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub ips: Vec<IpAddr>,
    pub exclude_inbound_ports: Vec<u16>,
    pub exclude_outbound_ports: Vec<u16>,
    pub exclude_outbound_ip_ranges: Vec<Cidr>,
    /// From the pod's annotation; `None`: the node's default.
    pub acceleration: Option<Acceleration>,
}

impl MeshedPod {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The verdict on one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodClass {
    Meshed(MeshedPod),
    /// No sidecar: never accelerated.
    NotMeshed,
    /// Meshed, but its owner opted out with [`keys::POD_OPT_OUT_ANNOTATION`].
    OptedOut,
    /// Meshed but not (or no longer) a candidate: host network, no IP yet, finished.
    Inactive(&'static str),
    /// Meshed, but an annotation we must honour cannot be read: kept on TCP.
    Invalid(String),
    /// The mode annotation names no mode: the pod keeps the setting it had
    /// (`pod`), or stays on TCP (`None`) if it never had a good one.
    BadMode {
        last_good: Option<Box<MeshedPod>>,
        why: String,
    },
}

impl PodClass {
    /// The pod as it takes part, if it does.
    pub fn meshed(&self) -> Option<&MeshedPod> {
        match self {
            PodClass::Meshed(m) => Some(m),
            PodClass::BadMode { last_good, .. } => last_good.as_deref(),
            _ => None,
        }
    }

    /// Why an annotation of the pod cannot be honoured, if so.
    pub fn problem(&self) -> Option<&String> {
        match self {
            PodClass::Invalid(why) | PodClass::BadMode { why, .. } => Some(why),
            _ => None,
        }
    }

    /// This verdict, given what the pod was before: a pod whose mode
    /// annotation turned bad keeps its last good setting.
    pub fn after(self, before: Option<&PodClass>) -> PodClass {
        match self {
            PodClass::BadMode { why, .. } => PodClass::BadMode {
                last_good: before.and_then(PodClass::meshed).cloned().map(Box::new),
                why,
            },
            other => other,
        }
    }
}

/// Does the pod carry the Istio/ASM sidecar? An `istio-proxy` container, the
/// injector's status annotation, or Istio's native sidecar (an `istio-proxy`
/// init container with `restartPolicy: Always`). Other native sidecars (log
/// shippers and the like) do not make a pod meshed.
pub fn has_sidecar(pod: &Pod) -> bool {
    if annotation(pod, keys::ISTIO_SIDECAR_STATUS).is_some() {
        return true;
    }
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    spec.containers
        .iter()
        .any(|c| c.name == keys::ISTIO_PROXY_CONTAINER)
        || spec.init_containers.iter().flatten().any(|c| {
            c.name == keys::ISTIO_PROXY_CONTAINER && c.restart_policy.as_deref() == Some("Always")
        })
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// Classifies a pod of this node.
pub fn classify(pod: &Pod) -> PodClass {
    if !has_sidecar(pod) {
        return PodClass::NotMeshed;
    }
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    let acceleration = match annotations
        .get(keys::POD_OPT_OUT_ANNOTATION)
        .map(|v| v.trim())
    {
        None | Some("true") => None,
        Some("false") => return PodClass::OptedOut,
        Some(other) => match other.parse::<Acceleration>() {
            Ok(mode) => Some(mode),
            Err(_) => {
                return PodClass::BadMode {
                    last_good: None,
                    why: format!(
                        "annotation {}={other:?} names no mode (accepted: true, false, {}); \
                         the pod keeps its last good setting",
                        keys::POD_OPT_OUT_ANNOTATION,
                        Acceleration::ACCEPTED
                    ),
                };
            }
        },
    };
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
    {
        // A host-network pod's address is the node's: accelerating it would
        // take in every host process's traffic on that address.
        return PodClass::Inactive("host network");
    }
    let status = pod.status.as_ref();
    if matches!(
        status.and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    ) {
        return PodClass::Inactive("finished");
    }
    let ips = match pod_ips(pod) {
        Ok(ips) if ips.is_empty() => return PodClass::Inactive("no pod IP yet"),
        Ok(ips) => ips,
        Err(e) => return PodClass::Invalid(e),
    };
    let exclusions = (|| -> Result<_, String> {
        Ok((
            ports(&annotations, keys::ISTIO_EXCLUDE_INBOUND_PORTS)?,
            ports(&annotations, keys::ISTIO_EXCLUDE_OUTBOUND_PORTS)?,
            cidrs(&annotations, keys::ISTIO_EXCLUDE_OUTBOUND_IP_RANGES)?,
        ))
    })();
    let (inbound, outbound, ranges) = match exclusions {
        Ok(x) => x,
        Err(e) => return PodClass::Invalid(e),
    };
    PodClass::Meshed(MeshedPod {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        ips,
        exclude_inbound_ports: inbound,
        exclude_outbound_ports: outbound,
        exclude_outbound_ip_ranges: ranges,
        acceleration,
    })
}

/// The pod's addresses (`status.podIPs`, or `status.podIP` on old clusters).
fn pod_ips(pod: &Pod) -> Result<Vec<IpAddr>, String> {
    let Some(status) = pod.status.as_ref() else {
        return Ok(Vec::new());
    };
    let mut raw: Vec<&str> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.as_str())
        .collect();
    if raw.is_empty() {
        raw.extend(status.pod_ip.as_deref());
    }
    let mut ips = Vec::new();
    for r in raw {
        let ip: IpAddr = r
            .trim()
            .parse()
            .map_err(|_| format!("status.podIPs entry {r:?} is not an IP address"))?;
        if ip.is_loopback() || ip.is_unspecified() {
            return Err(format!("status.podIPs entry {r:?} is not a pod address"));
        }
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    Ok(ips)
}

/// Parses a comma-separated port list. Istio treats `*` as every port; we
/// cannot express that per port, and a pod that excludes everything is
/// not intercepted at all, so `*` keeps the pod on TCP.
pub fn parse_ports(value: &str) -> Result<Vec<u16>, String> {
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if item == "*" {
            return Err("\"*\" (every port)".into());
        }
        let port: u16 = item
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{item:?} is not a port number (1-65535)"))?;
        if !out.contains(&port) {
            out.push(port);
        }
    }
    Ok(out)
}

/// Parses a comma-separated CIDR list; `*` means every destination.
pub fn parse_cidrs(value: &str) -> Result<Vec<Cidr>, String> {
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if item == "*" {
            out.push(Cidr {
                addr: IpAddr::from([0u8; 4]),
                prefix: 0,
            });
            out.push(Cidr {
                addr: IpAddr::from([0u16; 8]),
                prefix: 0,
            });
            continue;
        }
        let cidr: Cidr = item.parse()?;
        if !out.contains(&cidr) {
            out.push(cidr);
        }
    }
    Ok(out)
}

fn ports(annotations: &BTreeMap<String, String>, key: &str) -> Result<Vec<u16>, String> {
    match annotations.get(key) {
        None => Ok(Vec::new()),
        Some(v) => parse_ports(v).map_err(|e| format!("annotation {key}={v:?}: {e}")),
    }
}

fn cidrs(annotations: &BTreeMap<String, String>, key: &str) -> Result<Vec<Cidr>, String> {
    match annotations.get(key) {
        None => Ok(Vec::new()),
        Some(v) => parse_cidrs(v).map_err(|e| format!("annotation {key}={v:?}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodIP, PodSpec, PodStatus};

    fn pod(containers: &[&str], annotations: &[(&str, &str)], ips: &[&str]) -> Pod {
        let mut p = Pod::default();
        p.metadata.namespace = Some("shop".into());
        p.metadata.name = Some("cart-1".into());
        p.metadata.uid = Some("u1".into());
        p.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        p.spec = Some(PodSpec {
            containers: containers
                .iter()
                .map(|n| Container {
                    name: n.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        });
        p.status = Some(PodStatus {
            phase: Some("Running".into()),
            pod_ips: Some(ips.iter().map(|ip| PodIP { ip: ip.to_string() }).collect()),
            ..Default::default()
        });
        p
    }

    #[test]
    fn sidecar_container_annotation_or_native_sidecar_make_a_pod_meshed() {
        assert!(has_sidecar(&pod(&["app", "istio-proxy"], &[], &[])));
        assert!(has_sidecar(&pod(
            &["app"],
            &[(keys::ISTIO_SIDECAR_STATUS, "{}")],
            &[]
        )));
        let mut native = pod(&["app"], &[], &[]);
        let init = Container {
            name: "istio-proxy".into(),
            restart_policy: Some("Always".into()),
            ..Default::default()
        };
        native.spec.as_mut().unwrap().init_containers = Some(vec![init.clone()]);
        assert!(has_sidecar(&native));
        // An ordinary init container named istio-proxy (old istio-init style) is not a sidecar,
        // and neither is another product's native sidecar.
        let mut plain_init = pod(&["app"], &[], &[]);
        plain_init.spec.as_mut().unwrap().init_containers = Some(vec![
            Container {
                name: "istio-proxy".into(),
                ..Default::default()
            },
            Container {
                name: "log-shipper".into(),
                restart_policy: Some("Always".into()),
                ..Default::default()
            },
        ]);
        assert!(!has_sidecar(&plain_init));
        assert_eq!(
            classify(&pod(&["app"], &[], &["10.0.0.5"])),
            PodClass::NotMeshed
        );
    }

    #[test]
    fn meshed_pod_carries_ips_and_istio_exclusions() {
        let p = pod(
            &["app", "istio-proxy"],
            &[
                (keys::ISTIO_EXCLUDE_INBOUND_PORTS, "8080, 9090"),
                (keys::ISTIO_EXCLUDE_OUTBOUND_PORTS, "3306"),
                (
                    keys::ISTIO_EXCLUDE_OUTBOUND_IP_RANGES,
                    "10.96.0.0/12,fd00::/8",
                ),
            ],
            &["10.0.0.5", "fd00::5"],
        );
        let PodClass::Meshed(m) = classify(&p) else {
            panic!("not meshed: {:?}", classify(&p));
        };
        assert_eq!(m.key(), "shop/cart-1");
        assert_eq!(m.ips.len(), 2);
        assert_eq!(m.exclude_inbound_ports, vec![8080, 9090]);
        assert_eq!(m.exclude_outbound_ports, vec![3306]);
        assert_eq!(m.exclude_outbound_ip_ranges.len(), 2);
        assert_eq!(m.acceleration, None, "no annotation: the node's default");
    }

    #[test]
    fn acceleration_annotation_selects_a_mode() {
        for (value, want) in [
            ("true", None),
            ("auto", Some(Acceleration::Auto)),
            ("app-safe", Some(Acceleration::AppSafe)),
            ("all", Some(Acceleration::All)),
            ("proxy-only", Some(Acceleration::ProxyOnly)),
            (" proxy-only ", Some(Acceleration::ProxyOnly)),
        ] {
            let p = pod(
                &["istio-proxy"],
                &[(keys::POD_OPT_OUT_ANNOTATION, value)],
                &["10.0.0.5"],
            );
            let PodClass::Meshed(m) = classify(&p) else {
                panic!("{value}: {:?}", classify(&p));
            };
            assert_eq!(m.acceleration, want, "{value}");
        }
        // Close misspellings are not guessed at: named in the error, with
        // the accepted values, and the pod keeps its last good setting.
        for value in ["proxy_only", "ProxyOnly", "proxy", "fast"] {
            let p = pod(
                &["istio-proxy"],
                &[(keys::POD_OPT_OUT_ANNOTATION, value)],
                &["10.0.0.5"],
            );
            let class = classify(&p);
            let why = class.problem().expect("an error").clone();
            assert!(why.contains(value) && why.contains("app-safe"), "{why}");
            assert_eq!(class.meshed(), None, "never good: stays on TCP");
            let before = classify(&pod(
                &["istio-proxy"],
                &[(keys::POD_OPT_OUT_ANNOTATION, "proxy-only")],
                &["10.0.0.5"],
            ));
            let kept = classify(&p).after(Some(&before));
            assert_eq!(
                kept.meshed().and_then(|m| m.acceleration),
                Some(Acceleration::ProxyOnly),
                "{value}: the last good setting stays"
            );
            assert!(kept.problem().is_some());
        }
    }

    #[test]
    fn opt_outs_and_inactive_pods_stay_on_tcp() {
        let out = pod(
            &["istio-proxy"],
            &[(keys::POD_OPT_OUT_ANNOTATION, "false")],
            &["10.0.0.5"],
        );
        assert_eq!(classify(&out), PodClass::OptedOut);
        assert_eq!(
            classify(&pod(&["istio-proxy"], &[], &[])),
            PodClass::Inactive("no pod IP yet")
        );
        let mut host = pod(&["istio-proxy"], &[], &["192.168.0.10"]);
        host.spec.as_mut().unwrap().host_network = Some(true);
        assert_eq!(classify(&host), PodClass::Inactive("host network"));
    }

    #[test]
    fn malformed_annotations_keep_the_pod_on_tcp_and_say_why() {
        for (k, v) in [
            (keys::ISTIO_EXCLUDE_INBOUND_PORTS, "80,http"),
            (keys::ISTIO_EXCLUDE_OUTBOUND_PORTS, "70000"),
            (keys::ISTIO_EXCLUDE_INBOUND_PORTS, "*"),
            (keys::ISTIO_EXCLUDE_OUTBOUND_IP_RANGES, "10.0.0.0/40"),
            (keys::POD_OPT_OUT_ANNOTATION, "maybe"),
        ] {
            let class = classify(&pod(&["istio-proxy"], &[(k, v)], &["10.0.0.5"]));
            match (class.problem(), class.meshed()) {
                (Some(why), None) => assert!(why.contains(k), "{why}"),
                _ => panic!("{k}={v}: {class:?}"),
            }
        }
        assert!(matches!(
            classify(&pod(&["istio-proxy"], &[], &["not-an-ip"])),
            PodClass::Invalid(_)
        ));
    }

    #[test]
    fn star_excludes_every_destination() {
        let all = parse_cidrs("*").unwrap();
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|c| c.prefix == 0));
        assert_eq!(parse_ports("").unwrap(), Vec::<u16>::new());
    }
}
