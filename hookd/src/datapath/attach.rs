//! Attaching hookd's programs to a tap (tcx links, pinned, or a clsact
//! qdisc through netlink) and detaching them.

use crate::config::AttachMode;
use crate::datapath::conntrack::ensure_ct_table;
use crate::datapath::error::{DatapathError, io_err, prog_err};
use crate::datapath::{Attachment, Datapath, PROGRAMS, netdev, qdisc};
use aya::programs::links::{FdLink, LinkOrder, PinnedLink};
use aya::programs::tc::{self, NlOptions, SchedClassifier, TcAttachOptions, TcAttachType};
use std::path::{Path, PathBuf};

/// Attaches one program to `tap` with tcx and pins its link at `pin`. A
/// link pinned there already goes only once the new one is attached, so
/// that the tap is never without a program; when the program is attached
/// to the hook already (the kernel allows it once) and its link is pinned,
/// that link stays.
pub(crate) fn attach_tcx_one(
    prog: &mut SchedClassifier,
    tap: &str,
    name: &str,
    kind: TcAttachType,
    pin: &Path,
) -> Result<(), DatapathError> {
    let id = match prog.attach_with_options(
        tap,
        kind,
        TcAttachOptions::TcxOrder(LinkOrder::default()),
    ) {
        Err(aya::programs::ProgramError::SyscallError(e))
            if e.io_error.raw_os_error() == Some(libc::EEXIST) && pin.exists() =>
        {
            return Ok(());
        }
        r => r.map_err(prog_err(format!("tcx attach of {name} to {tap}")))?,
    };
    let link = prog.take_link(id).map_err(prog_err("taking link"))?;
    let fd: FdLink = link.try_into().map_err(|e| DatapathError::Io {
        what: format!("link of {name}: {e}"),
        source: std::io::Error::other("not an fd link"),
    })?;
    // The old link (its tap gone, or an older program's) is dropped with
    // its pin; the new one, held here, judges already.
    let _ = std::fs::remove_file(pin);
    fd.pin(pin).map_err(|source| DatapathError::Pin {
        what: format!("pinning {}", pin.display()),
        source,
    })?;
    Ok(())
}

impl Datapath {
    /// Attaches both programs to `tap` and pins the links under the domain.
    /// With `ct_for` (ifindex, entries), also gives that NIC its
    /// conntrack table, alongside.
    pub fn attach(
        &mut self,
        uuid: &str,
        tap: &str,
        ct_for: Option<(u32, u32)>,
    ) -> Result<Attachment, DatapathError> {
        let dir = self.pin_dir.join("links").join(uuid);
        std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        // Both programs of a tap use the same method, so detach and
        // adoption only ever have one kind of attachment to deal with.
        let result = match self.mode {
            AttachMode::Netlink => self.attach_all_netlink(tap, ct_for),
            AttachMode::Tcx => self.attach_all_tcx(uuid, tap, ct_for),
            // tcx comes later (`promote`), off the start path. A tap with
            // qdiscs of its own gets tcx now: beside libvirt's ingress
            // qdisc (a `<bandwidth>` outbound limit) no clsact can go, and
            // deleting hookd's clsact after the move would drop what a
            // configured root qdisc (an inbound limit) holds queued.
            AttachMode::Staged if Self::tap_has_configured_root(tap) => {
                tracing::info!(tap, "the tap has a configured root qdisc: attached with tcx at once");
                self.attach_all_tcx(uuid, tap, ct_for)
            }
            AttachMode::Staged => match tc::qdisc_add_clsact(tap) {
                Ok(()) => self.attach_all_netlink(tap, ct_for).inspect_err(|_| {
                    // The qdisc hookd made goes with what did attach, or
                    // it would keep libvirt's ingress qdisc off the tap.
                    if let Ok(ifindex) = netdev::ifindex(tap) {
                        let _ = qdisc::delete_clsact(ifindex);
                    }
                }),
                Err(e) => {
                    tracing::info!(tap, error = %e, "the tap has a clsact or ingress qdisc already: attached with tcx at once");
                    self.attach_all_tcx(uuid, tap, ct_for)
                }
            },
            AttachMode::Auto => self.attach_all_tcx(uuid, tap, ct_for).or_else(|e| {
                tracing::warn!(tap, error = %e, "tcx attach failed; falling back to a clsact qdisc");
                let _ = self.detach(uuid, tap, Some(Attachment::Tcx));
                self.attach_all_netlink(tap, ct_for)
            }),
        };
        if result.is_err() {
            // Nothing half-applied: undo the program that did attach.
            let _ = self.detach(uuid, tap, None);
        }
        result
    }

