//! HTTP endpoint: /healthz, /readyz and /metrics (Prometheus text format).

use std::{
    collections::BTreeMap,
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use accel_bpf::abi::Stat;
use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use crate::datapath::Datapath;

/// State shared between the daemon loop and the HTTP handlers.
pub struct Shared {
    pub ready: AtomicBool,
    pub accelerated: AtomicBool,
    pub reason: Mutex<String>,
    pub datapath: Mutex<Option<Datapath>>,
    /// Local non-loopback addresses taking part.
    pub endpoints: AtomicU64,
    /// Meshed pods (or plain addresses) the endpoint source lists.
    pub pods: AtomicU64,
    /// Meshed pods kept on TCP because their annotations cannot be read.
    pub invalid_pods: AtomicU64,
    /// Health of the endpoint source (Kubernetes list/watch failures).
    pub source_health: Mutex<Option<Arc<accel_k8s::watch::WatchHealth>>>,
    /// Pins re-created after someone removed them.
    pub pins_restored: AtomicU64,
    /// The datapath runs but its pins are gone and cannot be restored
    /// (bpffs unmounted): it vanishes when the daemon exits.
    pub pins_missing: AtomicBool,
    /// Pod (`namespace/name`) of each pod id in the datapath.
    pub pod_names: Mutex<BTreeMap<u16, String>>,
    /// Held-back sockets to announce as Events on their pods (Kubernetes
    /// source), oldest first, at most [`crate::held::ANNOUNCE_MAX`].
    pub held_events: Mutex<Vec<crate::held::Announcement>>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("ready", &self.ready)
            .field("accelerated", &self.accelerated)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub fn new() -> Arc<Self> {
        Arc::new(Shared {
            ready: AtomicBool::new(false),
            accelerated: AtomicBool::new(false),
            reason: Mutex::new(String::new()),
            datapath: Mutex::new(None),
            endpoints: AtomicU64::new(0),
            pods: AtomicU64::new(0),
            invalid_pods: AtomicU64::new(0),
            source_health: Mutex::new(None),
            pins_restored: AtomicU64::new(0),
            pins_missing: AtomicBool::new(false),
            pod_names: Mutex::new(BTreeMap::new()),
            held_events: Mutex::new(Vec::new()),
        })
    }
}

impl Shared {
    /// What the metrics say about the endpoint source's latest snapshot.
    pub fn publish_endpoints(
        &self,
        snap: &crate::endpoints::Snapshot,
        pod_ids: &crate::endpoints::PodIds,
    ) {
        if let Ok(mut names) = self.pod_names.lock() {
            *names = pod_ids.names();
        }
        self.endpoints
            .store(snap.ips().len() as u64, Ordering::Relaxed);
        self.pods
            .store(snap.endpoints.len() as u64, Ordering::Relaxed);
    }
}

/// Reads the BPF maps at scrape time: no polling, no stale numbers.
#[derive(Debug)]
struct DatapathCollector(Arc<Shared>);

impl Collector for DatapathCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), fmt::Error> {
        let shared = &self.0;
        let on = shared.accelerated.load(Ordering::Relaxed);
        ConstGauge::new(i64::from(on)).encode(enc.encode_descriptor(
            "sidecar_accel_enabled",
            "1 when the sockmap datapath is active on this node",
            None,
            MetricType::Gauge,
        )?)?;
        let reason = shared.reason.lock().map(|r| r.clone()).unwrap_or_default();
        let reason = if on {
            "accelerated".to_string()
        } else {
            reason
        };
        {
            let mut m = enc.encode_descriptor(
                "sidecar_accel_gate_info",
                "Why acceleration is on or off (one series, the current reason)",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(1).encode(m.encode_family(&[("reason", reason.as_str())])?)?;
        }
        let gauge = |v: &AtomicU64| i64::try_from(v.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
        ConstGauge::new(gauge(&shared.endpoints)).encode(enc.encode_descriptor(
            "sidecar_accel_local_endpoints",
            "Local non-loopback endpoints taking part",
            None,
            MetricType::Gauge,
        )?)?;
        ConstGauge::new(gauge(&shared.pods)).encode(enc.encode_descriptor(
            "sidecar_accel_meshed_pods",
            "Meshed pods on this node applied to the datapath",
            None,
            MetricType::Gauge,
        )?)?;
        ConstGauge::new(gauge(&shared.invalid_pods)).encode(enc.encode_descriptor(
            "sidecar_accel_meshed_pods_invalid",
            "Meshed pods kept on TCP because an annotation cannot be read (see the daemon log)",
            None,
            MetricType::Gauge,
        )?)?;
        let watch_errors = shared
            .source_health
            .lock()
            .ok()
            .and_then(|h| h.as_ref().map(|h| h.errors()))
            .unwrap_or(0);
        ConstCounter::new(watch_errors).encode(
            enc.encode_descriptor(
                "sidecar_accel_watch_errors",
                "Errors listing or watching the endpoint source (Kubernetes API); each is retried with backoff",
                None,
                MetricType::Counter,
            )?,
        )?;

        ConstCounter::new(shared.pins_restored.load(Ordering::Relaxed)).encode(
            enc.encode_descriptor(
                "sidecar_accel_pins_restored",
                "Datapath pins re-created after someone removed them",
                None,
                MetricType::Counter,
            )?,
        )?;
        ConstGauge::new(i64::from(shared.pins_missing.load(Ordering::Relaxed))).encode(
            enc.encode_descriptor(
                "sidecar_accel_pins_missing",
                "1 while the running datapath has no pins and they cannot be restored (bpffs unmounted): it would vanish when the daemon exits",
                None,
                MetricType::Gauge,
            )?,
        )?;
        let Ok(guard) = shared.datapath.lock() else {
            return Ok(());
        };
        let Some(dp) = guard.as_ref() else {
            return Ok(());
        };
        if let Ok(stats) = dp.stats() {
            let mut m = enc.encode_descriptor(
                "sidecar_accel_datapath_events",
                "Datapath events counted in BPF (sockets recorded, paired, refused; messages and bytes redirected or passed)",
                None,
                MetricType::Counter,
            )?;
            for (stat, value) in stats {
                let name: &str = Stat::name(stat);
                ConstCounter::new(value).encode(m.encode_family(&[("event", name)])?)?;
            }
        }
        if let Ok(traffic) = dp.pod_traffic() {
            let names = shared
                .pod_names
                .lock()
                .map(|n| n.clone())
                .unwrap_or_default();
            let split = |id: u16| {
                names.get(&id).map(|n| match n.split_once('/') {
                    Some((ns, pod)) => (ns.to_string(), pod.to_string()),
                    None => (String::new(), n.clone()),
                })
            };
            // One series per pod pair that talked: bounded by the pods on
            // this node (and the map's capacity), never per connection.
            let rows: Vec<_> = traffic
                .iter()
                .filter_map(|(pair, t)| Some((split(pair.src)?, split(pair.dst)?, *t)))
                .collect();
            for (metric, help, pick) in [
                (
                    "sidecar_accel_pod_traffic_bytes",
                    "Bytes redirected from one pod to another (the same pod for app <-> sidecar), counted in BPF",
                    (|t: &accel_bpf::abi::PodTraffic| t.bytes)
                        as fn(&accel_bpf::abi::PodTraffic) -> u64,
                ),
                (
                    "sidecar_accel_pod_traffic_messages",
                    "Messages (sendmsg calls) redirected from one pod to another",
                    |t: &accel_bpf::abi::PodTraffic| t.msgs,
                ),
            ] {
                let mut m = enc.encode_descriptor(metric, help, None, MetricType::Counter)?;
                for ((sns, spod), (dns, dpod), t) in &rows {
                    ConstCounter::new(pick(t)).encode(m.encode_family(&[
                        ("src_namespace", sns.as_str()),
                        ("src_pod", spod.as_str()),
                        ("dst_namespace", dns.as_str()),
                        ("dst_pod", dpod.as_str()),
                    ])?)?;
                }
            }
        }
        if let Ok(held) = crate::held::read(dp) {
            let names = shared
                .pod_names
                .lock()
                .map(|n| n.clone())
                .unwrap_or_default();
            let mut m = enc.encode_descriptor(
                "sidecar_accel_pod_sockets_held",
                "Application sockets the guard kept off the redirect path, by pod and reason \
                 (blocking: blocking I/O, on TCP; receives_by_tcp: bytes to the application go by \
                 TCP in mode auto; no_file: kernel sockets)",
                None,
                MetricType::Counter,
            )?;
            for h in &held {
                let label = crate::held::pod_label(&names, h.pod);
                let (ns, pod) = label.split_once('/').unwrap_or(("", label.as_str()));
                ConstCounter::new(h.sockets).encode(m.encode_family(&[
                    ("namespace", ns),
                    ("pod", pod),
                    ("reason", h.reason),
                ])?)?;
            }
        }
        let usage = dp.usage();
        {
            let mut m = enc.encode_descriptor(
                "sidecar_accel_map_entries",
                "Entries in each BPF map (where countable)",
                None,
                MetricType::Gauge,
            )?;
            for u in usage.iter().filter(|u| u.entries.is_some()) {
                ConstGauge::new(u.entries.unwrap_or(0) as i64)
                    .encode(m.encode_family(&[("map", u.name)])?)?;
            }
        }
        let mut m = enc.encode_descriptor(
            "sidecar_accel_map_capacity",
            "Capacity (max_entries) of each BPF map",
            None,
            MetricType::Gauge,
        )?;
        for u in &usage {
            ConstGauge::new(i64::from(u.capacity)).encode(m.encode_family(&[("map", u.name)])?)?;
        }
        Ok(())
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(DatapathCollector(shared.clone())));
    let registry = Arc::new(registry);
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(s): State<Arc<Shared>>| async move {
                if s.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    let mut body = String::new();
                    match prometheus_client::encoding::text::encode(&mut body, &registry) {
                        Ok(()) => (
                            StatusCode::OK,
                            [(
                                "content-type",
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )],
                            body,
                        )
                            .into_response(),
                        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                    }
                }
            }),
        )
        .with_state(shared)
}
