//! Human table, JSON, summary, exit codes and the tcpdump cross-check line.
//!
//! ## Exit codes (for `--expect`)
//! | code | constant | meaning |
//! |---|---|---|
//! | 0 | [`EXIT_OK`] | no `--expect`, or every connection with a conclusive verdict (not `Unknown`) meets it and there is at least one |
//! | 1 | — | reserved: the binary's generic error (capture could not run) |
//! | 2 | — | reserved: clap's usage error |
//! | 3 | [`EXIT_EXPECTATION_FAILED`] | at least one conclusive connection contradicts `--expect` |
//! | 4 | [`EXIT_INCONCLUSIVE`] | `--expect` given but nothing conclusive captured (no connection, or only `Unknown`) |

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use crate::capture::{
    CaptureConfig, CaptureOutput, CaptureStats, NetnsTarget, StopReason, shell_quote,
};
use crate::conn::{ConnKey, ConnStats, ConnTable, Filter};
use crate::verdict::{Explainer, Verdict, judge};

/// Success, see the module docs.
pub const EXIT_OK: i32 = 0;
/// A conclusive connection contradicts `--expect`.
pub const EXIT_EXPECTATION_FAILED: i32 = 3;
/// `--expect` given but no conclusive connection was captured.
pub const EXIT_INCONCLUSIVE: i32 = 4;

/// What the operator expects every matched connection to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Expectation {
    /// Every conclusive connection must be accelerated.
    Accelerated,
    /// Every conclusive connection must be not accelerated.
    NotAccelerated,
}

impl Expectation {
    fn met_by(self, v: &Verdict) -> bool {
        matches!(
            (self, v),
            (Expectation::Accelerated, Verdict::Accelerated)
                | (
                    Expectation::NotAccelerated,
                    Verdict::NotAccelerated { .. } | Verdict::OneWay { .. }
                )
        )
    }
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnReport {
    /// Normalized key.
    pub key: ConnKey,
    /// SYN sender, when the handshake was seen.
    pub client: Option<SocketAddr>,
    /// Counters.
    pub stats: ConnStats,
    /// SYN and SYN-ACK both seen.
    pub handshake_seen: bool,
    /// Outcome.
    pub verdict: Verdict,
}

impl ConnReport {
    /// `client -> server` when the direction is known, else `a <-> b`.
    pub fn display_name(&self) -> String {
        match self.client {
            Some(c) => {
                let s = if c == self.key.a {
                    self.key.b
                } else {
                    self.key.a
                };
                format!("{c} -> {s}")
            }
            None => format!("{} <-> {}", self.key.a, self.key.b),
        }
    }

    /// The reason column (empty unless not accelerated).
    pub fn reason(&self) -> String {
        match &self.verdict {
            Verdict::NotAccelerated { reason } => reason.clone(),
            Verdict::OneWay { by_tcp, reason } => format!(
                "only {by_tcp} crossed TCP (the other way was redirected or sent nothing): {reason}"
            ),
            _ => String::new(),
        }
    }
}

/// Totals over all rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Connections matched.
    pub connections: usize,
    /// Verdict `Accelerated`.
    pub accelerated: usize,
    /// Verdict `NotAccelerated` or `OneWay`.
    pub not_accelerated: usize,
    /// Of those, verdict `OneWay`.
    pub one_way: usize,
    /// Verdict `Unknown`.
    pub unknown: usize,
    /// Segments over all connections.
    pub packets: u64,
    /// PSH data segments over all connections.
    pub psh_data_segments: u64,
}

/// Capture metadata carried in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaptureInfo {
    /// Capture length in milliseconds.
    pub duration_ms: u64,
    /// Why the capture stopped.
    pub stop_reason: StopReason,
    /// Frame counters.
    pub stats: CaptureStats,
}

/// A complete verification report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Interface captured on.
    pub interface: String,
    /// Namespace label.
    pub netns: String,
    /// Filter applied.
    pub filter: Filter,
    /// Capture metadata (absent for reports built from a bare table).
    pub capture: Option<CaptureInfo>,
    /// Rows, sorted by key.
    pub connections: Vec<ConnReport>,
    /// Totals.
    pub summary: Summary,
    /// Equivalent tcpdump command for cross-checking.
    pub tcpdump_command: String,
}

