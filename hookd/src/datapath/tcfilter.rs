//! Reading a tap's `cls_bpf` filters over rtnetlink (a `RTM_GETTFILTER`
//! dump), to find the priority and handle under which a netlink-attached
//! program sits: replacing it in place needs both, and aya 0.14 has no
//! public call that lists them.

use aya::programs::tc::TcAttachType;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// One `cls_bpf` filter on a clsact hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BpfFilter {
    pub(crate) priority: u16,
    pub(crate) handle: u32,
    /// The program name given at attach (`TCA_BPF_NAME`).
    pub(crate) name: String,
    /// The id of the program the filter runs (`TCA_BPF_ID`).
    pub(crate) prog_id: u32,
}

// From <linux/rtnetlink.h>, <linux/pkt_sched.h> and <linux/pkt_cls.h>.
const TC_H_INGRESS_PARENT: u32 = 0xFFFF_FFF2; // TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS)
const TC_H_EGRESS_PARENT: u32 = 0xFFFF_FFF3; // TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_EGRESS)
const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TCA_BPF_NAME: u16 = 7;
const TCA_BPF_ID: u16 = 11;
const NLA_TYPE_MASK: u16 = 0x3fff; // without NLA_F_NESTED / NLA_F_NET_BYTEORDER
const NLMSG_HDRLEN: usize = 16;
const TCMSG_LEN: usize = 20;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The netlink attributes in `b`, as (type, payload).
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(b, 0)?);
        let kind = u16_at(b, 2)? & NLA_TYPE_MASK;
        let payload = b.get(4..len)?;
        b = b.get(align4(len)..).unwrap_or_default();
        Some((kind, payload))
    })
}

fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// One `RTM_NEWTFILTER` message body (tcmsg and attributes): a filter if
/// it is a `cls_bpf` one that names its program. The dump also lists each
/// priority's chain head, which has no options; those are skipped.
fn parse_filter(body: &[u8]) -> Option<BpfFilter> {
    let handle = u32_at(body, 8)?;
    let info = u32_at(body, 16)?;
    let (mut kind, mut name, mut prog_id) = (None, None, None);
    for (t, payload) in attrs(body.get(TCMSG_LEN..)?) {
        match t {
            TCA_KIND => kind = Some(c_string(payload)),
            TCA_OPTIONS => {
                for (t, p) in attrs(payload) {
                    match t {
                        TCA_BPF_NAME => name = Some(c_string(p)),
                        TCA_BPF_ID => prog_id = u32_at(p, 0),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    (kind.as_deref() == Some("bpf")).then_some(())?;
    Some(BpfFilter {
        priority: (info >> 16) as u16,
        handle,
        name: name?,
        prog_id: prog_id?,
    })
}

/// The `cls_bpf` filters on the clsact hook `kind` of `ifindex`.
pub(crate) fn bpf_filters(ifindex: u32, kind: TcAttachType) -> io::Result<Vec<BpfFilter>> {
    Ok(dump(ifindex, kind)?
        .iter()
        .filter_map(|body| parse_filter(body))
        .collect())
}

/// Does the clsact hook `kind` of `ifindex` hold any filter, of any kind?
pub(crate) fn has_filters(ifindex: u32, kind: TcAttachType) -> io::Result<bool> {
    Ok(!dump(ifindex, kind)?.is_empty())
}

/// The bodies (tcmsg and attributes) of the `RTM_NEWTFILTER` messages of
/// a dump of the clsact hook `kind` of `ifindex`.
fn dump(ifindex: u32, kind: TcAttachType) -> io::Result<Vec<Vec<u8>>> {
    let parent = match kind {
        TcAttachType::Ingress => TC_H_INGRESS_PARENT,
        TcAttachType::Egress => TC_H_EGRESS_PARENT,
        TcAttachType::Custom(parent) => parent,
    };
    // SAFETY: socket(2) with constant arguments; the fd it returns is owned
    // by nobody else, so OwnedFd may close it.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: see above.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };

    // nlmsghdr (len, type, flags, seq, pid) then tcmsg (family, pad,
    // ifindex, handle, parent, info), in host byte order.
    let seq: u32 = 1;
    let mut req = Vec::with_capacity(NLMSG_HDRLEN + TCMSG_LEN);
    req.extend_from_slice(&((NLMSG_HDRLEN + TCMSG_LEN) as u32).to_ne_bytes());
    req.extend_from_slice(&libc::RTM_GETTFILTER.to_ne_bytes());
    req.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    req.extend_from_slice(&seq.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
    req.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&parent.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    // SAFETY: `req` is a valid buffer of `req.len()` bytes for the call; an
    // unbound netlink socket sends to the kernel.
    let sent = unsafe { libc::send(sock.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }

    let mut out = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        // SAFETY: `buf` is a valid, writable buffer of `buf.len()` bytes.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let mut msgs = &buf[..n as usize];
        while msgs.len() >= NLMSG_HDRLEN {
            let len = u32_at(msgs, 0).unwrap_or(0) as usize;
            let kind = u16_at(msgs, 4).unwrap_or(0);
            if len < NLMSG_HDRLEN || len > msgs.len() {
                return Err(io::Error::other("truncated netlink message"));
            }
            let body = &msgs[NLMSG_HDRLEN..len];
            match kind {
                k if k == libc::NLMSG_DONE as u16 => return Ok(out),
                k if k == libc::NLMSG_ERROR as u16 => {
                    let err = u32_at(body, 0).unwrap_or(0) as i32;
                    if err != 0 {
                        return Err(io::Error::from_raw_os_error(-err));
                    }
                }
                k if k == libc::RTM_NEWTFILTER => out.push(body.to_vec()),
                _ => {}
            }
            msgs = msgs.get(align4(len)..).unwrap_or_default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(payload);
        a.resize(align4(a.len()), 0);
        a
    }

    fn tcmsg(handle: u32, info: u32) -> Vec<u8> {
        let mut t = vec![0u8; 8];
        t.extend_from_slice(&handle.to_ne_bytes());
        t.extend_from_slice(&TC_H_INGRESS_PARENT.to_ne_bytes());
        t.extend_from_slice(&info.to_ne_bytes());
        t
    }

    #[test]
    fn parses_a_cls_bpf_filter_and_skips_chain_heads() {
        let mut opts = attr(TCA_BPF_NAME, b"hookd_from_vm\0");
        opts.extend(attr(TCA_BPF_ID, &42u32.to_ne_bytes()));
        let mut body = tcmsg(1, (49152 << 16) | 0x0300);
        body.extend(attr(TCA_KIND, b"bpf\0"));
        body.extend(attr(TCA_OPTIONS | 0x8000, &opts));
        assert_eq!(
            parse_filter(&body),
            Some(BpfFilter {
                priority: 49152,
                handle: 1,
                name: "hookd_from_vm".into(),
                prog_id: 42,
            })
        );
        let mut head = tcmsg(0, 49152 << 16);
        head.extend(attr(TCA_KIND, b"bpf\0"));
        assert_eq!(parse_filter(&head), None);
        let mut u32f = tcmsg(1, 1 << 16);
        u32f.extend(attr(TCA_KIND, b"u32\0"));
        u32f.extend(attr(TCA_OPTIONS, &opts));
        assert_eq!(parse_filter(&u32f), None);
    }
}