    /// Has `tap` a root qdisc someone configured? When that cannot be
    /// read, it is taken to have one: tcx costs time, never protection.
    fn tap_has_configured_root(tap: &str) -> bool {
        netdev::ifindex(tap)
            .and_then(qdisc::has_configured_root)
            .unwrap_or_else(|e| {
                tracing::debug!(tap, error = %e, "reading the tap's root qdisc: tcx at once");
                true
            })
    }

    /// Both programs with tcx, side by side with the conntrack table's
    /// insert: each waits for an RCU grace period in the kernel (about 10 ms
    /// here), and a VM start then waits for one instead of three.
    pub(crate) fn attach_all_tcx(
        &mut self,
        uuid: &str,
        tap: &str,
        ct_for: Option<(u32, u32)>,
    ) -> Result<Attachment, DatapathError> {
        // Each program with its own pin: `programs_mut` comes in hash
        // order, not in the order of PROGRAMS.
        // The table goes at the slot of the NIC's config, written before.
        let ct_for = match ct_for {
            Some((ifindex, entries)) => Some((self.ct_slot_of(ifindex)?, entries)),
            None => None,
        };
        if let Some((slot, _)) = ct_for {
            // A table queued for the slot goes in first (`ct_queue.rs`).
            self.ct_settled_slot(slot);
        }
        let pins: Vec<(&str, PathBuf)> = PROGRAMS
            .iter()
            .map(|(name, _, suffix)| (*name, self.link_pin(uuid, tap, suffix)))
            .collect();
        let Datapath {
            ebpf, ct, adopted, ..
        } = self;
        // The programs the taps run: those adopted from a previous daemon
        // (this daemon's own copies of them are unloaded), else its own.
        let mut found: Vec<(&str, &mut SchedClassifier)> = Vec::new();
        let taken: Vec<&str> = adopted.keys().copied().collect();
        found.extend(adopted.iter_mut().map(|(n, p)| (*n, p)));
        for (name, prog) in ebpf.programs_mut() {
            if PROGRAMS.iter().any(|(n, _, _)| *n == name) && !taken.contains(&name) {
                found.push((name, prog.try_into().map_err(prog_err(name))?));
            }
        }
        let mut progs: Vec<(&str, TcAttachType, &mut SchedClassifier, &Path)> = Vec::new();
        for (name, prog) in found {
            if let Some((n, kind, _)) = PROGRAMS.iter().find(|(n, _, _)| *n == name) {
                let pin = pins
                    .iter()
                    .find(|(p, _)| p == n)
                    .map(|(_, pin)| pin.as_path())
                    .ok_or_else(|| DatapathError::Missing(n.to_string()))?;
                progs.push((n, *kind, prog, pin));
            }
        }
        let panicked = || DatapathError::Io {
            what: format!("attaching to {tap}"),
            source: std::io::Error::other("attach thread panicked"),
        };
        std::thread::scope(|s| {
            let ct_job =
                ct_for.map(|(slot, entries)| s.spawn(move || ensure_ct_table(ct, slot, entries)));
            let jobs: Vec<_> = progs
                .into_iter()
                .map(|(name, kind, prog, pin)| {
                    s.spawn(move || attach_tcx_one(prog, tap, name, kind, pin))
                })
                .collect();
            let mut result = Ok(());
            for j in jobs.into_iter().chain(ct_job) {
                let r = j.join().unwrap_or_else(|_| Err(panicked()));
                if result.is_ok() {
                    result = r;
                }
            }
            result
        })?;
        Ok(Attachment::Tcx)
    }

