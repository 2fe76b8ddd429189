//! Per-NIC connection tracking: each NIC with security groups has its own
//! LRU table inside the `hookd_ct` map of maps, so a VM that opens too
//! many connections evicts only its own.

use crate::datapath::Datapath;
use crate::datapath::error::{DatapathError, map_err};
use aya::maps::{HashMap, HashOfMaps, Map, MapData};
use hookd_bpf::layout::{CtEntry, CtKey};

/// The fewest and most connections a NIC's table may be configured for.
pub const CT_ENTRIES_RANGE: std::ops::RangeInclusive<u32> = 1024..=4_194_304;

/// Gives the NIC its own connection-tracking table of `entries`, once (a
/// NIC that has one keeps it, whatever its size). Inserting into a map of
/// maps waits for an RCU grace period in the kernel. The kernel accepts
/// LRU tables of any size in `hookd_ct`: hash maps' inner maps are not
/// compared by size.
pub(crate) fn ensure_ct_table(
    ct: &mut HashOfMaps<MapData, u32>,
    ifindex: u32,
    entries: u32,
) -> Result<(), DatapathError> {
    if ct.get(&ifindex, 0).is_ok() {
        return Ok(());
    }
    let def = aya_obj::Map::new_from_params(
        aya_obj::generated::bpf_map_type::BPF_MAP_TYPE_LRU_HASH as u32,
        std::mem::size_of::<CtKey>() as u32,
        std::mem::size_of::<CtEntry>() as u32,
        entries,
        0,
    );
    let table = MapData::create(def, "hookd_ct_nic", None)
        .map_err(map_err("creating a conntrack table"))?;
    ct.insert(ifindex, &table, 0)
        .map_err(map_err("adding the NIC's conntrack table"))
}

impl Datapath {
    /// Gives the NIC its own connection-tracking table, once.
    pub(crate) fn ensure_ct_table(&mut self, ifindex: u32) -> Result<(), DatapathError> {
        ensure_ct_table(&mut self.ct, ifindex, self.ct_entries)
    }

    /// How many connections the tables of NICs attached from now on hold
    /// (`conntrack_entries` in hookd.toml; default `CT_PER_NIC`).
    pub fn set_conntrack_entries(&mut self, entries: u32) {
        self.ct_entries = entries;
    }

    /// The size of the NIC's conntrack table, if it has one.
    pub fn ct_capacity(&self, ifindex: u32) -> Option<u32> {
        let table = self.ct.get(&ifindex, 0).ok()?;
        table.info().ok().map(|i| i.max_entries())
    }

    /// Forgets the NIC's tracked connections with its table.
    pub(crate) fn clear_ct(&mut self, ifindex: u32) {
        let _ = self.ct.remove(&ifindex);
    }

    /// The NIC's conntrack table as the kernel holds it: connections and
    /// the entries of fragmented datagrams (`CtKey::kind`).
    pub fn ct_entries(&self, ifindex: u32) -> Vec<(CtKey, CtEntry)> {
        let Ok(table) = self.ct.get(&ifindex, 0) else {
            return Vec::new();
        };
        match HashMap::<MapData, CtKey, CtEntry>::try_from(Map::LruHashMap(table)) {
            Ok(t) => t.iter().filter_map(Result::ok).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Writes `entries` into the NIC's conntrack table, replacing those of
    /// the same keys (`last_seen` on the clock of `ct_now` in
    /// bpf/c/lib/conntrack.h, CLOCK_MONOTONIC).
    pub fn put_ct_entries(
        &mut self,
        ifindex: u32,
        entries: &[(CtKey, CtEntry)],
    ) -> Result<(), DatapathError> {
        let table = self
            .ct
            .get(&ifindex, 0)
            .map_err(map_err(format!("the conntrack table of ifindex {ifindex}")))?;
        let mut t = HashMap::<MapData, CtKey, CtEntry>::try_from(Map::LruHashMap(table))
            .map_err(map_err("opening a conntrack table"))?;
        for (k, e) in entries {
            t.insert(k, e, 0).map_err(map_err(format!(
                "writing a conntrack entry of ifindex {ifindex}"
            )))?;
        }
        Ok(())
    }

    /// Number of tracked connections of `ifindex`.
    pub fn ct_count(&self, ifindex: u32) -> usize {
        self.ct_entries(ifindex).len()
    }
}
