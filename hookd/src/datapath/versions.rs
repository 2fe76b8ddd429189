//! Map versions: what happens to a pinned map whose layout this build does
//! not share.
//!
//! Each of hookd's maps is pinned under `maps/` by its name, so that a
//! restarted hookd, and the programs still attached to taps, share it. A
//! pinned map can only be shared when the kernel's definition of it (type,
//! key and value sizes, capacity, flags, and for the conntrack map of maps
//! the tables it holds) is this build's. When it is not, this build pins a
//! new version beside it (`maps/<name>-v2`, `-v3`, ...), carries the old
//! map's entries into it (how depends on the map: [`Carry`]), and once no
//! program reads the old map any more, removes its pin and gives the new
//! one the plain name. Old programs keep reading the old maps, unchanged,
//! until their taps are swapped onto this build's programs: a packet sees
//! one version's maps or the other's, never a mix.
//!
//! [`plan_pins`] decides where each map goes from what is pinned (pure);
//! the rest asks the kernel and moves entries.

use crate::datapath::error::{DatapathError, io_err, map_err};
use crate::datapath::{Datapath, batch};
use aya::maps::{
    ArrayOfMaps, HashMap, HashOfMaps, Map, MapData, MapInfo, PerCpuArray, PerCpuHashMap,
    PerCpuValues,
};
use aya::programs::loaded_programs;
use hookd_bpf::layout::{CtEntry, CtKey, FwHitKey, NetStats, NicStats};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// How a map's entries reach a new version of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Carry {
    /// Policy entries, rewritten from each domain's recorded XML
    /// (`core::Daemon::migrate_maps`). These maps refer to each other (a
    /// NIC's `fw_gen` names its table half), so when one needs a new
    /// version, all of them get one: the old programs keep a consistent set.
    Policy,
    /// Counters: the old map's values are added to the new map's once no
    /// program counts in the old one.
    Counters,
    /// The per-NIC conntrack tables: moved into the new map of maps before
    /// any program swaps (the same tables when the kernel accepts them,
    /// else copied entry by entry).
    Tables,
    /// Short-lived state (log-rate windows, the event ring): starts empty.
    Fresh,
}

/// Every map of hookd's object, with how it is carried; a test checks that
/// the object has no map missing here.
pub(crate) const CARRY: [(&str, Carry); 23] = [
    (hookd_bpf::MAP_NICS, Carry::Policy),
    (hookd_bpf::MAP_NIC_INDEX, Carry::Policy),
    (hookd_bpf::MAP_NIC_FAR, Carry::Policy),
    (hookd_bpf::MAP_NIC_CFGS, Carry::Policy),
    (hookd_bpf::MAP_ADDRS, Carry::Policy),
    (hookd_bpf::MAP_FW_CLASSES, Carry::Policy),
    (hookd_bpf::MAP_FW_RULES, Carry::Policy),
    (hookd_bpf::MAP_NIC_NETS, Carry::Policy),
    (hookd_bpf::MAP_NET_ADDRS, Carry::Policy),
    (hookd_bpf::MAP_ROUTES, Carry::Policy),
    (hookd_bpf::MAP_DHCP, Carry::Policy),
    (hookd_bpf::MAP_UPLINKS, Carry::Policy),
    (hookd_bpf::MAP_NET_MEMBERS, Carry::Policy),
    (hookd_bpf::MAP_RA, Carry::Policy),
    (hookd_bpf::MAP_COUNTERS, Carry::Counters),
    (hookd_bpf::MAP_STATS, Carry::Counters),
    (hookd_bpf::MAP_FW_HITS, Carry::Counters),
    (hookd_bpf::MAP_NET_STATS, Carry::Counters),
    (hookd_bpf::MAP_CT, Carry::Tables),
    (hookd_bpf::MAP_LOG_RATE, Carry::Fresh),
    (hookd_bpf::MAP_EVENTS, Carry::Fresh),
    (hookd_bpf::MAP_SCRATCH, Carry::Fresh),
    (hookd_bpf::MAP_CLOCK, Carry::Fresh),
];

pub(crate) fn carry_of(name: &str) -> Option<Carry> {
    CARRY.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}

/// A pin under `maps/` that holds a version of one of this build's maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    pub file: String,
    /// The kernel's definition of it is this build's.
    pub compatible: bool,
}

