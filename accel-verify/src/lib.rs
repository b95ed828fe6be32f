//! PSH-flag verification: per-connection proof that TCP data bypassed the
//! stack.
//!
//! Once a connection is accelerated, its payload is redirected
//! socket-to-socket by the sk_msg program, so a capture on `lo` still shows
//! its SYN/ACK/FIN segments but never a data segment. This crate captures
//! (optionally inside a pod's network namespace), counts PSH data segments
//! per connection and turns that into a verdict, a report and an exit code
//! for `accel-daemon verify`.
//!
//! * [`capture`] — AF_PACKET capture on a dedicated, namespace-switched thread.
//! * [`frame`] — panic-free Ethernet/VLAN/IPv4/IPv6/TCP parser.
//! * [`conn`] — per-connection table and the exact counting definitions.
//! * [`verdict`] — `Accelerated` / `NotAccelerated` / `Unknown` and [`Explainer`].
//! * [`report`] — table, JSON, summary, exit codes, tcpdump cross-check line.
//! * [`args`] — [`VerifyArgs`] and [`run`], the daemon's entry point.

pub mod args;
pub mod capture;
pub mod conn;
pub mod error;
pub mod frame;
pub mod report;
pub mod verdict;

pub use args::{VerifyArgs, parse_duration, run, run_with};
pub use capture::{
    CaptureConfig, CaptureHandle, CaptureOutput, CaptureStats, NetnsTarget, Progress, ProgressFn,
    StopReason,
};
pub use conn::{ConnKey, ConnStats, ConnTable, Filter};
pub use error::VerifyError;
pub use report::{
    EXIT_EXPECTATION_FAILED, EXIT_INCONCLUSIVE, EXIT_OK, Expectation, Report, tcpdump_command,
};
pub use verdict::{DEFAULT_REASON, Explainer, Verdict};
