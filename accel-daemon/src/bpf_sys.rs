//! The few bpf(2) commands aya 0.14 does not expose, as raw calls.

use std::{
    fs::File,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

// From <linux/bpf.h>: stable UAPI numbers.
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
const BPF_ITER_CREATE: libc::c_long = 33;
const BPF_LINK_DETACH: libc::c_long = 34;
const BPF_TRACE_ITER: u32 = 28;

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> std::io::Result<OwnedFd> {
    // SAFETY: attr is a zero-initialised bpf_attr of sufficient size; the
    // kernel reads only the fields of `cmd` and checks the rest are zero.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len() as u32) };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: on success these commands return a new file descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as i32) })
}

/// An iterator link over one sockmap/sockhash (`iter/sockmap` programs).
pub fn link_create_sockmap_iter(prog_fd: i32, map_fd: i32) -> std::io::Result<OwnedFd> {
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

/// A readable instance of an iterator link.
pub fn iter_create(link: &OwnedFd) -> std::io::Result<File> {
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(link.as_raw_fd() as u32).to_ne_bytes());
    bpf(BPF_ITER_CREATE, &mut attr).map(File::from)
}

/// Another reference to a BPF link: while it is open the link stays.
pub fn link_fd_by_id(id: u32) -> std::io::Result<OwnedFd> {
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&id.to_ne_bytes());
    bpf(BPF_LINK_GET_FD_BY_ID, &mut attr)
}

/// Detaches a link from its hook for every holder: closing one fd only
/// detaches when it was the last reference, and a daemon still running
/// (an upgrade's old version, a daemon whose datapath `unload` removes)
/// holds another.
pub fn link_detach_by_id(id: u32) -> std::io::Result<()> {
    let link = link_fd_by_id(id)?;
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(link.as_raw_fd() as u32).to_ne_bytes());
    // SAFETY: as in `bpf`; BPF_LINK_DETACH returns 0 or -1, never an fd.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_DETACH,
            attr.as_mut_ptr(),
            attr.len() as u32,
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the first u32 of slot 0 of an array map to `value`, keeping the
/// rest of the slot: the `mode` of an `accel_config` of any ABI version
/// (its first field in every version), whose value size differs from ours.
pub fn array_slot0_set_first_u32(
    map: &impl AsRawFd,
    value_size: u32,
    value: u32,
) -> std::io::Result<()> {
    let key = 0u32;
    let mut slot = vec![0u8; value_size.max(4) as usize];
    let call = |cmd: libc::c_long, slot: &mut [u8]| -> std::io::Result<()> {
        let mut attr = [0u8; 128];
        // map_fd @0, key @8, value @16, flags @24 (BPF_ANY).
        attr[0..4].copy_from_slice(&(map.as_raw_fd() as u32).to_ne_bytes());
        attr[8..16].copy_from_slice(&(&key as *const u32 as u64).to_ne_bytes());
        attr[16..24].copy_from_slice(&(slot.as_mut_ptr() as u64).to_ne_bytes());
        // SAFETY: attr points at a key and a value buffer of the map's sizes
        // that outlive the call; these commands return 0 or -1.
        let ret =
            unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len() as u32) };
        if ret < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    call(BPF_MAP_LOOKUP_ELEM, &mut slot)?;
    slot[0..4].copy_from_slice(&value.to_ne_bytes());
    call(BPF_MAP_UPDATE_ELEM, &mut slot)
}