/// Where this build pins one of its maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placement {
    pub name: String,
    pub carry: Carry,
    /// File name under `maps/`.
    pub file: String,
    /// No pinned map was reused: the loader creates this one.
    pub created: bool,
    /// Pins of other versions, to carry from and then retire.
    pub older: Vec<String>,
}

/// Is `file` a version of the map `name`: `name` or `name-vN`?
pub(crate) fn is_version_of(file: &str, name: &str) -> bool {
    file == name
        || file
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix("-v"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The plain name if no pin has it, else the first free `name-vN`.
fn free_file(name: &str, taken: &[Found]) -> String {
    let free = |f: &str| !taken.iter().any(|t| t.file == f);
    if free(name) {
        return name.to_string();
    }
    (2u32..)
        .map(|n| format!("{name}-v{n}"))
        .find(|f| free(f))
        .unwrap_or_else(|| name.to_string())
}

/// Decides where each map goes, given the pins found for it: a compatible
/// pin is reused (the plain name first); otherwise a new version is made
/// and every pin found is retired after carrying. If any policy map gets a
/// new version while older ones exist, all policy maps do (see
/// [`Carry::Policy`]).
pub(crate) fn plan_pins(maps: &[(String, Carry, Vec<Found>)]) -> Vec<Placement> {
    let mut out: Vec<Placement> = maps
        .iter()
        .map(|(name, carry, found)| {
            let reuse = found
                .iter()
                .filter(|f| f.compatible)
                .min_by_key(|f| f.file != *name)
                .map(|f| f.file.clone());
            let created = reuse.is_none();
            let file = reuse.unwrap_or_else(|| free_file(name, found));
            Placement {
                name: name.clone(),
                carry: *carry,
                older: found
                    .iter()
                    .filter(|f| f.file != file)
                    .map(|f| f.file.clone())
                    .collect(),
                file,
                created,
            }
        })
        .collect();
    let policy_moves = out
        .iter()
        .any(|p| p.carry == Carry::Policy && p.created && !p.older.is_empty());
    if policy_moves {
        for (p, (_, _, found)) in out.iter_mut().zip(maps) {
            if p.carry == Carry::Policy && !p.created {
                p.older.push(std::mem::take(&mut p.file));
                p.file = free_file(&p.name, found);
                p.created = true;
            }
        }
    }
    out
}

/// The parts of a map's definition the kernel keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Def {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    flags: u32,
}

impl Def {
    fn of_obj(m: &aya_obj::Map) -> Def {
        Def {
            map_type: m.map_type(),
            key_size: m.key_size(),
            value_size: m.value_size(),
            max_entries: m.max_entries(),
            flags: m.map_flags(),
        }
    }

    fn of_info(i: &MapInfo) -> Option<Def> {
        Some(Def {
            map_type: i.map_type().ok()? as u32,
            key_size: i.key_size(),
            value_size: i.value_size(),
            max_entries: i.max_entries(),
            flags: i.map_flags(),
        })
    }
}

/// Whether the map pinned at `path` can stand for `obj` (and, for a map of
/// maps, holds tables of `obj`'s inner definition).
fn compatible(path: &Path, obj: &aya_obj::Map) -> bool {
    let Ok(info) = MapInfo::from_pin(path) else {
        return false;
    };
    if Def::of_info(&info) != Some(Def::of_obj(obj)) {
        return false;
    }
    match obj.inner() {
        None => true,
        Some(inner) => tables_compatible(path, inner),
    }
}

/// An array of maps accepts tables of `inner`'s definition: the kernel
/// compares each table with the one the array was made with, so a probe
/// table at slot 0 (no NIC's) says it, and is removed at once. Two RCU
/// grace periods, once per daemon start.
fn tables_compatible(path: &Path, inner: aya_obj::Map) -> bool {
    let Ok(outer) = MapData::from_pin(path) else {
        return false;
    };
    let fd = std::os::fd::AsFd::as_fd(outer.fd()).try_clone_to_owned();
    let (Ok(fd), Ok(mut outer)) = (
        fd,
        ArrayOfMaps::<MapData>::try_from(Map::ArrayOfMaps(outer)),
    ) else {
        return false;
    };
    let Ok(probe) = MapData::create(inner, "hookd_ct_probe", None) else {
        return false;
    };
    let ok = outer.set(0, &probe, 0).is_ok();
    if ok && let Err(e) = batch::delete_all(&fd, &[0u32]) {
        tracing::warn!(pin = %path.display(), error = %e, "removing the probe table from hookd_ct");
    }
    ok
}

/// Looks at what is pinned under `maps_dir` for each pinned map of `obj`
/// and decides where this build's maps go.
pub(crate) fn place(
    maps_dir: &Path,
    obj: &aya_obj::Object,
) -> Result<Vec<Placement>, DatapathError> {
    let files: Vec<String> = std::fs::read_dir(maps_dir)
        .map_err(io_err(format!("listing {}", maps_dir.display())))?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    let mut maps = Vec::new();
    for (name, m) in &obj.maps {
        if m.pinning() != aya_obj::maps::PinningType::ByName {
            continue;
        }
        let carry = carry_of(name).ok_or_else(|| {
            DatapathError::Missing(format!(
                "a carry rule for map {name} (datapath/versions.rs)"
            ))
        })?;
        let found = files
            .iter()
            .filter(|f| is_version_of(f, name))
            .map(|f| Found {
                file: f.clone(),
                compatible: compatible(&maps_dir.join(f), m),
            })
            .collect();
        maps.push((name.clone(), carry, found));
    }
    maps.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(plan_pins(&maps))
}

/// An earlier version of a map, still pinned, waiting to be carried from
/// and retired.
pub(crate) struct Retired {
    pub name: String,
    pub carry: Carry,
    pub path: PathBuf,
    pub id: u32,
    pub map: MapData,
}

/// Opens the pins of earlier versions that `placements` retire.
pub(crate) fn open_retired(maps_dir: &Path, placements: &[Placement]) -> Vec<Retired> {
    let mut out = Vec::new();
    for p in placements {
        for file in &p.older {
            let path = maps_dir.join(file);
            let opened = MapData::from_pin(&path).and_then(|m| Ok((m.info()?.id(), m)));
            match opened {
                Ok((id, map)) => out.push(Retired {
                    name: p.name.clone(),
                    carry: p.carry,
                    path,
                    id,
                    map,
                }),
                Err(e) => tracing::warn!(pin = %path.display(), error = %e,
                    "cannot open an earlier version of a map; leaving its pin"),
            }
        }
    }
    out
}

/// `struct nic_stats` as it was with 16 drop reasons (hookd 0.1): the
/// layout the counter carry converts from.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct NicStats16 {
    to_vm_packets: u64,
    to_vm_bytes: u64,
    from_vm_packets: u64,
    from_vm_bytes: u64,
    drops: [u64; 16],
}

