//! A data plane that does nothing, for the tests where the D-Bus side is
//! what is measured.

use hookd::core::records::NicRecord;
use hookd::core::{CounterSource, DataPlane};
use hookd::datapath::{Attachment, DatapathError};
use hookd_bpf::layout::NicStats;
use hookd_model::plan::NicMode;

/// A data plane that attaches nothing: D-Bus access and load are under
/// test where it is used, not the kernel side.
pub struct NoPlane;

impl DataPlane for NoPlane {
    fn attach_nic(
        &mut self,
        _: &str,
        _: &str,
        _: [u8; 6],
        _: &NicMode,
        _: u64,
    ) -> Result<(u32, Attachment), DatapathError> {
        Ok((1, Attachment::Tcx))
    }
    fn update_nic(&mut self, _: u32, _: [u8; 6], _: &NicMode, _: u64) -> Result<(), DatapathError> {
        Ok(())
    }
    fn detach_nic(&mut self, _: &str, _: &NicRecord) -> Result<(), DatapathError> {
        Ok(())
    }
    fn forget_domain(&mut self, _: &str) -> Result<(), DatapathError> {
        Ok(())
    }
    fn still_attached(&self, _: &str, _: &NicRecord) -> bool {
        true
    }
    fn counters(&self) -> std::sync::Arc<dyn CounterSource> {
        std::sync::Arc::new(NoPlane)
    }
}

impl CounterSource for NoPlane {
    fn stats(&self, _: u32) -> Option<NicStats> {
        None
    }
    fn rule_hits(&self, _: u32) -> Vec<((hookd_model::policy::Direction, u16), u64)> {
        Vec::new()
    }
}
