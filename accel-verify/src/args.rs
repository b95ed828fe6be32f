//! Command-line arguments of `accel-daemon verify` and the entry points that
//! run a verification from them.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::capture::{self, CaptureConfig, NetnsTarget, ProgressFn};
use crate::conn::Filter;
use crate::error::{Result, VerifyError};
use crate::report::{Expectation, Report};
use crate::verdict::Explainer;

/// Default capture length when neither `--duration` nor `--packets` is given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(5);

/// Arguments of the `verify` subcommand.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct VerifyArgs {
    /// Interface to capture on (in the target namespace).
    #[arg(long, short = 'i', default_value = "lo")]
    pub interface: String,
    /// Capture inside this network namespace file (/run/netns/NAME, /proc/PID/ns/net).
    #[arg(long, value_name = "PATH", conflicts_with = "pid")]
    pub netns: Option<PathBuf>,
    /// Capture inside the network namespace of this process.
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Only connections with this port on either side.
    #[arg(long)]
    pub port: Option<u16>,
    /// Only connections with this address on either side.
    #[arg(long)]
    pub host: Option<IpAddr>,
    /// How long to capture: "5s", "500ms", "1m30s", or plain seconds ("2.5").
    /// Defaults to 5s unless --packets is given.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after this many matching TCP segments.
    #[arg(long, value_name = "N")]
    pub packets: Option<u64>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Exit non-zero unless every conclusive connection matches
    /// (3: expectation failed, 4: nothing conclusive captured).
    #[arg(long, value_enum)]
    pub expect: Option<Expectation>,
}

impl Default for VerifyArgs {
    fn default() -> Self {
        VerifyArgs {
            interface: "lo".into(),
            netns: None,
            pid: None,
            port: None,
            host: None,
            duration: None,
            packets: None,
            json: false,
            expect: None,
        }
    }
}

impl VerifyArgs {
    /// The namespace selected by `--netns` / `--pid`.
    pub fn netns_target(&self) -> Result<NetnsTarget> {
        match (&self.netns, self.pid) {
            (Some(_), Some(_)) => Err(VerifyError::NetnsAndPid),
            (Some(p), None) => Ok(NetnsTarget::Path(p.clone())),
            (None, Some(pid)) => Ok(NetnsTarget::Pid(pid)),
            (None, None) => Ok(NetnsTarget::Host),
        }
    }

    /// Validates the arguments into a capture configuration. Re-checks what
    /// clap checks, because the daemon may build `VerifyArgs` by hand.
    pub fn capture_config(&self) -> Result<CaptureConfig> {
        let netns = self.netns_target()?;
        if self.port == Some(0) {
            return Err(VerifyError::BadValue {
                flag: "--port",
                value: "0".into(),
                hint: "give a TCP port between 1 and 65535",
            });
        }
        if self.packets == Some(0) {
            return Err(VerifyError::BadValue {
                flag: "--packets",
                value: "0".into(),
                hint: "give a packet budget of at least 1, or omit it",
            });
        }
        if let Some(h) = self.host
            && (h.is_unspecified() || h.is_multicast())
        {
            return Err(VerifyError::BadValue {
                flag: "--host",
                value: h.to_string(),
                hint: "give the unicast address of one endpoint",
            });
        }
        if self.duration == Some(Duration::ZERO) {
            return Err(VerifyError::BadValue {
                flag: "--duration",
                value: "0".into(),
                hint: "give a positive duration such as 5s or 500ms",
            });
        }
        let duration = match (self.duration, self.packets) {
            (Some(d), _) => Some(d),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_DURATION),
        };
        Ok(CaptureConfig {
            interface: self.interface.clone(),
            netns,
            filter: Filter {
                port: self.port,
                host: self.host,
            },
            duration,
            packet_budget: self.packets,
            include_loopback_outgoing: false,
        })
    }
}

/// Parses "5s", "500ms", "2m", "1h", "1m30s", "250us", or plain (possibly
/// fractional) seconds such as "10" or "2.5".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}: use e.g. 5s, 500ms, 1m30s or plain seconds");
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = t.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_end == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        let after = &rest[num_end..];
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let scale = match after[..unit_end].trim() {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hr" | "hrs" => 3600.0,
            _ => return Err(bad()),
        };
        let part = Duration::try_from_secs_f64(value * scale).map_err(|_| bad())?;
        total = total.checked_add(part).ok_or_else(bad)?;
        rest = &after[unit_end..];
    }
    Ok(total)
}

