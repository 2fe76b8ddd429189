//! `hookctl trace --live`: a described packet through the tracing build of
//! a NIC's programs (bpf/c/lib/trace.h) on the live maps, by
//! BPF_PROG_TEST_RUN. That build writes none of the maps the attached
//! programs read (no conntrack entry, counter, rule hit or logged packet)
//! and sends nothing; it notes in a map of its own how each direction's
//! firewall passed the packet. Loaded on the first trace, then kept.

use super::Datapath;
use crate::datapath::error::{DatapathError, map_err, prog_err};
use aya::maps::{Array, MapData};
use aya::programs::tc::SchedClassifier;
use aya::programs::{TestRun, TestRunOptions};
use aya::{Ebpf, EbpfLoader};
use hookd_bpf::layout::TraceNote;

/// What the live programs do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveVerdict {
    /// The program's return value, a `TC_ACT_*` action.
    pub action: i32,
    /// How each direction's firewall passed it (when it did).
    pub note: TraceNote,
}

/// The loaded tracing build.
pub(crate) struct Tracer {
    ebpf: Ebpf,
    notes: Array<MapData, TraceNote>,
}

/// `struct __sk_buff` (linux/bpf.h) up to and including `ifindex`, the one
/// field given: the test run then judges the frame as on that device.
const SKB_CTX_LEN: usize = 44;
const SKB_IFINDEX: usize = 40;

impl Datapath {
    /// Runs `frame` through the tracing build of the program on the tap
    /// `ifindex`: `hookd_to_vm` for a frame to the VM, else `hookd_from_vm`.
    pub fn trace_live(
        &mut self,
        ifindex: u32,
        to_vm: bool,
        frame: &[u8],
    ) -> Result<LiveVerdict, DatapathError> {
        if self.tracer.is_none() {
            self.tracer = Some(self.load_tracer()?);
        }
        let Some(t) = self.tracer.as_mut() else {
            return Err(DatapathError::Missing("the tracing build".into()));
        };
        t.notes
            .set(0, TraceNote::default(), 0)
            .map_err(map_err("clearing hookd_trace"))?;
        let name = if to_vm {
            hookd_bpf::PROG_TO_VM
        } else {
            hookd_bpf::PROG_FROM_VM
        };
        let prog: &SchedClassifier = t
            .ebpf
            .program(name)
            .ok_or_else(|| DatapathError::Missing(name.to_string()))?
            .try_into()
            .map_err(prog_err(name))?;
        let mut ctx = [0u8; SKB_CTX_LEN];
        ctx[SKB_IFINDEX..].copy_from_slice(&ifindex.to_ne_bytes());
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ctx_in: Some(&ctx),
                ..Default::default()
            })
            .map_err(prog_err(format!("running the tracing {name}")))?;
        let note = t.notes.get(&0, 0).map_err(map_err("reading hookd_trace"))?;
        Ok(LiveVerdict {
            action: r.return_value as i32,
            note,
        })
    }

    /// Loads the tracing build on the maps this daemon's programs use.
    fn load_tracer(&self) -> Result<Tracer, DatapathError> {
        let maps_dir = self.pin_dir.join("maps");
        let mut loader = EbpfLoader::new();
        loader.default_map_pin_directory(&maps_dir);
        for p in &self.placements {
            loader.map_pin_path(&p.name, maps_dir.join(&p.file));
        }
        let mut ebpf = loader.load(hookd_bpf::HOOKD_TRACE_OBJ)?;
        for name in [hookd_bpf::PROG_FROM_VM, hookd_bpf::PROG_TO_VM] {
            let prog: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or_else(|| DatapathError::Missing(name.to_string()))?
                .try_into()
                .map_err(prog_err(name))?;
            prog.load()
                .map_err(prog_err(format!("loading the tracing {name}")))?;
        }
        let map = ebpf
            .take_map(hookd_bpf::MAP_TRACE)
            .ok_or_else(|| DatapathError::Missing(hookd_bpf::MAP_TRACE.to_string()))?;
        let notes = Array::try_from(map).map_err(map_err(hookd_bpf::MAP_TRACE))?;
        tracing::debug!("loaded the tracing build of the programs");
        Ok(Tracer { ebpf, notes })
    }
}
