//! Giving running taps this daemon's programs: after a restart or an
//! upgrade, the links and filters a previous hookd made still run the
//! programs it loaded. Each is swapped in place, atomically: a packet runs
//! the old program or the new one, and the tap is never without one.
//!
//! - tcx: `BPF_LINK_UPDATE` on the pinned link (aya's
//!   `SchedClassifier::attach_to_link`). The link, its pin and its place
//!   among the tap's tcx programs stay; only its program changes.
//! - netlink: `RTM_NEWTFILTER` for the filter's own priority and handle
//!   without `NLM_F_CREATE` (aya's `attach_to_link` on a netlink link), which
//!   `cls_bpf` turns into an RCU replacement of the filter's program.
//!
//! A program is replaced only when it differs from the one this daemon
//! loaded: another instruction tag (the kernel's hash of the code, the same
//! for every load of one object) or other maps.

use crate::datapath::error::{DatapathError, io_err, prog_err};
use crate::datapath::{Attachment, Datapath, PROGRAMS, netdev, tcfilter};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::tc::{SchedClassifier, SchedClassifierLink, TcAttachType, TcHandle};
use aya::programs::{ProgramInfo, loaded_programs};

/// A program swapped on a running tap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaced {
    pub tap: String,
    pub program: &'static str,
    pub old_id: u32,
    pub new_id: u32,
}

/// What tells two loads of a program apart: the code and the maps it uses.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    tag: u64,
    maps: Vec<u32>,
}

pub(crate) fn identity(info: &ProgramInfo, what: &str) -> Result<Identity, DatapathError> {
    let mut maps = info
        .map_ids()
        .map_err(prog_err(format!("map ids of {what}")))?
        .unwrap_or_default();
    maps.sort_unstable();
    Ok(Identity {
        tag: info.tag(),
        maps,
    })
}

impl Datapath {
    /// Makes `tap` (attached as `how`, as its record says) run this
    /// daemon's programs, replacing in place each one that differs.
    /// Returns what was replaced. On an error, a program not yet replaced
    /// keeps running as it was: the tap stays protected.
    pub fn refresh_programs(
        &mut self,
        uuid: &str,
        tap: &str,
        how: Option<Attachment>,
    ) -> Result<Vec<Replaced>, DatapathError> {
        let how = match how {
            Some(h) => h,
            None if self.links_pinned(uuid, tap) => Attachment::Tcx,
            None => Attachment::Netlink,
        };
        let mut replaced = Vec::new();
        match how {
            Attachment::Tcx => {
                let mut running = Vec::new();
                for (name, kind, _) in PROGRAMS {
                    let (_, progs) = SchedClassifier::query_tcx(tap, kind)
                        .map_err(prog_err(format!("querying tcx programs of {tap}")))?;
                    running.push((name, progs));
                }
                for (_, _, suffix) in PROGRAMS {
                    let pin = self.link_pin(uuid, tap, suffix);
                    replaced.extend(self.refresh_tcx(tap, &pin, &running)?);
                }
            }
            Attachment::Netlink => {
                for (name, kind, _) in PROGRAMS {
                    replaced.extend(self.refresh_netlink(tap, name, kind)?);
                }
            }
        }
        for r in &replaced {
            tracing::info!(
                tap,
                program = r.program,
                old_id = r.old_id,
                new_id = r.new_id,
                attach = how.name(),
                "replaced the program on a running tap"
            );
        }
        Ok(replaced)
    }

    /// This daemon's program `name`: its id and identity.
    fn loaded(&mut self, name: &str) -> Result<(u32, Identity), DatapathError> {
        let info = self
            .program_mut(name)?
            .info()
            .map_err(prog_err(format!("info of {name}")))?;
        Ok((info.id(), identity(&info, name)?))
    }

    /// The tcx link pinned at `pin`, given the programs `running` on each
    /// of the tap's hooks (by the name of hookd's program for that hook).
    pub(crate) fn refresh_tcx(
        &mut self,
        tap: &str,
        pin: &std::path::Path,
        running: &[(&'static str, Vec<ProgramInfo>)],
    ) -> Result<Option<Replaced>, DatapathError> {
        let link_err = |e: aya::programs::links::LinkError| DatapathError::Io {
            what: format!("link {}: {e}", pin.display()),
            source: std::io::Error::other(e.to_string()),
        };
        let link: FdLink = PinnedLink::from_pin(pin).map_err(link_err)?.into();
        let old_id = link.info().map_err(link_err)?.program_id();
        // Which hook the link is on comes from the kernel, not from the pin's
        // name: earlier builds of hookd could pin a tap's two links under
        // each other's names.
        let (name, old) = running
            .iter()
            .find_map(|(name, progs)| progs.iter().find(|p| p.id() == old_id).map(|p| (*name, p)))
            .ok_or_else(|| DatapathError::Io {
                what: format!("link {}", pin.display()),
                source: std::io::Error::other(format!(
                    "its program {old_id} is on neither tcx hook of {tap}"
                )),
            })?;
        let (new_id, new) = self.loaded(name)?;
        if identity(old, name)? == new {
            return Ok(None);
        }
        let link = SchedClassifierLink::try_from(link).map_err(link_err)?;
        let prog = self.program_mut(name)?;
        // BPF_LINK_UPDATE: the link now runs `prog`; the pin still holds it.
        let id = prog.attach_to_link(link).map_err(prog_err(format!(
            "updating the tcx link of {name} on {tap}"
        )))?;
        // The returned link is another fd of the pinned link; closing it
        // leaves the link attached.
        drop(prog.take_link(id).map_err(prog_err("taking link"))?);
        Ok(Some(Replaced {
            tap: tap.to_string(),
            program: name,
            old_id,
            new_id,
        }))
    }

    /// hookd's netlink filter `name` on `tap`.
    fn refresh_netlink(
        &mut self,
        tap: &str,
        name: &'static str,
        kind: TcAttachType,
    ) -> Result<Vec<Replaced>, DatapathError> {
        let ifindex = netdev::ifindex(tap).map_err(|source| DatapathError::NoTap {
            tap: tap.to_string(),
            source,
        })?;
        let filters = tcfilter::bpf_filters(ifindex, kind)
            .map_err(io_err(format!("listing the tc filters of {tap}")))?;
        let (new_id, new) = self.loaded(name)?;
        let mut replaced = Vec::new();
        for f in filters.iter().filter(|f| f.name == name) {
            // Netlink gives the id; the program's tag and maps come from its
            // info. Only a netlink-attached NIC pays for this walk.
            let old = loaded_programs()
                .filter_map(Result::ok)
                .find(|p| p.id() == f.prog_id)
                .map(|p| identity(&p, name))
                .transpose()?;
            if old.as_ref() == Some(&new) {
                continue;
            }
            let link = SchedClassifierLink::attached(
                tap,
                kind,
                f.priority,
                TcHandle::from(f.handle),
                None,
            )
            .map_err(io_err(format!("filter of {name} on {tap}")))?;
            let prog = self.program_mut(name)?;
            // RTM_NEWTFILTER on the same priority and handle, without
            // NLM_F_CREATE: cls_bpf swaps the filter's program in place.
            let id = prog.attach_to_link(link).map_err(prog_err(format!(
                "replacing the netlink filter of {name} on {tap}"
            )))?;
            let link = prog.take_link(id).map_err(prog_err("taking link"))?;
            // As at attach: the filter stays until removed by name.
            std::mem::forget(link);
            replaced.push(Replaced {
                tap: tap.to_string(),
                program: name,
                old_id: f.prog_id,
                new_id,
            });
        }
        Ok(replaced)
    }
}
