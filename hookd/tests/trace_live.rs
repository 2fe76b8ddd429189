//! Tier 2: `hookctl trace --live`. The tracing build of the programs, run
//! by BPF_PROG_TEST_RUN on the live maps, must give the verdict the
//! attached programs give (connection state included) and write nothing:
//! no conntrack entry, counter or rule hit. Then the daemon's `trace_live`
//! on a real tap: the frame it builds, and the stage it names.
//!
//! Needs root. These tests are `#[ignore]`d in a plain `cargo test` and run
//! by scripts/test-privileged.sh (`--ignored`), where they fail, never
//! skip, if they cannot run.

use hookd::config::AttachMode;
use hookd::core::records::StateDir;
use hookd::core::trace::TraceQuery;
use hookd::core::{Daemon, DataPlane};
use hookd::datapath::Datapath;
use hookd_bpf::layout::{self, DropReason};
use hookd_model::hook::HookArgs;
use hookd_model::policy::{Action, Direction};
use hookd_testkit::vm::*;
use hookd_testkit::xml::{self, DomainXml};
use hookd_testkit::*;

const RULES: &str = "<hookd:ingress default='deny'>\
     <hookd:rule action='allow' protocol='tcp' ports='22' remote='198.51.100.0/24'/>\
   </hookd:ingress>\
   <hookd:egress default='allow'>\
     <hookd:rule action='deny' protocol='udp' ports='53' remote='203.0.113.0/24'/>\
   </hookd:egress>";

/// A traced frame: what it is, the frame, whether it goes to the VM, why
/// it is dropped, or how the firewall passes it (direction, TRACE_*).
type Case = (
    &'static str,
    Vec<u8>,
    bool,
    Option<DropReason>,
    Option<(usize, u8)>,
);

/// What a trace may change if it wrote: counters, rule hits, conntrack.
fn state(dp: &Datapath, ifindex: u32) -> String {
    let mut ct: Vec<String> = dp
        .ct_table(ifindex)
        .unwrap()
        .iter()
        .map(|(k, e)| format!("{k:?} {}", e.state))
        .collect();
    ct.sort();
    format!(
        "stats {:?}\nhits {:?}\nct {ct:?}",
        dp.stats(ifindex),
        dp.rule_hits(ifindex)
    )
}

#[test]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
fn the_tracing_build_agrees_with_the_programs_and_writes_nothing() {
    require_root();
    let fs = Bpffs::new();
    let mut dp = Datapath::open(&fs.pin_dir(), AttachMode::Auto).unwrap();
    program_policy(&mut dp, RULES, 1);
    // The VM opens a connection from its port 8080 to 198.51.100.7:40000.
    let opened = from_vm4("198.51.100.7", 6, &tcp(8080, 40000, SYN));
    assert_eq!(run(&dp, &opened), TC_ACT_UNSPEC);
    let dir_in = usize::from(layout::DIR_INGRESS);
    let dir_out = usize::from(layout::DIR_EGRESS);
    let cases: [Case; 6] = [
        (
            "ssh from the allowed prefix",
            to_vm4("198.51.100.7", 6, &tcp(40000, 22, SYN)),
            true,
            None,
            Some((dir_in, layout::TRACE_RULE)),
        ),
        (
            "http, which no rule allows",
            to_vm4("198.51.100.7", 6, &tcp(40000, 80, SYN)),
            true,
            Some(DropReason::FwDefault),
            None,
        ),
        (
            "the peer's side of the VM's connection",
            to_vm4("198.51.100.7", 6, &tcp(40000, 8080, SYN | ACK)),
            true,
            None,
            Some((dir_in, layout::TRACE_ESTABLISHED)),
        ),
        (
            "DNS to the denied prefix",
            from_vm4("203.0.113.9", 17, &udp(5000, 53, b"q")),
            false,
            Some(DropReason::FwRule),
            None,
        ),
        (
            "a spoofed source",
            eth(
                mac(HOST_MAC),
                mac(VM_MAC),
                0x0800,
                &ipv4(v4("192.0.2.99"), v4("198.51.100.7"), 6, &tcp(1, 2, SYN)),
            ),
            false,
            Some(DropReason::IpSpoof),
            None,
        ),
        (
            "a new connection out, by the default",
            from_vm4("198.51.100.7", 6, &tcp(41000, 443, SYN)),
            false,
            None,
            Some((dir_out, layout::TRACE_DEFAULT)),
        ),
    ];
    let before = state(&dp, TEST_IFINDEX);
    let mut traced = Vec::new();
    for _ in 0..3 {
        for (what, frame, to_vm, dropped, passed) in &cases {
            let v = dp.trace_live(TEST_IFINDEX, *to_vm, frame).unwrap();
            match dropped {
                Some(r) => {
                    assert_eq!(v.action, TC_ACT_SHOT as i32, "{what}: {v:?}");
                    assert_eq!((v.note.dropped, v.note.reason), (1, *r as u8), "{what}");
                }
                None => {
                    assert_eq!(v.action, TC_ACT_UNSPEC as i32, "{what}: {v:?}");
                    assert_eq!(v.note.dropped, 0, "{what}");
                }
            }
            if let Some((dir, how)) = passed {
                assert_eq!(v.note.how[*dir], *how, "{what}: {v:?}");
            }
            traced.push(v.action as u32);
        }
    }
    assert_eq!(
        state(&dp, TEST_IFINDEX),
        before,
        "18 traces wrote no counter, hit or conntrack entry"
    );
    // The attached programs decide the same, and they do write: the new
    // connection out is tracked, the drops are counted.
    for ((what, frame, to_vm, _, _), live) in cases.iter().zip(&traced) {
        let prog = if *to_vm {
            hookd_bpf::PROG_TO_VM
        } else {
            hookd_bpf::PROG_FROM_VM
        };
        assert_eq!(
            run_prog(&dp, prog, frame),
            *live,
            "{what}: program and trace"
        );
    }
    assert_eq!(dp.ct_table(TEST_IFINDEX).unwrap().len(), 3);
    assert_ne!(state(&dp, TEST_IFINDEX), before);
}

