//! Per-connection verdicts.
//!
//! Rules, applied to one connection's [`ConnStats`]:
//!
//! 1. No handshake (SYN **and** SYN-ACK) in the window → [`Verdict::Unknown`].
//!    The accelerator inserts sockets into the sockmap from its sockops
//!    program at establishment time, so a connection established before the
//!    capture (or before the daemon) proves nothing either way — even if PSH
//!    data is visible.
//! 2. Handshake seen and at least one data segment after it (PSH data, or —
//!    stricter than the PSH rule — payload without PSH) →
//!    [`Verdict::NotAccelerated`]: bytes crossed the TCP stack.
//!    If every such segment went one way only, the verdict is
//!    [`Verdict::OneWay`], a not-accelerated verdict that says more: the
//!    other direction was redirected or sent nothing (the wire cannot tell
//!    which). The default mode redirects an application's bytes to its
//!    sidecar and sends the sidecar's back by TCP, on purpose.
//! 3. Otherwise → [`Verdict::Accelerated`]. Note that a connection which sent
//!    no data at all also lands here: on the wire an idle connection and a
//!    redirected one look the same, which is why the report shows payload
//!    bytes next to the verdict.

use serde::Serialize;

use crate::conn::{ConnKey, ConnStats};

/// Reason used when no [`Explainer`] is given or it has nothing to say.
pub const DEFAULT_REASON: &str = "data segments crossed the TCP stack";

/// Supplies a reason why a connection was not accelerated, e.g. from the
/// daemon's pinned BPF maps ("not in sockmap", "port excluded by policy").
pub trait Explainer {
    /// Explains why `conn` was not accelerated; `None` falls back to
    /// [`DEFAULT_REASON`].
    fn explain(&self, conn: &ConnKey) -> Option<String>;
}

/// Outcome for one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Handshake seen, no data segment crossed the stack after it.
    Accelerated,
    /// Data segments were seen after the handshake.
    NotAccelerated {
        /// Operator-facing explanation.
        reason: String,
    },
    /// Data segments after the handshake went one way only; the other
    /// direction was redirected, or sent nothing. Not accelerated, for
    /// `--expect`.
    OneWay {
        /// The direction whose bytes crossed the stack: `client -> server`
        /// or `server -> client`.
        by_tcp: String,
        /// Operator-facing explanation.
        reason: String,
    },
    /// The handshake was not in the capture window; nothing can be concluded.
    Unknown,
}

impl Verdict {
    /// Short label for tables.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Accelerated => "accelerated",
            Verdict::NotAccelerated { .. } => "NOT accelerated",
            Verdict::OneWay { .. } => "TCP one way",
            Verdict::Unknown => "unknown",
        }
    }

    /// True for the conclusive verdicts.
    pub fn is_conclusive(&self) -> bool {
        !matches!(self, Verdict::Unknown)
    }
}