// SAFETY: #[repr(C)] u64s only: no padding, any bit pattern valid.
unsafe impl aya::Pod for NicStats16 {}

impl NicStats16 {
    /// The same counters in this build's layout (the reasons added since
    /// start at zero).
    fn upgraded(&self) -> NicStats {
        let mut s = NicStats {
            to_vm_packets: self.to_vm_packets,
            to_vm_bytes: self.to_vm_bytes,
            from_vm_packets: self.from_vm_packets,
            from_vm_bytes: self.from_vm_bytes,
            ..Default::default()
        };
        s.drops[..16].copy_from_slice(&self.drops);
        s
    }
}

/// `struct net_stats` as it was with 6 counters (before the tenant
/// namespaces' two and the slots kept for later).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct NetStats6 {
    count: [u64; 6],
}

// SAFETY: #[repr(C)] u64s only: no padding, any bit pattern valid.
unsafe impl aya::Pod for NetStats6 {}

impl NetStats6 {
    fn upgraded(&self) -> NetStats {
        let mut s = NetStats::default();
        s.count[..6].copy_from_slice(&self.count);
        s
    }
}

fn value_size(map: &MapData) -> usize {
    map.info().map(|i| i.value_size() as usize).unwrap_or(0)
}

/// Adds `old`'s per-CPU values (in layout `O`) into `new`'s, key by key.
fn add_counters<K: aya::Pod, O: aya::Pod, V: aya::Pod + Default>(
    old: PerCpuHashMap<MapData, K, O>,
    new: &mut PerCpuHashMap<MapData, K, V>,
    ncpus: usize,
    add: impl Fn(&mut V, &O),
) -> Result<usize, DatapathError> {
    let mut n = 0;
    for entry in old.iter() {
        let (key, values) = entry.map_err(map_err("reading old counters"))?;
        let mut sum: Vec<V> = match new.get(&key, 0) {
            Ok(cur) => cur.iter().copied().collect(),
            Err(_) => vec![V::default(); ncpus],
        };
        for (s, v) in sum.iter_mut().zip(values.iter()) {
            add(s, v);
        }
        let sum = PerCpuValues::try_from(sum).map_err(io_err("per-CPU counters"))?;
        new.insert(key, sum, 0)
            .map_err(map_err("writing carried counters"))?;
        n += 1;
    }
    Ok(n)
}

