//! Golden tests of the loopback and mesh reports: rebuilt from saved result
//! JSON, they must render the markdown, the progress lines and the JSON
//! exactly as before. The benchmarks need root and minutes of machine time,
//! so these files are the only way to see a renderer change its output.
//!
//! When the output is meant to change, rerun with `ACCEL_BENCH_BLESS=1` to
//! rewrite the snapshots in `tests/fixtures/golden/`, and review their diff.

use std::path::{Path, PathBuf};

use serde::{Deserialize, de::DeserializeOwned};
use serde_json::Value;

use super::{
    loopback, mesh,
    rows::{Report, Run},
};
use crate::records::Case;

/// The parts of a saved result file the report is rebuilt from.
#[derive(Deserialize)]
#[serde(bound(deserialize = "F: DeserializeOwned, R: DeserializeOwned, \
                             R::Placement: DeserializeOwned, R::Workload: DeserializeOwned"))]
struct Saved<F, R: Run> {
    facts: F,
    placements: Vec<R::Placement>,
    /// A row per placement and case: the cases, in the order they ran.
    medians: Vec<Case<R::Workload>>,
    runs: Vec<R>,
}

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn golden(name: &str) -> PathBuf {
    manifest_dir().join("tests/fixtures/golden").join(name)
}

fn committed(name: &str) -> PathBuf {
    manifest_dir().join("results/2026-11-23").join(name)
}

fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn rebuild<F: DeserializeOwned, R: Run + DeserializeOwned>(raw: &Value) -> Report<F, R>
where
    R::Placement: DeserializeOwned,
    R::Workload: DeserializeOwned,
{
    let saved: Saved<F, R> =
        serde_json::from_value(raw.clone()).expect("the result file parses as a report");
    let mut cases = Vec::new();
    for c in saved.medians {
        if !cases.contains(&c) {
            cases.push(c);
        }
    }
    Report::build(saved.facts, &saved.placements, &cases, saved.runs)
}

/// Compares `actual` with the file at `path`, or rewrites the file when
/// blessing.
fn assert_same(actual: &str, path: &Path) {
    if std::env::var_os("ACCEL_BENCH_BLESS").is_some() {
        std::fs::write(path, actual).expect("writing the golden file");
        return;
    }
    let want =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    if actual != want {
        let line = actual
            .lines()
            .zip(want.lines())
            .position(|(a, w)| a != w)
            .unwrap_or_else(|| actual.lines().count().min(want.lines().count()));
        panic!(
            "output differs from {} at line {}:\n  got:  {:?}\n  want: {:?}\n\
             (ACCEL_BENCH_BLESS=1 rewrites the file if the change is intended)",
            path.display(),
            line + 1,
            actual.lines().nth(line),
            want.lines().nth(line)
        );
    }
}

type ProgressLine<R> = fn(<R as Run>::Placement, Case<<R as Run>::Workload>, &[R]) -> String;

/// Rebuilds the report saved in `raw` and compares its markdown and the
/// progress lines of its run with the snapshots `<name>.md` and
/// `<name>.progress`.
fn assert_renders<F: DeserializeOwned, R: Run + DeserializeOwned>(
    raw: &Value,
    name: &str,
    markdown: fn(&Report<F, R>) -> String,
    progress_line: ProgressLine<R>,
) -> Report<F, R>
where
    R::Placement: DeserializeOwned,
    R::Workload: DeserializeOwned,
{
    let rep = rebuild(raw);
    assert_same(&markdown(&rep), &golden(&format!("{name}.md")));
    // The rows are the cases in the order they finished.
    let progress: String = rep
        .rows
        .iter()
        .map(|r| {
            let case = Case {
                workload: r.workload,
                size: r.size,
            };
            progress_line(r.placement, case, &rep.records) + "\n"
        })
        .collect();
    assert_same(&progress, &golden(&format!("{name}.progress")));
    rep
}