/// Runs a verification as `accel-daemon verify` would, without Ctrl-C
/// handling or progress: capture, judge, report. Returns the report and the
/// process exit code (see [`crate::report`]). Printing is left to the caller
/// (`report.to_json()` or `report.render_table()` per `args.json`).
pub fn run(args: &VerifyArgs, explainer: Option<&dyn Explainer>) -> anyhow::Result<(Report, i32)> {
    run_with(args, explainer, Arc::new(AtomicBool::new(false)), None)
}

/// Like [`run`], with a cancellation flag (set it from a Ctrl-C handler; the
/// capture stops within ~100 ms and the report covers what was captured) and
/// an optional progress callback.
pub fn run_with(
    args: &VerifyArgs,
    explainer: Option<&dyn Explainer>,
    cancel: Arc<AtomicBool>,
    progress: Option<ProgressFn>,
) -> anyhow::Result<(Report, i32)> {
    let config = args.capture_config()?;
    let out = capture::capture(config.clone(), cancel, progress)?;
    let report = Report::from_capture(&out, &config, explainer);
    let code = report.exit_code(args.expect);
    Ok((report, code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        v: VerifyArgs,
    }

    #[test]
    fn durations() {
        let ok = [
            ("5s", 5000),
            ("500ms", 500),
            ("1m30s", 90_000),
            ("2", 2000),
            ("2.5", 2500),
            ("1.5s", 1500),
            ("1h", 3_600_000),
            ("2m", 120_000),
        ];
        for (s, ms) in ok {
            assert_eq!(parse_duration(s).unwrap(), Duration::from_millis(ms), "{s}");
        }
        for s in ["", "s", "5x", "-1", "ms5", "5s3", "1e400", "NaN"] {
            assert!(parse_duration(s).is_err(), "{s}");
        }
    }

    #[test]
    fn clap_parsing_and_defaults() {
        let c = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(c.v, VerifyArgs::default());
        let cfg = c.v.capture_config().unwrap();
        assert_eq!(cfg.duration, Some(DEFAULT_DURATION));
        assert_eq!(cfg.netns, NetnsTarget::Host);

        let c = Cli::try_parse_from([
            "x",
            "--port",
            "8080",
            "--host",
            "::1",
            "--duration",
            "500ms",
            "--packets",
            "10",
            "--json",
            "--expect",
            "not-accelerated",
            "--pid",
            "1",
            "-i",
            "eth0",
        ])
        .unwrap();
        assert_eq!(c.v.expect, Some(Expectation::NotAccelerated));
        let cfg = c.v.capture_config().unwrap();
        assert_eq!(cfg.netns, NetnsTarget::Pid(1));
        assert_eq!(cfg.duration, Some(Duration::from_millis(500)));
        assert_eq!(cfg.packet_budget, Some(10));
        assert_eq!(cfg.interface, "eth0");

        let c = Cli::try_parse_from(["x", "--packets", "3"]).unwrap();
        assert_eq!(c.v.capture_config().unwrap().duration, None);

        assert!(Cli::try_parse_from(["x", "--netns", "/run/netns/a", "--pid", "1"]).is_err());
        assert!(Cli::try_parse_from(["x", "--port", "70000"]).is_err());
        assert!(Cli::try_parse_from(["x", "--host", "nope"]).is_err());
        assert!(Cli::try_parse_from(["x", "--expect", "maybe"]).is_err());
    }

    #[test]
    fn validation_errors_tell_what_to_do() {
        let both = VerifyArgs {
            netns: Some("/run/netns/a".into()),
            pid: Some(1),
            ..Default::default()
        };
        assert!(matches!(
            both.capture_config(),
            Err(VerifyError::NetnsAndPid)
        ));
        let port0 = VerifyArgs {
            port: Some(0),
            ..Default::default()
        };
        let e = port0.capture_config().unwrap_err().to_string();
        assert!(e.contains("--port") && e.contains("1 and 65535"), "{e}");
        let host = VerifyArgs {
            host: Some("0.0.0.0".parse().unwrap()),
            ..Default::default()
        };
        assert!(host.capture_config().is_err());
        let dur = VerifyArgs {
            duration: Some(Duration::ZERO),
            ..Default::default()
        };
        assert!(dur.capture_config().is_err());
    }
}
