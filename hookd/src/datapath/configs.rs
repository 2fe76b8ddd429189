//! The NICs' configs: `hookd_nics` by ifindex is hookd's record of them,
//! and the programs read a copy of each (maps.h): two per counter slot in
//! `hookd_nic_cfgs`, the live one named by the NIC's entry in
//! `hookd_nic_index` (an array by ifindex, for ifindexes below
//! `NIC_INDEX_DIRECT`) or `hookd_nic_far` (a hash, for the others). Array
//! lookups are inlined by the verifier, where the hash lookup by ifindex
//! cost a fifth of an established flow's time.
//!
//! A switch writes the idle copy, then the record, then the index (one
//! 4-byte write: a packet reads the old config or the new one). A NIC
//! removed loses its index entry first. So a daemon stopped between two
//! writes leaves a record without an index entry, never the reverse, and
//! [`Datapath::publish_configs`] at start puts every record in force.

use crate::datapath::error::{DatapathError, io_err, map_err};
use crate::datapath::{Datapath, batch};
use aya::maps::{Array, HashMap, MapData};
use hookd_bpf::layout::{self, NicConfig};
use std::collections::HashSet;

/// The maps the programs read configs from.
pub(crate) struct Published {
    pub(crate) index: Array<MapData, u32>,
    pub(crate) far: HashMap<MapData, u32, u32>,
    pub(crate) cfgs: Array<MapData, NicConfig>,
    /// `index`'s descriptor, for reading it in one batch (aya's arrays
    /// give theirs no access).
    pub(crate) index_fd: std::os::fd::OwnedFd,
}

fn no_slot(ifindex: u32) -> DatapathError {
    DatapathError::Io {
        what: format!("the config of ifindex {ifindex} has no counter slot of its own"),
        source: std::io::Error::from_raw_os_error(libc::EINVAL),
    }
}

/// The index entry of the copy at `half` of `slot`: 0 is none.
fn entry(slot: u32, half: u32) -> u32 {
    2 * slot + half + 1
}

impl Published {
    /// The index entry of `ifindex`: 0 when the programs know no config.
    fn live(&self, ifindex: u32) -> u32 {
        if ifindex < layout::NIC_INDEX_DIRECT {
            self.index.get(&ifindex, 0).unwrap_or(0)
        } else {
            self.far.get(&ifindex, 0).unwrap_or(0)
        }
    }

    /// The config the programs read for `ifindex`, if any.
    pub(crate) fn get(&self, ifindex: u32) -> Option<NicConfig> {
        match self.live(ifindex) {
            0 => None,
            e => self.cfgs.get(&(e - 1), 0).ok(),
        }
    }

    /// Writes `cfg` into the idle copy of its slot: the entry that puts it
    /// in force, for [`Published::switch`].
    fn stage(&mut self, ifindex: u32, cfg: &NicConfig) -> Result<u32, DatapathError> {
        if cfg.slot == 0 || cfg.slot > layout::MAX_NICS {
            return Err(no_slot(ifindex));
        }
        let idle = u32::from(self.live(ifindex) == entry(cfg.slot, 0));
        let e = entry(cfg.slot, idle);
        self.cfgs
            .set(e - 1, cfg, 0)
            .map_err(map_err(format!("writing the config of ifindex {ifindex}")))?;
        Ok(e)
    }

    /// Points `ifindex` at index entry `e` (0: no config).
    fn switch(&mut self, ifindex: u32, e: u32) -> Result<(), DatapathError> {
        let what = || format!("switching the config of ifindex {ifindex}");
        if ifindex < layout::NIC_INDEX_DIRECT {
            self.index.set(ifindex, e, 0).map_err(map_err(what()))
        } else if e == 0 {
            match self.far.remove(&ifindex) {
                Err(aya::maps::MapError::KeyNotFound) => Ok(()),
                r => r.map_err(map_err(what())),
            }
        } else {
            self.far.insert(ifindex, e, 0).map_err(map_err(what()))
        }
    }
}

impl Datapath {
    /// Makes `cfg` the config of `ifindex`, for hookd's record and for the
    /// programs. On an error the old config stays in force.
    pub(crate) fn set_config(&mut self, ifindex: u32, cfg: NicConfig) -> Result<(), DatapathError> {
        let e = self.published.stage(ifindex, &cfg)?;
        let old = self.nics.get(&ifindex, 0).ok();
        self.nics
            .insert(ifindex, cfg, 0)
            .map_err(map_err("writing NIC config"))?;
        if let Err(err) = self.published.switch(ifindex, e) {
            let _ = match old {
                Some(o) => self.nics.insert(ifindex, o, 0),
                None => self.nics.remove(&ifindex),
            };
            return Err(err);
        }
        Ok(())
    }

    /// Forgets the config of `ifindex`: the programs first, then the
    /// record. A config already gone is no error.
    pub(crate) fn drop_config(&mut self, ifindex: u32) {
        if let Err(e) = self.published.switch(ifindex, 0) {
            tracing::warn!(ifindex, error = %e, "the programs may still read a removed NIC's config");
        }
        let _ = self.nics.remove(&ifindex);
    }

    /// At start: every recorded config in force for the programs (an
    /// earlier build had no copies, or a daemon stopped between writes),
    /// and no index entry left without a record.
    pub(crate) fn publish_configs(&mut self) -> Result<(), DatapathError> {
        let records: Vec<(u32, NicConfig)> = self.nics.iter().filter_map(Result::ok).collect();
        let known: HashSet<u32> = records.iter().map(|(i, _)| *i).collect();
        for (ifindex, cfg) in records {
            if self.published.get(ifindex) == Some(cfg) {
                continue;
            }
            // A slot not this daemon's (adopt_slots found none for it)
            // could be another NIC's copies. One NIC's failure does not
            // keep the daemon from the others; writing its policy again
            // retries it.
            let put = if self.slots.owns(cfg.slot) {
                self.published
                    .stage(ifindex, &cfg)
                    .and_then(|e| self.published.switch(ifindex, e))
            } else {
                Err(no_slot(ifindex))
            };
            if let Err(e) = put {
                tracing::error!(ifindex, error = %e, "the programs do not see this NIC's config: its frames pass unjudged until its policy is written again");
            }
        }
        let direct: Vec<(u32, u32)> = batch::lookup_all(&self.published.index_fd)
            .map_err(io_err("reading hookd_nic_index"))?;
        let far: Vec<u32> = self.published.far.keys().filter_map(Result::ok).collect();
        let stale = direct
            .into_iter()
            .filter(|(_, e)| *e != 0)
            .map(|(i, _)| i)
            .chain(far)
            .filter(|i| !known.contains(i));
        for ifindex in stale.collect::<Vec<_>>() {
            if let Err(e) = self.published.switch(ifindex, 0) {
                tracing::warn!(ifindex, error = %e, "a config with no record is left for the programs");
            }
        }
        Ok(())
    }
}
