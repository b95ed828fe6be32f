//! HTTP endpoint: /healthz, /readyz and /metrics (Prometheus text format).

use std::{collections::BTreeMap, fmt, sync::Arc};

use accel_bpf::abi::Stat;
use axum::{
    Router, extract::State as Extract, http::StatusCode, response::IntoResponse, routing::get,
};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use crate::{datapath::Datapath, lend::Lent, state::State};

/// Reads the node state and the BPF maps at scrape time: no polling, no
/// stale numbers. The datapath is the serve loop's, lent for reading.
#[derive(Debug)]
struct DatapathCollector {
    state: State,
    datapath: Lent<Datapath>,
}

/// The node state's part of a scrape, read at once.
struct Gauges {
    on: bool,
    reason: String,
    endpoints: u64,
    pods: u64,
    invalid_pods: u64,
    watch_errors: u64,
    pins_restored: u64,
    pins_missing: bool,
    pod_names: BTreeMap<u16, String>,
}

impl DatapathCollector {
    fn gauges(&self) -> Gauges {
        self.state.view(|d, live| Gauges {
            on: d.accelerated,
            reason: d.reason.clone(),
            endpoints: d.endpoints.len() as u64,
            pods: d.pods.len() as u64,
            invalid_pods: live.invalid_pods,
            watch_errors: live.source_health.as_ref().map_or(0, |h| h.errors()),
            pins_restored: live.pins_restored,
            pins_missing: !d.pin_problem.is_empty(),
            pod_names: d.pod_names.clone(),
        })
    }
}

impl Collector for DatapathCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), fmt::Error> {
        let g = self.gauges();
        let on = g.on;
        ConstGauge::new(i64::from(on)).encode(enc.encode_descriptor(
            "sidecar_accel_enabled",
            "1 when the sockmap datapath is active on this node",
            None,
            MetricType::Gauge,
        )?)?;
        let reason = if on {
            "accelerated".to_string()
        } else {
            g.reason
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
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        ConstGauge::new(gauge(g.endpoints)).encode(enc.encode_descriptor(
            "sidecar_accel_local_endpoints",
            "Local non-loopback endpoints taking part",
            None,
            MetricType::Gauge,
        )?)?;
        ConstGauge::new(gauge(g.pods)).encode(enc.encode_descriptor(
            "sidecar_accel_meshed_pods",
            "Meshed pods on this node applied to the datapath",
            None,
            MetricType::Gauge,
        )?)?;
        ConstGauge::new(gauge(g.invalid_pods)).encode(enc.encode_descriptor(
            "sidecar_accel_meshed_pods_invalid",
            "Meshed pods kept on TCP because an annotation cannot be read (see the daemon log)",
            None,
            MetricType::Gauge,
        )?)?;
        ConstCounter::new(g.watch_errors).encode(
            enc.encode_descriptor(
                "sidecar_accel_watch_errors",
                "Errors listing or watching the endpoint source (Kubernetes API); each is retried with backoff",
                None,
                MetricType::Counter,
            )?,
        )?;

        ConstCounter::new(g.pins_restored).encode(enc.encode_descriptor(
            "sidecar_accel_pins_restored",
            "Datapath pins re-created after someone removed them",
            None,
            MetricType::Counter,
        )?)?;
        ConstGauge::new(i64::from(g.pins_missing)).encode(
            enc.encode_descriptor(
                "sidecar_accel_pins_missing",
                "1 while the running datapath has no pins and they cannot be restored (bpffs unmounted): it would vanish when the daemon exits",
                None,
                MetricType::Gauge,
            )?,
        )?;
        self.datapath
            .with(|dp| encode_datapath(dp, &g.pod_names, enc))
            .unwrap_or(Ok(()))
    }
}

/// The datapath's own series: counters, per-pod traffic, held-back
/// sockets, the programs' runs, map usage.
fn encode_datapath(
    dp: &Datapath,
    names: &BTreeMap<u16, String>,
    mut enc: DescriptorEncoder,
) -> Result<(), fmt::Error> {
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
        let mut m = enc.encode_descriptor(
            "sidecar_accel_pod_sockets_held",
            "Application sockets the guard kept off the redirect path, by pod and reason \
             (blocking: blocking I/O, on TCP; receives_by_tcp: bytes to the application go by \
             TCP in mode auto; no_file: kernel sockets)",
            None,
            MetricType::Counter,
        )?;
        for h in &held {
            let label = crate::held::pod_label(names, h.pod);
            let (ns, pod) = label.split_once('/').unwrap_or(("", label.as_str()));
            ConstCounter::new(h.sockets).encode(m.encode_family(&[
                ("namespace", ns),
                ("pod", pod),
                ("reason", h.reason),
            ])?)?;
        }
    }
    // Counted by the kernel only while its BPF statistics are on.
    let programs = dp.program_runs();
    let mut m = enc.encode_descriptor(
        "sidecar_accel_program_runs",
        "Runs of each datapath program, counted by the kernel while its BPF statistics are on \
         (sysctl kernel.bpf_stats_enabled)",
        None,
        MetricType::Counter,
    )?;
    for p in &programs {
        ConstCounter::new(p.runs).encode(m.encode_family(&[("program", p.name.as_str())])?)?;
    }
    let mut m = enc.encode_descriptor(
        "sidecar_accel_program_run_seconds",
        "Time each datapath program ran, counted by the kernel while its BPF statistics are on",
        None,
        MetricType::Counter,
    )?;
    for p in &programs {
        ConstCounter::new(p.run_time_ns as f64 / 1e9)
            .encode(m.encode_family(&[("program", p.name.as_str())])?)?;
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

/// The metrics registry: the node state and the lent datapath, read at
/// each scrape.
fn registry(state: State, datapath: Lent<Datapath>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(DatapathCollector { state, datapath }));
    registry
}

/// The `/metrics` body (OpenMetrics text).
fn metrics_text(registry: &Registry) -> Result<String, fmt::Error> {
    let mut body = String::new();
    prometheus_client::encoding::text::encode(&mut body, registry)?;
    Ok(body)
}

/// `/healthz`, `/readyz` (from `state`) and `/metrics` (from `state` and
/// the datapath the serve loop lends).
pub fn router(state: State, datapath: Lent<Datapath>) -> Router {
    let registry = Arc::new(registry(state.clone(), datapath));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|Extract(s): Extract<State>| async move {
                if s.ready() {
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
                    match metrics_text(&registry) {
                        Ok(body) => (
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
        .with_state(state)
}

/// The `/metrics` body for `state` and `datapath` (tests).
#[cfg(test)]
pub fn render(state: &State, datapath: Lent<Datapath>) -> String {
    metrics_text(&registry(state.clone(), datapath)).unwrap_or_default()
}
