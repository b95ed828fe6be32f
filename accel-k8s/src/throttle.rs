//! Calm logging of failures that are retried: an API server away for an hour
//! must leave a handful of lines, not one per retry.
//!
//! The first failure of an outage is logged at once; later ones at most once
//! per period, with how many were left out; the recovery once.

use std::time::{Duration, Instant};

/// How often a continuing outage is logged again. The watchers' backoff
/// tops out at 30 s, so this is at most one line per two retries.
pub const QUIET_PERIOD: Duration = Duration::from_secs(60);

/// What to log for a failure, if anything now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    /// Failures not logged since the last line.
    pub suppressed: u64,
    /// Failures since the outage began, this one included.
    pub failures: u64,
}

/// The state of one retried call (a watch, a status patch).
#[derive(Debug)]
pub struct Throttle {
    period: Duration,
    failures: u64,
    suppressed: u64,
    last_logged: Option<Instant>,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(QUIET_PERIOD)
    }
}

impl Throttle {
    pub fn new(period: Duration) -> Self {
        Throttle {
            period,
            failures: 0,
            suppressed: 0,
            last_logged: None,
        }
    }

    /// Records a failure: `Some` when it should be logged.
    pub fn failure(&mut self) -> Option<Report> {
        self.failure_at(Instant::now())
    }

    pub fn failure_at(&mut self, now: Instant) -> Option<Report> {
        self.failures += 1;
        let due = self
            .last_logged
            .is_none_or(|t| now.saturating_duration_since(t) >= self.period);
        if !due {
            self.suppressed += 1;
            return None;
        }
        self.last_logged = Some(now);
        let report = Report {
            suppressed: self.suppressed,
            failures: self.failures,
        };
        self.suppressed = 0;
        Some(report)
    }

    /// Records a success: `Some(failures)` when it ends an outage.
    pub fn success(&mut self) -> Option<u64> {
        let failures = std::mem::take(&mut self.failures);
        self.suppressed = 0;
        self.last_logged = None;
        (failures > 0).then_some(failures)
    }

    /// Failures since the outage began (0: none going on).
    pub fn failures(&self) -> u64 {
        self.failures
    }
}

/// Waits between retries of a failed list or watch: 0.8 s doubling to 30 s
/// (kube's default), each wait jittered down by up to half so that a
/// thousand daemons cut off together do not come back together.
///
/// kube's own `default_backoff` restarts from 0.8 s on every item the
/// watcher yields, and the watcher yields `Init` before each re-list
/// attempt: against an API server that is down it retries about once a
/// second, forever. This one resets only on real progress.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

const BACKOFF_MIN: Duration = Duration::from_millis(800);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: BACKOFF_MIN }
    }
}

impl Backoff {
    /// The wait before the next retry.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(BACKOFF_MAX);
        let r = {
            use std::hash::{BuildHasher, Hasher};
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        };
        // [d/2, d]
        d / 2 + d.mul_f64((r % 1000) as f64 / 2000.0)
    }

    /// Progress was made: the next failure waits the least again.
    pub fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_thirty_seconds_with_jitter_and_resets() {
        let mut b = Backoff::default();
        let waits: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        let mut nominal = BACKOFF_MIN;
        for w in &waits {
            assert!(*w >= nominal / 2 && *w <= nominal, "{w:?} for {nominal:?}");
            nominal = (nominal * 2).min(BACKOFF_MAX);
        }
        assert!(waits[9] >= Duration::from_secs(15));
        b.reset();
        assert!(b.next_delay() <= BACKOFF_MIN);
    }

    #[test]
    fn one_line_per_period_then_one_on_recovery() {
        let mut t = Throttle::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(
            t.failure_at(t0),
            Some(Report {
                suppressed: 0,
                failures: 1
            })
        );
        // Retries every 2 s for a minute: silent.
        for s in 1..30 {
            assert_eq!(t.failure_at(t0 + Duration::from_secs(2 * s)), None);
        }
        assert_eq!(
            t.failure_at(t0 + Duration::from_secs(60)),
            Some(Report {
                suppressed: 29,
                failures: 31
            })
        );
        assert_eq!(t.success(), Some(31));
        assert_eq!(t.success(), None);
        // A new outage is logged at once.
        assert!(t.failure_at(t0 + Duration::from_secs(61)).is_some());
    }
}
