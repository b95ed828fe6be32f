//! Removing a datapath without losing queued data: passthrough, the
//! drain wait, detach and unpin; and retiring datapaths of other ABI
//! versions found next to ours.

use std::{
    fs,
    os::fd::{AsFd, BorrowedFd},
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use accel_bpf::{
    abi,
    map::{self, Cleanup, MapDef},
};
use aya::{
    maps::{MapData, MapType},
    programs::links::{Link, PinnedLink},
};

use super::{
    Datapath, DatapathError, LINK_PIN, install::detach_quietly, map_err, maps::count_keys,
    remove_pin_dir,
};

impl Datapath {
    /// Each sockhash with its pin, for the drain check.
    fn sockhashes(&self) -> Vec<(BorrowedFd<'_>, PathBuf)> {
        self.drained()
            .map(|(def, fd)| (fd, self.pin_dir.join(def.name)))
            .collect()
    }

    /// The maps drained before unload (the sockhashes), open.
    fn drained(&self) -> impl Iterator<Item = (&'static MapDef, BorrowedFd<'_>)> {
        self.maps
            .iter()
            .filter(|(def, ..)| def.cleanup == Cleanup::Drain)
            .map(|(def, data, _)| (*def, data.fd().as_fd()))
    }

    /// Stops recording and redirecting, waits until every receive queue the
    /// datapath filled has been read, then detaches and unpins. Sockets keep
    /// working over TCP. If readers do not catch up within `timeout`, the
    /// datapath is left attached in passthrough (nothing new is accelerated,
    /// nothing is lost) and an error says so, unless `force` is set.
    pub fn unload(mut self, timeout: Duration, force: bool) -> Result<UnloadReport, DatapathError> {
        // 1. Passthrough: sock_ops records nothing new; sk_msg switches every
        //    socket to TCP at its next send (order-safe, see datapath.bpf.c).
        self.set_mode(abi::MODE_PASSTHROUGH)?;
        // 2. Drain: removing a socket from the sockhash frees what is still
        //    queued on it, so wait until the drain check sees no queue.
        let start = Instant::now();
        let outcome = wait_for_empty_queues(&self.sockhashes(), timeout);
        let drain_proven = matches!(outcome, Drained::Proven);
        match outcome {
            Drained::Proven => {}
            Drained::Unproven(why) => {
                tracing::warn!(%why, "cannot inspect receive queues; waited {timeout:?} instead");
            }
            Drained::Pending(n) if force => {
                tracing::warn!(
                    sockets = n,
                    "--force: removing the datapath with unread data queued"
                );
            }
            Drained::Pending(n) => {
                return Err(DatapathError::Map(format!(
                    "{n} sockets still hold redirected data their applications have not read \
                     after {timeout:?}; nothing was lost: the datapath is in passthrough (no new \
                     acceleration) and stays pinned. Run unload again later, or add --force to \
                     remove it now and discard that data"
                )));
            }
        }
        // 3. Detach sock_ops.
        let link = self
            .link
            .take()
            .ok_or_else(|| map_err("sock_ops link already released"))?;
        let fd_link = link
            .unpin()
            .map_err(|e| map_err(format!("unpinning {LINK_PIN}: {e}")))?;
        // Detach for every holder, not only our fd: a daemon still running
        // holds the link too.
        crate::bpf_sys::link_detach_by_id(self.link_program_link_id(&fd_link)?)
            .map_err(|e| map_err(format!("detaching sock_ops: {e}")))?;
        fd_link
            .detach()
            .map_err(|e| map_err(format!("detaching sock_ops: {e}")))?;
        let sockets_left = self
            .drained()
            .filter_map(|(def, fd)| count_keys(fd, def.key_size))
            .sum();
        // 4. Unpin: the last reference to the maps goes with the pins.
        let dir = self.pin_dir.clone();
        drop(self);
        remove_pin_dir(&dir);
        if dir.exists() {
            return Err(map_err(format!(
                "{} still exists after unload: remove it by hand",
                dir.display()
            )));
        }
        Ok(UnloadReport {
            drained_for: start.elapsed(),
            sockets_released: sockets_left,
            drain_proven,
        })
    }
}

enum Drained {
    /// The drain check saw every ingress queue empty, twice in a row.
    Proven,
    /// The check could not run (no kernel BTF, or neither an iterator nor
    /// the per-socket probe loads); waited the timeout instead.
    Unproven(String),
    /// Sockets with unread data after the timeout.
    Pending(usize),
}

/// Loads the drain check for the sockhashes (open fd, pin) and polls it
/// (see [`crate::drain::poll`]).
fn wait_for_empty_queues(
    sockhashes: &[(std::os::fd::BorrowedFd<'_>, PathBuf)],
    timeout: Duration,
) -> Drained {
    use crate::drain::{DrainCheck, Scope, Verdict, poll};
    let pins: Vec<_> = sockhashes
        .iter()
        .map(|(fd, pin)| (*fd, pin.as_path()))
        .collect();
    let check = match DrainCheck::load(&pins) {
        Ok(c) => c,
        Err(e) => {
            thread::sleep(timeout.min(Duration::from_secs(5)));
            return Drained::Unproven(e.to_string());
        }
    };
    match poll(
        |scope: Scope<'_>| check.pending(scope),
        timeout,
        Duration::from_millis(50),
    ) {
        Ok(Verdict::Empty) => Drained::Proven,
        Ok(Verdict::Pending(n)) => Drained::Pending(n),
        Err(e) => Drained::Unproven(e.to_string()),
    }
}

#[derive(Debug)]
pub struct UnloadReport {
    pub drained_for: Duration,
    pub sockets_released: u64,
    /// The drain check proved every receive queue empty before unpinning.
    pub drain_proven: bool,
}

/// Datapaths of other ABI versions next to ours (e.g. `../v0` when we are
/// `v1`), found so an upgrade can retire them cleanly.
pub fn other_versions(pin_dir: &Path) -> Vec<PathBuf> {
    let Some(root) = pin_dir.parent() else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p != pin_dir
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('v') && n[1..].parse::<u32>().is_ok())
                && p.join(LINK_PIN).exists()
        })
        .collect()
}

