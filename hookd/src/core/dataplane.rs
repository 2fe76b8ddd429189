//! What the daemon needs from the kernel, as traits: [`crate::datapath`]
//! is the real implementation (see `kernel.rs`); tests without root use a
//! recording fake.

use crate::core::records::NicRecord;
use crate::datapath::trace::LiveVerdict;
use crate::datapath::{Attachment, DatapathError};
use hookd_bpf::layout::{CtEntry, CtKey, NetStats, NicStats};
use hookd_model::plan::NicMode;
use hookd_model::policy::Direction;
use std::sync::Arc;

pub trait DataPlane: Send {
    /// Writes the NIC's maps, then attaches both programs to `tap`.
    fn attach_nic(
        &mut self,
        uuid: &str,
        tap: &str,
        mac: [u8; 6],
        mode: &NicMode,
        generation: u64,
    ) -> Result<(u32, Attachment), DatapathError>;
    /// The ifindex of `tap`, or why it cannot be attached to (checked at
    /// `start`, before the attach runs in the background).
    fn find_tap(&self, tap: &str) -> Result<u32, DatapathError>;
    /// Rewrites the maps of a NIC that is already attached.
    fn update_nic(
        &mut self,
        ifindex: u32,
        mac: [u8; 6],
        mode: &NicMode,
        generation: u64,
    ) -> Result<(), DatapathError>;
    /// Detaches from the NIC and removes its map entries.
    fn detach_nic(&mut self, uuid: &str, nic: &NicRecord) -> Result<(), DatapathError>;
    /// Removes what is left of the domain's pins.
    fn forget_domain(&mut self, uuid: &str) -> Result<(), DatapathError>;
    /// Is the NIC still attached as recorded (tap present, links pinned)?
    fn still_attached(&self, uuid: &str, nic: &NicRecord) -> bool;
    /// Has the NIC all its maps need: its conntrack table, where its
    /// firewall tracks connections? A table that failed to go in
    /// (`attach = "staged"`) leaves the NIC failing closed; `started` then
    /// writes the NIC again instead of finding nothing to do.
    fn complete(&self, _nic: &NicRecord) -> bool {
        true
    }
    /// Ends a move to tcx that a previous daemon began and did not finish
    /// (its record says netlink, yet links are pinned): the links judge,
    /// so the filters go. Returns how the NIC is attached when that
    /// changed. Done at adoption whatever this daemon's `attach` mode.
    fn finish_move(
        &mut self,
        _uuid: &str,
        _nic: &NicRecord,
    ) -> Result<Option<Attachment>, DatapathError> {
        Ok(None)
    }
    /// Whether the maps may have been written by another build of hookd
    /// (its pinned programs differ from this daemon's, or are unknown):
    /// adopted NICs' maps are then rewritten before the programs swap.
    fn other_build_before(&self) -> bool {
        false
    }
    /// Makes an adopted NIC run this daemon's programs, replacing in place
    /// (never detaching) those a previous daemon attached that differ.
    /// Returns how many were replaced.
    fn refresh_programs(&mut self, _uuid: &str, _nic: &NicRecord) -> Result<usize, DatapathError> {
        Ok(0)
    }
    /// Once every adopted NIC has been refreshed: retires the earlier map
    /// versions no program reads any more. Returns how many.
    fn retire_old_maps(&mut self) -> usize {
        0
    }
    /// Does the NIC wait to move from its clsact qdisc to tcx links
    /// (`attach = "staged"`)?
    fn awaits_promotion(&self, _nic: &NicRecord) -> bool {
        false
    }
    /// Moves it there, never leaving the tap without a program
    /// (`datapath/promote.rs`). On an error it stays as it was.
    fn promote(&mut self, _uuid: &str, nic: &NicRecord) -> Result<Attachment, DatapathError> {
        Err(DatapathError::Missing(format!(
            "a way to move {} to tcx: this data plane has none",
            nic.tap
        )))
    }
    /// Waits until every NIC attached so far has all it was given (its
    /// conntrack table, where those go in batches).
    fn settle(&self) {}
    /// Readers of the data plane's counters, for use without the daemon.
    fn counters(&self) -> Arc<dyn CounterSource>;
    /// Runs `frame` through the tracing build of the programs on the tap
    /// `ifindex` (its to_vm program when `to_vm`), changing nothing
    /// (`datapath::trace`). A data plane that runs no programs says so.
    fn trace_live(
        &mut self,
        _ifindex: u32,
        _to_vm: bool,
        _frame: &[u8],
    ) -> Result<LiveVerdict, DatapathError> {
        Err(DatapathError::Missing(
            "programs to trace: this data plane runs none (a test's fake)".into(),
        ))
    }
    /// Sends each network NIC with IPv6 an unsolicited router
    /// advertisement; how many were sent.
    fn advertise_routers(&self) -> usize {
        0
    }
    /// Do tenants get namespaces (traffic leaving their subnets goes
    /// there)?
    fn tenant_namespaces_on(&self) -> bool {
        false
    }
    /// The NIC's conntrack table (what a live migration carries). Err
    /// when the NIC has none.
    fn ct_table(&self, ifindex: u32) -> Result<Vec<(CtKey, CtEntry)>, DatapathError>;
    /// Adds carried entries to the NIC's conntrack table, all of them or
    /// (when they cannot all be held) none.
    fn load_ct(&mut self, ifindex: u32, entries: &[(CtKey, CtEntry)]) -> Result<(), DatapathError>;
    /// Now on the clock of conntrack entries, in ns.
    fn ct_clock_ns(&self) -> u64;
    /// Housekeeping left out of the calls that change policy (emptying
    /// rule tables no longer in force); run after they are answered.
    fn tidy(&mut self) {}
}

/// The data plane's counters and health, readable from any thread.
pub trait CounterSource: Send + Sync {
    fn stats(&self, ifindex: u32) -> Option<NicStats>;
    /// Hits per (direction, rule index) of the NIC's live policy.
    fn rule_hits(&self, ifindex: u32) -> Vec<((Direction, u16), u64)>;
    /// What the network stage did with a network NIC's frames.
    fn net_stats(&self, _ifindex: u32) -> Option<NetStats> {
        None
    }
    /// Can the data plane do its job? Err says what is wrong.
    fn health(&self) -> Result<(), String> {
        Ok(())
    }
}
