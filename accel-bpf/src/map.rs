//! The one table of the datapath's maps (`src/bpf/maps.h` declares them in
//! C). Everything else about a map is derived from its row here: its pin
//! name, the type and sizes the daemon checks when it adopts pins, the
//! order `status` lists maps in, the loader's sizing, which maps are
//! drained before an unload, and the map table of `docs/reference.md`.
//! Unit tests compare the table with the map definitions of the built
//! objects and with the docs, so neither can drift from it.

use std::{marker::PhantomData, mem::size_of, ops::Deref};

pub use aya::maps::MapType;

use crate::abi::{
    AppListenerKey, Config, Endpoint, EndpointKey, ExcludedCidrKey, ExcludedPortKey, MeshedNetns,
    PairKey, PairValue, PodHeldKey, PodPair, PodTraffic, STATS_SLOTS, ShortLived, SockState,
};

/// Who writes a map's entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The BPF programs (the daemon may prune what they leave behind).
    Datapath,
    /// accel-daemon; the programs only read.
    Daemon,
}

/// What happens to a map's entries when its datapath is unloaded or
/// retired by a newer daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cleanup {
    /// Holds sockets: every receive queue it filled must be read before
    /// the pin goes, or the queued bytes are lost.
    Drain,
    /// Its entries go with its pin.
    WithPin,
}

/// How a map is sized at load time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capacity {
    /// `max_entries` of maps.h.
    Fixed,
    /// The daemon's `--sockhash-size` (default: `max_entries`).
    SockhashSize,
    /// The daemon's `--pairing-size` (default: `max_entries`).
    PairingSize,
    /// Socket storage: one slot per socket.
    PerSocket,
}

/// One row of the table.
#[derive(Clone, Copy, Debug)]
pub struct MapDef {
    /// Name in the object, and its pin file name.
    pub name: &'static str,
    pub kind: MapType,
    pub key_size: u32,
    pub value_size: u32,
    /// As declared in maps.h (0 for socket storage).
    pub max_entries: u32,
    pub capacity: Capacity,
    pub owner: Owner,
    pub cleanup: Cleanup,
    /// `status` and `/metrics` count its entries (a walk of the map).
    pub counted: bool,
    /// For people: key -> value.
    pub entry: &'static str,
    /// For people: who writes it, and how its entries go away.
    pub lifecycle: &'static str,
}

