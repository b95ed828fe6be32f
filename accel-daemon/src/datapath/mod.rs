//! The datapath on the node: install (load, attach, pin), adopt existing
//! pins after a restart, report, and remove without losing queued data.
//!
//! Pin layout under the versioned pin dir: one file per map (named as in
//! the object) plus `link_sockops`, the sock_ops cgroup link. The sk_msg
//! program is attached to the sockhash itself and lives as long as the map.
//!
//! By concern: `install.rs` loads, attaches and pins a fresh datapath;
//! `pins.rs` adopts existing pins and pins again what someone removed;
//! `maps.rs` reads and writes the maps; `programs.rs` reads what the kernel
//! counts of the programs; `config.rs` sets the config slot;
//! `unload.rs` drains and removes it, and retires other ABI versions.

use std::path::PathBuf;

use accel_bpf::map::MapDef;
use aya::{
    maps::{MapData, MapInfo},
    programs::links::PinnedLink,
};
use thiserror::Error;

mod config;
mod install;
mod maps;
mod pins;
mod programs;
mod unload;

pub use install::{InstallOptions, MapSizes, Variant, install};
pub use maps::MapUsage;
pub use pins::remove_pin_dir;
pub use programs::ProgramRuns;
pub use unload::{other_versions, retire_foreign};

pub const LINK_PIN: &str = "link_sockops";

#[derive(Debug, Error)]
pub enum DatapathError {
    #[error("loading the datapath into the kernel failed: {0}")]
    Load(String),
    #[error("attaching sock_ops to cgroup {cgroup}: {detail}")]
    Attach { cgroup: PathBuf, detail: String },
    #[error("pinning under {dir}: {detail}")]
    Pin { dir: PathBuf, detail: String },
    #[error(
        "pin dir {dir} holds something that is not a datapath of ABI v{abi}: {detail}. \
         Remove it with `accel-daemon unload --pin-dir {dir}` (or delete the directory) and start again"
    )]
    Foreign {
        dir: PathBuf,
        abi: u32,
        detail: String,
    },
    #[error("self-test failed: {0}")]
    SelfTest(String),
    #[error(
        "flow control cannot load on this kernel ({0}); without it redirected bytes are \
         not bounded by the reader and an unload cannot prove receive queues drained, so \
         this node runs unaccelerated. Use a kernel with BTF (CONFIG_DEBUG_INFO_BTF), or \
         accept both risks with --allow-no-flow-control"
    )]
    NoFlowControl(String),
    #[error("{0}")]
    Map(String),
}

fn map_err(e: impl std::fmt::Display) -> DatapathError {
    DatapathError::Map(e.to_string())
}

/// Handles to a live datapath, opened from its pins.
pub struct Datapath {
    pub pin_dir: PathBuf,
    /// Every map of [`map::ALL`](accel_bpf::map::ALL), in its order, with
    /// what the kernel says of it; also what `restore_pins` pins again.
    maps: Vec<(&'static MapDef, MapData, MapInfo)>,
    link: Option<PinnedLink>,
    /// A reference to the link if re-pinning it failed: it keeps sock_ops
    /// attached while the daemon runs.
    link_unpinned: Option<std::os::fd::OwnedFd>,
    link_program_id: u32,
}
