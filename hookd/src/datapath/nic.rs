//! Per-NIC map writers: the NIC's config, its source prefixes, its
//! counters and its security-group tables (written to the idle half, then
//! switched in one map write).

use crate::datapath::error::{DatapathError, io_err, map_err};
use crate::datapath::{Datapath, batch, dir_value};
use aya::maps::lpm_trie::Key;
use aya::maps::{HashMap, IterableMap, MapData, PerCpuValues, RingBuf};
use hookd_bpf::layout::{
    self, AddrKey, FwClassData, FwHitKey, FwRuleData, FwVerdict, NicConfig, NicStats,
};
use hookd_model::firewall::Compiled;
use hookd_model::plan::{AntiSpoofing, NicFirewall, NicMode};
use hookd_model::policy::Direction;

impl Datapath {
    /// Writes the NIC's map entries. Done before attaching, so the first
    /// frame the programs see is already judged by the policy.
    pub fn program_nic(
        &mut self,
        ifindex: u32,
        mac: [u8; 6],
        mode: &NicMode,
        generation: u64,
    ) -> Result<(), DatapathError> {
        self.write_nic(ifindex, mac, mode, generation, true)
    }

    /// `program_nic`, leaving out the conntrack table when `with_ct` is
    /// false: a new NIC gets it while its programs attach (see
    /// `attach_all_tcx`). Until it exists the programs fail closed.
    pub(crate) fn write_nic(
        &mut self,
        ifindex: u32,
        mac: [u8; 6],
        mode: &NicMode,
        generation: u64,
        with_ct: bool,
    ) -> Result<(), DatapathError> {
        // Refused before anything is written: a size this host does not allow.
        let ct_size = self.ct_size_for(mode)?;
        let none = NicFirewall::default();
        let (mut flags, prefixes, fw) = match mode.enforcement() {
            Some(e) => (
                nic_flags(&e.anti_spoofing),
                e.anti_spoofing.prefixes.as_slice(),
                &e.firewall,
            ),
            None => (0, &[][..], &none),
        };
        let network = mode.enforcement().and_then(|e| e.network.as_ref());
        // A network NIC's entries go in before its config names them.
        if let Some(net) = network {
            self.write_network(ifindex, mac, prefixes, net)?;
            flags |= layout::NIC_F_NETWORK;
        }
        // New prefixes go in before stale ones go out, so a re-applied
        // policy never drops an address that both versions allow.
        let keys: Vec<AddrKey> = prefixes
            .iter()
            .map(|p| layout::addr_key(ifindex, p.addr(), p.prefix_len()))
            .collect();
        let same =
            |a: &AddrKey, b: &AddrKey| a.prefix_len() == b.prefix_len() && a.data() == b.data();
        // Owned while being written: a failure halfway leaves nothing that
        // a later clear would not find.
        let old = self.owned.addrs.remove(&ifindex).unwrap_or_default();
        let mut both = old.clone();
        both.extend(keys.iter().filter(|k| !old.iter().any(|o| same(o, k))));
        self.owned.addrs.insert(ifindex, both);
        for (key, p) in keys.iter().zip(prefixes) {
            self.addrs
                .insert(key, 1, 0)
                .map_err(map_err(format!("adding {p} for ifindex {ifindex}")))?;
        }
        for k in old.iter().filter(|o| !keys.iter().any(|n| same(n, o))) {
            self.addrs
                .remove(k)
                .map_err(map_err("removing a stale prefix"))?;
        }
        self.owned.addrs.insert(ifindex, keys.clone());
        // Security groups: write the idle half of the tables, then switch
        // halves with the one nic_config update below, so a packet sees the
        // old rules or the new ones, never a mix; then drop the old half.
        let old = self.nics.get(&ifindex, 0).ok();
        let (slot, new_slot) = self.slot_for(ifindex, old.as_ref())?;
        // A slot taken here goes back, with any table given at it, when the
        // config is not written.
        let undo = |dp: &mut Datapath| {
            if new_slot {
                dp.clear_ct_slot(slot);
                dp.slots.release(slot);
            }
        };
        if with_ct
            && (fw.ingress.is_some() || fw.egress.is_some())
            && let Err(e) = self.ensure_ct_table(slot, ct_size)
        {
            undo(self);
            return Err(e);
        }
        let half = old.map(|c| c.fw_gen ^ 1).unwrap_or(0);
        // The idle half is empty once tidied. If not, empty it now, with its
        // hit counters (made by the programs, so finding a NIC's means
        // walking the whole hit map).
        if self.owned.retired.remove(&(ifindex, half)) {
            self.clear_hits(|k| k.ifindex == ifindex && k.half == half);
        }
        self.clear_fw(ifindex, Some(half));
        if let Err(e) = self.write_fw(ifindex, half, fw) {
            self.clear_fw(ifindex, Some(half));
            undo(self);
            return Err(e);
        }
        let fw_mode = |c: &Option<Compiled>| match c {
            None => layout::FW_OFF,
            Some(c) if c.default_deny => layout::FW_DENY,
            Some(_) => layout::FW_ALLOW,
        };
        // Class 0's lookups per direction (class ids carry their own).
        let kinds0 = |c: &Option<Compiled>| {
            c.as_ref()
                .and_then(|c| c.kinds().get(&0).copied())
                .map_or(0, |k| k.bits())
        };
        // A NIC on its way to tcx keeps saying so (`promote.rs`).
        let moving = old.map_or(0, |c| c.flags & layout::NIC_F_PASS_FINAL);
        let cfg = NicConfig {
            mac,
            flags: flags | moving,
            fw_ingress: fw_mode(&fw.ingress),
            fw_egress: fw_mode(&fw.egress),
            fw_gen: half,
            fw_kinds: kinds0(&fw.ingress) | kinds0(&fw.egress) << 2,
            slot,
            generation,
        };
        if let Err(e) = self.set_config(ifindex, cfg) {
            undo(self);
            return Err(e);
        }
        if network.is_none() {
            self.clear_network(ifindex);
        }
        if old.is_some() {
            // The new rules are in force: emptying the old half can wait
            // for `tidy`, after the caller has its answer.
            self.owned.retired.insert((ifindex, half ^ 1));
        }
        Ok(())
    }

