//! Proof that nothing is queued before the datapath goes away.
//!
//! Removing a socket from the sockhash frees the messages still queued on
//! its ingress list (the defect that makes other sockmap products lose data
//! on uninstall). The drain check runs an `iter/sockmap` program over the
//! sockhash and lists the sockets whose ingress queue is not empty.
//! Kernels that refuse tracing programs (iterators are tracing programs)
//! get the same answer per socket: a classifier bound to the pinned
//! sockhash, test-run once per key.
//!
//! aya attaches iterators without parameters, and a sockmap iterator needs
//! the map, so the link is created with a raw bpf(2) call (see bpf_sys).

use std::{
    io::Read,
    os::fd::{AsFd, AsRawFd, BorrowedFd},
    path::Path,
    time::{Duration, Instant},
};

use accel_bpf::{DRAIN_OBJ, DRAIN_PROBE_OBJ, drain_probe, map, prog};

use crate::bpf_sys::{iter_create, link_create_sockmap_iter};
use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{MapData, SockHash},
    programs::{Iter, SchedClassifier, TestRun, TestRunOptions},
};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DrainError {
    #[error("kernel BTF unavailable ({0}); cannot inspect receive queues")]
    Btf(String),
    #[error("loading the drain check: {0}")]
    Load(String),
    #[error("running the drain check: {0}")]
    Run(std::io::Error),
}

/// Forces a drain-check method; see [`DrainCheck::load`].
pub const DRAIN_CHECK_ENV: &str = "ACCEL_DRAIN_CHECK";

/// A loaded drain check, reusable for repeated checks of the datapath's
/// sockhashes.
pub struct DrainCheck<'a> {
    how: How,
    sockhashes: Vec<BorrowedFd<'a>>,
}

enum How {
    /// `iter/sockmap` walks each sockhash in one read.
    Walker(Ebpf),
    /// Kernels that refuse tracing programs: per sockhash, a classifier
    /// bound to its pin, test-run once per key.
    PerSocket(Vec<Ebpf>),
}

impl<'a> DrainCheck<'a> {
    /// Loads the check for `sockhashes`, each open and pinned (the
    /// per-socket probe binds to the pin, and is refused unless the pin is
    /// that very map).
    ///
    /// Cookies are unique per boot, so one [`Scope`] serves every sockhash.
    ///
    /// `ACCEL_DRAIN_CHECK=iterator|per-socket` forces one method (to compare
    /// them, or to test the fallback on kernels where the iterator loads);
    /// unset or `auto` tries the iterator first.
    pub fn load(sockhashes: &[(BorrowedFd<'a>, &Path)]) -> Result<Self, DrainError> {
        let fds = sockhashes.iter().map(|(fd, _)| *fd).collect();
        let btf = Btf::from_sys_fs().map_err(|e| DrainError::Btf(e.to_string()))?;
        let forced = std::env::var(DRAIN_CHECK_ENV).unwrap_or_default();
        let (walker, per_socket) = match forced.as_str() {
            "" | "auto" => (true, true),
            "iterator" => (true, false),
            "per-socket" => (false, true),
            other => {
                return Err(DrainError::Load(format!(
                    "{DRAIN_CHECK_ENV}={other:?}: use auto, iterator or per-socket"
                )));
            }
        };
        let walker_failed = if walker {
            match load_walker(&btf) {
                Ok(ebpf) => {
                    return Ok(DrainCheck {
                        how: How::Walker(ebpf),
                        sockhashes: fds,
                    });
                }
                // One calm clause: the kernel's answer, not the verifier's
                // statistics (it refused before verifying anything).
                Err(e) => {
                    let text = e.to_string();
                    text.split(". Verifier output")
                        .next()
                        .unwrap_or(&text)
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .collect::<Vec<_>>()
                        .join("; ")
                }
            }
        } else {
            format!("not tried ({DRAIN_CHECK_ENV}={forced})")
        };
        if !per_socket {
            return Err(DrainError::Load(format!("iter/sockmap: {walker_failed}")));
        }
        let probes = sockhashes
            .iter()
            .map(|(fd, pin)| load_per_socket(&btf, *fd, pin))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                DrainError::Load(format!(
                    "iter/sockmap: {walker_failed}; per-socket probe: {e}"
                ))
            })?;
        // Expected on kernels that refuse tracing programs: the per-socket
        // check gives the same guarantee, one test run per socket.
        tracing::info!(
            kernel_said = %walker_failed,
            "drain check: this kernel has no sockhash iterator for us, so receive queues \
             are checked socket by socket (same guarantee, slower on many sockets)"
        );
        Ok(DrainCheck {
            how: How::PerSocket(probes),
            sockhashes: fds,
        })
    }