/// A row with the Rust types of its key and value, for typed access.
#[derive(Clone, Copy, Debug)]
pub struct Spec<K, V> {
    pub def: MapDef,
    kv: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Deref for Spec<K, V> {
    type Target = MapDef;
    fn deref(&self) -> &MapDef {
        &self.def
    }
}

struct Row {
    kind: MapType,
    max_entries: u32,
    capacity: Capacity,
    owner: Owner,
    cleanup: Cleanup,
    counted: bool,
    entry: &'static str,
    lifecycle: &'static str,
}

const fn spec<K, V>(name: &'static str, r: Row) -> Spec<K, V> {
    Spec {
        def: MapDef {
            name,
            kind: r.kind,
            key_size: size_of::<K>() as u32,
            value_size: size_of::<V>() as u32,
            max_entries: r.max_entries,
            capacity: r.capacity,
            owner: r.owner,
            cleanup: r.cleanup,
            counted: r.counted,
            entry: r.entry,
            lifecycle: r.lifecycle,
        },
        kv: PhantomData,
    }
}

/// What both sockhashes are (one socket is in one of them, never both).
const SOCKETS: Row = Row {
    kind: MapType::SockHash,
    max_entries: 65536,
    capacity: Capacity::SockhashSize,
    owner: Owner::Datapath,
    cleanup: Cleanup::Drain,
    counted: true,
    entry: "",
    lifecycle: "`sock_ops`; the kernel removes a socket when it closes",
};

/// What the maps the daemon's endpoint sync writes have in common.
const SYNCED: Row = Row {
    kind: MapType::Hash,
    max_entries: 4096,
    capacity: Capacity::Fixed,
    owner: Owner::Daemon,
    cleanup: Cleanup::WithPin,
    counted: true,
    entry: "",
    lifecycle: "the daemon's endpoint sync",
};

/// What the LRU hint maps have in common: what they keep outlives the
/// sockets that wrote it, and eviction bounds them.
const HINTS: Row = Row {
    kind: MapType::LruHash,
    max_entries: 16384,
    capacity: Capacity::Fixed,
    owner: Owner::Datapath,
    cleanup: Cleanup::WithPin,
    counted: true,
    entry: "",
    lifecycle: "",
};

/// Declares each map as a constant and [`ALL`] in the same order.
macro_rules! maps {
    ($( $(#[$doc:meta])* $id:ident: $name:literal, <$k:ty, $v:ty> $row:tt )*) => {
        $( $(#[$doc])* pub const $id: Spec<$k, $v> = spec($name, Row $row); )*
        /// Every pinned map, in the order `status` reports them.
        pub const ALL: &[MapDef] = &[$($id.def),*];
    };
}

maps! {
    /// Recorded sockets by socket cookie (the value is a socket fd on
    /// update from userspace). `accel_sk_msg` is attached here.
    SOCKHASH: "accel_sockhash", <u64, u32> {
        entry: "socket cookie -> socket",
        ..SOCKETS
    }
    /// Receive-only sockets: redirect targets whose sends skip sk_msg.
    RX_SOCKHASH: "accel_rx_sockhash", <u64, u32> {
        entry: "socket cookie -> socket, no program attached: receive-only sockets",
        ..SOCKETS
    }
    SOCK_STATE: "accel_sock_state", <i32, SockState> {
        kind: MapType::SkStorage,
        max_entries: 0,
        capacity: Capacity::PerSocket,
        owner: Owner::Datapath,
        cleanup: Cleanup::WithPin,
        counted: false,
        entry: "socket -> decision and peer",
        lifecycle: "the programs; freed by the kernel with the socket",
    }
    PAIRING: "accel_pairing", <PairKey, PairValue> {
        kind: MapType::Hash,
        max_entries: 16384,
        capacity: Capacity::PairingSize,
        owner: Owner::Datapath,
        cleanup: Cleanup::WithPin,
        counted: true,
        entry: "(token, offer or answer) -> socket cookie",
        lifecycle: "`sock_ops`; the claim deletes the offer, the connecting side deletes both \
                    at its first send and at close",
    }
    ENDPOINTS: "accel_endpoints", <EndpointKey, Endpoint> {
        entry: "address -> pod",
        lifecycle: "the daemon's endpoint sync, which removes stale entries",
        ..SYNCED
    }
    CONFIG: "accel_config", <u32, Config> {
        kind: MapType::Array,
        max_entries: 1,
        capacity: Capacity::Fixed,
        owner: Owner::Daemon,
        cleanup: Cleanup::WithPin,
        counted: false,
        entry: "0 -> mode (accelerate or passthrough), loopback scope, flow budget, proxy uid, \
                node mode, small-message size, short-lived streak",
        lifecycle: "the daemon",
    }
    STATS: "accel_stats", <u32, u64> {
        kind: MapType::PerCpuArray,
        max_entries: STATS_SLOTS,
        capacity: Capacity::Fixed,
        owner: Owner::Datapath,
        cleanup: Cleanup::WithPin,
        counted: false,
        entry: "event -> count (one slot per event)",
        lifecycle: "the programs; read by the daemon",
    }
    MESHED_NETNS: "accel_meshed_netns", <u64, MeshedNetns> {
        entry: "netns cookie -> pod",
        ..SYNCED
    }
    EXCLUDED_PORTS: "accel_excluded_ports", <ExcludedPortKey, u8> {
        max_entries: 16384,
        counted: false,
        entry: "pod address, direction, port -> excluded",
        ..SYNCED
    }
    EXCLUDED_CIDRS: "accel_excluded_cidrs", <ExcludedCidrKey, u8> {
        kind: MapType::LpmTrie,
        max_entries: 16384,
        counted: false,
        entry: "pod address, range -> excluded",
        ..SYNCED
    }
    POD_TRAFFIC: "accel_pod_traffic", <PodPair, PodTraffic> {
        kind: MapType::PerCpuHash,
        max_entries: 16384,
        capacity: Capacity::Fixed,
        owner: Owner::Datapath,
        cleanup: Cleanup::WithPin,
        counted: true,
        entry: "(source pod, destination pod) -> bytes, messages",
        lifecycle: "`sk_msg`; the daemon deletes a pod's entries at the sync after the pod goes",
    }
    READER: "accel_reader", <u64, u8> {
        kind: MapType::Hash,
        max_entries: 65536,
        // One entry at most per recorded socket.
        capacity: Capacity::SockhashSize,
        owner: Owner::Datapath,
        cleanup: Cleanup::WithPin,
        counted: true,
        entry: "socket cookie -> seen blocking (`app-safe`), or a stream claim: the proxy \
                peer redirects into it, it asks to leave, the peer has stopped",
        lifecycle: "the socket's own programs, which delete it when it closes (or leaves for a \
                    blocking reader); a claimer whose redirect fails, or that closes, \
                    withdraws its claim",
    }
    POD_HELD: "accel_pod_held", <PodHeldKey, u64> {
        kind: MapType::Hash,
        max_entries: 16384,
        capacity: Capacity::Fixed,
        owner: Owner::Datapath,
        cleanup: Cleanup::WithPin,
        counted: true,
        entry: "(pod, reason) -> sockets held back",
        lifecycle: "the programs; the daemon deletes a pod's entries at the sync after the pod \
                    goes",
    }
    APP_LISTENERS: "accel_app_listeners", <AppListenerKey, u8> {
        entry: "(netns cookie, address, port) -> an `auto` application listens there",
        lifecycle: "`sock_ops` at `listen()` and at an application's accepted connection; LRU \
                    eviction (netns cookies are never reused)",
        ..HINTS
    }
    SHORT_LIVED: "accel_short_lived", <AppListenerKey, ShortLived> {
        entry: "(netns cookie, remote address, port) -> streak of short-lived connections, \
                last short close, connections while skipping",
        lifecycle: "`sock_ops` at a recorded connecting socket's close; LRU eviction (netns \
                    cookies are never reused)",
        ..HINTS
    }
}

/// The sockhashes, each drained before the datapath goes away.
pub fn drained() -> impl Iterator<Item = &'static MapDef> {
    ALL.iter().filter(|m| m.cleanup == Cleanup::Drain)
}

/// The row of `name`, if it is one of ours.
pub fn by_name(name: &str) -> Option<&'static MapDef> {
    ALL.iter().find(|m| m.name == name)
}

/// The kernel's name of a map type (`BPF_MAP_TYPE_` left out).
pub fn kind_name(kind: MapType) -> &'static str {
    match kind {
        MapType::Hash => "HASH",
        MapType::LruHash => "LRU_HASH",
        MapType::PerCpuHash => "PERCPU_HASH",
        MapType::Array => "ARRAY",
        MapType::PerCpuArray => "PERCPU_ARRAY",
        MapType::LpmTrie => "LPM_TRIE",
        MapType::SockHash => "SOCKHASH",
        MapType::SkStorage => "SK_STORAGE",
        _ => "other",
    }
}

/// The map table of `docs/reference.md`, generated from [`ALL`].
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| map | type | key -> value | capacity | owner | written by; cleanup |\n\
         |---|---|---|---|---|---|\n",
    );
    for m in ALL {
        let capacity = match m.capacity {
            Capacity::Fixed => m.max_entries.to_string(),
            Capacity::SockhashSize => format!("`--sockhash-size` ({})", m.max_entries),
            Capacity::PairingSize => format!("`--pairing-size` ({})", m.max_entries),
            Capacity::PerSocket => "one per socket".into(),
        };
        let owner = match m.owner {
            Owner::Datapath => "datapath",
            Owner::Daemon => "daemon",
        };
        let drained = match m.cleanup {
            Cleanup::Drain => "; drained before unload",
            Cleanup::WithPin => "",
        };
        out += &format!(
            "| `{}` | {} | {} | {capacity} | {owner} | {}{drained} |\n",
            m.name,
            kind_name(m.kind),
            m.entry,
            m.lifecycle,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCS_BEGIN: &str = "<!-- map table: generated from accel-bpf/src/map.rs -->\n";
    const DOCS_END: &str = "<!-- end of map table -->";

    #[test]
    fn names_are_unique_and_ours() {
        for (i, m) in ALL.iter().enumerate() {
            assert!(m.name.starts_with("accel_"), "{}", m.name);
            // Pin file names: bpffs refuses dots.
            assert!(!m.name.contains('.'), "{}", m.name);
            assert!(
                ALL[..i].iter().all(|o| o.name != m.name),
                "{} twice",
                m.name
            );
        }
    }

    /// maps.h against the table: every map of each built object, as the
    /// loader reads it (name, type, key size, value size, max_entries).
    #[test]
    fn the_objects_declare_exactly_the_table() {
        for (object, bytes) in [
            ("datapath", crate::DATAPATH_OBJ),
            ("datapath_flow", crate::DATAPATH_FLOW_OBJ),
        ] {
            let obj = aya_obj::Object::parse(bytes)
                .unwrap_or_else(|e| panic!("parsing {object}.bpf.o: {e}"));
            let mut declared: Vec<&str> = obj
                .maps
                .keys()
                .map(String::as_str)
                .filter(|n| !n.starts_with('.'))
                .collect();
            declared.sort_unstable();
            let mut table: Vec<&str> = ALL.iter().map(|m| m.name).collect();
            table.sort_unstable();
            assert_eq!(
                declared, table,
                "{object}.bpf.o: the maps of maps.h and the table of accel-bpf/src/map.rs differ"
            );
            for m in ALL {
                let got = &obj.maps[m.name];
                let got = (
                    got.map_type(),
                    got.key_size(),
                    got.value_size(),
                    got.max_entries(),
                );
                let want = (m.kind as u32, m.key_size, m.value_size, m.max_entries);
                assert_eq!(
                    got, want,
                    "{object}.bpf.o: {} (type, key size, value size, max_entries) in maps.h \
                     differs from accel-bpf/src/map.rs",
                    m.name
                );
            }
        }
    }

    /// The docs' table is the generated one. `UPDATE_DOCS=1 cargo test -p
    /// accel-bpf docs_map_table` writes it.
    #[test]
    fn docs_map_table_is_generated() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/reference.md");
        let docs = std::fs::read_to_string(path).expect("docs/reference.md is readable");
        let begin = docs
            .find(DOCS_BEGIN)
            .map(|i| i + DOCS_BEGIN.len())
            .expect("docs/reference.md lost its map table marker");
        let end = begin
            + docs[begin..]
                .find(DOCS_END)
                .expect("docs/reference.md lost its end of map table marker");
        let want = markdown_table();
        if docs[begin..end] == want {
            return;
        }
        if std::env::var_os("UPDATE_DOCS").is_some() {
            let updated = format!("{}{want}{}", &docs[..begin], &docs[end..]);
            std::fs::write(path, updated).expect("writing docs/reference.md");
            return;
        }
        panic!(
            "the map table of docs/reference.md differs from accel-bpf/src/map.rs; \
             regenerate it with `UPDATE_DOCS=1 cargo test -p accel-bpf docs_map_table`. \
             Generated:\n{want}"
        );
    }
}
