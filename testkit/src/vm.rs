//! The VM as the privileged tests play it: its addresses, frames to and
//! from it, and hookd's programs run on them through BPF_PROG_TEST_RUN.

use crate::frames::{eth, ipv4, mac};
use crate::xml::{self, DomainXml};
use aya::programs::{TestRun, TestRunOptions};
use hookd::datapath::Datapath;
use hookd_model::plan::{AntiSpoofing, Enforcement, NicMode};
use ipnet::IpNet;
use std::net::{Ipv4Addr, Ipv6Addr};

pub const VM_MAC: &str = "52:54:00:00:00:0a";
pub const HOST_MAC: &str = "02:00:00:00:00:01";
pub const VM4: &str = "192.0.2.10";
pub const TC_ACT_SHOT: u32 = 2;
/// -1: pass on to the next program / the stack.
pub const TC_ACT_UNSPEC: u32 = u32::MAX;
/// BPF_PROG_TEST_RUN runs on the loopback device of the namespace: ifindex 1.
pub const TEST_IFINDEX: u32 = 1;

pub fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

pub fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// Anti-spoofing only, with `prefixes` and the VM's link-local address.
pub fn antispoof_mode(prefixes: &[&str]) -> NicMode {
    let mut p: Vec<IpNet> = prefixes.iter().map(|p| p.parse().unwrap()).collect();
    p.push(IpNet::V6(ipnet::Ipv6Net::from(
        VM_MAC
            .parse::<hookd_model::mac::MacAddr>()
            .unwrap()
            .eui64_link_local(),
    )));
    NicMode::Enforced(Enforcement {
        anti_spoofing: AntiSpoofing {
            prefixes: p,
            ..Default::default()
        },
        firewall: Default::default(),
        network: None,
        conntrack_entries: None,
    })
}

/// The verdict of the loaded program `prog` on `frame`.
pub fn run_prog(dp: &Datapath, prog: &str, frame: &[u8]) -> u32 {
    run_prog_out(dp, prog, frame).0
}

/// The verdict of `prog` on `frame`, and the frame as the program left it
/// (an answer it wrote in place, a frame it redirected).
pub fn run_prog_out(dp: &Datapath, prog: &str, frame: &[u8]) -> (u32, Vec<u8>) {
    run_prog_ctx(dp, prog, frame, None)
}

/// A `__sk_buff` context that names the device a test run plays (the
/// kernel's default is the namespace's loopback): the fields up to
/// `ifindex`, at offset 40, the rest zero.
pub fn skb_ctx(ifindex: u32) -> [u8; 44] {
    let mut ctx = [0u8; 44];
    ctx[40..].copy_from_slice(&ifindex.to_ne_bytes());
    ctx
}

/// The verdict of `prog` on `frame` come in through the device `ifindex`.
pub fn run_prog_at(dp: &Datapath, prog: &str, ifindex: u32, frame: &[u8]) -> u32 {
    run_prog_ctx(dp, prog, frame, Some(&skb_ctx(ifindex))).0
}

fn run_prog_ctx(dp: &Datapath, prog: &str, frame: &[u8], ctx: Option<&[u8]>) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; frame.len() + 64];
    let r = dp
        .program(prog)
        .unwrap()
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: ctx,
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(r.data_size_out as usize);
    (r.return_value, out)
}

/// The verdict of the program for frames from the VM.
pub fn run(dp: &Datapath, frame: &[u8]) -> u32 {
    run_prog(dp, hookd_bpf::PROG_FROM_VM, frame)
}

/// Programs TEST_IFINDEX with the policy `inner` (children of the
/// <hookd:interface> of VM_MAC, which owns 192.0.2.10/32 and 2001:db8::10/128).
pub fn program_policy(dp: &mut Datapath, inner: &str, generation: u64) {
    let xml = DomainXml::new("fw", "u")
        .metadata(&xml::policy(&format!(
            "<hookd:interface mac='{VM_MAC}'><hookd:address prefix='192.0.2.10/32'/>\
             <hookd:address prefix='2001:db8::10/128'/>{inner}</hookd:interface>"
        )))
        .nic("bridge", VM_MAC, None)
        .to_string();
    let dom = hookd_model::domain::parse(&xml).unwrap();
    let plan =
        hookd_model::plan::plan_domain(&dom, true, hookd_model::plan::Stage::BeforeTaps).unwrap();
    dp.program_nic(TEST_IFINDEX, mac(VM_MAC), &plan[0].mode, generation)
        .unwrap();
}

/// A frame to the VM (ingress) from `src`.
pub fn to_vm4(src: &str, proto: u8, l4: &[u8]) -> Vec<u8> {
    eth(
        mac(VM_MAC),
        mac(HOST_MAC),
        0x0800,
        &ipv4(v4(src), v4(VM4), proto, l4),
    )
}

/// A frame from the VM (egress) to `dst`.
pub fn from_vm4(dst: &str, proto: u8, l4: &[u8]) -> Vec<u8> {
    eth(
        mac(HOST_MAC),
        mac(VM_MAC),
        0x0800,
        &ipv4(v4(VM4), v4(dst), proto, l4),
    )
}