/// `BPF_NOEXIST`: insert only where the key is absent.
const NOEXIST: u64 = 1;

/// Copies the entries of one conntrack table into another that lacks
/// them (entries the new one has are newer).
fn copy_ct_entries(old: MapData, new: MapData) -> Result<usize, DatapathError> {
    let old = HashMap::<MapData, CtKey, CtEntry>::try_from(Map::LruHashMap(old))
        .map_err(map_err("reading an old conntrack table"))?;
    let mut new = HashMap::<MapData, CtKey, CtEntry>::try_from(Map::LruHashMap(new))
        .map_err(map_err("opening a new conntrack table"))?;
    let mut n = 0;
    for entry in old.iter().filter_map(Result::ok) {
        // BPF_NOEXIST: an entry the new programs made is kept.
        if new.insert(entry.0, entry.1, NOEXIST).is_ok() {
            n += 1;
        }
    }
    Ok(n)
}

impl Datapath {
    /// The tables of an earlier version of `hookd_ct`, each with the slot
    /// it belongs at in this build's: an array of maps keeps its slots
    /// (they carry over, `adopt_slots`); a hash of maps (a build before
    /// slots) is keyed by ifindex, whose config gives the slot. Tables of
    /// an ifindex without one are logged and left.
    fn earlier_tables(&self, path: &Path, map: MapData) -> Vec<(u32, MapData)> {
        let kind = map.info().and_then(|i| i.map_type());
        match kind {
            Ok(aya::maps::MapType::ArrayOfMaps) => {
                let Ok(outer) = ArrayOfMaps::<MapData>::try_from(Map::ArrayOfMaps(map)) else {
                    return Vec::new();
                };
                (1..outer.len())
                    .filter_map(|slot| Some((slot, outer.get(&slot, 0).ok()?)))
                    .collect()
            }
            Ok(aya::maps::MapType::HashOfMaps) => {
                let Ok(outer) = HashOfMaps::<MapData, u32>::try_from(Map::HashOfMaps(map)) else {
                    return Vec::new();
                };
                let mut tables = Vec::new();
                for ifindex in outer.keys().filter_map(Result::ok) {
                    let Ok(table) = outer.get(&ifindex, 0) else {
                        continue;
                    };
                    let slot = self
                        .ct_slot(ifindex)
                        .or_else(|| self.carried_slots.get(&ifindex).copied());
                    match slot {
                        Some(slot) => tables.push((slot, table)),
                        None => tracing::warn!(
                            ifindex,
                            "a conntrack table of an ifindex without a NIC config is not carried"
                        ),
                    }
                }
                tables
            }
            _ => {
                tracing::warn!(pin = %path.display(), "an earlier hookd_ct is not a map of maps; its connections are not carried");
                Vec::new()
            }
        }
    }

