//! accel-loadgen's report, and what a clean load looks like.

use std::process::Output;

/// The result line of accel-loadgen.
#[derive(Debug, serde::Deserialize)]
pub struct LoadReport {
    pub port: u16,
    pub connections: usize,
    pub messages: u64,
    pub bytes_each_way: u64,
    pub errors: Vec<String>,
}

pub fn parse_load_report(out: &Output) -> LoadReport {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| {
            panic!(
                "loadgen printed no report (exit {:?}); stderr: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            )
        });
    serde_json::from_str(line).expect("loadgen report is JSON")
}

/// The load ended without a single connection error, every byte checked by
/// accel-loadgen, on `conns` connections that carried traffic.
pub fn assert_clean_load(out: &Output, conns: usize) -> LoadReport {
    let r = parse_load_report(out);
    assert!(
        r.errors.is_empty() && out.status.success(),
        "traffic failed: {:?}\nstderr: {}",
        r.errors,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(r.connections, conns, "connections in the report: {r:?}");
    assert!(r.bytes_each_way > 0 && r.messages > 0, "no traffic: {r:?}");
    r
}
