//! The one stand-in for the kernel's data plane, for tests where the D-Bus
//! side or the daemon's bookkeeping is what is measured (the real one is
//! exercised by the privileged and VM tests).

use hookd::core::records::NicRecord;
use hookd::core::{CounterSource, DataPlane};
use hookd::datapath::{Attachment, DatapathError};
use hookd_bpf::layout::{CtEntry, CtKey, NicStats};
use hookd_model::plan::NicMode;
use hookd_model::policy::Direction;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The calls a [`FakePlane`] was asked to make, one line each
/// ("attach UUID TAP MODE", "update IFINDEX", "detach UUID TAP").
pub type Calls = Arc<Mutex<Vec<String>>>;

/// A tap name the fake refuses to attach to, as the kernel would a
/// missing device.
pub const MISSING_TAP: &str = "missing0";

/// A tap that exists but that the fake fails to attach to, as the kernel
/// might refuse a program.
pub const FAILING_TAP: &str = "failing0";

/// The fake's conntrack tables, shared with the test that made it.
pub type FakeConntrack = Arc<Mutex<HashMap<u32, Vec<(CtKey, CtEntry)>>>>;

/// How many entries each of the fake's conntrack tables holds.
pub const FAKE_CT_ROOM: usize = 100_000;

/// The fake's conntrack clock, in ns (fixed).
pub const FAKE_CT_NOW: u64 = 3_600_000_000_000;

/// Attaches nothing. With [`FakePlane::recording`] it records each call
/// and reports fixed counters (7 packets from the VM, 3 IP-spoof drops,
/// 5 hits on ingress rule 0); [`FakePlane::quiet`] records nothing and
/// has no counters.
pub struct FakePlane {
    calls: Option<Calls>,
    /// Conntrack tables by ifindex, each of [`FAKE_CT_ROOM`] entries; a
    /// NIC has one once attached.
    ct: FakeConntrack,
    /// Set by [`FakePlane::upgrading`]: whether replacing programs works.
    refresh_works: Option<Arc<AtomicBool>>,
}

impl FakePlane {
    pub fn quiet() -> FakePlane {
        FakePlane {
            calls: None,
            ct: FakeConntrack::default(),
            refresh_works: None,
        }
    }

    pub fn recording() -> (FakePlane, Calls) {
        let calls = Calls::default();
        (
            FakePlane {
                calls: Some(calls.clone()),
                ct: FakeConntrack::default(),
                refresh_works: None,
            },
            calls,
        )
    }

    /// A recording plane that says another build ran before it: adopted
    /// NICs get their programs replaced ("refresh TAP"), which fails while
    /// `works` is false.
    pub fn upgrading(works: Arc<AtomicBool>) -> (FakePlane, Calls) {
        let (mut plane, calls) = FakePlane::recording();
        plane.refresh_works = Some(works);
        (plane, calls)
    }

    /// The conntrack tables, for a test to fill or read.
    pub fn conntrack(&self) -> FakeConntrack {
        self.ct.clone()
    }

    fn record(&self, line: String) {
        if let Some(c) = &self.calls {
            c.lock().unwrap().push(line);
        }
    }
}

impl DataPlane for FakePlane {
    fn attach_nic(
        &mut self,
        uuid: &str,
        tap: &str,
        _mac: [u8; 6],
        mode: &NicMode,
        _generation: u64,
    ) -> Result<(u32, Attachment), DatapathError> {
        let ifindex = self.find_tap(tap)?;
        if tap == FAILING_TAP {
            return Err(DatapathError::Io {
                what: format!("tcx attach to {tap}"),
                source: std::io::Error::from_raw_os_error(libc::EPERM),
            });
        }
        self.record(format!("attach {uuid} {tap} {mode}"));
        if mode.has_firewall() {
            self.ct.lock().unwrap().entry(ifindex).or_default();
        }
        Ok((ifindex, Attachment::Tcx))
    }
    fn find_tap(&self, tap: &str) -> Result<u32, DatapathError> {
        if tap == MISSING_TAP {
            return Err(DatapathError::NoTap {
                tap: tap.into(),
                source: std::io::Error::from_raw_os_error(libc::ENODEV),
            });
        }
        Ok(42)
    }
    fn update_nic(
        &mut self,
        ifindex: u32,
        _mac: [u8; 6],
        _mode: &NicMode,
        _generation: u64,
    ) -> Result<(), DatapathError> {
        self.record(format!("update {ifindex}"));
        Ok(())
    }
    fn detach_nic(&mut self, uuid: &str, nic: &NicRecord) -> Result<(), DatapathError> {
        self.record(format!("detach {uuid} {}", nic.tap));
        self.ct.lock().unwrap().remove(&nic.ifindex);
        Ok(())
    }
    fn ct_table(&self, ifindex: u32) -> Result<Vec<(CtKey, CtEntry)>, DatapathError> {
        self.ct
            .lock()
            .unwrap()
            .get(&ifindex)
            .cloned()
            .ok_or_else(|| {
                DatapathError::Missing(format!("a conntrack table of ifindex {ifindex}"))
            })
    }
    fn load_ct(&mut self, ifindex: u32, entries: &[(CtKey, CtEntry)]) -> Result<(), DatapathError> {
        let mut ct = self.ct.lock().unwrap();
        let table = ct.get_mut(&ifindex).ok_or_else(|| {
            DatapathError::Missing(format!("a conntrack table of ifindex {ifindex}"))
        })?;
        if table.len() + entries.len() > FAKE_CT_ROOM {
            return Err(DatapathError::Conflict(format!(
                "{} carried connections do not fit",
                entries.len()
            )));
        }
        self.record(format!("load_ct {ifindex} {}", entries.len()));
        table.extend_from_slice(entries);
        Ok(())
    }
    fn ct_clock_ns(&self) -> u64 {
        FAKE_CT_NOW
    }
    fn forget_domain(&mut self, _uuid: &str) -> Result<(), DatapathError> {
        Ok(())
    }
    fn still_attached(&self, _uuid: &str, _nic: &NicRecord) -> bool {
        true
    }
    fn other_build_before(&self) -> bool {
        self.refresh_works.is_some()
    }
    fn refresh_programs(&mut self, _uuid: &str, nic: &NicRecord) -> Result<usize, DatapathError> {
        self.record(format!("refresh {}", nic.tap));
        match &self.refresh_works {
            Some(w) if !w.load(Ordering::SeqCst) => Err(DatapathError::NoTap {
                tap: nic.tap.clone(),
                source: std::io::Error::from_raw_os_error(libc::EBUSY),
            }),
            _ => Ok(2),
        }
    }
    fn counters(&self) -> Arc<dyn CounterSource> {
        Arc::new(FixedCounters {
            any: self.calls.is_some(),
        })
    }
}

/// Every NIC has the same counters and rule hits (or none).
struct FixedCounters {
    any: bool,
}

impl CounterSource for FixedCounters {
    fn rule_hits(&self, _ifindex: u32) -> Vec<((Direction, u16), u64)> {
        if self.any {
            vec![((Direction::Ingress, 0), 5)]
        } else {
            Vec::new()
        }
    }
    fn stats(&self, _ifindex: u32) -> Option<NicStats> {
        self.any.then(|| {
            let mut s = NicStats {
                from_vm_packets: 7,
                ..Default::default()
            };
            s.drops[1] = 3;
            s
        })
    }
}
