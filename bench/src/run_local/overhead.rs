//! What the daemon costs outside the meshed request path: its CPU and
//! memory when idle, and the sock_ops cost on unmeshed connection setup.

use std::{fs, thread, time::Duration};

use anyhow::Result;

use super::{
    Part, RunLocalArgs,
    kit::{CONN_PORT, Kit},
    mode_word,
    usage::{clk_tck, daemon_pid, proc_sample},
};
use crate::{
    records::{
        local::{ConnRate, DaemonUsage},
        mesh::Mode,
    },
    report::Agg,
    sandbox::check_interrupted,
};

/// Daemon usage before anything is measured: idle CPU unknown (NaN), no
/// samples.
pub(super) fn unmeasured_usage() -> DaemonUsage {
    DaemonUsage {
        idle_cpu_pct: f64::NAN,
        idle_rss_kib: 0,
        idle_rss_anon_kib: 0,
        idle_rss_file_kib: 0,
        idle_threads: 0,
        load_cpu_pct: Vec::new(),
        load_rss_kib: Vec::new(),
        max_hwm_kib: 0,
    }
}

/// Part 1: starts the daemon (accelerated), lets it settle for a second,
/// then samples its CPU over `idle_secs`, its RSS and threads into `usage`.
pub(super) fn measure_idle(
    kit: &mut Kit<'_>,
    idle_secs: f64,
    usage: &mut DaemonUsage,
) -> Result<()> {
    kit.pair.ctl.set(Mode::Accel)?;
    thread::sleep(Duration::from_secs(1));
    let pid = daemon_pid(kit.env)?;
    let s0 = proc_sample(pid)?;
    thread::sleep(Duration::from_secs_f64(idle_secs));
    let s1 = proc_sample(pid)?;
    usage.idle_cpu_pct = (s1.cpu_ticks - s0.cpu_ticks) as f64 / clk_tck() / idle_secs * 100.0;
    usage.idle_rss_kib = s1.rss_kib;
    usage.idle_rss_anon_kib = s1.rss_anon_kib;
    usage.idle_rss_file_kib = s1.rss_file_kib;
    usage.idle_threads = fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    usage.max_hwm_kib = s1.hwm_kib;
    eprintln!(
        "accel-bench run-local: idle daemon (pid {pid}): {:.2} % CPU over {:.0} s, RSS {} KiB",
        usage.idle_cpu_pct, idle_secs, usage.idle_rss_kib
    );
    Ok(())
}

/// Part 2: connections per second from U1 to U2 with the daemon attached
/// and with no daemon, interleaved (`conn_rounds` rounds, the order
/// alternating per round; none unless the connect part was asked for), and
/// their medians.
pub(super) fn measure_unmeshed_connect(kit: &mut Kit<'_>, a: &RunLocalArgs) -> Result<ConnRate> {
    let mut conn = ConnRate {
        baseline: Vec::new(),
        daemon: Vec::new(),
        baseline_median: 0.0,
        daemon_median: 0.0,
        ratio: 0.0,
    };
    let conn_rounds = if a.parts.contains(&Part::Connect) {
        a.conn_rounds
    } else {
        0
    };
    for round in 0..conn_rounds {
        // Accelerated first in the first round: the reverse of the
        // request path's rounds.
        for mode in Mode::abba(round + 1) {
            check_interrupted()?;
            kit.pair.ctl.set(mode)?;
            let qps = connect_run(kit, a.conn_duration, round, mode)?;
            match mode {
                Mode::Baseline => conn.baseline.push(qps),
                Mode::Accel => conn.daemon.push(qps),
            }
        }
    }
    let med = |v: &[f64]| Agg::of(v.to_vec()).map_or(0.0, |a| a.median);
    conn.baseline_median = med(&conn.baseline);
    conn.daemon_median = med(&conn.daemon);
    conn.ratio = conn.daemon_median / conn.baseline_median.max(1e-9);
    eprintln!(
        "accel-bench run-local: unmeshed connections/s: no daemon {:.0}, daemon {:.0} ({:.3}x)",
        conn.baseline_median, conn.daemon_median, conn.ratio
    );
    Ok(conn)
}

/// One connection setup run of `duration` seconds (connect, 1 byte each
/// way, close; -c 1) from U1 to U2's echo server; returns connections/s.
fn connect_run(kit: &Kit<'_>, duration: f64, round: usize, mode: Mode) -> Result<f64> {
    let file = kit
        .json_dir
        .join(format!("connect-{}-r{round}.json", mode_word(mode)));
    let r = kit.load(
        &kit.u1,
        &[
            "--target".into(),
            kit.u2.addr_v4(CONN_PORT).to_string(),
            "--proto".into(),
            "connect".into(),
            "--size".into(),
            "1".into(),
            "-c".into(),
            "1".into(),
            "--duration".into(),
            duration.to_string(),
            "--warmup".into(),
            "0.2".into(),
            "--labels".into(),
            format!(
                "mode={} test=unmeshed-connect round={round}",
                mode_word(mode)
            ),
        ],
        &file,
    )?;
    Ok(r.actual_qps)
}
