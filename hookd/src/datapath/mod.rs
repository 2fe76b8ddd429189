//! The kernel side: loads hookd's eBPF object once, pins programs and maps
//! under the pin directory, attaches to taps (tcx, or a clsact qdisc via
//! netlink), pins the links so enforcement outlives the daemon, and writes
//! the per-NIC map entries.
//!
//! Pin layout under `pin_dir` (default /sys/fs/bpf/hookd):
//!   maps/hookd_nics, maps/hookd_addrs, maps/hookd_stats, ... (a
//!   changed layout: maps/<name>-vN for a moment, see `versions`)
//!   progs/hookd_from_vm, progs/hookd_to_vm, progs/hookd_from_tenant
//!   links/<domain uuid>/<tap>-from_vm, links/<domain uuid>/<tap>-to_vm
//!   links/tenants/<veth host end>-from_tenant
//!
//! - [`attach`]: attaching and detaching programs;
//! - [`nic`]: the per-NIC map writers; `network`: those of network NICs;
//! - [`ra`]: unsolicited router advertisements for network NICs;
//! - `tenant`: each tenant's namespace, its veth and routes (`netns`:
//!   namespaces and rtnetlink);
//! - [`conntrack`]: per-NIC connection-tracking tables;
//! - [`counters`]: counter readers for any thread; `slots`: which NIC
//!   counts where in `hookd_counters`;
//! - [`events`]: the ring buffer of logged packets;
//! - [`upgrade`]: running taps get this daemon's programs (restart, upgrade);
//! - `versions`: a pinned map in another layout gets a new version beside
//!   it, its entries carried;
//! - [`trace`]: a described packet through the programs' tracing build;
//! - `owned`, `bpffs`, [`netdev`]: bookkeeping and the kernel's names.

mod attach;
mod batch;
mod bpffs;
mod configs;
mod conntrack;
pub mod counters;
mod ct_queue;
pub use conntrack::{CT_ENTRIES_RANGE, DEFAULT_CT_ENTRIES_MAX, ct_clock_ns};
pub mod error;
pub mod events;
pub mod netdev;
mod netns;
mod network;
mod nic;
mod owned;
mod promote;
mod qdisc;
pub mod ra;
mod slots;
mod tcfilter;
pub mod tenant;
pub mod trace;
pub mod upgrade;
mod versions;

pub use counters::Counters;
pub use error::DatapathError;
pub use upgrade::Replaced;

use crate::config::AttachMode;
use crate::datapath::error::{io_err, map_err, prog_err};
use crate::datapath::owned::Owned;
use aya::maps::{
    Array, ArrayOfMaps, HashMap, LpmTrie, MapData, PerCpuArray, PerCpuHashMap, RingBuf,
};
use aya::programs::ProgramInfo;
use aya::programs::tc::{SchedClassifier, TcAttachType};
use aya::{Ebpf, EbpfLoader};
use hookd_bpf::layout::{
    self, AddrData, DhcpLease, FwClassData, FwHitKey, FwRuleData, FwVerdict, NetAddr, NetAddrKey,
    NetMembers, NetStats, NicConfig, NicNet, NicStats, RaInfo, Route, RouteData, Uplink,
};
use hookd_model::policy::Direction;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How one NIC's programs were attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attachment {
    Tcx,
    Netlink,
}

impl Attachment {
    pub fn name(self) -> &'static str {
        match self {
            Attachment::Tcx => "tcx",
            Attachment::Netlink => "netlink",
        }
    }
    pub fn parse(s: &str) -> Option<Attachment> {
        match s {
            "tcx" => Some(Attachment::Tcx),
            "netlink" => Some(Attachment::Netlink),
            _ => None,
        }
    }
}

/// The data path's `DIR_*` value of a direction.
pub fn dir_value(d: Direction) -> u8 {
    match d {
        Direction::Ingress => layout::DIR_INGRESS,
        Direction::Egress => layout::DIR_EGRESS,
    }
}

/// The direction of a data path's `DIR_*` value.
pub fn direction_of(dir: u8) -> Direction {
    if dir == layout::DIR_INGRESS {
        Direction::Ingress
    } else {
        Direction::Egress
    }
}

/// The two programs and where each goes on a tap.
pub(crate) const PROGRAMS: [(&str, TcAttachType, &str); 2] = [
    (hookd_bpf::PROG_FROM_VM, TcAttachType::Ingress, "from_vm"),
    (hookd_bpf::PROG_TO_VM, TcAttachType::Egress, "to_vm"),
];

