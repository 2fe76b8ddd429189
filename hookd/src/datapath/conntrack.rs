//! Per-NIC connection tracking: each NIC with security groups has its own
//! LRU table inside the `hookd_ct` map of maps, so a VM that opens too
//! many connections evicts only its own. The table sits at the slot of the
//! NIC's config (`slots.rs`), as its counters do; callers name the NIC by
//! ifindex.

use crate::datapath::error::{DatapathError, io_err, map_err};
use crate::datapath::{Datapath, batch};
use aya::maps::{ArrayOfMaps, MapData};
use hookd_bpf::layout::{self, CtEntry, CtKey};
use hookd_model::plan::NicMode;
use std::os::fd::AsFd;

/// The fewest and most connections a NIC's table may be configured for
/// (in hookd.toml, and by a policy's `conntrack-entries`).
pub const CT_ENTRIES_RANGE: std::ops::RangeInclusive<u32> = hookd_model::policy::CONNTRACK_ENTRIES;

/// The most a policy's `conntrack-entries` may ask for unless hookd.toml
/// says otherwise: 16 times the default table (about 30 MB of kernel
/// memory for the NIC).
pub const DEFAULT_CT_ENTRIES_MAX: u32 = 262_144;

/// Now on the clock of conntrack entries (`ct_now` in bpf/c/lib/conntrack.h:
/// CLOCK_MONOTONIC, which the kernel's coarse variant reads at tick
/// resolution), in ns.
pub fn ct_clock_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given; CLOCK_MONOTONIC
    // always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Free entries an LRU table may hold where its writer cannot use them:
/// the kernel gives each CPU up to 128 free entries of its own
/// (`LOCAL_FREE_TARGET`, kernel/bpf/bpf_lru_list.c), and an insert that
/// finds fewer than that many left on the shared list evicts an entry
/// instead of taking a free one. So an LRU table evicts before it is full
/// (measured: one of 100,000 lost 96 of 100,000 written).
fn lru_slack() -> usize {
    128 * (aya::util::nr_cpus().unwrap_or(1024) + 1)
}

/// How many entries an LRU table of `capacity` takes with none evicted.
fn lru_fill_limit(capacity: u32) -> usize {
    (capacity as usize).saturating_sub(lru_slack())
}

/// A new, empty conntrack table of `entries`, not yet any NIC's.
pub(crate) fn new_ct_table(entries: u32) -> Result<MapData, DatapathError> {
    let def = aya_obj::Map::new_from_params(
        aya_obj::generated::bpf_map_type::BPF_MAP_TYPE_LRU_HASH as u32,
        std::mem::size_of::<CtKey>() as u32,
        std::mem::size_of::<CtEntry>() as u32,
        entries,
        0,
    );
    MapData::create(def, "hookd_ct_nic", None).map_err(map_err("creating a conntrack table"))
}

/// Gives the NIC at `slot` its own connection-tracking table of
/// `entries`, once (a NIC that has one keeps it, whatever its size).
/// Inserting into a map of maps waits for an RCU grace period in the
/// kernel. The kernel accepts LRU tables of any size in `hookd_ct`: inner
/// maps other than arrays are not compared by size.
pub(crate) fn ensure_ct_table(
    ct: &mut ArrayOfMaps<MapData>,
    slot: u32,
    entries: u32,
) -> Result<(), DatapathError> {
    if ct.get(&slot, 0).is_ok() {
        return Ok(());
    }
    let table = new_ct_table(entries)?;
    ct.set(slot, &table, 0)
        .map_err(map_err("adding the NIC's conntrack table"))
}

impl Datapath {
    /// The slot of `ifindex`'s config, where the programs find its
    /// conntrack table (`nic_ct` in bpf/c/lib/maps.h), if it has one.
    pub(crate) fn ct_slot(&self, ifindex: u32) -> Option<u32> {
        self.nics
            .get(&ifindex, 0)
            .ok()
            .map(|c| c.slot)
            .filter(|s| self.slots.owns(*s))
    }

    /// [`Datapath::ct_slot`], for a NIC that must have a config.
    pub(crate) fn ct_slot_of(&self, ifindex: u32) -> Result<u32, DatapathError> {
        self.ct_slot(ifindex).ok_or_else(|| {
            DatapathError::Missing(format!(
                "the config (and conntrack slot) of ifindex {ifindex}"
            ))
        })
    }

