//! Reading a tap's tc filters over rtnetlink (a `RTM_GETTFILTER` dump),
//! to find the priority and handle under which a netlink-attached program
//! sits: replacing it in place needs both, and aya 0.14 has no public call
//! that lists them.

use crate::datapath::netns::Rtnl;
use aya::programs::tc::TcAttachType;
use netlink_packet_core::NLM_F_DUMP;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::tc::{TcAttribute, TcFilterBpfOption, TcHandle, TcMessage, TcOption};
use std::io;

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

/// A filter if it is a `cls_bpf` one that names its program. The dump
/// also lists each priority's chain head, which has no options; those are
/// skipped.
fn bpf_filter(m: &TcMessage) -> Option<BpfFilter> {
    let (mut bpf, mut name, mut prog_id) = (false, None, None);
    for a in &m.attributes {
        match a {
            TcAttribute::Kind(k) => bpf = k == "bpf",
            TcAttribute::Options(opts) => {
                for o in opts {
                    match o {
                        TcOption::Bpf(TcFilterBpfOption::ProgName(n)) => name = Some(n.clone()),
                        TcOption::Bpf(TcFilterBpfOption::ProgId(id)) => prog_id = Some(*id),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    bpf.then_some(())?;
    Some(BpfFilter {
        priority: (m.header.info >> 16) as u16,
        handle: u32::from(m.header.handle),
        name: name?,
        prog_id: prog_id?,
    })
}

/// The `cls_bpf` filters on the clsact hook `kind` of `ifindex`.
pub(crate) fn bpf_filters(ifindex: u32, kind: TcAttachType) -> io::Result<Vec<BpfFilter>> {
    Ok(dump(ifindex, kind)?.iter().filter_map(bpf_filter).collect())
}

/// Does the clsact hook `kind` of `ifindex` hold any filter, of any kind?
pub(crate) fn has_filters(ifindex: u32, kind: TcAttachType) -> io::Result<bool> {
    Ok(!dump(ifindex, kind)?.is_empty())
}

/// The filters (and chain heads) a dump of the clsact hook `kind` of
/// `ifindex` lists.
fn dump(ifindex: u32, kind: TcAttachType) -> io::Result<Vec<TcMessage>> {
    let parent = match kind {
        TcAttachType::Ingress => TcHandle {
            major: TcHandle::CLSACT.major,
            minor: TcHandle::MIN_INGRESS,
        },
        TcAttachType::Egress => TcHandle {
            major: TcHandle::CLSACT.major,
            minor: TcHandle::MIN_EGRESS,
        },
        TcAttachType::Custom(parent) => TcHandle::from(parent),
    };
    let index = i32::try_from(ifindex).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut get = TcMessage::with_index(index);
    get.header.parent = parent;
    let answers = Rtnl::open()?.exchange(RouteNetlinkMessage::GetTrafficFilter(get), NLM_F_DUMP)?;
    Ok(answers
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewTrafficFilter(f) if f.header.index == index => Some(f),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(handle: u32, info: u32, kind: &str, opts: Vec<TcOption>) -> TcMessage {
        let mut m = TcMessage::with_index(7);
        m.header.handle = TcHandle::from(handle);
        m.header.info = info;
        m.attributes.push(TcAttribute::Kind(kind.into()));
        if !opts.is_empty() {
            m.attributes.push(TcAttribute::Options(opts));
        }
        m
    }

    #[test]
    fn reads_a_cls_bpf_filter_and_skips_chain_heads() {
        let opts = || {
            vec![
                TcOption::Bpf(TcFilterBpfOption::ProgName("hookd_from_vm".into())),
                TcOption::Bpf(TcFilterBpfOption::ProgId(42)),
            ]
        };
        assert_eq!(
            bpf_filter(&filter(1, (49152 << 16) | 0x0300, "bpf", opts())),
            Some(BpfFilter {
                priority: 49152,
                handle: 1,
                name: "hookd_from_vm".into(),
                prog_id: 42,
            })
        );
        assert_eq!(bpf_filter(&filter(0, 49152 << 16, "bpf", vec![])), None);
        assert_eq!(bpf_filter(&filter(1, 1 << 16, "u32", opts())), None);
    }

    /// The dump over a real tap: hookd's cls_bpf filter is read with its
    /// priority, handle, name and program id; a u32 filter of someone else
    /// counts as a filter but not as hookd's; an empty hook has none.
    #[test]
    #[ignore = "privileged: run by scripts/test-privileged.sh"]
    fn a_real_dump_finds_bpf_and_foreign_filters() {
        use aya::programs::{Program, SchedClassifier};
        use hookd_testkit::net::{Netns, sh};
        let ns = Netns::new("tcf");
        let _in = Netns::enter(&ns.name);
        sh(
            "ip tuntap add mode tap name tcf0 && ip link set tcf0 up && tc qdisc add dev tcf0 clsact",
        );
        let ifindex = crate::datapath::netdev::ifindex("tcf0").unwrap();
        let none = |kind| has_filters(ifindex, kind).unwrap();
        assert!(!none(TcAttachType::Ingress) && !none(TcAttachType::Egress));

        let mut ebpf = aya::Ebpf::load(hookd_bpf::EMPTY_OBJ).unwrap();
        let (name, prog) = ebpf.programs_mut().next().unwrap();
        let name = name.to_string();
        let Program::SchedClassifier(p) = prog else {
            panic!("{name} is not a classifier")
        };
        let p: &mut SchedClassifier = p;
        p.load().unwrap();
        let id = p.info().unwrap().id();
        let opts = aya::programs::tc::TcAttachOptions::Netlink(aya::programs::tc::NlOptions {
            priority: 7,
            handle: 3.into(),
            ..Default::default()
        });
        p.attach_with_options("tcf0", TcAttachType::Egress, opts)
            .unwrap();
        assert_eq!(
            bpf_filters(ifindex, TcAttachType::Egress).unwrap(),
            vec![BpfFilter {
                priority: 7,
                handle: 3,
                name: name.clone(),
                prog_id: id
            }]
        );
        assert!(
            bpf_filters(ifindex, TcAttachType::Ingress)
                .unwrap()
                .is_empty()
        );

        sh("tc filter add dev tcf0 ingress pref 9 u32 match u32 0 0");
        assert!(has_filters(ifindex, TcAttachType::Ingress).unwrap());
        assert!(
            bpf_filters(ifindex, TcAttachType::Ingress)
                .unwrap()
                .is_empty()
        );
    }
}
