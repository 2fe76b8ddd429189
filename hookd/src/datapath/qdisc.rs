//! The qdiscs of a tap that decide how hookd may attach to it, over
//! rtnetlink: whether someone configured its root qdisc, and deleting the
//! clsact qdisc hookd made for its filters once they are gone (the NIC
//! moved to tcx, or detached from a tap that stays), unless it holds
//! filters of others.

use crate::datapath::netns::Rtnl;
use crate::datapath::tcfilter;
use aya::programs::tc::TcAttachType;
use netlink_packet_core::NLM_F_ECHO;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage};
use std::io;

fn index(ifindex: u32) -> io::Result<i32> {
    i32::try_from(ifindex).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Does the device have a root qdisc that someone configured to queue
/// (libvirt's `<bandwidth>` inbound limit is `htb 1:`)? Not the kernel's
/// default one, which has handle 0, nor the `noqueue` that libvirt gives
/// every tap, which holds nothing.
pub(crate) fn has_configured_root(ifindex: u32) -> io::Result<bool> {
    let index = index(ifindex)?;
    let mut get = TcMessage::with_index(index);
    get.header.parent = TcHandle::ROOT;
    // The kernel answers a qdisc `Get` as a notification, which it sends
    // back to the asker only with NLM_F_ECHO.
    let answers =
        Rtnl::open()?.exchange(RouteNetlinkMessage::GetQueueDiscipline(get), NLM_F_ECHO)?;
    Ok(answers.iter().any(|m| match m {
        RouteNetlinkMessage::NewQueueDiscipline(q) => {
            q.header.index == index
                && q.header.handle != TcHandle::UNSPEC
                && !q
                    .attributes
                    .iter()
                    .any(|a| matches!(a, TcAttribute::Kind(k) if k == "noqueue"))
        }
        _ => false,
    }))
}

/// Deletes the device's clsact qdisc (`tc qdisc del dev TAP clsact`), with
/// whatever filters it holds. None there is no error, and neither is an
/// ingress qdisc in its place (another kind: the kernel refuses to delete
/// it as a clsact, EINVAL, and it stays).
pub(crate) fn delete_clsact(ifindex: u32) -> io::Result<()> {
    let mut del = TcMessage::with_index(index(ifindex)?);
    del.header.parent = TcHandle::CLSACT;
    del.header.handle = TcHandle {
        major: TcHandle::CLSACT.major,
        minor: 0,
    };
    del.attributes.push(TcAttribute::Kind("clsact".into()));
    match Rtnl::open()?.request(RouteNetlinkMessage::DelQueueDiscipline(del), 0) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::EINVAL)) => Ok(()),
        r => r,
    }
}

/// Deletes the clsact qdisc that hookd made for the NIC's filters, now
/// that they are gone, unless it holds filters of others (there is a
/// moment between the two, in which a filter another tool adds goes with
/// the qdisc). Left on the tap, it would keep libvirt from adding the
/// ingress qdisc of an outbound bandwidth limit set on the running VM
/// (`virsh domiftune`: the kernel allows one of the two). The price:
/// deleting a qdisc deactivates the tap for a moment (the kernel's
/// `dev_deactivate`, about 60 µs here), and a frame on its way to the
/// guest then may be dropped. Returns whether it went.
pub(crate) fn drop_empty_clsact(ifindex: u32) -> io::Result<bool> {
    for kind in [TcAttachType::Ingress, TcAttachType::Egress] {
        let others = tcfilter::has_filters(ifindex, kind)
            .map_err(|e| io::Error::new(e.kind(), format!("listing its tc filters: {e}")))?;
        if others {
            return Ok(false);
        }
    }
    delete_clsact(ifindex).map_err(|e| io::Error::new(e.kind(), format!("deleting it: {e}")))?;
    Ok(true)
}