    /// Gives the NIC at `slot` its own connection-tracking table of
    /// `entries`, once.
    pub(crate) fn ensure_ct_table(&mut self, slot: u32, entries: u32) -> Result<(), DatapathError> {
        self.ct_settled_slot(slot);
        ensure_ct_table(&mut self.ct, slot, entries)
    }

    /// [`Datapath::ensure_ct_table`] by way of the queue where there is
    /// one (`attach = "staged"`): the table goes in with others, in one
    /// grace period, and the NIC fails closed until then.
    pub(crate) fn queue_ct_table(&mut self, slot: u32, entries: u32) -> Result<(), DatapathError> {
        let Some(q) = &self.ct_queue else {
            return self.ensure_ct_table(slot, entries);
        };
        if q.holds(slot) || self.ct.get(&slot, 0).is_ok() {
            return Ok(());
        }
        if let Some(table) = q.push(slot, new_ct_table(entries)?) {
            // The thread is gone: the table goes in here, waiting.
            return self
                .ct
                .set(slot, &table, 0)
                .map_err(map_err("adding the NIC's conntrack table"));
        }
        Ok(())
    }

    /// Waits for a queued table of `ifindex` to be in (`ct_queue.rs`), so
    /// that what reads, replaces or removes it finds it.
    pub(crate) fn ct_settled(&self, ifindex: u32) {
        if let Some(slot) = self.ct_slot(ifindex) {
            self.ct_settled_slot(slot);
        }
    }

    pub(crate) fn ct_settled_slot(&self, slot: u32) {
        if let Some(q) = &self.ct_queue {
            q.settle(Some(slot));
        }
    }

    /// The NIC's conntrack table, once any queued one is in.
    fn ct_table_of(&self, ifindex: u32) -> Result<MapData, DatapathError> {
        let slot = self.ct_slot_of(ifindex)?;
        self.ct_settled_slot(slot);
        self.ct
            .get(&slot, 0)
            .map_err(map_err(format!("the conntrack table of ifindex {ifindex}")))
    }

    /// Does the NIC have a conntrack table, or need none (its firewall
    /// off both ways, or no config)? Waits for a queued table first.
    pub(crate) fn has_ct_table_if_needed(&self, ifindex: u32) -> bool {
        match self.nics.get(&ifindex, 0) {
            Ok(c) if c.fw_ingress != layout::FW_OFF || c.fw_egress != layout::FW_OFF => {
                self.ct_table_of(ifindex).is_ok()
            }
            _ => true,
        }
    }

    /// How many connections the tables of NICs attached from now on hold
    /// (`conntrack_entries` in hookd.toml; default `CT_PER_NIC`).
    pub fn set_conntrack_entries(&mut self, entries: u32) {
        self.ct_entries = entries;
    }

    /// The most a policy's `conntrack-entries` may ask for
    /// (`conntrack_entries_max` in hookd.toml).
    pub fn set_conntrack_entries_max(&mut self, entries: u32) {
        self.ct_entries_max = entries;
    }

    /// The size of a new table for a NIC held to `mode`: its policy's
    /// `conntrack-entries`, which this host must allow, or the host's
    /// `conntrack_entries`.
    pub(crate) fn ct_size_for(&self, mode: &NicMode) -> Result<u32, DatapathError> {
        match mode.conntrack_entries() {
            None => Ok(self.ct_entries),
            Some(n) if n <= self.ct_entries_max => Ok(n),
            Some(n) => Err(DatapathError::Conflict(format!(
                "the policy asks for conntrack-entries=\"{n}\"; this host allows at most {} \
                 (conntrack_entries_max in /etc/hookd/hookd.toml)",
                self.ct_entries_max
            ))),
        }
    }

    /// The size of the NIC's conntrack table, if it has one.
    pub fn ct_capacity(&self, ifindex: u32) -> Option<u32> {
        let table = self.ct_table_of(ifindex).ok()?;
        table.info().ok().map(|i| i.max_entries())
    }

    /// Removes the conntrack table at `slot` (the NIC's connections go
    /// with it). None there is no error.
    pub(crate) fn clear_ct_slot(&mut self, slot: u32) {
        self.ct_settled_slot(slot);
        if let Err(e) = batch::delete_all(self.ct_fd.as_fd(), &[slot]) {
            tracing::warn!(slot, error = %e, "removing a NIC's conntrack table");
        }
    }

