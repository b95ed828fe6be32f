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

/// A loaded drain check, reusable for repeated checks of one sockhash.
pub struct DrainCheck {
    how: How,
}

enum How {
    /// `iter/sockmap` walks the sockhash in one read.
    Walker(Ebpf),
    /// Kernels that refuse tracing programs: a classifier bound to the
    /// pinned sockhash, test-run once per key.
    PerSocket(Ebpf),
}

impl DrainCheck {
    /// Loads the check for the sockhash open as `sockhash` and pinned at
    /// `sockhash_pin` (the per-socket probe binds to the pin, and is refused
    /// unless the pin is that very map).
    ///
    /// `ACCEL_DRAIN_CHECK=iterator|per-socket` forces one method (to compare
    /// them, or to test the fallback on kernels where the iterator loads);
    /// unset or `auto` tries the iterator first.
    pub fn load(sockhash: BorrowedFd<'_>, sockhash_pin: &Path) -> Result<Self, DrainError> {
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
                    });
                }
                // The verifier's log comes in several lines: one log line.
                Err(e) => e
                    .to_string()
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join("; "),
            }
        } else {
            format!("not tried ({DRAIN_CHECK_ENV}={forced})")
        };
        if !per_socket {
            return Err(DrainError::Load(format!("iter/sockmap: {walker_failed}")));
        }
        let ebpf = load_per_socket(&btf, sockhash, sockhash_pin).map_err(|e| {
            DrainError::Load(format!(
                "iter/sockmap: {walker_failed}; per-socket probe: {e}"
            ))
        })?;
        tracing::info!(
            walker = %walker_failed,
            "iter/sockmap unavailable; checking receive queues socket by socket"
        );
        Ok(DrainCheck {
            how: How::PerSocket(ebpf),
        })
    }

    /// Cookies of the sockets in `sockhash` that still have unread
    /// redirected messages.
    pub fn pending(&self, sockhash: BorrowedFd<'_>) -> Result<Vec<u64>, DrainError> {
        match &self.how {
            How::Walker(ebpf) => walk(ebpf, sockhash),
            How::PerSocket(ebpf) => probe_each(ebpf),
        }
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
        .map_pin_path(map::SOCKHASH, sockhash_pin)
        .load(DRAIN_PROBE_OBJ)
        .map_err(|e| DrainError::Load(e.to_string()))?;
    let bound = ebpf
        .map(map::SOCKHASH)
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

fn probe_each(ebpf: &Ebpf) -> Result<Vec<u64>, DrainError> {
    let run_err = |e: String| DrainError::Run(std::io::Error::other(e));
    let sockhash: SockHash<&MapData, u64> = ebpf
        .map(map::SOCKHASH)
        .ok_or_else(|| DrainError::Load("probe map missing".into()))
        .and_then(|m| SockHash::try_from(m).map_err(|e| DrainError::Load(e.to_string())))?;
    let probe: &SchedClassifier = program(ebpf, prog::DRAIN_PROBE)?;
    let mut pending = Vec::new();
    for key in sockhash.keys() {
        // A key that vanishes mid-walk is a socket that closed: the walk
        // goes on; any other error ends it (nothing proven).
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
