//! Proof that nothing is queued before the datapath goes away.
//!
//! Removing a socket from the sockhash frees the messages still queued on
//! its ingress list (the defect that makes other sockmap products lose data
//! on uninstall). The drain check runs an `iter/sockmap` program over the
//! sockhash and lists the sockets whose ingress queue is not empty.
//!
//! aya attaches iterators without parameters, and a sockmap iterator needs
//! the map, so the link is created with a raw bpf(2) call (see bpf_sys).

use std::{
    io::Read,
    os::fd::{AsFd, AsRawFd, BorrowedFd},
};

use accel_bpf::{DRAIN_OBJ, prog};

use crate::bpf_sys::{iter_create, link_create_sockmap_iter};
use aya::{Btf, Ebpf, EbpfLoader, programs::Iter};
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

/// A loaded drain-check program, reusable for repeated checks.
pub struct DrainCheck {
    ebpf: Ebpf,
}

impl DrainCheck {
    pub fn load() -> Result<Self, DrainError> {
        let btf = Btf::from_sys_fs().map_err(|e| DrainError::Btf(e.to_string()))?;
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .load(DRAIN_OBJ)
            .map_err(|e| DrainError::Load(e.to_string()))?;
        let iter: &mut Iter = ebpf
            .program_mut(prog::DRAIN_CHECK)
            .ok_or_else(|| DrainError::Load("drain program missing".into()))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| DrainError::Load(e.to_string()))?;
        iter.load("sockmap", &btf)
            .map_err(|e| DrainError::Load(e.to_string()))?;
        Ok(DrainCheck { ebpf })
    }

    /// Cookies of the sockets in `sockhash` that still have unread
    /// redirected messages.
    pub fn pending(&self, sockhash: BorrowedFd<'_>) -> Result<Vec<u64>, DrainError> {
        let iter: &Iter = self
            .ebpf
            .program(prog::DRAIN_CHECK)
            .ok_or_else(|| DrainError::Load("drain program missing".into()))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| DrainError::Load(e.to_string()))?;
        let prog_fd = iter
            .fd()
            .map_err(|e| DrainError::Load(e.to_string()))?
            .as_fd()
            .as_raw_fd();
        let link =
            link_create_sockmap_iter(prog_fd, sockhash.as_raw_fd()).map_err(DrainError::Run)?;
        let mut out = iter_create(&link).map_err(DrainError::Run)?;
        let mut buf = Vec::new();
        out.read_to_end(&mut buf).map_err(DrainError::Run)?;
        Ok(buf
            .chunks_exact(8)
            .map(|c| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8])))
            .collect())
    }
}