/// The JSON the report writes must be the JSON it was rebuilt from: the
/// medians recomputed from the runs, the runs and facts unchanged.
fn assert_json_round_trips(json: &Value, raw: &Value) {
    for key in ["benchmark", "facts", "placements", "medians", "runs"] {
        assert!(json[key] == raw[key], "\"{key}\" differs");
    }
    assert_eq!(json, raw, "the JSON differs");
}

/// Mesh results saved before the runners shared one placement type call
/// the one-core placement `pinned`; the report now writes `one-core`.
fn pinned_is_one_core(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                let named = k == "placement" || k == "placements";
                match x {
                    Value::String(s) if named && s == "pinned" => *s = "one-core".into(),
                    Value::Array(a) if named => {
                        for e in a.iter_mut().filter(|e| *e == "pinned") {
                            *e = "one-core".into();
                        }
                    }
                    _ => pinned_is_one_core(x),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(pinned_is_one_core),
        _ => {}
    }
}

#[test]
fn loopback_report_renders_as_before() {
    let raw = read_json(&committed("loopback.json"));
    let rep = assert_renders(
        &raw,
        "loopback-2026-11-23",
        loopback::Report::markdown,
        loopback::progress_line,
    );
    assert_json_round_trips(&rep.json(), &raw);
}

#[test]
fn mesh_report_renders_as_before() {
    let mut raw = read_json(&committed("mesh.json"));
    let rep = assert_renders(
        &raw,
        "mesh-2026-11-23",
        mesh::MeshReport::markdown,
        mesh::progress_line,
    );
    // Written before the facts named the pod acceleration mode.
    raw["facts"]["pod_acceleration"] = "all".into();
    pinned_is_one_core(&mut raw);
    assert_json_round_trips(&rep.json(), &raw);
}

/// A proxy-only run: the proof line explains the sidecar hop's counters.
#[test]
fn proxy_only_mesh_report_renders_as_before() {
    let mut raw = read_json(&manifest_dir().join("results/2026-12-03/proxy-only/mesh.json"));
    let rep = assert_renders(
        &raw,
        "mesh-proxy-only",
        mesh::MeshReport::markdown,
        mesh::progress_line,
    );
    pinned_is_one_core(&mut raw);
    assert_json_round_trips(&rep.json(), &raw);
}

/// Marks runs failed, unproven, with EAGAIN and wrk errors, and fails every
/// accelerated run at `dead_size` outright, so that the renderings of what
/// went wrong are pinned too (the saved runs are nearly all healthy).
/// `side` is the field naming a run's transport or mode.
fn damage(mut raw: Value, side: &str, dead_size: u64) -> Value {
    let runs = raw["runs"].as_array_mut().expect("runs is an array");
    for (i, run) in runs.iter_mut().enumerate() {
        if i % 7 == 3 || (run[side] == "accel" && run["size"] == dead_size) {
            run["ok"] = false.into();
            run["error"] = "worker failed".into();
        }
        if i % 11 == 5 {
            run["verified"] = false.into();
        }
        if i % 13 == 2 {
            run["send_eagain"] = 2.into();
        }
        if i % 17 == 4 && run.get("wrk_socket_errors").is_some() {
            run["wrk_socket_errors"] = 3.into();
            run["wrk_non2xx"] = 1.into();
        }
    }
    raw
}

#[test]
fn damaged_loopback_report_renders_as_before() {
    let raw = damage(read_json(&committed("loopback.json")), "transport", 65536);
    assert_renders(
        &raw,
        "loopback-damaged",
        loopback::Report::markdown,
        loopback::progress_line,
    );
}

#[test]
fn damaged_mesh_report_renders_as_before() {
    let raw = damage(read_json(&committed("mesh.json")), "mode", 1024);
    assert_renders(
        &raw,
        "mesh-damaged",
        mesh::MeshReport::markdown,
        mesh::progress_line,
    );
}
