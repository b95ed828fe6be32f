//! fortio's JSON result format (`fortio load -json FILE`), read and written.
//!
//! The fields are those of fortio's `periodic.RunnerResults` and of its
//! `stats.HistogramData` (durations in seconds, `RequestedQPS` a string,
//! "max" for no rate limit, `ActualDuration` in nanoseconds). fortio adds
//! runner-specific fields (HTTP `RetCodes`, `Sizes`, `URL`, ...); we read
//! the ones the comparison needs and ignore the rest. The local load
//! generator writes the same format plus an `AccelBench` object of its own
//! (ignored by fortio's UI), so one code path reads cluster and local runs.

use std::{collections::BTreeMap, path::Path};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum FortioError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a fortio JSON result: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path}: {what}")]
    Invalid { path: String, what: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Bucket {
    pub start: f64,
    pub end: f64,
    pub percent: f64,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Percentile {
    pub percentile: f64,
    pub value: f64,
}

/// fortio's `HistogramData`: every duration in seconds.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct HistogramData {
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub avg: f64,
    pub std_dev: f64,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub data: Vec<Bucket>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub percentiles: Vec<Percentile>,
}

/// fortio writes `null` for an empty list (Go's nil slice).
fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// What the local load generator adds (not part of fortio's format).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct AccelExtra {
    /// Request (TCP) or response body (HTTP) size in bytes.
    pub payload_size: usize,
    /// "http" or "tcp".
    pub protocol: String,
    /// Requests that failed (connection error, bad status, wrong echo).
    pub errors: u64,
    /// Application bytes moved (both directions).
    pub bytes: u64,
    /// CPU seconds used during the run, by what was measured (filled by
    /// `run-local`: every process of the pods' cgroup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_seconds: Option<f64>,
    /// Whether latency is measured from the intended send time (fixed
    /// rate: coordinated omission corrected).
    pub from_intended_time: bool,
}

/// fortio's `RunnerResults` with the HTTP runner's fields we use.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct RunnerResults {
    pub run_type: String,
    #[serde(default)]
    pub labels: String,
    #[serde(default)]
    pub start_time: String,
    /// "max" or a number, as a string (fortio's own encoding).
    #[serde(rename = "RequestedQPS")]
    pub requested_qps: String,
    #[serde(default)]
    pub requested_duration: String,
    #[serde(rename = "ActualQPS")]
    pub actual_qps: f64,
    /// Nanoseconds.
    pub actual_duration: u64,
    pub num_threads: usize,
    #[serde(default)]
    pub version: String,
    pub duration_histogram: HistogramData,
    #[serde(default)]
    pub ret_codes: BTreeMap<String, u64>,
    /// HTTP runner: response sizes (header + body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sizes: Option<HistogramData>,
    #[serde(default, rename = "URL", skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accel_bench: Option<AccelExtra>,
}

impl RunnerResults {
    pub fn read(path: &Path) -> Result<Self, FortioError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| FortioError::Read {
            path: p.clone(),
            source,
        })?;
        Self::parse(&text, &p)
    }

    pub fn parse(text: &str, path: &str) -> Result<Self, FortioError> {
        let r: RunnerResults = serde_json::from_str(text).map_err(|source| FortioError::Parse {
            path: path.into(),
            source,
        })?;
        let invalid = |what: String| FortioError::Invalid {
            path: path.into(),
            what,
        };
        if r.duration_histogram.count == 0 {
            return Err(invalid(
                "no request completed (DurationHistogram.Count 0)".into(),
            ));
        }
        if r.requested_qps != "max" && r.requested_qps.parse::<f64>().is_err() {
            return Err(invalid(format!("RequestedQPS {:?}", r.requested_qps)));
        }
        Ok(r)
    }

    /// Percentile `p` (e.g. 99.9) in seconds: fortio's own value when the
    /// file has it, else interpolated in the buckets as fortio does.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        let h = &self.duration_histogram;
        if let Some(v) = h
            .percentiles
            .iter()
            .find(|x| (x.percentile - p).abs() < 1e-9)
        {
            return Some(v.value);
        }
        // The buckets' Percent is cumulative: find the one crossing p and
        // interpolate linearly inside it.
        let mut prev = 0.0;
        for b in &h.data {
            if b.percent >= p {
                let width = b.percent - prev;
                let frac = if width > 0.0 { (p - prev) / width } else { 1.0 };
                return Some(b.start + (b.end - b.start) * frac);
            }
            prev = b.percent;
        }
        h.data.last().map(|b| b.end)
    }

    /// "key=value" pairs of the labels (space or comma separated); a bare
    /// word `w` becomes `w=` so a free-form label still groups runs.
    pub fn label_map(&self) -> BTreeMap<String, String> {
        self.labels
            .split([' ', ','])
            .filter(|t| !t.is_empty())
            .map(|t| match t.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (t.to_string(), String::new()),
            })
            .collect()
    }

    /// The payload size: the `size` label, our own field, or fortio's echo
    /// server `size=` query parameter in the URL.
    pub fn payload_size(&self) -> Option<usize> {
        if let Some(s) = self.label_map().get("size") {
            return crate::units::parse_size(s).ok();
        }
        if let Some(x) = &self.accel_bench {
            return Some(x.payload_size);
        }
        let url = self.url.as_deref()?;
        let q = url.split_once('?')?.1;
        q.split('&')
            .find_map(|kv| kv.strip_prefix("size="))
            .and_then(|v| crate::units::parse_size(v).ok())
    }
}

