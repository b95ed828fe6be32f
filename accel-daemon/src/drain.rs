//! Proof that nothing is queued before the datapath goes away.
//!
//! Removing a socket from the sockhash frees the messages still queued on
//! its ingress list (the defect that makes other sockmap products lose data
//! on uninstall). The drain check runs an `iter/sockmap` program over the
//! sockhash and lists the sockets whose ingress queue is not empty.
//!
//! aya attaches iterators without parameters, and a sockmap iterator needs
//! the map, so the link is created with the raw bpf(2) call here.

use std::{
    fs::File,
    io::Read,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
};

use accel_bpf::{DRAIN_OBJ, prog};
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

// From <linux/bpf.h>: stable UAPI numbers.
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_ITER_CREATE: libc::c_long = 33;
const BPF_TRACE_ITER: u32 = 28;

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

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> std::io::Result<OwnedFd> {
    // SAFETY: attr is a zero-initialised bpf_attr of sufficient size; the
    // kernel reads only the fields of `cmd` and checks the rest are zero.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len() as u32) };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: on success both commands return a new file descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as i32) })
}

fn link_create_sockmap_iter(prog_fd: i32, map_fd: i32) -> std::io::Result<OwnedFd> {
    // union bpf_iter_link_info { struct { __u32 map_fd; } map; ... }
    let link_info: [u32; 2] = [map_fd as u32, 0];
    let mut attr = [0u8; 128];
    // link_create: prog_fd @0, target_fd @4, attach_type @8, flags @12,
    // iter_info (u64 pointer) @16, iter_info_len @24.
    attr[0..4].copy_from_slice(&(prog_fd as u32).to_ne_bytes());
    attr[8..12].copy_from_slice(&BPF_TRACE_ITER.to_ne_bytes());
    attr[16..24].copy_from_slice(&(link_info.as_ptr() as u64).to_ne_bytes());
    attr[24..28].copy_from_slice(&(std::mem::size_of_val(&link_info) as u32).to_ne_bytes());
    bpf(BPF_LINK_CREATE, &mut attr)
}

fn iter_create(link: &OwnedFd) -> std::io::Result<File> {
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(link.as_raw_fd() as u32).to_ne_bytes());
    bpf(BPF_ITER_CREATE, &mut attr).map(File::from)
}