/// Decides the verdict for one connection.
pub fn judge(key: &ConnKey, stats: &ConnStats, explainer: Option<&dyn Explainer>) -> Verdict {
    if !stats.handshake_seen() {
        return Verdict::Unknown;
    }
    if stats.psh_data_after_handshake > 0 || stats.data_segments_after_handshake > 0 {
        let reason = explainer
            .and_then(|e| e.explain(key))
            .unwrap_or_else(|| DEFAULT_REASON.to_string());
        let by_client = stats.client_data_after_handshake;
        let by_server = stats.data_segments_after_handshake - by_client;
        let by_tcp = match (by_client, by_server) {
            (0, _) => "server -> client",
            (_, 0) => "client -> server",
            _ => return Verdict::NotAccelerated { reason },
        };
        return Verdict::OneWay {
            by_tcp: by_tcp.to_string(),
            reason,
        };
    }
    Verdict::Accelerated
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::{ConnTable, Filter};
    use crate::frame::{TcpFlags, TcpSegment, build::loopback_segment as seg};
    use std::time::SystemTime;

    const C: &str = "127.0.0.1:40000";
    const S: &str = "127.0.0.1:8080";
    const SYN: u8 = TcpFlags::SYN;
    const SYNACK: u8 = TcpFlags::SYN | TcpFlags::ACK;
    const ACK: u8 = TcpFlags::ACK;
    const PA: u8 = TcpFlags::PSH | TcpFlags::ACK;
    const FA: u8 = TcpFlags::FIN | TcpFlags::ACK;

    fn verdict_of(segs: &[TcpSegment], ex: Option<&dyn Explainer>) -> Verdict {
        let mut t = ConnTable::new("ns", Filter::default());
        for s in segs {
            t.observe(s, SystemTime::now());
        }
        let all = t.sorted();
        assert_eq!(all.len(), 1);
        judge(all[0].0, all[0].1, ex)
    }

    /// What a sockmap-redirected connection looks like on `lo`: handshake,
    /// bare ACKs, FIN exchange, never a payload.
    #[test]
    fn accelerated_connection() {
        let v = verdict_of(
            &[
                seg(C, S, SYN, 0),
                seg(S, C, SYNACK, 0),
                seg(C, S, ACK, 0),
                seg(C, S, FA, 0),
                seg(S, C, FA, 0),
                seg(C, S, ACK, 0),
            ],
            None,
        );
        assert_eq!(v, Verdict::Accelerated);
    }

    #[test]
    fn plain_tcp_connection() {
        let v = verdict_of(
            &[
                seg(C, S, SYN, 0),
                seg(S, C, SYNACK, 0),
                seg(C, S, ACK, 0),
                seg(C, S, PA, 5),
                seg(S, C, PA, 5),
            ],
            None,
        );
        assert_eq!(
            v,
            Verdict::NotAccelerated {
                reason: DEFAULT_REASON.into()
            }
        );
    }

    /// The default mode: the application's bytes redirected, its sidecar's
    /// answers by TCP. Also what a one-way stream over TCP looks like.
    #[test]
    fn data_one_way_only_is_tcp_one_way() {
        let handshake = [seg(C, S, SYN, 0), seg(S, C, SYNACK, 0), seg(C, S, ACK, 0)];
        let v = verdict_of(&[&handshake[..], &[seg(S, C, PA, 5)]].concat(), None);
        assert_eq!(
            v,
            Verdict::OneWay {
                by_tcp: "server -> client".into(),
                reason: DEFAULT_REASON.into()
            }
        );
        let v = verdict_of(&[&handshake[..], &[seg(C, S, PA, 5)]].concat(), None);
        assert!(matches!(v, Verdict::OneWay { by_tcp, .. } if by_tcp == "client -> server"));
    }

    #[test]
    fn data_without_psh_is_not_accelerated() {
        let v = verdict_of(
            &[
                seg(C, S, SYN, 0),
                seg(S, C, SYNACK, 0),
                seg(C, S, ACK, 1448),
                seg(S, C, ACK, 1448),
            ],
            None,
        );
        assert!(matches!(v, Verdict::NotAccelerated { .. }));
    }

    #[test]
    fn no_handshake_is_unknown_even_with_psh() {
        assert_eq!(
            verdict_of(&[seg(C, S, PA, 5), seg(S, C, PA, 5)], None),
            Verdict::Unknown
        );
        // SYN-ACK alone (capture started between SYN and SYN-ACK).
        assert_eq!(
            verdict_of(&[seg(S, C, SYNACK, 0), seg(C, S, ACK, 0)], None),
            Verdict::Unknown
        );
    }

    struct Fixed;
    impl Explainer for Fixed {
        fn explain(&self, conn: &ConnKey) -> Option<String> {
            conn.has_port(8080)
                .then(|| "port 8080 excluded by policy".to_string())
        }
    }

    #[test]
    fn explainer_supplies_reason() {
        let v = verdict_of(
            &[
                seg(C, S, SYN, 0),
                seg(S, C, SYNACK, 0),
                seg(C, S, PA, 5),
                seg(S, C, PA, 5),
            ],
            Some(&Fixed),
        );
        assert_eq!(
            v,
            Verdict::NotAccelerated {
                reason: "port 8080 excluded by policy".into()
            }
        );
        let other = "127.0.0.1:9090";
        let v = verdict_of(
            &[
                seg(C, other, SYN, 0),
                seg(other, C, SYNACK, 0),
                seg(C, other, PA, 5),
                seg(other, C, PA, 5),
            ],
            Some(&Fixed),
        );
        assert_eq!(
            v,
            Verdict::NotAccelerated {
                reason: DEFAULT_REASON.into()
            }
        );
    }
}