    /// Moves the conntrack tables of earlier versions of `hookd_ct` into
    /// this build's, before any tap runs this build's programs: each NIC's
    /// table itself when the kernel accepts it (old and new programs then
    /// share it), else a new table with the old one's entries.
    pub(crate) fn carry_tables(&mut self) {
        let old: Vec<(PathBuf, MapData)> = self
            .retired
            .iter()
            .filter(|r| r.carry == Carry::Tables)
            .filter_map(|r| Some((r.path.clone(), MapData::from_id(r.id).ok()?)))
            .collect();
        for (path, map) in old {
            let (mut shared, mut copied, mut lost) = (0, 0, 0);
            for (slot, table) in self.earlier_tables(&path, map) {
                if self.ct.get(&slot, 0).is_ok() {
                    continue;
                }
                if self.ct.set(slot, &table, 0).is_ok() {
                    shared += 1;
                    continue;
                }
                // The copy is as big as the table it copies (a policy's
                // own size), and no smaller than the host's.
                let size = table
                    .info()
                    .map_or(self.ct_entries, |i| i.max_entries().max(self.ct_entries));
                let copy = self
                    .ensure_ct_table(slot, size)
                    .and_then(|()| self.ct.get(&slot, 0).map_err(map_err("new table")))
                    .and_then(|new| copy_ct_entries(table, new));
                match copy {
                    Ok(n) => copied += n,
                    Err(e) => {
                        lost += 1;
                        tracing::warn!(slot, error = %e, "copying a NIC's tracked connections failed");
                    }
                }
            }
            tracing::info!(from = %path.display(), tables_shared = shared, entries_copied = copied,
                tables_lost = lost, "conntrack tables carried to this version's hookd_ct");
        }
    }

    /// Retires the earlier map versions no program reads any more: their
    /// counters are added to this build's, their pins removed, and this
    /// build's maps take the plain names. A version some program still
    /// reads (a tap whose swap failed) stays, with a warning; the next start
    /// tries again. Returns how many were retired.
    pub fn retire_old_maps(&mut self) -> usize {
        if self.retired.is_empty() {
            return 0;
        }
        // A program whose last link went away is freed by the kernel a
        // moment later: wait for that before calling a map still in use.
        let mut in_use = maps_in_use();
        for _ in 0..20 {
            if !self.retired.iter().any(|r| in_use.contains(&r.id)) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            in_use = maps_in_use();
        }
        let mut done = 0;
        for r in std::mem::take(&mut self.retired) {
            if in_use.contains(&r.id) {
                tracing::warn!(map = %r.name, pin = %r.path.display(), map_id = r.id,
                    "an earlier version of this map is still read by running programs (a tap whose swap failed); keeping it");
                self.retired.push(r);
                continue;
            }
            match self.carry_retired(&r.name, &r.path, r.carry, r.map) {
                Ok(n) => tracing::info!(map = %r.name, pin = %r.path.display(), entries = n,
                    "earlier map version carried and retired"),
                Err(e) => tracing::warn!(map = %r.name, error = %e,
                    "carrying an earlier map version failed; retiring it anyway"),
            }
            if let Err(e) = std::fs::remove_file(&r.path) {
                tracing::warn!(pin = %r.path.display(), error = %e, "removing an old map pin failed");
            }
            done += 1;
        }
        self.take_plain_names();
        done
    }