    /// The NIC's conntrack table as the kernel holds it: connections and
    /// the entries of fragmented datagrams (`CtKey::kind`). Empty when the
    /// NIC has no table or it cannot be read.
    pub fn ct_entries(&self, ifindex: u32) -> Vec<(CtKey, CtEntry)> {
        self.ct_dump(ifindex).unwrap_or_default()
    }

    /// The NIC's conntrack table, read in batches (`datapath::batch`).
    pub fn ct_dump(&self, ifindex: u32) -> Result<Vec<(CtKey, CtEntry)>, DatapathError> {
        let table = self.ct_table_of(ifindex)?;
        batch::lookup_all(table.fd()).map_err(io_err(format!(
            "reading the conntrack table of ifindex {ifindex}"
        )))
    }

    /// Writes `entries` into the NIC's conntrack table, replacing those of
    /// the same keys (`last_seen` on the clock of `ct_now` in
    /// bpf/c/lib/conntrack.h, CLOCK_MONOTONIC).
    pub fn put_ct_entries(
        &mut self,
        ifindex: u32,
        entries: &[(CtKey, CtEntry)],
    ) -> Result<(), DatapathError> {
        let table = self.ct_table_of(ifindex)?;
        batch::update_all(table.fd(), entries).map_err(io_err(format!(
            "writing the conntrack table of ifindex {ifindex}"
        )))
    }

    /// Loads `carried` (a live migration's connections) into the NIC's
    /// conntrack table, with the guest not yet running here. Connections
    /// the table holds already (made since the attach) win over carried
    /// ones of the same key. Returns the table's size.
    ///
    /// When the NIC's table has room, the carried entries are written into
    /// it directly: a packet meanwhile finds a carried connection or not
    /// yet, and one not yet found is judged as new, as it was before the
    /// load. Otherwise the NIC gets a new table, big enough for all of
    /// them, filled aside and swapped in with one map update.
    pub fn load_carried_ct(
        &mut self,
        ifindex: u32,
        carried: &[(CtKey, CtEntry)],
    ) -> Result<u32, DatapathError> {
        let local = self.ct_dump(ifindex)?;
        // Usually none are local yet (the guest has not run here): then
        // the carried ones are written as they are, without a copy.
        let fresh: std::borrow::Cow<'_, [(CtKey, CtEntry)]> = if local.is_empty() {
            carried.into()
        } else {
            let local_keys: std::collections::HashSet<CtKey> =
                local.iter().map(|(k, _)| *k).collect();
            carried
                .iter()
                .filter(|(k, _)| !local_keys.contains(k))
                .copied()
                .collect::<Vec<_>>()
                .into()
        };
        let capacity = self.ct_capacity(ifindex).unwrap_or(0);
        let distinct = fresh.len() + local.len();
        // In place: room for all, and an eighth of the table for what the
        // programs add while the carried ones are written.
        if distinct + capacity as usize / 8 <= lru_fill_limit(capacity) {
            self.put_ct_entries(ifindex, &fresh)?;
            return Ok(capacity);
        }
        let max = *CT_ENTRIES_RANGE.end();
        let want = distinct + distinct / 8 + lru_slack();
        if want > max as usize {
            return Err(DatapathError::Conflict(format!(
                "{distinct} connections do not fit a conntrack table of ifindex {ifindex} \
                 (at most {max} entries)"
            )));
        }
        // At least as big as the NIC's table now (its policy's size, or
        // the host's), and as the connections need.
        let size = (want as u32).max(capacity);
        let table = new_ct_table(size)?;
        for part in [&fresh[..], &local[..]] {
            batch::update_all(table.fd(), part).map_err(io_err(format!(
                "filling a conntrack table for ifindex {ifindex}"
            )))?;
        }
        let slot = self.ct_slot_of(ifindex)?;
        self.ct.set(slot, &table, 0).map_err(map_err(format!(
            "swapping the conntrack table of ifindex {ifindex}"
        )))?;
        Ok(size)
    }

    /// Number of tracked connections of `ifindex`.
    pub fn ct_count(&self, ifindex: u32) -> usize {
        self.ct_entries(ifindex).len()
    }
}