    /// The sockets in the sockhashes that still have unread redirected
    /// messages, among `scope`.
    ///
    /// The iterator reads the whole sockhash in one call, so it always
    /// covers every socket. The per-socket probe costs one
    /// `BPF_PROG_TEST_RUN` per socket; `Scope::Only` lets a caller re-check
    /// just the sockets that were pending, which on a node with tens of
    /// thousands of accelerated sockets is the difference between a drain
    /// that idles and one that keeps a core busy.
    pub fn pending(&self, scope: Scope<'_>) -> Result<Pass, DrainError> {
        let mut pending = Vec::new();
        match &self.how {
            How::Walker(ebpf) => {
                for sockhash in &self.sockhashes {
                    pending.extend(walk(ebpf, *sockhash)?);
                }
                Ok(Pass {
                    pending,
                    covered_every_socket: true,
                })
            }
            How::PerSocket(probes) => {
                let only = match scope {
                    Scope::Every => None,
                    Scope::Only(keys) => Some(keys),
                };
                for ebpf in probes {
                    pending.extend(probe(ebpf, only)?);
                }
                Ok(Pass {
                    pending,
                    covered_every_socket: only.is_none(),
                })
            }
        }
    }
}

/// Which sockets a drain check looks at.
#[derive(Clone, Copy, Debug)]
pub enum Scope<'a> {
    /// Every socket in the sockhash.
    Every,
    /// These cookies (sockets that were pending before); a cookie no longer
    /// in the sockhash counts as drained.
    Only(&'a [u64]),
}

/// One drain check's answer.
#[derive(Debug)]
pub struct Pass {
    /// Cookies of the sockets with unread redirected messages.
    pub pending: Vec<u64>,
    /// Whether every socket in the sockhash was looked at; only such a pass
    /// can prove the datapath drained.
    pub covered_every_socket: bool,
}

/// What polling the drain check concluded.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Two consecutive checks of every socket found nothing queued.
    Empty,
    /// This many sockets still held unread data at the last check of every
    /// socket, after the timeout.
    Pending(usize),
}

/// Runs `check` until two consecutive checks of every socket find nothing
/// pending (a sender that took its redirect decision just before
/// passthrough may still be queueing), or `timeout` passes.
///
/// Between full checks only the sockets still pending are re-checked: with
/// the per-socket probe a full check costs a test run per socket. Checks are
/// spaced by `min_interval`, or by the time the last one took if longer, so
/// a drain on a big node leaves the CPU mostly idle. After the timeout one
/// more full check gives the verdict and the count the operator is told.
pub fn poll(
    mut check: impl FnMut(Scope<'_>) -> Result<Pass, DrainError>,
    timeout: Duration,
    min_interval: Duration,
) -> Result<Verdict, DrainError> {
    let start = Instant::now();
    let mut full_empty_in_a_row = 0;
    // Sockets pending at the last check; None: look at every socket.
    let mut suspects: Option<Vec<u64>> = None;
    loop {
        let began = Instant::now();
        let pass = check(suspects.as_deref().map_or(Scope::Every, Scope::Only))?;
        if pass.pending.is_empty() {
            if pass.covered_every_socket {
                full_empty_in_a_row += 1;
                if full_empty_in_a_row >= 2 {
                    return Ok(Verdict::Empty);
                }
            }
            // The suspects drained: the next check looks at everyone again.
            suspects = None;
        } else {
            full_empty_in_a_row = 0;
            let late = start.elapsed() >= timeout;
            if late && pass.covered_every_socket {
                return Ok(Verdict::Pending(pass.pending.len()));
            }
            suspects = (!late).then_some(pass.pending);
        }
        std::thread::sleep(began.elapsed().max(min_interval));
    }
}

/// The program `name` of `ebpf` as its type.
fn program<'a, P>(ebpf: &'a Ebpf, name: &str) -> Result<&'a P, DrainError>
where
    &'a P: TryFrom<&'a aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program(name)
        .ok_or_else(|| DrainError::Load(format!("{name} missing from its object")))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| DrainError::Load(e.to_string()))
}

