//! Per-NIC connection tracking: each NIC with security groups has its own
//! LRU table inside the `hookd_ct` map of maps, so a VM that opens too
//! many connections evicts only its own.

use crate::datapath::Datapath;
use crate::datapath::error::{DatapathError, map_err};
use aya::maps::{HashMap, HashOfMaps, Map, MapData};
use hookd_bpf::layout::{self, CtEntry, CtKey};

/// Gives the NIC its own connection-tracking table, once. Inserting into a
/// map of maps waits for an RCU grace period in the kernel.
pub(crate) fn ensure_ct_table(
    ct: &mut HashOfMaps<MapData, u32>,
    ifindex: u32,
) -> Result<(), DatapathError> {
    if ct.get(&ifindex, 0).is_ok() {
        return Ok(());
    }
    let def = aya_obj::Map::new_from_params(
        aya_obj::generated::bpf_map_type::BPF_MAP_TYPE_LRU_HASH as u32,
        std::mem::size_of::<CtKey>() as u32,
        std::mem::size_of::<CtEntry>() as u32,
        layout::CT_PER_NIC,
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
        ensure_ct_table(&mut self.ct, ifindex)
    }

    /// Forgets the NIC's tracked connections with its table.
    pub(crate) fn clear_ct(&mut self, ifindex: u32) {
        let _ = self.ct.remove(&ifindex);
    }

    /// Number of tracked connections of `ifindex`.
    pub fn ct_count(&self, ifindex: u32) -> usize {
        let Ok(table) = self.ct.get(&ifindex, 0) else {
            return 0;
        };
        match HashMap::<MapData, CtKey, CtEntry>::try_from(Map::LruHashMap(table)) {
            Ok(t) => t.keys().filter_map(Result::ok).count(),
            Err(_) => 0,
        }
    }
}