    fn attach_all_netlink(
        &mut self,
        tap: &str,
        ct_for: Option<(u32, u32)>,
    ) -> Result<Attachment, DatapathError> {
        if let Some((ifindex, entries)) = ct_for {
            self.queue_ct_table(self.ct_slot_of(ifindex)?, entries)?;
        }
        for (name, kind, _) in PROGRAMS {
            self.attach_netlink(tap, name, kind)?;
        }
        Ok(Attachment::Netlink)
    }

    fn attach_netlink(
        &mut self,
        tap: &str,
        name: &str,
        kind: TcAttachType,
    ) -> Result<(), DatapathError> {
        // EEXIST when the qdisc is already there is fine.
        let _ = tc::qdisc_add_clsact(tap);
        let prog: &mut SchedClassifier = self.program_mut(name)?;
        let id = prog
            .attach_with_options(tap, kind, TcAttachOptions::Netlink(NlOptions::default()))
            .map_err(prog_err(format!("netlink attach of {name} to {tap}")))?;
        let link = prog.take_link(id).map_err(prog_err("taking link"))?;
        // A netlink filter stays on the qdisc until removed by name (see
        // `detach`); dropping the handle would detach it now.
        std::mem::forget(link);
        Ok(())
    }

    pub(crate) fn program_mut(
        &mut self,
        name: &str,
    ) -> Result<&mut SchedClassifier, DatapathError> {
        if let Some(p) = self.adopted.get_mut(name) {
            return Ok(p);
        }
        self.ebpf
            .program_mut(name)
            .ok_or_else(|| DatapathError::Missing(name.to_string()))?
            .try_into()
            .map_err(prog_err(name))
    }

    /// Detaches hookd's programs from `tap` (links pinned under the domain,
    /// or netlink filters by program name). A tap that is already gone is
    /// not an error: the kernel detached with it.
    pub fn detach(
        &mut self,
        uuid: &str,
        tap: &str,
        how: Option<Attachment>,
    ) -> Result<(), DatapathError> {
        for (name, kind, suffix) in PROGRAMS {
            let pin = self.link_pin(uuid, tap, suffix);
            if pin.exists() {
                match PinnedLink::from_pin(&pin) {
                    // Unpinning hands back the last reference; dropping it detaches.
                    Ok(link) => drop(
                        link.unpin()
                            .map_err(io_err(format!("unpinning {}", pin.display())))?,
                    ),
                    Err(_) => std::fs::remove_file(&pin)
                        .map_err(io_err(format!("removing {}", pin.display())))?,
                }
            }
            if how != Some(Attachment::Tcx) && netdev::ifindex(tap).is_ok() {
                let _ = tc::qdisc_detach_program(tap, kind, name);
            }
        }
        // A NIC known to be on filters, on a tap that stays (its VM runs
        // on without hookd's programs): the emptied qdisc goes too.
        if how == Some(Attachment::Netlink)
            && let Ok(ifindex) = netdev::ifindex(tap)
            && let Err(e) = super::qdisc::drop_empty_clsact(ifindex)
        {
            tracing::warn!(tap, ifindex, error = %e, "detached, but the emptied clsact qdisc stays: libvirt cannot add an outbound bandwidth limit to this tap");
        }
        Ok(())
    }

    /// Removes the domain's link directory once its NICs are detached.
    pub fn remove_domain_pins(&self, uuid: &str) -> Result<(), DatapathError> {
        let dir = self.pin_dir.join("links").join(uuid);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io_err(format!("removing {}", dir.display()))(e))
            }
            _ => Ok(()),
        }
    }

    /// Are both links of `tap` still pinned?
    pub fn links_pinned(&self, uuid: &str, tap: &str) -> bool {
        PROGRAMS
            .iter()
            .all(|(_, _, s)| self.link_pin(uuid, tap, s).exists())
    }
}