/// Retires a datapath of another ABI version: passthrough if its config
/// map looks like ours, wait for its receive queues like `unload` does,
/// detach its link, unpin. Returns false (and leaves it in place, in
/// passthrough) when readers did not catch up: it is retried at the next
/// start rather than losing their data.
pub fn retire_foreign(dir: &Path, timeout: Duration, force: bool) -> bool {
    use std::os::fd::AsFd;
    // Its config may be of another size: `mode` is the first field in
    // every ABI version, so only that is written.
    let config_path = dir.join(map::CONFIG.name);
    if let Ok(data) = MapData::from_pin(&config_path)
        && let Ok(info) = data.info()
        && info.map_type().ok() == Some(MapType::Array)
        && let Err(e) = crate::bpf_sys::array_slot0_set_first_u32(
            &data.fd().as_fd(),
            info.value_size(),
            abi::MODE_PASSTHROUGH,
        )
    {
        tracing::warn!(dir = %dir.display(), error = %e, "could not switch the old datapath to passthrough");
    }
    // Older versions have only some of our sockhashes.
    let sockhashes: Vec<(MapData, PathBuf)> = map::drained()
        .map(|m| dir.join(m.name))
        .filter_map(|pin| MapData::from_pin(&pin).ok().map(|data| (data, pin)))
        .filter(|(data, _)| data.info().and_then(|i| i.map_type()).ok() == Some(MapType::SockHash))
        .collect();
    let borrowed: Vec<_> = sockhashes
        .iter()
        .map(|(data, pin)| (data.fd().as_fd(), pin.clone()))
        .collect();
    if !borrowed.is_empty()
        && let Drained::Pending(n) = wait_for_empty_queues(&borrowed, timeout)
        && !force
    {
        tracing::warn!(
            dir = %dir.display(),
            sockets = n,
            "old datapath keeps sockets with unread data: left in passthrough, retried at next start"
        );
        return false;
    }
    if let Ok(link) = PinnedLink::from_pin(dir.join(LINK_PIN)) {
        detach_quietly(link);
    }
    remove_pin_dir(dir);
    tracing::info!(dir = %dir.display(), "retired datapath");
    true
}
