//! The records of `accel-bench loopback`: its transports (the placements
//! are [`super::placement`]), one run's numbers and proof, and the
//! configuration the runs share. The runner (`crate::loopback`) writes
//! them; the report (`crate::report::loopback`) reads them.

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};

use super::worker::{Family, IoStyle, PairNumbers, Workload};
use super::{Case, placement::Placement};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Tcp,
    Accel,
    Unix,
}

impl Transport {
    pub const ALL: [Transport; 3] = [Transport::Tcp, Transport::Accel, Transport::Unix];
    pub fn label(self) -> &'static str {
        match self {
            Transport::Tcp => "plain TCP",
            Transport::Accel => "accelerated",
            Transport::Unix => "unix",
        }
    }
    pub(crate) fn family(self) -> Family {
        match self {
            Transport::Tcp | Transport::Accel => Family::Tcp,
            Transport::Unix => Family::Unix,
        }
    }
}

pub type LoopbackCase = Case<Workload>;

/// How the transports take turns within a case.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportOrder {
    /// Plain TCP, accelerated, unix in every repeat (results written
    /// before the turns were taken, which do not name their order).
    #[default]
    Fixed,
    /// Plain TCP before accelerated in even repeats, after it in odd ones,
    /// unix last (A B C B A C ...), so that neither side of the comparison
    /// always follows the other's leftovers (a churn run leaves thousands
    /// of TIME_WAIT sockets) or always runs on a warmer machine.
    Abba,
}

impl TransportOrder {
    /// The transports of repeat `n`, in the order they run.
    pub fn of_repeat(self, n: usize) -> [Transport; 3] {
        match self {
            TransportOrder::Abba if !n.is_multiple_of(2) => {
                [Transport::Accel, Transport::Tcp, Transport::Unix]
            }
            _ => Transport::ALL,
        }
    }

    pub fn is_fixed(&self) -> bool {
        *self == TransportOrder::Fixed
    }

    /// The order, in words, for a report.
    pub fn describe(self) -> &'static str {
        match self {
            TransportOrder::Fixed => "plain TCP, accelerated, unix, plain TCP, ...",
            TransportOrder::Abba => {
                "plain TCP, accelerated, unix, then accelerated, plain TCP, unix, ..."
            }
        }
    }
}

/// One run of one transport: raw numbers plus the counter proof.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub placement: Placement,
    pub workload: Workload,
    pub size: usize,
    pub transport: Transport,
    pub repeat: usize,
    pub ok: bool,
    pub error: Option<String>,
    /// The workers' numbers (JSON: their fields, inline).
    #[serde(flatten)]
    pub numbers: PairNumbers,
    /// Datapath counters after minus before the run.
    pub counters_delta: BTreeMap<String, i64>,
    /// Peak node TCP memory above its level before the run, in bytes, while
    /// the workers ran (redirected bytes are charged to the receiving
    /// socket). TCP and accelerated streams only; absent in older results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_tcp_mem: Option<u64>,
    /// Accelerated: redirect_bytes + pass_bytes grew by >= bytes_moved, and
    /// pass_bytes only after the datapath's policy switches. Baseline/unix:
    /// redirect and pass counters did not move at all.
    pub verified: bool,
    pub verify_note: String,
}

impl RunRecord {
    /// [`Self::peak_tcp_mem`] in MiB.
    pub fn peak_tcp_mem_mib(&self) -> Option<f64> {
        self.peak_tcp_mem.map(super::mib)
    }

    /// Accelerated: % of the moved bytes the datapath did not redirect.
    pub fn tcp_share_pct(&self) -> Option<f64> {
        let rb = self.counters_delta.get("redirect_bytes").copied()?;
        let moved = self.numbers.bytes_moved;
        (self.transport == Transport::Accel && moved > 0)
            .then(|| 100.0 * (moved as f64 - rb as f64).max(0.0) / moved as f64)
    }
}

pub struct LoopbackConfig {
    pub duration: Duration,
    pub warmup: Duration,
    pub repeats: usize,
    pub worker_io: IoStyle,
    pub order: TransportOrder,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_tcp_and_accelerated_take_turns_to_go_first() {
        let order = TransportOrder::Abba;
        assert_eq!(order.of_repeat(0), Transport::ALL);
        assert_eq!(
            order.of_repeat(1),
            [Transport::Accel, Transport::Tcp, Transport::Unix]
        );
        assert_eq!(order.of_repeat(2), Transport::ALL);
        assert_eq!(TransportOrder::Fixed.of_repeat(1), Transport::ALL);
    }
}