fn program_mut<'a, P>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut P, DrainError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| DrainError::Load(format!("{name} missing from its object")))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| DrainError::Load(e.to_string()))
}

fn load_walker(btf: &Btf) -> Result<Ebpf, DrainError> {
    let mut ebpf = EbpfLoader::new()
        .btf(Some(btf))
        .load(DRAIN_OBJ)
        .map_err(|e| DrainError::Load(e.to_string()))?;
    let iter: &mut Iter = program_mut(&mut ebpf, prog::DRAIN_CHECK)?;
    iter.load("sockmap", btf)
        .map_err(|e| DrainError::Load(e.to_string()))?;
    Ok(ebpf)
}

fn load_per_socket(
    btf: &Btf,
    sockhash: BorrowedFd<'_>,
    sockhash_pin: &Path,
) -> Result<Ebpf, DrainError> {
    // aya creates and pins a fresh map where no pin exists: never let the
    // probe look at an empty map of its own and call it drained.
    if !sockhash_pin.exists() {
        return Err(DrainError::Load(format!(
            "{} is not pinned",
            sockhash_pin.display()
        )));
    }
    let mut ebpf = EbpfLoader::new()
        .btf(Some(btf))
        .map_pin_path(map::SOCKHASH.name, sockhash_pin)
        .load(DRAIN_PROBE_OBJ)
        .map_err(|e| DrainError::Load(e.to_string()))?;
    let bound = ebpf
        .map(map::SOCKHASH.name)
        .ok_or_else(|| DrainError::Load("probe map missing".into()))
        .and_then(|m| map_id(sockhash_data(m)?))?;
    let wanted = sockhash
        .try_clone_to_owned()
        .map_err(DrainError::Run)
        .and_then(|fd| MapData::from_fd(fd).map_err(|e| DrainError::Load(e.to_string())))
        .and_then(|m| map_id(&m))?;
    if bound != wanted {
        return Err(DrainError::Load(format!(
            "{} is map {bound}, not the sockhash being drained (map {wanted})",
            sockhash_pin.display()
        )));
    }
    let probe: &mut SchedClassifier = program_mut(&mut ebpf, prog::DRAIN_PROBE)?;
    probe.load().map_err(|e| DrainError::Load(e.to_string()))?;
    Ok(ebpf)
}

fn sockhash_data(m: &aya::maps::Map) -> Result<&MapData, DrainError> {
    match m {
        aya::maps::Map::SockHash(d) => Ok(d),
        _ => Err(DrainError::Load(
            "the pinned sockhash is not a sockhash".into(),
        )),
    }
}

fn map_id(m: &MapData) -> Result<u32, DrainError> {
    m.info()
        .map(|i| i.id())
        .map_err(|e| DrainError::Load(e.to_string()))
}

fn walk(ebpf: &Ebpf, sockhash: BorrowedFd<'_>) -> Result<Vec<u64>, DrainError> {
    let iter: &Iter = program(ebpf, prog::DRAIN_CHECK)?;
    let prog_fd = iter
        .fd()
        .map_err(|e| DrainError::Load(e.to_string()))?
        .as_fd()
        .as_raw_fd();
    let link = link_create_sockmap_iter(prog_fd, sockhash.as_raw_fd()).map_err(DrainError::Run)?;
    let mut out = iter_create(&link).map_err(DrainError::Run)?;
    let mut buf = Vec::new();
    out.read_to_end(&mut buf).map_err(DrainError::Run)?;
    Ok(buf
        .chunks_exact(8)
        .map(|c| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8])))
        .collect())
}