impl Report {
    /// Builds a report from a connection table.
    pub fn from_table(
        table: &ConnTable,
        interface: &str,
        netns: &NetnsTarget,
        explainer: Option<&dyn Explainer>,
    ) -> Report {
        let mut summary = Summary::default();
        let connections: Vec<ConnReport> = table
            .sorted()
            .into_iter()
            .map(|(key, stats)| {
                let verdict = judge(key, stats, explainer);
                summary.connections += 1;
                summary.packets += stats.packets;
                summary.psh_data_segments += stats.psh_data_segments;
                match verdict {
                    Verdict::Accelerated => summary.accelerated += 1,
                    Verdict::NotAccelerated { .. } => summary.not_accelerated += 1,
                    Verdict::OneWay { .. } => {
                        summary.not_accelerated += 1;
                        summary.one_way += 1;
                    }
                    Verdict::Unknown => summary.unknown += 1,
                }
                ConnReport {
                    key: key.clone(),
                    client: stats.client,
                    handshake_seen: stats.handshake_seen(),
                    stats: stats.clone(),
                    verdict,
                }
            })
            .collect();
        Report {
            interface: interface.to_string(),
            netns: netns.label(),
            filter: table.filter(),
            capture: None,
            connections,
            summary,
            tcpdump_command: tcpdump_command(interface, netns, &table.filter()),
        }
    }

    /// Builds a report from a finished capture.
    pub fn from_capture(
        out: &CaptureOutput,
        config: &CaptureConfig,
        explainer: Option<&dyn Explainer>,
    ) -> Report {
        let mut r = Report::from_table(&out.table, &config.interface, &config.netns, explainer);
        r.capture = Some(CaptureInfo {
            duration_ms: u64::try_from(out.elapsed.as_millis()).unwrap_or(u64::MAX),
            stop_reason: out.stop_reason,
            stats: out.stats,
        });
        r
    }

    /// The row for a connection, by endpoints in either order.
    pub fn find(&self, x: SocketAddr, y: SocketAddr) -> Option<&ConnReport> {
        let (a, b) = if x <= y { (x, y) } else { (y, x) };
        self.connections
            .iter()
            .find(|c| c.key.a == a && c.key.b == b)
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }

    /// Aligned human-readable table followed by the summary and the tcpdump
    /// cross-check line.
    pub fn render_table(&self) -> String {
        let header = [
            "CONNECTION",
            "PACKETS",
            "PSH DATA",
            "PAYLOAD BYTES",
            "HANDSHAKE",
            "VERDICT",
            "REASON",
        ];
        let rows: Vec<[String; 7]> = self
            .connections
            .iter()
            .map(|c| {
                [
                    c.display_name(),
                    c.stats.packets.to_string(),
                    c.stats.psh_data_segments.to_string(),
                    c.stats.payload_bytes.to_string(),
                    if c.handshake_seen { "yes" } else { "no" }.to_string(),
                    c.verdict.label().to_string(),
                    c.reason().to_string(),
                ]
            })
            .collect();
        let mut w = header.map(str::len);
        for r in &rows {
            for (i, cell) in r.iter().enumerate() {
                w[i] = w[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let mut line = |cells: &[&str]| {
            let mut l = String::new();
            for (i, cell) in cells.iter().enumerate() {
                let pad = w[i].saturating_sub(cell.chars().count());
                // Numbers right-aligned, text left-aligned.
                if (1..=3).contains(&i) {
                    l.push_str(&" ".repeat(pad));
                    l.push_str(cell);
                } else {
                    l.push_str(cell);
                    if i + 1 < cells.len() {
                        l.push_str(&" ".repeat(pad));
                    }
                }
                if i + 1 < cells.len() {
                    l.push_str("  ");
                }
            }
            out.push_str(l.trim_end());
            out.push('\n');
        };
        line(&header);
        for r in &rows {
            let cells: Vec<&str> = r.iter().map(String::as_str).collect();
            line(&cells);
        }
        let s = &self.summary;
        let _ = writeln!(
            out,
            "\n{} connection(s) on {} in {}: {} accelerated, {} not accelerated ({} of them \
             by TCP one way only), {} unknown (handshake not in the capture window)",
            s.connections,
            self.interface,
            self.netns,
            s.accelerated,
            s.not_accelerated,
            s.one_way,
            s.unknown
        );
        if let Some(c) = &self.capture {
            let _ = writeln!(
                out,
                "captured {} TCP segment(s) in {} ms (stopped: {:?}; kernel drops: {})",
                c.stats.matched_segments, c.duration_ms, c.stop_reason, c.stats.kernel_drops
            );
        }
        let _ = writeln!(out, "cross-check: {}", self.tcpdump_command);
        out
    }

    /// Exit code for `--expect` (see the module docs).
    pub fn exit_code(&self, expect: Option<Expectation>) -> i32 {
        exit_code(&self.connections, expect)
    }
}

/// Exit code for `--expect` over a set of rows (see the module docs).
pub fn exit_code(rows: &[ConnReport], expect: Option<Expectation>) -> i32 {
    let Some(expect) = expect else {
        return EXIT_OK;
    };
    let mut conclusive = rows.iter().filter(|c| c.verdict.is_conclusive()).peekable();
    if conclusive.peek().is_none() {
        return EXIT_INCONCLUSIVE;
    }
    if conclusive.all(|c| expect.met_by(&c.verdict)) {
        EXIT_OK
    } else {
        EXIT_EXPECTATION_FAILED
    }
}

/// The tcpdump command an operator can run to see the same PSH segments.
///
/// libpcap's `tcp[...]` only matches IPv4, so IPv6 is matched on the fixed
/// header (`ip6[53]` is the TCP flags byte when no extension header
/// intervenes).
pub fn tcpdump_command(interface: &str, netns: &NetnsTarget, filter: &Filter) -> String {
    const V4: &str = "tcp[tcpflags] & tcp-push != 0";
    const V6: &str = "ip6[6] == 6 and ip6[53] & 0x08 != 0";
    let mut expr = match filter.host {
        Some(IpAddr::V4(_)) => V4.to_string(),
        Some(IpAddr::V6(_)) => V6.to_string(),
        None => format!("({V4} or ({V6}))"),
    };
    if let Some(p) = filter.port {
        let _ = write!(expr, " and port {p}");
    }
    if let Some(h) = filter.host {
        let _ = write!(expr, " and host {h}");
    }
    format!(
        "{}tcpdump -ni {} '{}'",
        netns.shell_prefix(),
        shell_quote(interface),
        expr
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{TcpFlags, build::loopback_segment};
    use std::path::PathBuf;
    use std::time::SystemTime;

    fn feed(t: &mut ConnTable, src: &str, dst: &str, flags: u8, len: usize) {
        t.observe(&loopback_segment(src, dst, flags, len), SystemTime::now());
    }

    fn handshake(t: &mut ConnTable, c: &str, s: &str) {
        feed(t, c, s, TcpFlags::SYN, 0);
        feed(t, s, c, TcpFlags::SYN | TcpFlags::ACK, 0);
        feed(t, c, s, TcpFlags::ACK, 0);
    }

    const PA: u8 = TcpFlags::PSH | TcpFlags::ACK;

    fn report(t: &ConnTable) -> Report {
        Report::from_table(t, "lo", &NetnsTarget::Host, None)
    }

    #[test]
    fn exit_codes() {
        use Expectation::*;
        let mut t = ConnTable::new("host", Filter::default());
        assert_eq!(report(&t).exit_code(Some(Accelerated)), EXIT_INCONCLUSIVE);
        assert_eq!(report(&t).exit_code(None), EXIT_OK);
        // Only Unknown → inconclusive.
        feed(&mut t, "127.0.0.1:1000", "127.0.0.1:80", PA, 3);
        assert_eq!(
            report(&t).exit_code(Some(NotAccelerated)),
            EXIT_INCONCLUSIVE
        );
        // One accelerated.
        handshake(&mut t, "127.0.0.1:1001", "127.0.0.1:80");
        let r = report(&t);
        assert_eq!(r.exit_code(Some(Accelerated)), EXIT_OK);
        assert_eq!(r.exit_code(Some(NotAccelerated)), EXIT_EXPECTATION_FAILED);
        // Add a plain one: mixed → both expectations fail.
        handshake(&mut t, "127.0.0.1:1002", "127.0.0.1:80");
        feed(&mut t, "127.0.0.1:1002", "127.0.0.1:80", PA, 3);
        let r = report(&t);
        assert_eq!(r.exit_code(Some(Accelerated)), EXIT_EXPECTATION_FAILED);
        assert_eq!(r.exit_code(Some(NotAccelerated)), EXIT_EXPECTATION_FAILED);
        assert_eq!(
            (
                r.summary.accelerated,
                r.summary.not_accelerated,
                r.summary.unknown
            ),
            (1, 1, 1)
        );
    }

    #[test]
    fn table_is_aligned_and_json_roundtrips() {
        let mut t = ConnTable::new("host", Filter::default());
        handshake(&mut t, "127.0.0.1:40001", "127.0.0.1:8080");
        feed(&mut t, "127.0.0.1:40001", "127.0.0.1:8080", PA, 12345);
        // Data both ways: not accelerated, not one way.
        feed(
            &mut t,
            "127.0.0.1:8080",
            "127.0.0.1:40001",
            TcpFlags::ACK,
            100,
        );
        handshake(&mut t, "[::1]:40002", "[::1]:8080");
        let r = report(&t);
        let text = r.render_table();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("CONNECTION"));
        let col = lines[0].find("VERDICT").unwrap();
        let verdicts: Vec<&str> = lines[1..3].iter().map(|l| &l[col..]).collect();
        assert!(
            verdicts
                .iter()
                .any(|v| v.starts_with("NOT accelerated  data segments"))
        );
        assert!(verdicts.iter().any(|v| v.starts_with("accelerated")));
        assert!(text.contains("127.0.0.1:40001 -> 127.0.0.1:8080"));
        assert!(text.contains("[::1]:40002 -> [::1]:8080"));
        assert!(text.contains("12445"));
        let v: serde_json::Value = serde_json::from_str(&r.to_json().unwrap()).unwrap();
        assert_eq!(v["summary"]["connections"], 2);
        let rows = v["connections"].as_array().unwrap();
        assert!(
            rows.iter()
                .any(|c| c["verdict"]["verdict"] == "not_accelerated"
                    && c["verdict"]["reason"] == crate::verdict::DEFAULT_REASON
                    && c["stats"]["psh_data_segments"] == 1)
        );
    }

    #[test]
    fn tcpdump_lines() {
        let f = Filter {
            port: Some(8080),
            host: None,
        };
        assert_eq!(
            tcpdump_command("lo", &NetnsTarget::Host, &f),
            "tcpdump -ni lo '(tcp[tcpflags] & tcp-push != 0 or (ip6[6] == 6 and ip6[53] & 0x08 != 0)) and port 8080'"
        );
        let f4 = Filter {
            port: Some(8080),
            host: Some("10.0.0.1".parse().unwrap()),
        };
        assert_eq!(
            tcpdump_command("eth0", &NetnsTarget::Pid(42), &f4),
            "nsenter -t 42 -n tcpdump -ni eth0 'tcp[tcpflags] & tcp-push != 0 and port 8080 and host 10.0.0.1'"
        );
        let ns = NetnsTarget::Path(PathBuf::from("/run/netns/pod-a"));
        assert!(
            tcpdump_command("lo", &ns, &Filter::default())
                .starts_with("ip netns exec pod-a tcpdump -ni lo '")
        );
        let ns = NetnsTarget::Path(PathBuf::from("/proc/7/ns/net"));
        assert!(
            tcpdump_command("lo", &ns, &Filter::default())
                .starts_with("nsenter --net=/proc/7/ns/net tcpdump")
        );
        let f6 = Filter {
            port: None,
            host: Some("::1".parse().unwrap()),
        };
        assert_eq!(
            tcpdump_command("lo", &NetnsTarget::Host, &f6),
            "tcpdump -ni lo 'ip6[6] == 6 and ip6[53] & 0x08 != 0 and host ::1'"
        );
    }
}