/// Every program hookd loads and pins: a tap's two, and the one on tenant
/// namespaces' veths.
const LOADED: [&str; 3] = [
    hookd_bpf::PROG_FROM_VM,
    hookd_bpf::PROG_TO_VM,
    hookd_bpf::PROG_FROM_TENANT,
];

pub struct Datapath {
    pub(crate) ebpf: Ebpf,
    /// Programs a previous daemon pinned that are identical to this
    /// daemon's (the same code and maps), used instead of its own: the taps
    /// keep running them, and the kernel holds one copy, not one more per
    /// restart.
    pub(crate) adopted: std::collections::HashMap<&'static str, SchedClassifier>,
    /// hookd's record of the NICs' configs (`configs`).
    pub(crate) nics: HashMap<MapData, u32, NicConfig>,
    /// The configs as the programs read them.
    pub(crate) published: configs::Published,
    pub(crate) addrs: LpmTrie<MapData, AddrData, u32>,
    /// The tenant veths' counters, and NICs' from before slots.
    pub(crate) stats: PerCpuHashMap<MapData, u32, NicStats>,
    /// The NICs' counters, by their configs' slots.
    pub(crate) nic_counters: PerCpuArray<MapData, NicStats>,
    pub(crate) slots: slots::Slots,
    /// Slots NICs had in an earlier version of `hookd_nics`, for their
    /// configs written again (`adopt_slots`).
    pub(crate) carried_slots: std::collections::HashMap<u32, u32>,
    pub(crate) fw_classes: LpmTrie<MapData, FwClassData, u32>,
    pub(crate) fw_rules: LpmTrie<MapData, FwRuleData, FwVerdict>,
    /// The NICs' conntrack tables, by their configs' slots.
    pub(crate) ct: ArrayOfMaps<MapData>,
    /// `ct`'s descriptor, for removals (aya has none for arrays of maps).
    pub(crate) ct_fd: std::os::fd::OwnedFd,
    /// Connections in the table of each NIC attached from now on.
    pub(crate) ct_entries: u32,
    /// The most a policy's `conntrack-entries` may ask for.
    pub(crate) ct_entries_max: u32,
    pub(crate) fw_hits: PerCpuHashMap<MapData, FwHitKey, u64>,
    pub(crate) log_rate: HashMap<MapData, u32, [u8; 16]>,
    pub(crate) nic_nets: HashMap<MapData, u32, NicNet>,
    pub(crate) net_addrs: HashMap<MapData, NetAddrKey, NetAddr>,
    pub(crate) routes: LpmTrie<MapData, RouteData, Route>,
    pub(crate) dhcp: HashMap<MapData, u32, DhcpLease>,
    pub(crate) net_stats: PerCpuHashMap<MapData, u32, NetStats>,
    pub(crate) net_owned: network::NetOwned,
    pub(crate) uplinks: HashMap<MapData, u32, Uplink>,
    pub(crate) net_members: HashMap<MapData, u32, NetMembers>,
    pub(crate) ra: HashMap<MapData, u32, RaInfo>,
    pub(crate) tenants: tenant::Tenants,
    pub(crate) events: Option<RingBuf<MapData>>,
    pub(crate) pin_dir: PathBuf,
    pub(crate) mode: AttachMode,
    pub(crate) ncpus: usize,
    pub(crate) counters: Arc<Counters>,
    pub(crate) owned: Owned,
    /// The programs pinned by the previous daemon were another build's (or
    /// none were pinned), or the policy maps got a new version: adopted
    /// NICs' policy entries must be written again.
    pub(crate) other_build_before: bool,
    /// Where each map is pinned (see `versions`).
    pub(crate) placements: Vec<versions::Placement>,
    /// Earlier map versions not yet retired.
    pub(crate) retired: Vec<versions::Retired>,
    /// The tracing build, once a trace has asked for it.
    pub(crate) tracer: Option<trace::Tracer>,
    /// `attach = "staged"`: new NICs' conntrack tables, inserted in
    /// batches (`ct_queue.rs`).
    pub(crate) ct_queue: Option<ct_queue::CtQueue>,
}