    /// What is left to carry from a retired version, once nothing writes it.
    fn carry_retired(
        &mut self,
        name: &str,
        path: &Path,
        carry: Carry,
        map: MapData,
    ) -> Result<usize, DatapathError> {
        let ncpus = self.ncpus;
        match carry {
            Carry::Policy | Carry::Fresh => Ok(0),
            Carry::Counters => match name {
                hookd_bpf::MAP_COUNTERS => {
                    // The same slots: the NICs' configs kept theirs.
                    let old = PerCpuArray::<_, NicStats>::try_from(Map::PerCpuArray(map))
                        .map_err(map_err("old hookd_counters"))?;
                    let slots = old.len().min(self.nic_counters.len());
                    for slot in 1..slots {
                        let (Ok(a), Ok(b)) = (old.get(&slot, 0), self.nic_counters.get(&slot, 0))
                        else {
                            continue;
                        };
                        let sum: Vec<NicStats> = b
                            .iter()
                            .zip(a.iter())
                            .map(|(b, a)| {
                                let mut s = *b;
                                s.add(a);
                                s
                            })
                            .collect();
                        let sum =
                            PerCpuValues::try_from(sum).map_err(io_err("per-CPU counters"))?;
                        self.nic_counters
                            .set(slot, sum, 0)
                            .map_err(map_err("writing carried counters"))?;
                    }
                    Ok(slots.saturating_sub(1) as usize)
                }
                hookd_bpf::MAP_STATS if value_size(&map) == std::mem::size_of::<NicStats16>() => {
                    let old = PerCpuHashMap::try_from(Map::PerCpuHashMap(map))
                        .map_err(map_err("old hookd_stats (16 drop reasons)"))?;
                    add_counters::<u32, NicStats16, NicStats>(
                        old,
                        &mut self.stats,
                        ncpus,
                        |a, b| a.add(&b.upgraded()),
                    )
                }
                hookd_bpf::MAP_STATS => {
                    let old = PerCpuHashMap::try_from(Map::PerCpuHashMap(map))
                        .map_err(map_err("old hookd_stats"))?;
                    add_counters::<u32, NicStats, NicStats>(old, &mut self.stats, ncpus, |a, b| {
                        a.add(b)
                    })
                }
                hookd_bpf::MAP_NET_STATS
                    if value_size(&map) == std::mem::size_of::<NetStats6>() =>
                {
                    let old = PerCpuHashMap::try_from(Map::PerCpuHashMap(map))
                        .map_err(map_err("old hookd_net_stats (6 counters)"))?;
                    add_counters::<u32, NetStats6, NetStats>(
                        old,
                        &mut self.net_stats,
                        ncpus,
                        |a, b| a.add(&b.upgraded()),
                    )
                }
                hookd_bpf::MAP_NET_STATS => {
                    let old = PerCpuHashMap::try_from(Map::PerCpuHashMap(map))
                        .map_err(map_err("old hookd_net_stats"))?;
                    add_counters::<u32, NetStats, NetStats>(
                        old,
                        &mut self.net_stats,
                        ncpus,
                        |a, b| a.add(b),
                    )
                }
                _ => {
                    let old = PerCpuHashMap::try_from(Map::PerCpuLruHashMap(map))
                        .map_err(map_err("old hookd_fw_hits"))?;
                    add_counters::<FwHitKey, u64, u64>(old, &mut self.fw_hits, ncpus, |a, b| {
                        *a += *b
                    })
                }
            },
            Carry::Tables => {
                // Second pass: connections the old programs opened after
                // `carry_tables` and before their swap.
                let mut n = 0;
                for (slot, old) in self.earlier_tables(path, map) {
                    let Ok(new) = self.ct.get(&slot, 0) else {
                        continue;
                    };
                    let same = old.info().map(|i| i.id()).ok() == new.info().map(|i| i.id()).ok();
                    if !same {
                        n += copy_ct_entries(old, new)?;
                    }
                }
                Ok(n)
            }
        }
    }

    /// Renames this build's maps to their plain names where no earlier
    /// version holds them any more.
    fn take_plain_names(&mut self) {
        let maps_dir = self.pin_dir.join("maps");
        for p in self.placements.iter_mut() {
            if p.file == p.name || self.retired.iter().any(|r| r.name == p.name) {
                continue;
            }
            let (from, to) = (maps_dir.join(&p.file), maps_dir.join(&p.name));
            if to.exists() {
                continue;
            }
            match std::fs::rename(&from, &to) {
                Ok(()) => {
                    tracing::info!(map = %p.name, from = %p.file, "map pinned under its plain name again");
                    p.file = p.name.clone();
                }
                Err(e) => {
                    tracing::warn!(pin = %from.display(), error = %e, "renaming a map pin failed")
                }
            }
        }
        self.counters.set_pins(self.pin_paths());
    }

    /// Where each of this build's maps is pinned now.
    pub(crate) fn pin_paths(&self) -> Vec<(String, PathBuf)> {
        let maps_dir = self.pin_dir.join("maps");
        self.placements
            .iter()
            .map(|p| (p.name.clone(), maps_dir.join(&p.file)))
            .collect()
    }

    /// Earlier map versions still pinned (read by programs not yet
    /// swapped).
    pub fn old_map_versions(&self) -> Vec<PathBuf> {
        self.retired.iter().map(|r| r.path.clone()).collect()
    }
}

