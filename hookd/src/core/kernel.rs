//! The kernel data path behind the daemon's [`DataPlane`] trait.

use crate::core::dataplane::{CounterSource, DataPlane};
use crate::core::records::NicRecord;
use crate::datapath::trace::LiveVerdict;
use crate::datapath::{Attachment, Counters, Datapath, DatapathError, netdev};
use hookd_bpf::layout::{CtEntry, CtKey, NetStats, NicStats};
use hookd_model::plan::NicMode;
use hookd_model::policy::Direction;
use std::sync::Arc;

impl CounterSource for Counters {
    fn stats(&self, ifindex: u32) -> Option<NicStats> {
        Counters::stats(self, ifindex)
    }
    fn rule_hits(&self, ifindex: u32) -> Vec<((Direction, u16), u64)> {
        Counters::rule_hits(self, ifindex)
    }
    fn net_stats(&self, ifindex: u32) -> Option<NetStats> {
        Counters::net_stats(self, ifindex)
    }
    fn health(&self) -> Result<(), String> {
        Counters::health(self)
    }
}

impl DataPlane for Datapath {
    fn attach_nic(
        &mut self,
        uuid: &str,
        tap: &str,
        mac: [u8; 6],
        mode: &NicMode,
        generation: u64,
    ) -> Result<(u32, Attachment), DatapathError> {
        let ifindex = self.find_tap(tap)?;
        let ct_size = self.ct_size_for(mode)?;
        // The conntrack table is made while the programs attach (each
        // waits in the kernel); until it exists the programs fail closed.
        self.write_nic(ifindex, mac, mode, generation, false)?;
        let ct_for = mode.has_firewall().then_some((ifindex, ct_size));
        match self.attach(uuid, tap, ct_for) {
            Ok(a) => Ok((ifindex, a)),
            Err(e) => {
                self.forget_nic(ifindex);
                Err(e)
            }
        }
    }

    fn ct_table(&self, ifindex: u32) -> Result<Vec<(CtKey, CtEntry)>, DatapathError> {
        self.ct_dump(ifindex)
    }

    fn load_ct(&mut self, ifindex: u32, entries: &[(CtKey, CtEntry)]) -> Result<(), DatapathError> {
        self.load_carried_ct(ifindex, entries).map(|_| ())
    }

    fn ct_clock_ns(&self) -> u64 {
        crate::datapath::ct_clock_ns()
    }

    fn find_tap(&self, tap: &str) -> Result<u32, DatapathError> {
        netdev::ifindex(tap).map_err(|source| DatapathError::NoTap {
            tap: tap.to_string(),
            source,
        })
    }

    fn update_nic(
        &mut self,
        ifindex: u32,
        mac: [u8; 6],
        mode: &NicMode,
        generation: u64,
    ) -> Result<(), DatapathError> {
        self.program_nic(ifindex, mac, mode, generation)
    }

    fn detach_nic(&mut self, uuid: &str, nic: &NicRecord) -> Result<(), DatapathError> {
        let detached = self.detach(uuid, &nic.tap, nic.attach);
        // The map entries go whether or not the links did.
        self.forget_nic(nic.ifindex);
        detached
    }

    fn forget_domain(&mut self, uuid: &str) -> Result<(), DatapathError> {
        self.remove_domain_pins(uuid)
    }

    fn tidy(&mut self) {
        Datapath::tidy(self)
    }

    fn settle(&self) {
        if let Some(q) = &self.ct_queue {
            q.settle(None);
        }
    }

    fn still_attached(&self, uuid: &str, nic: &NicRecord) -> bool {
        // Attached as recorded includes its conntrack table, where that
        // is on its way (`started` waits for it here).
        self.ct_settled(nic.ifindex);
        let same_dev = netdev::ifindex(&nic.tap).is_ok_and(|i| i == nic.ifindex);
        let linked = match nic.attach {
            Some(Attachment::Tcx) => self.links_pinned(uuid, &nic.tap),
            _ => true,
        };
        same_dev && linked
    }

    fn complete(&self, nic: &NicRecord) -> bool {
        Datapath::has_ct_table_if_needed(self, nic.ifindex)
    }

    fn finish_move(
        &mut self,
        uuid: &str,
        nic: &NicRecord,
    ) -> Result<Option<Attachment>, DatapathError> {
        Datapath::finish_move(self, uuid, &nic.tap, nic.ifindex, nic.attach)
    }

    fn awaits_promotion(&self, nic: &NicRecord) -> bool {
        Datapath::awaits_promotion(self, nic.attach)
    }

    fn promote(&mut self, uuid: &str, nic: &NicRecord) -> Result<Attachment, DatapathError> {
        Datapath::promote(self, uuid, &nic.tap, nic.ifindex).map(|()| Attachment::Tcx)
    }

    fn other_build_before(&self) -> bool {
        self.other_build_before
    }

    fn refresh_programs(&mut self, uuid: &str, nic: &NicRecord) -> Result<usize, DatapathError> {
        // Logs each replacement itself.
        Datapath::refresh_programs(self, uuid, &nic.tap, nic.attach).map(|r| r.len())
    }

    fn retire_old_maps(&mut self) -> usize {
        Datapath::retire_old_maps(self)
    }

    fn advertise_routers(&self) -> usize {
        Datapath::advertise_routers(self)
    }

    fn tenant_namespaces_on(&self) -> bool {
        self.tenants.dir.is_some()
    }

    fn counters(&self) -> Arc<dyn CounterSource> {
        Datapath::counters(self)
    }

    fn trace_live(
        &mut self,
        ifindex: u32,
        to_vm: bool,
        frame: &[u8],
    ) -> Result<LiveVerdict, DatapathError> {
        Datapath::trace_live(self, ifindex, to_vm, frame)
    }
}
