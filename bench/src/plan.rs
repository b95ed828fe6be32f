//! The one loop every runner drives: placements x cases x repeats x sides
//! (loopback's transports, the sidecar runners' modes), interleaved, with
//! an interrupt check before every run. A runner says how to pin a
//! placement, how to switch to a side and how to do one run ([`Bench`]);
//! [`drive`] decides the order.

use anyhow::Result;

use crate::{records::placement::Placement, sandbox::check_interrupted};

/// The order of the runs within a placement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Order {
    /// Per case, per repeat: every side in turn (`loopback`, `mesh`): the
    /// sides of one case run seconds apart.
    ByCase,
    /// Per round: every case in one side, then every case in the next
    /// (`run-local`): the daemon switches twice per round, not per case.
    BySide,
}

/// Where one run sits in the plan.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot<C, S> {
    pub(crate) placement: Placement,
    pub(crate) case: C,
    /// The repeat (`ByCase`) or round (`BySide`), from 0.
    pub(crate) repeat: usize,
    pub(crate) side: S,
    /// The run's number in the whole plan, from 1.
    pub(crate) seq: usize,
}

/// What a runner supplies to [`drive`].
pub(crate) trait Bench {
    type Case: Copy;
    type Side: Copy;

    /// The sides of repeat (or round) `n`, in the order they run.
    fn sides(&self, n: usize) -> Vec<Self::Side>;

    /// Before the first run of `placement` (pinning long-running
    /// processes).
    fn enter_placement(&mut self, _placement: Placement) -> Result<()> {
        Ok(())
    }

    /// Before the runs of a side: before every run (`ByCase`), or once per
    /// round and side (`BySide`).
    fn enter_side(&mut self, _side: Self::Side) -> Result<()> {
        Ok(())
    }

    /// One run: measure, prove, keep the record. A failed run is a record;
    /// an error stops the whole plan.
    fn run(&mut self, slot: Slot<Self::Case, Self::Side>) -> Result<()>;

    /// `ByCase`: after every repeat of `case` (a progress line).
    fn case_done(&mut self, _placement: Placement, _case: Self::Case) {}

    /// `BySide`: after every case of `side` in `round`.
    fn side_done(&mut self, _placement: Placement, _round: usize, _side: Self::Side) -> Result<()> {
        Ok(())
    }
}

/// Runs the plan: every placement, in `order`, `repeats` times.
pub(crate) fn drive<B: Bench>(
    bench: &mut B,
    order: Order,
    placements: &[Placement],
    cases: &[B::Case],
    repeats: usize,
) -> Result<()> {
    let mut seq = 0;
    for &placement in placements {
        bench.enter_placement(placement)?;
        match order {
            Order::ByCase => {
                for &case in cases {
                    for repeat in 0..repeats {
                        for side in bench.sides(repeat) {
                            check_interrupted()?;
                            bench.enter_side(side)?;
                            seq += 1;
                            let slot = Slot {
                                placement,
                                case,
                                repeat,
                                side,
                                seq,
                            };
                            bench.run(slot)?;
                        }
                    }
                    bench.case_done(placement, case);
                }
            }
            Order::BySide => {
                for round in 0..repeats {
                    for side in bench.sides(round) {
                        check_interrupted()?;
                        bench.enter_side(side)?;
                        for &case in cases {
                            check_interrupted()?;
                            seq += 1;
                            let slot = Slot {
                                placement,
                                case,
                                repeat: round,
                                side,
                                seq,
                            };
                            bench.run(slot)?;
                        }
                        bench.side_done(placement, round, side)?;
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the plan as it runs.
    #[derive(Default)]
    struct Log(Vec<String>);

    impl Bench for Log {
        type Case = char;
        type Side = &'static str;
        fn sides(&self, n: usize) -> Vec<&'static str> {
            if n.is_multiple_of(2) {
                vec!["b", "a"]
            } else {
                vec!["a", "b"]
            }
        }
        fn enter_placement(&mut self, p: Placement) -> Result<()> {
            self.0.push(format!("[{}]", p.name()));
            Ok(())
        }
        fn enter_side(&mut self, side: &'static str) -> Result<()> {
            self.0.push(format!(">{side}"));
            Ok(())
        }
        fn run(&mut self, s: Slot<char, &'static str>) -> Result<()> {
            self.0
                .push(format!("{}{}{}#{}", s.case, s.repeat, s.side, s.seq));
            Ok(())
        }
        fn case_done(&mut self, _: Placement, case: char) {
            self.0.push(format!("{case}."));
        }
        fn side_done(&mut self, _: Placement, round: usize, side: &'static str) -> Result<()> {
            self.0.push(format!("{round}{side}."));
            Ok(())
        }
    }

    #[test]
    fn by_case_runs_every_side_of_a_case_together() {
        let mut log = Log::default();
        drive(
            &mut log,
            Order::ByCase,
            &[Placement::OneCore],
            &['x', 'y'],
            2,
        )
        .expect("plan runs");
        assert_eq!(
            log.0.join(" "),
            "[one-core] >b x0b#1 >a x0a#2 >a x1a#3 >b x1b#4 x. \
             >b y0b#5 >a y0a#6 >a y1a#7 >b y1b#8 y."
        );
    }

    #[test]
    fn by_side_runs_every_case_in_one_side() {
        let mut log = Log::default();
        drive(
            &mut log,
            Order::BySide,
            &[Placement::TwoCore, Placement::Unpinned],
            &['x', 'y'],
            1,
        )
        .expect("plan runs");
        assert_eq!(
            log.0.join(" "),
            "[two-core] >b x0b#1 y0b#2 0b. >a x0a#3 y0a#4 0a. \
             [unpinned] >b x0b#5 y0b#6 0b. >a x0a#7 y0a#8 0a."
        );
    }
}