/// Latency histogram in nanoseconds -> fortio's `HistogramData` (seconds).
/// Buckets: logarithmic (x1.25 from 1 µs), empty ones left out, with the
/// cumulative percentage fortio uses.
pub fn histogram_data(h: &Histogram<u64>, percentiles: &[f64]) -> HistogramData {
    let n = h.len();
    let s = |ns: f64| ns / 1e9;
    let mut data = Vec::new();
    if n > 0 {
        let mut seen = 0u64;
        let mut start = h.min() as f64;
        for v in h.iter_log(1_000, 1.25) {
            let c = v.count_since_last_iteration();
            if c == 0 {
                continue;
            }
            seen += c;
            let end = h.highest_equivalent(v.value_iterated_to()) as f64;
            data.push(Bucket {
                start: s(start),
                end: s(end),
                percent: seen as f64 * 100.0 / n as f64,
                count: c,
            });
            start = end;
        }
    }
    HistogramData {
        count: n,
        min: s(h.min() as f64),
        max: s(h.max() as f64),
        sum: s(h.mean() * n as f64),
        avg: s(h.mean()),
        std_dev: s(h.stdev()),
        data,
        percentiles: percentiles
            .iter()
            .map(|&p| Percentile {
                percentile: p,
                value: s(h.value_at_quantile(p / 100.0) as f64),
            })
            .collect(),
    }
}

/// The percentiles we write (fortio's `-p` default plus 90).
pub const PERCENTILES: [f64; 5] = [50.0, 75.0, 90.0, 99.0, 99.9];

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../tests/fixtures/fortio-http.json");

    #[test]
    fn parses_fortio_http_result() {
        let r = RunnerResults::parse(FIXTURE, "fixture").unwrap();
        assert_eq!(r.run_type, "HTTP");
        assert_eq!(r.requested_qps, "max");
        assert_eq!(r.num_threads, 8);
        assert!((r.actual_qps - 9876.5).abs() < 1e-9);
        assert_eq!(r.actual_duration, 10_000_312_345);
        assert_eq!(r.duration_histogram.count, 98_768);
        assert_eq!(r.duration_histogram.data.len(), 5);
        assert_eq!(r.ret_codes.get("200"), Some(&98_768));
        let l = r.label_map();
        assert_eq!(l.get("mode").map(String::as_str), Some("baseline"));
        assert_eq!(l.get("placement").map(String::as_str), Some("same-node"));
        assert_eq!(r.payload_size(), Some(1024));
        // fortio's own percentiles win over interpolation.
        assert_eq!(r.percentile(50.0), Some(0.000_712));
        assert_eq!(r.percentile(99.9), Some(0.004_1));
        // 90 is not in the file: interpolated in the bucket 80%..95%.
        let p90 = r.percentile(90.0).unwrap();
        assert!(p90 > 0.001 && p90 < 0.002, "{p90}");
        assert!(r.accel_bench.is_none());
    }

    #[test]
    fn payload_size_from_url_and_labels() {
        let mut r = RunnerResults::parse(FIXTURE, "fixture").unwrap();
        r.labels = "mode=accel".into();
        r.url = Some("http://fortio-server:8080/echo?size=16384&status=200".into());
        assert_eq!(r.payload_size(), Some(16384));
        r.labels = "accel size=64K".into();
        assert_eq!(r.payload_size(), Some(65536));
        assert_eq!(r.label_map().get("accel").map(String::as_str), Some(""));
    }

    #[test]
    fn rejects_empty_and_foreign_files() {
        assert!(RunnerResults::parse("{\"a\": 1}", "x").is_err());
        let empty = FIXTURE.replace(
            "\"Count\": 98768,\n    \"Min\"",
            "\"Count\": 0,\n    \"Min\"",
        );
        assert!(matches!(
            RunnerResults::parse(&empty, "x"),
            Err(FortioError::Invalid { .. })
        ));
    }

    #[test]
    fn histogram_round_trip() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for i in 1..=1000u64 {
            h.record(i * 1_000).unwrap(); // 1 µs .. 1 ms
        }
        let d = histogram_data(&h, &PERCENTILES);
        assert_eq!(d.count, 1000);
        assert_eq!(d.data.iter().map(|b| b.count).sum::<u64>(), 1000);
        assert!((d.data.last().unwrap().percent - 100.0).abs() < 1e-9);
        let p50 = d.percentiles[0].value;
        assert!((p50 - 500e-6).abs() < 2e-6, "{p50}");
        // Buckets ascend and percentages are cumulative.
        for w in d.data.windows(2) {
            assert!(w[0].end <= w[1].start + 1e-12 && w[0].percent < w[1].percent);
        }
    }
}