fn hook(d: &mut Daemon, op: &str, xml: &str) {
    let args = HookArgs {
        domain: "vm1".into(),
        operation: op.into(),
        sub_operation: "begin".into(),
        extra: "-".into(),
    };
    d.hook_event(&args, xml).unwrap();
}

fn query(direction: Direction, remote: &str, protocol: u8, port: u16) -> TraceQuery {
    TraceQuery {
        mac: VM_MAC.parse().unwrap(),
        direction,
        remote: remote.parse().unwrap(),
        protocol,
        port,
        icmp_type: 8,
        icmp_code: 0,
    }
}

#[test]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
fn the_daemon_traces_a_described_packet_through_a_taps_programs() {
    require_root();
    let fs = Bpffs::new();
    let ns = Netns::new("trace");
    let pin_dir = fs.pin_dir();
    let name = ns.name.clone();
    std::thread::spawn(move || {
        let _in_ns = Netns::enter(&name);
        let _tap = Tap::create("vnet3");
        let run = tempfile::tempdir().unwrap();
        let dp = Datapath::open(&pin_dir, AttachMode::Auto).unwrap();
        let mut d = Daemon::new(Box::new(dp), StateDir::open(run.path()).unwrap(), true);
        let xml = DomainXml::new("vm1", "00000000-0000-4000-8000-0000000000c7")
            .metadata(&xml::policy(&format!(
                "<hookd:interface mac='{VM_MAC}'>\
                 <hookd:address prefix='192.0.2.10/32'/>{RULES}</hookd:interface>"
            )))
            .nic("ethernet", VM_MAC, Some("vnet3"))
            .to_string();
        hook(&mut d, "start", &xml);

        let a = d
            .trace_live("vm1", &query(Direction::Ingress, "198.51.100.7", 6, 22))
            .unwrap();
        assert_eq!(a.action, Action::Allow, "{a:?}");
        assert!(
            a.stage.contains("ingress rule at line") && a.stage.contains("22"),
            "{a:?}"
        );
        assert_eq!(a.vm_address.to_string(), "192.0.2.10");
        let a = d
            .trace_live("vm1", &query(Direction::Ingress, "198.51.100.7", 6, 80))
            .unwrap();
        assert_eq!(a.action, Action::Deny, "{a:?}");
        assert!(
            a.stage.starts_with("dropped by firewall: fw_default"),
            "{a:?}"
        );
        let a = d
            .trace_live("vm1", &query(Direction::Egress, "203.0.113.9", 17, 53))
            .unwrap();
        assert!(
            a.action == Action::Deny && a.stage.contains("fw_rule"),
            "{a:?}"
        );
        let a = d
            .trace_live("vm1", &query(Direction::Egress, "198.51.100.7", 1, 0))
            .unwrap();
        assert!(
            a.action == Action::Allow && a.stage.contains("default allow"),
            "{a:?}"
        );
        // IPv6 from a NIC with no IPv6 prefix: from its EUI-64 link-local
        // address, which anti-spoofing always allows.
        let a = d
            .trace_live("vm1", &query(Direction::Egress, "2001:db8::1", 17, 5353))
            .unwrap();
        assert_eq!(a.vm_address.to_string(), "fe80::5054:ff:fe00:a", "{a:?}");
        assert_eq!(a.action, Action::Allow, "{a:?}");
        // What it cannot trace, it says.
        let mut other = query(Direction::Egress, "198.51.100.7", 17, 53);
        other.mac = "52:54:00:00:00:99".parse().unwrap();
        let e = d.trace_live("vm1", &other).unwrap_err().to_string();
        assert!(e.contains("has no NIC 52:54:00:00:00:99"), "{e}");
        let e = d
            .trace_live("nosuch", &query(Direction::Egress, "198.51.100.7", 17, 53))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no domain 'nosuch'"), "{e}");
    })
    .join()
    .unwrap();
}