/// Ids of the maps any loaded program uses.
fn maps_in_use() -> HashSet<u32> {
    loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|p| p.map_ids().ok().flatten())
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(files: &[(&str, bool)]) -> Vec<Found> {
        files
            .iter()
            .map(|(f, c)| Found {
                file: f.to_string(),
                compatible: *c,
            })
            .collect()
    }

    /// (map, carry, [(pinned file, compatible)]).
    type Pins<'a> = (&'a str, Carry, &'a [(&'a str, bool)]);

    fn plan(maps: &[Pins]) -> Vec<Placement> {
        let maps: Vec<_> = maps
            .iter()
            .map(|(n, c, f)| (n.to_string(), *c, found(f)))
            .collect();
        plan_pins(&maps)
    }

    #[test]
    fn names_of_versions() {
        assert!(is_version_of("hookd_fw", "hookd_fw"));
        assert!(is_version_of("hookd_fw-v2", "hookd_fw"));
        assert!(is_version_of("hookd_fw-v12", "hookd_fw"));
        assert!(!is_version_of("hookd_fw_hits", "hookd_fw"));
        assert!(!is_version_of("hookd_fw-v", "hookd_fw"));
        assert!(!is_version_of("hookd_fw-vx", "hookd_fw"));
        assert!(!is_version_of("hookd_fw-2", "hookd_fw"));
    }

    #[test]
    fn fresh_pins_take_plain_names() {
        let p = plan(&[("hookd_stats", Carry::Counters, &[])]);
        assert_eq!(p[0].file, "hookd_stats");
        assert!(p[0].created);
        assert!(p[0].older.is_empty());
    }

    #[test]
    fn a_compatible_pin_is_shared() {
        let p = plan(&[("hookd_stats", Carry::Counters, &[("hookd_stats", true)])]);
        assert_eq!(p[0].file, "hookd_stats");
        assert!(!p[0].created);
        assert!(p[0].older.is_empty());
    }

    #[test]
    fn an_incompatible_pin_gets_a_new_version_beside_it() {
        let p = plan(&[("hookd_stats", Carry::Counters, &[("hookd_stats", false)])]);
        assert_eq!(p[0].file, "hookd_stats-v2");
        assert!(p[0].created);
        assert_eq!(p[0].older, ["hookd_stats"]);
        let p = plan(&[(
            "hookd_stats",
            Carry::Counters,
            &[("hookd_stats", false), ("hookd_stats-v2", false)],
        )]);
        assert_eq!(p[0].file, "hookd_stats-v3");
        assert_eq!(p[0].older.len(), 2);
    }

    #[test]
    fn a_version_left_by_an_unfinished_retirement_is_reused() {
        // Plain = the old layout, still read by a tap whose swap failed;
        // -v2 = this build's, made by the previous start.
        let p = plan(&[(
            "hookd_stats",
            Carry::Counters,
            &[("hookd_stats", false), ("hookd_stats-v2", true)],
        )]);
        assert_eq!(p[0].file, "hookd_stats-v2");
        assert!(!p[0].created);
        assert_eq!(p[0].older, ["hookd_stats"]);
    }

    #[test]
    fn the_policy_maps_move_together() {
        let p = plan(&[
            ("hookd_nics", Carry::Policy, &[("hookd_nics", true)]),
            (
                "hookd_fw_rules",
                Carry::Policy,
                &[("hookd_fw_rules", false)],
            ),
            ("hookd_stats", Carry::Counters, &[("hookd_stats", true)]),
        ]);
        assert_eq!(p[0].file, "hookd_nics-v2");
        assert!(p[0].created);
        assert_eq!(p[0].older, ["hookd_nics"]);
        assert_eq!(p[1].file, "hookd_fw_rules-v2");
        // Not a policy map: shared as before.
        assert_eq!(p[2].file, "hookd_stats");
        assert!(!p[2].created);
    }

    #[test]
    fn policy_maps_do_not_move_without_an_older_version() {
        // A new map on a host where the others are pinned: nothing to keep
        // consistent with.
        let p = plan(&[
            ("hookd_nics", Carry::Policy, &[("hookd_nics", true)]),
            ("hookd_routes", Carry::Policy, &[]),
        ]);
        assert_eq!(p[0].file, "hookd_nics");
        assert!(!p[0].created);
        assert_eq!(p[1].file, "hookd_routes");
    }

    #[test]
    fn every_map_of_the_object_has_a_carry_rule() {
        let obj = aya_obj::Object::parse(hookd_bpf::HOOKD_OBJ).unwrap();
        for (name, m) in &obj.maps {
            if m.pinning() == aya_obj::maps::PinningType::ByName {
                assert!(carry_of(name).is_some(), "{name} has no entry in CARRY");
            }
        }
        for (name, _) in CARRY {
            assert!(
                obj.maps.contains_key(name),
                "CARRY names {name}, not in the object"
            );
        }
    }
}