    /// Empties the table halves that policy switches left behind, with
    /// their hit counters. The daemon runs it after answering the call that
    /// made the switch, so a policy change is not slowed by removing the
    /// rules it replaced.
    pub fn tidy(&mut self) {
        self.release_idle_tenants();
        if self.owned.retired.is_empty() {
            return;
        }
        let retired = std::mem::take(&mut self.owned.retired);
        self.clear_hits(|k| retired.contains(&(k.ifindex, k.half)));
        for (ifindex, half) in retired {
            self.clear_fw(ifindex, Some(half));
        }
    }

    /// Writes one half of the NIC's security-group tables, each table in
    /// one batch command: a 1,000-rule policy is about 1,300 entries, and a
    /// syscall each was a third of a policy change.
    fn write_fw(&mut self, ifindex: u32, half: u8, fw: &NicFirewall) -> Result<(), DatapathError> {
        let mut classes: Vec<(Key<FwClassData>, u32)> = Vec::new();
        let mut rules: Vec<(Key<FwRuleData>, FwVerdict)> = Vec::new();
        for direction in Direction::BOTH {
            let Some(t) = fw.of(direction) else { continue };
            let dir = dir_value(direction);
            classes.extend(t.classes.iter().map(|(prefix, class)| {
                let data = FwClassData {
                    ifindex,
                    half,
                    dir,
                    pad: [0; 2],
                    addr: prefix.addr.to_be_bytes(),
                };
                let bits = layout::FW_CLASS_FIXED_BITS + u32::from(prefix.len);
                (Key::new(bits, data), *class)
            }));
            rules.extend(t.rules.iter().map(|(k, v)| {
                let data = FwRuleData {
                    ifindex,
                    half,
                    dir,
                    proto: k.proto,
                    any: u8::from(k.any),
                    class: k.class,
                    port: k.block.value.to_be_bytes(),
                    pad: [0; 2],
                };
                let verdict = FwVerdict {
                    deny: u8::from(v.deny),
                    log: u8::from(v.log),
                    rule: v.rule,
                };
                let bits = layout::FW_RULE_FIXED_BITS + u32::from(k.block.len);
                (Key::new(bits, data), verdict)
            }));
        }
        // Owned before written: a batch that fails halfway leaves only
        // entries the caller's clear finds.
        let slot = (ifindex, half);
        let owned = &mut self.owned;
        owned
            .classes
            .entry(slot)
            .or_default()
            .extend(classes.iter().map(|(k, _)| *k));
        owned
            .rules
            .entry(slot)
            .or_default()
            .extend(rules.iter().map(|(k, _)| *k));
        batch::update_all(self.fw_classes.map().fd(), &classes).map_err(io_err(
            "writing the firewall classes (too many rules for the maps?)",
        ))?;
        batch::update_all(self.fw_rules.map().fd(), &rules).map_err(io_err(
            "writing the firewall rules (too many rules for the maps?)",
        ))
    }

