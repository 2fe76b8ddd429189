//! `attach = "staged"`: moving a NIC from the clsact qdisc it got at
//! `start` to tcx links, in the background once its domain runs.
//!
//! Why: each tcx link waits for an RCU grace period under RTNL (about 12 ms
//! here), so 1,000 taps take 24 s whatever hookd does; a cls_bpf filter
//! waits for none. But filters go with their qdisc (`tc qdisc del dev TAP
//! clsact`, by an operator or other software) and are not pinned, where
//! tcx links stay until hookd removes their pins: a NIC should not stay on
//! the qdisc.
//!
//! The tap is never without a program: the tcx links come first, then the
//! filters go. While both are on the tap, the tcx copy runs first and the
//! NIC's `NIC_F_PASS_FINAL` makes its pass final (`TC_ACT_OK`, not
//! `TCX_NEXT`), so the cls_bpf copy behind it never sees the packet: each
//! one is judged and counted once. Its drops and redirects end the hook
//! anyway.

use crate::config::AttachMode;
use crate::datapath::error::{DatapathError, io_err, map_err};
use crate::datapath::{Attachment, Datapath, PROGRAMS, netdev, qdisc};
use aya::programs::tc;
use hookd_bpf::layout;

impl Datapath {
    /// Is a NIC attached as `how` waiting to move to tcx?
    pub fn awaits_promotion(&self, how: Option<Attachment>) -> bool {
        self.mode == AttachMode::Staged && how == Some(Attachment::Netlink)
    }

    /// Moves the NIC on `tap` (`ifindex`) from its cls_bpf filters to
    /// pinned tcx links. On an error before the links are in, the NIC
    /// stays on its filters, as it was. Once they are in, it is on tcx:
    /// what is left undone is logged, and a NIC whose links an earlier try
    /// pinned only has the move finished (never a second attach, which
    /// would replace the links that judge its frames).
    pub fn promote(&mut self, uuid: &str, tap: &str, ifindex: u32) -> Result<(), DatapathError> {
        let now = netdev::ifindex(tap).map_err(|source| DatapathError::NoTap {
            tap: tap.to_string(),
            source,
        })?;
        if now != ifindex {
            return Err(DatapathError::NoTap {
                tap: tap.to_string(),
                source: std::io::Error::other(format!(
                    "ifindex {now}, not the {ifindex} attached to"
                )),
            });
        }
        if self.links_pinned(uuid, tap) {
            self.finish_move(uuid, tap, ifindex, Some(Attachment::Netlink))?;
            return Ok(());
        }
        self.set_pass_final(ifindex, true)?;
        if let Err(e) = self.attach_all_tcx(uuid, tap, None) {
            // Whatever link did attach goes; the filters still judge.
            let _ = self.detach(uuid, tap, Some(Attachment::Tcx));
            let _ = self.set_pass_final(ifindex, false);
            return Err(e);
        }
        // The links judge now: from here on the NIC stays on tcx. A filter
        // that could not be removed runs behind them and counts what they
        // pass a second time (logged); the flag is cleared all the same, so
        // that the tap's other tc filters (libvirt's policing) keep running.
        if let Err(e) = remove_filters(tap) {
            tracing::warn!(tap, ifindex, error = %e, "on tcx now, but a cls_bpf filter is left behind the links: it counts what they pass a second time");
        } else {
            drop_moved_clsact(tap, ifindex);
        }
        if let Err(e) = self.set_pass_final(ifindex, false) {
            // Judged by the links all the same; tc filters of others behind
            // them (libvirt's policing) are skipped until a restart's
            // adoption clears the flag.
            tracing::warn!(tap, ifindex, error = %e, "on tcx now, but its move flag stays set: other tc filters on the tap are skipped");
        }
        Ok(())
    }

    /// Ends a move a previous daemon began (see [`DataPlane::finish_move`]
    /// (crate::core::DataPlane::finish_move)): with the links pinned, the
    /// filters go and the flag is cleared (returns tcx); without both of
    /// them the NIC stays on its filters, a lone link removed and the flag
    /// cleared (returns nothing).
    pub fn finish_move(
        &mut self,
        uuid: &str,
        tap: &str,
        ifindex: u32,
        how: Option<Attachment>,
    ) -> Result<Option<Attachment>, DatapathError> {
        if how != Some(Attachment::Netlink) {
            return Ok(None);
        }
        let flagged = self
            .nics
            .get(&ifindex, 0)
            .is_ok_and(|c| c.flags & layout::NIC_F_PASS_FINAL != 0);
        if !self.links_pinned(uuid, tap) {
            // One link of two at most: it goes, the filters judge alone.
            self.detach(uuid, tap, Some(Attachment::Tcx))?;
            if flagged {
                self.set_pass_final(ifindex, false)?;
            }
            return Ok(None);
        }
        remove_filters(tap)?;
        drop_moved_clsact(tap, ifindex);
        if flagged {
            self.set_pass_final(ifindex, false)?;
        }
        Ok(Some(Attachment::Tcx))
    }

    /// Sets or clears `NIC_F_PASS_FINAL` in the NIC's config, the rest of
    /// it unchanged (one map update: a packet sees the one or the other).
    fn set_pass_final(&mut self, ifindex: u32, on: bool) -> Result<(), DatapathError> {
        let mut cfg = self
            .nics
            .get(&ifindex, 0)
            .map_err(map_err(format!("reading the config of ifindex {ifindex}")))?;
        if on {
            cfg.flags |= layout::NIC_F_PASS_FINAL;
        } else {
            cfg.flags &= !layout::NIC_F_PASS_FINAL;
        }
        self.set_config(ifindex, cfg)
    }
}

/// [`qdisc::drop_empty_clsact`] after a move to tcx, logged.
fn drop_moved_clsact(tap: &str, ifindex: u32) {
    match qdisc::drop_empty_clsact(ifindex) {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(
                tap,
                ifindex,
                "the clsact qdisc holds filters of others: it stays"
            )
        }
        Err(e) => {
            tracing::warn!(tap, ifindex, error = %e, "on tcx now, but the emptied clsact qdisc stays: libvirt cannot add an outbound bandwidth limit to this tap")
        }
    }
}

/// Removes hookd's two filters from the tap, each tried (one already
/// gone, say after a restart mid-move, is no error).
fn remove_filters(tap: &str) -> Result<(), DatapathError> {
    let mut first = Ok(());
    for (name, kind, _) in PROGRAMS {
        match tc::qdisc_detach_program(tap, kind, name) {
            Err(tc::TcError::IoError(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) if first.is_ok() => {
                first = Err(io_err(format!("removing the filter {name} from {tap}"))(
                    std::io::Error::other(e),
                ))
            }
            _ => {}
        }
    }
    first
}
