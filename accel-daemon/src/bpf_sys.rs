//! The few bpf(2) commands aya 0.14 does not expose, as raw calls: links,
//! iterators, and element access typed by the caller for any keyed map
//! (aya offers it once per map type, each with its own key conventions).

use std::{
    fs::File,
    io,
    mem::size_of,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
};

use aya::Pod;

// From <linux/bpf.h>: stable UAPI numbers.
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
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

/// One element command: map_fd @0, key @8, value or next_key @16, flags @24.
fn elem(cmd: libc::c_long, map: BorrowedFd<'_>, key: *const u8, out: *mut u8) -> io::Result<()> {
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(map.as_raw_fd() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(key as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(out as u64).to_ne_bytes());
    // SAFETY: the callers pass a key and a value buffer of the map's sizes
    // (or null where the command allows) that outlive the call; these
    // commands return 0 or -1.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len() as u32) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn zeroed<T: Pod>() -> T {
    // SAFETY: Pod types are plain integers and arrays: all zeroes is a value.
    unsafe { std::mem::zeroed() }
}

fn gone(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOENT)
}

/// Every key of `map` (a key deleted during the walk restarts it at the
/// first key: the kernel's rule, as with aya's iterators).
pub fn map_keys<K: Pod>(map: BorrowedFd<'_>) -> io::Result<Vec<K>> {
    let mut keys: Vec<K> = Vec::new();
    loop {
        let mut next = zeroed::<K>();
        let prev = keys
            .last()
            .map_or(std::ptr::null(), |k| (k as *const K).cast());
        match elem(
            BPF_MAP_GET_NEXT_KEY,
            map,
            prev,
            (&mut next as *mut K).cast(),
        ) {
            Ok(()) => keys.push(next),
            Err(e) if gone(&e) => return Ok(keys),
            Err(e) => return Err(e),
        }
    }
}

/// How many keys `map` holds, whatever their type.
pub fn map_count(map: BorrowedFd<'_>, key_size: u32) -> io::Result<u64> {
    let mut prev: Option<Vec<u8>> = None;
    let mut n = 0;
    loop {
        let mut next = vec![0u8; key_size as usize];
        let at = prev.as_ref().map_or(std::ptr::null(), |p| p.as_ptr());
        match elem(BPF_MAP_GET_NEXT_KEY, map, at, next.as_mut_ptr()) {
            Ok(()) => {
                n += 1;
                prev = Some(next);
            }
            Err(e) if gone(&e) => return Ok(n),
            Err(e) => return Err(e),
        }
    }
}

/// The value at `key`, `None` if there is none.
pub fn map_lookup<K: Pod, V: Pod>(map: BorrowedFd<'_>, key: &K) -> io::Result<Option<V>> {
    let mut value = zeroed::<V>();
    match elem(
        BPF_MAP_LOOKUP_ELEM,
        map,
        (key as *const K).cast(),
        (&mut value as *mut V).cast(),
    ) {
        Ok(()) => Ok(Some(value)),
        Err(e) if gone(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Each CPU's value at `key` in a per-CPU map, `None` if there is none.
pub fn map_lookup_per_cpu<K: Pod, V: Pod>(
    map: BorrowedFd<'_>,
    key: &K,
    cpus: usize,
) -> io::Result<Option<Vec<V>>> {
    // The kernel copies one slot per possible CPU, each rounded up to 8.
    let stride = size_of::<V>().next_multiple_of(8);
    let mut buf = vec![0u8; stride * cpus];
    match elem(
        BPF_MAP_LOOKUP_ELEM,
        map,
        (key as *const K).cast(),
        buf.as_mut_ptr(),
    ) {
        Ok(()) => Ok(Some(
            buf.chunks_exact(stride)
                // SAFETY: each chunk holds at least size_of::<V>() bytes,
                // and V is Pod.
                .map(|c| unsafe { std::ptr::read_unaligned(c.as_ptr().cast::<V>()) })
                .collect(),
        )),
        Err(e) if gone(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Creates or replaces the value at `key` (BPF_ANY).
pub fn map_update<K: Pod, V: Pod>(map: BorrowedFd<'_>, key: &K, value: &V) -> io::Result<()> {
    elem(
        BPF_MAP_UPDATE_ELEM,
        map,
        (key as *const K).cast(),
        (value as *const V).cast_mut().cast(),
    )
}

/// Deletes `key`; a key already gone is no error.
pub fn map_delete<K: Pod>(map: BorrowedFd<'_>, key: &K) -> io::Result<()> {
    match elem(
        BPF_MAP_DELETE_ELEM,
        map,
        (key as *const K).cast(),
        std::ptr::null_mut(),
    ) {
        Err(e) if gone(&e) => Ok(()),
        r => r,
    }
}
