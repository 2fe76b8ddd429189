//! Counter readers for any thread: packets, bytes, drops, rule hits, and
//! the health of the pins.

use crate::datapath::PROGRAMS;
use crate::datapath::error::{DatapathError, map_err};
use aya::maps::{HashMap, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues};
use hookd_bpf::layout::{FwHitKey, NetStats, NicConfig, NicStats};
use hookd_model::policy::Direction;
use std::path::{Path, PathBuf};

/// Read-only handles of their own on the pinned counter maps, for readers
/// on any thread: reading counters never waits for the daemon's lock, so
/// management calls and hook calls do not queue behind each other.
pub struct Counters {
    pin_dir: PathBuf,
    /// Where each map is pinned (they move when a new version retires an
    /// old one).
    pins: std::sync::RwLock<Vec<(String, PathBuf)>>,
    nics: HashMap<MapData, u32, NicConfig>,
    stats: PerCpuHashMap<MapData, u32, NicStats>,
    nic_counters: PerCpuArray<MapData, NicStats>,
    fw_hits: PerCpuHashMap<MapData, FwHitKey, u64>,
    net_stats: PerCpuHashMap<MapData, u32, NetStats>,
}

impl Counters {
    pub(crate) fn open(
        pin_dir: &Path,
        pins: Vec<(String, PathBuf)>,
    ) -> Result<Counters, DatapathError> {
        let pin_of = |name: &str| {
            pins.iter()
                .find(|(n, _)| n == name)
                .map(|(_, p)| p.clone())
                .unwrap_or_else(|| pin_dir.join("maps").join(name))
        };
        let pinned = |name: &'static str| {
            MapData::from_pin(pin_of(name))
                .and_then(aya::maps::Map::from_map_data)
                .map_err(map_err(name))
        };
        Ok(Counters {
            pin_dir: pin_dir.to_owned(),
            pins: std::sync::RwLock::new(pins.clone()),
            nics: HashMap::try_from(pinned(hookd_bpf::MAP_NICS)?).map_err(map_err("hookd_nics"))?,
            stats: PerCpuHashMap::try_from(pinned(hookd_bpf::MAP_STATS)?)
                .map_err(map_err("hookd_stats"))?,
            nic_counters: PerCpuArray::try_from(pinned(hookd_bpf::MAP_COUNTERS)?)
                .map_err(map_err("hookd_counters"))?,
            fw_hits: PerCpuHashMap::try_from(pinned(hookd_bpf::MAP_FW_HITS)?)
                .map_err(map_err("hookd_fw_hits"))?,
            net_stats: PerCpuHashMap::try_from(pinned(hookd_bpf::MAP_NET_STATS)?)
                .map_err(map_err("hookd_net_stats"))?,
        })
    }

    /// A NIC's counters (or a tenant veth's), summed over CPUs: those at
    /// its config's slot, plus any a hookd before slots kept by ifindex.
    pub fn stats(&self, ifindex: u32) -> Option<NicStats> {
        let slot = self
            .nics
            .get(&ifindex, 0)
            .ok()
            .map(|c| c.slot)
            .filter(|s| *s != 0);
        let parts: Vec<PerCpuValues<NicStats>> = [
            slot.and_then(|s| self.nic_counters.get(&s, 0).ok()),
            self.stats.get(&ifindex, 0).ok(),
        ]
        .into_iter()
        .flatten()
        .collect();
        if parts.is_empty() {
            return None;
        }
        let mut total = NicStats::default();
        for s in parts.iter().flat_map(|p| p.iter()) {
            total.add(s);
        }
        Some(total)
    }

    /// A network NIC's network-stage counters, summed over CPUs.
    pub fn net_stats(&self, ifindex: u32) -> Option<NetStats> {
        let per_cpu = self.net_stats.get(&ifindex, 0).ok()?;
        let mut total = NetStats::default();
        for s in per_cpu.iter() {
            total.add(s);
        }
        Some(total)
    }

    /// Hits per (direction, rule index) of the NIC's live policy half.
    pub fn rule_hits(&self, ifindex: u32) -> Vec<((Direction, u16), u64)> {
        let Some(half) = self.nics.get(&ifindex, 0).ok().map(|c| c.fw_gen) else {
            return Vec::new();
        };
        let mut out: Vec<((Direction, u16), u64)> = self
            .fw_hits
            .iter()
            .filter_map(Result::ok)
            .filter(|(k, _)| k.ifindex == ifindex && k.half == half)
            .map(|(k, v)| {
                let dir = crate::datapath::direction_of(k.dir);
                ((dir, k.rule), v.iter().sum())
            })
            .collect();
        out.sort();
        out
    }

    /// Records where the maps are pinned now.
    pub(crate) fn set_pins(&self, pins: Vec<(String, PathBuf)>) {
        if let Ok(mut p) = self.pins.write() {
            *p = pins;
        }
    }

    /// Programs and maps still pinned where hookd put them (someone may have
    /// unmounted or cleared the bpffs under a running hookd).
    pub fn health(&self) -> Result<(), String> {
        let maps: Vec<PathBuf> = match self.pins.read() {
            Ok(p) => p.iter().map(|(_, path)| path.clone()).collect(),
            Err(_) => Vec::new(),
        };
        let mut missing: Vec<String> = PROGRAMS
            .iter()
            .map(|(name, _, _)| self.pin_dir.join("progs").join(name))
            .chain(maps)
            .filter(|p| !p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        missing.sort();
        Err(format!(
            "pins missing (restart hookd to restore them): {}",
            missing.join(", ")
        ))
    }
}