    /// Removes the firewall entries of `ifindex` (of one half, or both).
    /// An entry already gone (pins cleared under hookd) is not an error.
    fn clear_fw(&mut self, ifindex: u32, half: Option<u8>) {
        for h in [0u8, 1]
            .into_iter()
            .filter(|h| half.is_none_or(|x| x == *h))
        {
            let classes = self.owned.classes.remove(&(ifindex, h)).unwrap_or_default();
            let rules = self.owned.rules.remove(&(ifindex, h)).unwrap_or_default();
            let res = batch::delete_all(self.fw_classes.map().fd(), &classes)
                .and(batch::delete_all(self.fw_rules.map().fd(), &rules));
            if let Err(e) = res {
                // Entries no program reads any more (the NIC's other half
                // or none is live), left taking room in the shared tables.
                tracing::warn!(ifindex, half = h, "removing old firewall entries: {e}");
            }
        }
    }

    /// Number of firewall rule-table entries stored for `ifindex`.
    pub fn fw_rule_count(&self, ifindex: u32) -> usize {
        self.fw_rules
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.data().ifindex == ifindex)
            .count()
    }

    fn clear_addrs(&mut self, ifindex: u32) {
        for k in self.owned.addrs.remove(&ifindex).unwrap_or_default() {
            let _ = self.addrs.remove(&k);
        }
    }

    /// Removes every map entry of `ifindex`. Entries already gone (pins
    /// cleared under hookd) are no error.
    pub fn forget_nic(&mut self, ifindex: u32) {
        let slot = self.ct_slot(ifindex);
        self.drop_config(ifindex);
        if let Some(slot) = slot {
            // Its connections go with the slot (a NIC taking the slot
            // later gets a table of its own).
            self.clear_ct_slot(slot);
            self.slots.release(slot);
        }
        let _ = self.stats.remove(&ifindex);
        self.clear_fw(ifindex, None);
        self.owned.retired.retain(|(i, _)| *i != ifindex);
        self.clear_hits(|k| k.ifindex == ifindex);
        let _ = self.log_rate.remove(&ifindex);
        self.clear_addrs(ifindex);
        self.clear_network(ifindex);
    }

    /// Hands over the ring buffer of logged packets (once), for a reader
    /// that waits on its file descriptor.
    pub fn take_events(&mut self) -> Option<RingBuf<MapData>> {
        self.events.take()
    }

    /// Removes the hit counters `which` selects: one walk of the hit map,
    /// since the programs make its entries.
    fn clear_hits(&mut self, which: impl Fn(&FwHitKey) -> bool) {
        let keys: Vec<FwHitKey> = self
            .fw_hits
            .keys()
            .filter_map(Result::ok)
            .filter(|k| which(k))
            .collect();
        for k in keys {
            let _ = self.fw_hits.remove(&k);
        }
    }

    /// How often each rule of the live policy decided a packet:
    /// (direction, rule index) -> hits, summed over CPUs.
    pub fn rule_hits(&self, ifindex: u32) -> Vec<((Direction, u16), u64)> {
        self.counters.rule_hits(ifindex)
    }

    /// The counter slot for `ifindex`'s config: the one its config `old`
    /// has, else the one an earlier map version gave it (see
    /// [`Datapath::adopt_slots`]), else a free one, its counters zeroed.
    /// The flag says the slot is newly taken (to give back if the config
    /// is not written).
    fn slot_for(
        &mut self,
        ifindex: u32,
        old: Option<&NicConfig>,
    ) -> Result<(u32, bool), DatapathError> {
        if let Some(c) = old.filter(|c| self.slots.owns(c.slot)) {
            return Ok((c.slot, false));
        }
        if let Some(slot) = self.carried_slots.remove(&ifindex)
            && self.slots.adopt(slot)
        {
            return Ok((slot, true));
        }
        Ok((self.new_slot()?, true))
    }

    /// A free slot, its counters zeroed and no conntrack table at it (a
    /// NIC gone before left its counts there, and a table if its removal
    /// failed).
    fn new_slot(&mut self) -> Result<u32, DatapathError> {
        let slot = self.slots.take().ok_or_else(|| DatapathError::Io {
            what: format!(
                "giving the NIC counters: all {} slots are taken",
                layout::MAX_NICS
            ),
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        })?;
        let zero = PerCpuValues::try_from(vec![NicStats::default(); self.ncpus])
            .map_err(io_err("per-CPU counters"))?;
        if let Err(e) = self.nic_counters.set(slot, zero, 0) {
            self.slots.release(slot);
            return Err(map_err(format!("zeroing counter slot {slot}"))(e));
        }
        if self.ct.get(&slot, 0).is_ok() {
            self.clear_ct_slot(slot);
        }
        Ok(slot)
    }

    /// Gives the NICs of the pinned `hookd_nics` their counter slots when
    /// this daemon opens the maps. `trusted`: the slots in those configs
    /// are a slot-aware build's, in the pinned `hookd_counters` (not one
    /// just created); an earlier build's padding is never trusted. A
    /// config without a valid slot of its own is rewritten with a new one
    /// before any tap runs this build's programs.
    pub(crate) fn adopt_slots(&mut self, trusted: bool, earlier_nics: Option<MapData>) {
        let configs: Vec<(u32, NicConfig)> = self.nics.iter().filter_map(Result::ok).collect();
        for (ifindex, mut cfg) in configs {
            if trusted && self.slots.adopt(cfg.slot) {
                continue;
            }
            let written = self.new_slot().and_then(|slot| {
                cfg.slot = slot;
                self.set_config(ifindex, cfg).inspect_err(|_| {
                    self.slots.release(slot);
                })
            });
            if let Err(e) = written {
                tracing::warn!(ifindex, error = %e, "no counter slot for an adopted NIC: its packets go uncounted until its policy is written again");
            }
        }
        // hookd_nics in a new version (its configs are written again from
        // the records): each NIC keeps the slot, and so the counts, it had.
        let Some(old) = earlier_nics.filter(|_| trusted) else {
            return;
        };
        let Ok(old) = HashMap::<_, u32, NicConfig>::try_from(aya::maps::Map::HashMap(old)) else {
            tracing::warn!(
                "the earlier hookd_nics cannot be read: NICs' counters start again at zero"
            );
            return;
        };
        for (ifindex, cfg) in old.iter().filter_map(Result::ok) {
            if cfg.slot != 0 && !self.slots.owns(cfg.slot) {
                self.carried_slots.insert(ifindex, cfg.slot);
            }
        }
    }
}

/// The data path's `NIC_F_*` flags for a NIC with policy.
fn nic_flags(a: &AntiSpoofing) -> u16 {
    let mut flags = layout::NIC_F_MANAGED;
    if a.checks_ip() {
        flags |= layout::NIC_F_CHECK_IP;
    }
    if a.allow_dhcp_server {
        flags |= layout::NIC_F_ALLOW_DHCP_SERVER;
    }
    if a.allow_router_advertisements {
        flags |= layout::NIC_F_ALLOW_RA;
    }
    flags
}

#[cfg(test)]
mod tests {
    /// The compiler (in hookd-model, which links no eBPF) encodes rule
    /// kinds with its own constants: they must be the data path's.
    #[test]
    fn compiler_kind_bits_are_the_data_paths() {
        use hookd_bpf::layout;
        use hookd_model::firewall;
        assert_eq!(firewall::FW_KIND_PROTO, layout::FW_KIND_PROTO);
        assert_eq!(firewall::FW_KIND_ANY, layout::FW_KIND_ANY);
    }
}
