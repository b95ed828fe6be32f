//! The pins of a live datapath: opening and validating them (adoption),
//! the sock_ops link they hold, pinning again what someone removed, and
//! removing a pin directory.

use std::{fs, path::Path};

use accel_bpf::{abi, map, prog};
use aya::{
    maps::MapData,
    programs::{
        links::{FdLink, LinkType, PinnedLink},
        loaded_programs,
    },
};

use super::{Datapath, DatapathError, LINK_PIN, map_err};

/// Removes a pin directory and everything pinned in it.
pub fn remove_pin_dir(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if let Err(e) = fs::remove_file(entry.path()) {
                tracing::warn!(path = %entry.path().display(), error = %e, "removing pin");
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

impl Datapath {
    /// Opens and validates an existing pinned datapath (adoption).
    pub fn open(pin_dir: &Path) -> Result<Self, DatapathError> {
        let foreign = |detail: String| DatapathError::Foreign {
            dir: pin_dir.into(),
            abi: abi::ABI_VERSION,
            detail,
        };
        // Type, key and value size of every map: checked because the kernel
        // happily hands back any map at a pin path.
        let mut maps = Vec::new();
        for def in map::ALL {
            let (name, ty, key, value) = (def.name, def.kind, def.key_size, def.value_size);
            let path = pin_dir.join(name);
            let data =
                MapData::from_pin(&path).map_err(|e| foreign(format!("map pin {name}: {e}")))?;
            let info = data
                .info()
                .map_err(|e| foreign(format!("map {name}: {e}")))?;
            let got_ty = info
                .map_type()
                .map_err(|e| foreign(format!("map {name}: {e}")))?;
            if got_ty != ty || info.key_size() != key || info.value_size() != value {
                return Err(foreign(format!(
                    "map {name} is {got_ty:?} key {} value {}, expected {ty:?} key {key} value {value}",
                    info.key_size(),
                    info.value_size()
                )));
            }
            maps.push((def, data, info));
        }
        let link = PinnedLink::from_pin(pin_dir.join(LINK_PIN))
            .map_err(|e| foreign(format!("link pin {LINK_PIN}: {e}")))?;
        let info = FdLink::from(link).info();
        // from(link) consumed the pinned handle; reopen (cheap) to keep one.
        let link = PinnedLink::from_pin(pin_dir.join(LINK_PIN))
            .map_err(|e| foreign(format!("link pin {LINK_PIN}: {e}")))?;
        let info = info.map_err(|e| foreign(format!("link {LINK_PIN}: {e}")))?;
        match info.link_type() {
            Ok(LinkType::Cgroup) => {}
            other => {
                return Err(foreign(format!(
                    "link {LINK_PIN} is {other:?}, expected a cgroup link"
                )));
            }
        }
        let prog_name = loaded_programs()
            .flatten()
            .find(|p| p.id() == info.program_id())
            .and_then(|p| p.name_as_str().map(str::to_owned))
            .unwrap_or_default();
        if !prog::SOCKOPS.starts_with(&prog_name) || prog_name.is_empty() {
            return Err(foreign(format!(
                "link {LINK_PIN} runs program {prog_name:?}, expected {}",
                prog::SOCKOPS
            )));
        }

        Ok(Datapath {
            pin_dir: pin_dir.into(),
            maps,
            link: Some(link),
            link_unpinned: None,
            link_program_id: info.program_id(),
        })
    }

    pub fn link_program_id(&self) -> u32 {
        self.link_program_id
    }

    pub(super) fn link_program_link_id(&self, link: &FdLink) -> Result<u32, DatapathError> {
        link.info()
            .map(|i| i.id())
            .map_err(|e| map_err(format!("reading the sock_ops link: {e}")))
    }

    /// Someone removed this datapath on purpose: `accel-daemon unload`, or
    /// a daemon of a newer version retiring it. Both switch it to
    /// passthrough before unpinning; lost pins with the datapath still
    /// accelerating are an accident, which `restore_pins` repairs.
    pub fn removed_on_purpose(&self) -> bool {
        !self.pin_dir.join(LINK_PIN).exists()
            && self.mode().is_ok_and(|m| m == abi::MODE_PASSTHROUGH)
    }

    /// Pins again whatever someone removed (a pin file, the directory, or
    /// the whole bpffs mount) from the handles this daemon holds: without
    /// the pins, the datapath would go away when the daemon exits. Returns
    /// the names re-pinned.
    pub fn restore_pins(&mut self) -> Result<Vec<String>, DatapathError> {
        let link_path = self.pin_dir.join(LINK_PIN);
        let missing: Vec<&str> = self
            .maps
            .iter()
            .map(|(def, ..)| def.name)
            .filter(|n| !self.pin_dir.join(n).exists())
            .collect();
        let link_missing = !link_path.exists();
        if missing.is_empty() && !link_missing {
            return Ok(Vec::new());
        }
        crate::host::ensure_bpffs(&self.pin_dir, true).map_err(|e| map_err(e.to_string()))?;
        fs::create_dir_all(&self.pin_dir).map_err(|e| DatapathError::Pin {
            dir: self.pin_dir.clone(),
            detail: e.to_string(),
        })?;
        let mut restored = Vec::new();
        for (def, data, _) in &self.maps {
            let name = def.name;
            if missing.contains(&name) {
                data.pin(self.pin_dir.join(name))
                    .map_err(|e| DatapathError::Pin {
                        dir: self.pin_dir.clone(),
                        detail: format!("{name}: {e}"),
                    })?;
                restored.push(name.to_string());
            }
        }
        if link_missing {
            // Not PinnedLink::unpin(): that closes the link when the file is
            // already gone, which would detach sock_ops.
            let Some(pinned) = self.link.take() else {
                return Err(map_err(format!(
                    "{LINK_PIN} could not be pinned earlier; the link stays attached while the daemon runs"
                )));
            };
            let fd_link = FdLink::from(pinned);
            // FdLink::pin consumes the link and closes it on failure, which
            // would detach sock_ops: hold a second reference meanwhile.
            let keep = fd_link
                .info()
                .ok()
                .and_then(|i| crate::bpf_sys::link_fd_by_id(i.id()).ok());
            match fd_link.pin(&link_path) {
                Ok(pinned) => {
                    self.link = Some(pinned);
                    restored.push(LINK_PIN.to_string());
                }
                Err(e) => {
                    self.link_unpinned = keep;
                    return Err(DatapathError::Pin {
                        dir: self.pin_dir.clone(),
                        detail: format!(
                            "{LINK_PIN}: {e} (the link stays attached while the daemon runs)"
                        ),
                    });
                }
            }
        }
        Ok(restored)
    }
}