/// Is the pinned program `pinned` the same as this daemon's `ours`: the
/// same code and maps, and its full name (the kernel keeps 15 bytes of it,
/// and a netlink filter is told the program's name)?
fn same_program(pinned: &ProgramInfo, ours: &ProgramInfo, name: &str) -> bool {
    let identical = matches!(
        (upgrade::identity(pinned, name), upgrade::identity(ours, name)),
        (Ok(a), Ok(b)) if a == b
    );
    identical && pinned.name_as_str() == Some(name)
}

impl Datapath {
    /// Loads the programs and opens (or creates) the pinned maps.
    pub fn open(pin_dir: &Path, mode: AttachMode) -> Result<Datapath, DatapathError> {
        Datapath::open_object(pin_dir, mode, hookd_bpf::HOOKD_OBJ)
    }

    /// [`Datapath::open`] with another build of hookd's object (the same
    /// programs and maps), as an upgrade brings: for tests of the upgrade
    /// path.
    pub fn open_object(
        pin_dir: &Path,
        mode: AttachMode,
        object: &[u8],
    ) -> Result<Datapath, DatapathError> {
        Datapath::open_sized(pin_dir, mode, object, &[])
    }

    /// [`Datapath::open_object`] with some maps given another capacity
    /// (map name, entries): a map in another layout, for tests of map
    /// versions.
    pub fn open_sized(
        pin_dir: &Path,
        mode: AttachMode,
        object: &[u8],
        sizes: &[(&str, u32)],
    ) -> Result<Datapath, DatapathError> {
        let parent = pin_dir.parent().unwrap_or(pin_dir);
        bpffs::ensure_bpffs(parent)?;
        std::fs::create_dir_all(pin_dir)
            .map_err(io_err(format!("creating {}", pin_dir.display())))?;
        let maps_dir = pin_dir.join("maps");
        let progs_dir = pin_dir.join("progs");
        for d in [&maps_dir, &progs_dir, &pin_dir.join("links")] {
            std::fs::create_dir_all(d).map_err(io_err(format!("creating {}", d.display())))?;
        }
        let mut parsed = aya_obj::Object::parse(object).map_err(|e| DatapathError::Io {
            what: "parsing hookd's eBPF object".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let mut loader = EbpfLoader::new();
        for (name, entries) in sizes {
            if let Some(m) = parsed.maps.get_mut(*name) {
                m.set_max_entries(*entries);
            }
            loader.map_max_entries(name, *entries);
        }
        let placements = versions::place(&maps_dir, &parsed)?;
        loader.default_map_pin_directory(&maps_dir);
        for p in &placements {
            loader.map_pin_path(&p.name, maps_dir.join(&p.file));
            if !p.older.is_empty() {
                tracing::info!(map = %p.name, pin = %p.file, older = ?p.older,
                    "the pinned map is in another layout: this version's goes beside it");
            }
        }
        let mut ebpf = loader.load(object)?;
        let retired = versions::open_retired(&maps_dir, &placements);
        let policy_moved = placements
            .iter()
            .any(|p| p.carry == versions::Carry::Policy && p.created && !p.older.is_empty());
        let mut other_build_before = false;
        let mut adopted = std::collections::HashMap::new();
        for name in LOADED {
            let pin = progs_dir.join(name);
            let previous = ProgramInfo::from_pin(&pin).ok();
            let prog: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or_else(|| DatapathError::Missing(name.to_string()))?
                .try_into()
                .map_err(prog_err(name))?;
            prog.load().map_err(prog_err(format!("loading {name}")))?;
            let ours = prog.info().map_err(prog_err(format!("info of {name}")))?;
            other_build_before |= previous.as_ref().map(|p| p.tag()) != Some(ours.tag());
            if let Some(pinned) = previous.filter(|p| same_program(p, &ours, name)) {
                // Keep the previous daemon's: it is this one's to the
                // instruction and map, and the running taps use it.
                let id = pinned.id();
                let theirs = SchedClassifier::from_pin(&pin)
                    .map_err(prog_err(format!("opening {}", pin.display())))?;
                prog.unload()
                    .map_err(prog_err(format!("unloading {name}")))?;
                tracing::debug!(program = name, id, "kept the identical pinned program");
                adopted.insert(name, theirs);
                continue;
            }
            // Replace the pin of a previous daemon: links keep their own
            // reference to the program they were attached with, until
            // `refresh_programs` swaps this one in (see `upgrade`).
            let _ = std::fs::remove_file(&pin);
            prog.pin(&pin).map_err(|source| DatapathError::Pin {
                what: format!("pinning {}", pin.display()),
                source,
            })?;
        }
        let take = |ebpf: &mut Ebpf, name: &'static str| {
            ebpf.take_map(name)
                .ok_or_else(|| DatapathError::Missing(name.to_string()))
        };
        let nics = HashMap::try_from(take(&mut ebpf, hookd_bpf::MAP_NICS)?)
            .map_err(map_err("hookd_nics"))?;
        let index_map = take(&mut ebpf, hookd_bpf::MAP_NIC_INDEX)?;
        let index_fd = match &index_map {
            aya::maps::Map::Array(m) => std::os::fd::AsFd::as_fd(m.fd())
                .try_clone_to_owned()
                .map_err(io_err("hookd_nic_index"))?,
            _ => return Err(DatapathError::Missing("hookd_nic_index as an array".into())),
        };
        let published = configs::Published {
            index: Array::try_from(index_map).map_err(map_err("hookd_nic_index"))?,
            far: HashMap::try_from(take(&mut ebpf, hookd_bpf::MAP_NIC_FAR)?)
                .map_err(map_err("hookd_nic_far"))?,
            cfgs: Array::try_from(take(&mut ebpf, hookd_bpf::MAP_NIC_CFGS)?)
                .map_err(map_err("hookd_nic_cfgs"))?,
            index_fd,
        };
        let addrs = LpmTrie::try_from(take(&mut ebpf, hookd_bpf::MAP_ADDRS)?)
            .map_err(map_err("hookd_addrs"))?;
        let stats = PerCpuHashMap::try_from(take(&mut ebpf, hookd_bpf::MAP_STATS)?)
            .map_err(map_err("hookd_stats"))?;
        let nic_counters = PerCpuArray::try_from(take(&mut ebpf, hookd_bpf::MAP_COUNTERS)?)
            .map_err(map_err("hookd_counters"))?;
        let fw_classes = LpmTrie::try_from(take(&mut ebpf, hookd_bpf::MAP_FW_CLASSES)?)
            .map_err(map_err("hookd_fw_classes"))?;
        let fw_rules = LpmTrie::try_from(take(&mut ebpf, hookd_bpf::MAP_FW_RULES)?)
            .map_err(map_err("hookd_fw_rules"))?;
        let ct_map = take(&mut ebpf, hookd_bpf::MAP_CT)?;
        let ct_fd = match &ct_map {
            aya::maps::Map::ArrayOfMaps(m) => std::os::fd::AsFd::as_fd(m.fd())
                .try_clone_to_owned()
                .map_err(io_err("hookd_ct"))?,
            _ => {
                return Err(DatapathError::Missing(
                    "hookd_ct as an array of maps".into(),
                ));
            }
        };
        let ct_queue = match mode {
            AttachMode::Staged => Some(
                ct_queue::CtQueue::start(ct_fd.try_clone().map_err(io_err("hookd_ct"))?)
                    .map_err(io_err("starting the conntrack table thread"))?,
            ),
            _ => None,
        };
        let ct = ArrayOfMaps::try_from(ct_map).map_err(map_err("hookd_ct"))?;
        let fw_hits = PerCpuHashMap::try_from(take(&mut ebpf, hookd_bpf::MAP_FW_HITS)?)
            .map_err(map_err("hookd_fw_hits"))?;
        let log_rate = HashMap::try_from(take(&mut ebpf, hookd_bpf::MAP_LOG_RATE)?)
            .map_err(map_err("hookd_log_rate"))?;
        let events = RingBuf::try_from(take(&mut ebpf, hookd_bpf::MAP_EVENTS)?)
            .map_err(map_err("hookd_events"))?;
        let nic_nets = HashMap::try_from(take(&mut ebpf, hookd_bpf::MAP_NIC_NETS)?)
            .map_err(map_err("hookd_nic_nets"))?;
        let net_addrs = HashMap::try_from(take(&mut ebpf, hookd_bpf::MAP_NET_ADDRS)?)
            .map_err(map_err("hookd_net_addrs"))?;
        let routes = LpmTrie::try_from(take(&mut ebpf, hookd_bpf::MAP_ROUTES)?)
            .map_err(map_err("hookd_routes"))?;
        let dhcp = HashMap::try_from(take(&mut ebpf, hookd_bpf::MAP_DHCP)?)
            .map_err(map_err("hookd_dhcp"))?;
        let net_stats = PerCpuHashMap::try_from(take(&mut ebpf, hookd_bpf::MAP_NET_STATS)?)
            .map_err(map_err("hookd_net_stats"))?;
        let uplinks = HashMap::try_from(take(&mut ebpf, hookd_bpf::MAP_UPLINKS)?)
            .map_err(map_err("hookd_uplinks"))?;
        let net_members = HashMap::try_from(take(&mut ebpf, hookd_bpf::MAP_NET_MEMBERS)?)
            .map_err(map_err("hookd_net_members"))?;
        let ra =
            HashMap::try_from(take(&mut ebpf, hookd_bpf::MAP_RA)?).map_err(map_err("hookd_ra"))?;
        let net_owned = network::NetOwned::scan(&nic_nets, &net_addrs, &routes);
        let ncpus = aya::util::nr_cpus().map_err(|(what, source)| DatapathError::Io {
            what: what.to_string(),
            source,
        })?;
        let pins: Vec<(String, PathBuf)> = placements
            .iter()
            .map(|p| (p.name.clone(), maps_dir.join(&p.file)))
            .collect();
        let counters = Arc::new(Counters::open(pin_dir, pins)?);
        let mut owned = Owned::scan(&fw_classes, &fw_rules, &addrs);
        owned.retire_idle(&nics, &fw_hits);
        let mut dp = Datapath {
            counters,
            owned,
            ebpf,
            adopted,
            nics,
            published,
            addrs,
            stats,
            nic_counters,
            slots: slots::Slots::new(layout::MAX_NICS),
            carried_slots: std::collections::HashMap::new(),
            fw_classes,
            fw_rules,
            ct,
            ct_fd,
            ct_entries: layout::CT_PER_NIC,
            ct_entries_max: DEFAULT_CT_ENTRIES_MAX,
            fw_hits,
            log_rate,
            nic_nets,
            net_addrs,
            routes,
            dhcp,
            net_stats,
            net_owned,
            uplinks,
            net_members,
            ra,
            tenants: tenant::Tenants::default(),
            events: Some(events),
            pin_dir: pin_dir.to_owned(),
            mode,
            ncpus,
            other_build_before: other_build_before || policy_moved,
            placements,
            retired,
            tracer: None,
            ct_queue,
        };
        // Before any tap runs this build's programs, which count at the
        // slot a NIC's config names.
        let placed = |name: &str| dp.placements.iter().find(|p| p.name == name);
        let trusted = placed(hookd_bpf::MAP_COUNTERS).is_some_and(|p| !p.created);
        let earlier_nics = placed(hookd_bpf::MAP_NICS)
            .filter(|p| p.created)
            .and_then(|p| p.older.first())
            .and_then(|f| MapData::from_pin(maps_dir.join(f)).ok());
        dp.adopt_slots(trusted, earlier_nics);
        // Before any tap runs this build's programs, which read the
        // configs' copies.
        dp.publish_configs()?;
        // Before any tap runs this build's programs, which fail closed on
        // a NIC with rules and no table.
        dp.carry_tables();
        Ok(dp)
    }

    /// See [`Counters::health`].
    pub fn health(&self) -> Result<(), String> {
        self.counters.health()
    }

    /// The counter readers, shareable with other threads.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// The loaded program `name`, for BPF_PROG_TEST_RUN in tests and benchmarks.
    pub fn program(&self, name: &str) -> Option<&SchedClassifier> {
        match self.adopted.get(name) {
            Some(p) => Some(p),
            None => self.ebpf.program(name).and_then(|p| p.try_into().ok()),
        }
    }

    fn link_pin(&self, uuid: &str, tap: &str, suffix: &str) -> PathBuf {
        // bpffs refuses dots in names ("reserved for future extensions").
        let tap = tap.replace('.', "_");
        self.pin_dir
            .join("links")
            .join(uuid)
            .join(format!("{tap}-{suffix}"))
    }

    /// The NIC's counters summed over CPUs.
    pub fn stats(&self, ifindex: u32) -> Option<NicStats> {
        self.counters.stats(ifindex)
    }

    /// The NIC config hookd wrote for `ifindex`.
    pub fn nic_config(&self, ifindex: u32) -> Option<NicConfig> {
        self.nics.get(&ifindex, 0).ok()
    }

    /// Number of prefixes stored for `ifindex`.
    pub fn prefix_count(&self, ifindex: u32) -> usize {
        self.addrs
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.data().ifindex == ifindex)
            .count()
    }
}
