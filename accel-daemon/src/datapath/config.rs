//! The config slot of a live datapath: reading it, and the setters for
//! the mode and each knob, which write only what changed.

use accel_bpf::{
    abi::{self, Config},
    map,
};

use super::{Datapath, DatapathError, map_err, maps::elem_err};
use crate::bpf_sys;

impl Datapath {
    fn config(&self) -> Result<Config, DatapathError> {
        bpf_sys::map_lookup(self.fd(&map::CONFIG)?, &0u32)
            .map_err(|e| elem_err("reading", &map::CONFIG, e))?
            .ok_or_else(|| map_err(format!("{} has no slot 0", map::CONFIG.name)))
    }

    /// Changes the config slot, writing it only when `change` changed it.
    fn change_config(&mut self, change: impl FnOnce(&mut Config)) -> Result<(), DatapathError> {
        let old = self.config()?;
        let mut new = old;
        change(&mut new);
        if new != old {
            self.insert(&map::CONFIG, 0, new)?;
        }
        Ok(())
    }

    pub fn mode(&self) -> Result<u32, DatapathError> {
        Ok(self.config()?.mode)
    }

    pub fn set_mode(&mut self, mode: u32) -> Result<(), DatapathError> {
        self.change_config(|c| c.mode = mode)
    }

    /// Flow control budget in bytes (0 turns flow control off).
    pub fn set_flow_budget(&mut self, bytes: u32) -> Result<(), DatapathError> {
        self.change_config(|c| c.flow_budget = bytes)
    }

    /// Loopback takes part only in the namespaces of meshed pods (a node)
    /// or in every namespace (a standalone host).
    pub fn set_loopback_meshed_only(&mut self, on: bool) -> Result<(), DatapathError> {
        self.change_config(|c| {
            if on {
                c.flags |= abi::CFG_LOOPBACK_MESHED_ONLY;
            } else {
                c.flags &= !abi::CFG_LOOPBACK_MESHED_ONLY;
            }
        })
    }

    /// Writers whose messages are all under this size, to a proxy whose
    /// reader is behind, leave for TCP (0: never).
    pub fn set_stream_small_bytes(&mut self, bytes: u32) -> Result<(), DatapathError> {
        self.change_config(|c| c.stream_small_bytes = bytes)
    }

    /// Short closes in a row to one destination after which its new
    /// connections stay on TCP, all but probes (0: never).
    pub fn set_short_lived_after(&mut self, closes: u32) -> Result<(), DatapathError> {
        self.change_config(|c| c.short_lived_after = closes)
    }

    /// Owner uid of the sidecar proxy's sockets (proxy-only pods).
    pub fn set_proxy_uid(&mut self, uid: u32) -> Result<(), DatapathError> {
        self.change_config(|c| c.proxy_uid = uid)
    }

    /// `EP_*` flags of loopback in namespaces no pod source listed: the
    /// node's `--pod-acceleration` on a host without a pod source.
    pub fn set_default_ep_flags(&mut self, flags: u32) -> Result<(), DatapathError> {
        self.change_config(|c| c.default_ep_flags = flags)
    }
}