/// Test-runs the probe for each key of the sockhash, or for `only`.
fn probe(ebpf: &Ebpf, only: Option<&[u64]>) -> Result<Vec<u64>, DrainError> {
    let run_err = |e: String| DrainError::Run(std::io::Error::other(e));
    let sockhash: SockHash<&MapData, u64> = ebpf
        .map(map::SOCKHASH.name)
        .ok_or_else(|| DrainError::Load("probe map missing".into()))
        .and_then(|m| SockHash::try_from(m).map_err(|e| DrainError::Load(e.to_string())))?;
    let probe: &SchedClassifier = program(ebpf, prog::DRAIN_PROBE)?;
    let keys: Box<dyn Iterator<Item = Result<u64, aya::maps::MapError>>> = match only {
        Some(keys) => Box::new(keys.iter().copied().map(Ok)),
        None => Box::new(sockhash.keys()),
    };
    let mut pending = Vec::new();
    for key in keys {
        // A key that vanishes mid-walk is a socket that closed: the walk
        // goes on; any other error ends it (nothing proven). A cookie given
        // in `only` that has gone answers GONE below.
        let key = match key {
            Ok(k) => k,
            Err(aya::maps::MapError::KeyNotFound) => continue,
            Err(e) => return Err(run_err(format!("listing the sockhash: {e}"))),
        };
        let packet = drain_probe::packet(key);
        let verdict = probe
            .test_run(TestRunOptions {
                data_in: Some(&packet),
                ..TestRunOptions::default()
            })
            .map_err(|e| run_err(format!("test run: {e}")))?
            .return_value;
        match verdict {
            drain_probe::EMPTY | drain_probe::GONE => {}
            drain_probe::PENDING => pending.push(key),
            other => {
                return Err(run_err(format!(
                    "the probe could not read socket {key:#x} (verdict {other})"
                )));
            }
        }
    }
    Ok(pending)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A drain check played from a script: each call answers the next list
    /// of pending sockets and records the scope it was asked for. Like the
    /// real ones, the iterator always covers every socket and the
    /// per-socket probe covers what it is asked.
    struct Scripted {
        iterator: bool,
        answers: Vec<Vec<u64>>,
        asked: Vec<Option<Vec<u64>>>,
    }

    impl Scripted {
        fn new(iterator: bool, answers: &[&[u64]]) -> Self {
            Scripted {
                iterator,
                answers: answers.iter().map(|p| p.to_vec()).collect(),
                asked: Vec::new(),
            }
        }

        fn check(&mut self, scope: Scope<'_>) -> Result<Pass, DrainError> {
            let asked = match scope {
                Scope::Every => None,
                Scope::Only(k) => Some(k.to_vec()),
            };
            let covered_every_socket = self.iterator || asked.is_none();
            self.asked.push(asked);
            Ok(Pass {
                pending: self.answers.remove(0),
                covered_every_socket,
            })
        }
    }

    const NO_WAIT: Duration = Duration::ZERO;
    const FOREVER: Duration = Duration::from_secs(3600);

    #[test]
    fn only_the_pending_sockets_are_rechecked_until_they_drain() {
        let mut s = Scripted::new(false, &[&[7, 9], &[9], &[], &[], &[]]);
        let v = poll(|sc| s.check(sc), FOREVER, NO_WAIT);
        assert_eq!(v.ok(), Some(Verdict::Empty));
        // After the suspects drained, two full checks (not one) prove it.
        assert_eq!(
            s.asked,
            vec![None, Some(vec![7, 9]), Some(vec![9]), None, None]
        );
    }

    #[test]
    fn a_late_sender_between_full_checks_restarts_the_proof() {
        let mut s = Scripted::new(false, &[&[], &[3], &[], &[], &[]]);
        let v = poll(|sc| s.check(sc), FOREVER, NO_WAIT);
        assert_eq!(v.ok(), Some(Verdict::Empty));
        assert_eq!(s.asked, vec![None, None, Some(vec![3]), None, None]);
    }

    #[test]
    fn with_the_iterator_every_check_counts_as_full() {
        let mut s = Scripted::new(true, &[&[5], &[], &[]]);
        let v = poll(|sc| s.check(sc), FOREVER, NO_WAIT);
        assert_eq!(v.ok(), Some(Verdict::Empty));
        assert_eq!(s.asked.len(), 3);
    }

    #[test]
    fn after_the_timeout_a_full_check_counts_what_is_pending() {
        // Before the timeout: socket 1 pending. After it, the re-check of
        // socket 1 alone gives no verdict; the full check after it does,
        // and sees the late ones too.
        let mut s = Scripted::new(false, &[&[1], &[1], &[1, 2, 3]]);
        let v = poll(
            |sc| s.check(sc),
            Duration::from_millis(20),
            Duration::from_millis(30),
        );
        assert_eq!(v.ok(), Some(Verdict::Pending(3)));
        assert_eq!(s.asked, vec![None, Some(vec![1]), None]);
    }

    #[test]
    fn a_failed_check_ends_the_wait_unproven() {
        let mut calls = 0;
        let r = poll(
            |_| {
                calls += 1;
                Err(DrainError::Run(std::io::Error::other("probe refused")))
            },
            FOREVER,
            NO_WAIT,
        );
        assert!(matches!(r, Err(DrainError::Run(_))));
        assert_eq!(calls, 1);
    }
}
