//! The N random rules of a run, written for each filter: iptables, nft
//! (chain and set), hookd policy; and the frames that exercise them.

use super::*;

#[derive(Clone, Copy)]
pub(crate) struct Rule {
    pub(crate) net: Ipv4Addr,
    pub(crate) len: u8,
    pub(crate) port: u16,
}

/// N rules: N-1 random ones inside 203.0.113.0/24, then the sink's port.
pub(crate) fn rules(n: usize) -> Vec<Rule> {
    let mut rng = Rng(0x5eed_0000 + n as u64);
    // Distinct ports: no two rules overlap (an nft interval set refuses
    // overlapping elements).
    let mut v: Vec<Rule> = (0..n - 1)
        .map(|i| {
            let len = if rng.below(4) == 0 { 28 } else { 32 };
            let host = rng.below(256) as u8 & if len == 28 { 0xf0 } else { 0xff };
            Rule {
                net: Ipv4Addr::new(203, 0, 113, host),
                len,
                port: 1024 + (i * 6) as u16 + rng.below(6) as u16,
            }
        })
        .collect();
    v.push(Rule {
        net: SINK_IP,
        len: 32,
        port: SINK_PORT,
    });
    v
}

/// 60-byte frames (64 on the wire) from the VM (`src_mac`, VM_IP) to the
/// next hop `dst_mac`: to the sink's port only
/// ("last"), or to each rule's address and port in turn ("spread").
pub(crate) fn frames(
    rules: &[Rule],
    spread: bool,
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
) -> Vec<Vec<u8>> {
    let targets: Vec<(Ipv4Addr, u16)> = if spread {
        let step = rules.len().div_ceil(MAX_FRAMES).max(1);
        rules
            .iter()
            .step_by(step)
            .map(|r| (r.net, r.port))
            .collect()
    } else {
        vec![(SINK_IP, SINK_PORT)]
    };
    targets
        .iter()
        .enumerate()
        .map(|(i, (dst, port))| {
            let l4 = udp(10_000 + (i % 50_000) as u16, *port, &[0u8; 18]);
            eth(dst_mac, src_mac, 0x0800, &ipv4(VM_IP, *dst, 17, &l4))
        })
        .collect()
}

pub(crate) fn iptables_rules(rules: &[Rule], conntrack: bool) -> String {
    let mut s =
        String::from("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    if conntrack {
        s += "-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n";
    }
    for r in rules {
        let _ = writeln!(
            s,
            "-A FORWARD -i vmtap -d {}/{} -p udp --dport {} -j ACCEPT",
            r.net, r.len, r.port
        );
    }
    s + "-A FORWARD -i vmtap -j DROP\nCOMMIT\n"
}

/// nft scripts for the variant, in chunks: one huge netlink batch overflows
/// nft's socket buffer ("No buffer space available").
pub(crate) fn nft_scripts(rules: &[Rule], set: bool) -> Vec<String> {
    const CHUNK: usize = 500;
    let mut scripts = vec![String::from(
        "table ip hookdbench {\n chain vm_forward {\n  type filter hook forward priority 0; policy accept;\n }\n \
         set allow {\n  type ipv4_addr . inet_service; flags interval;\n }\n}\n",
    )];
    for chunk in rules.chunks(CHUNK) {
        let mut s = String::new();
        if set {
            s += "add element ip hookdbench allow {\n";
            for r in chunk {
                let _ = writeln!(s, "  {}/{} . {},", r.net, r.len, r.port);
            }
            s += "}\n";
        } else {
            for r in chunk {
                let _ = writeln!(
                    s,
                    "add rule ip hookdbench vm_forward iifname \"vmtap\" ip daddr {}/{} udp dport {} accept",
                    r.net, r.len, r.port
                );
            }
        }
        scripts.push(s);
    }
    let mut last = String::new();
    if set {
        last += "add rule ip hookdbench vm_forward iifname \"vmtap\" ip daddr . udp dport @allow accept\n";
    }
    last += "add rule ip hookdbench vm_forward iifname \"vmtap\" drop\n";
    scripts.push(last);
    scripts
}

/// The VM's policy: its MAC and address, egress denied but to the rules.
pub(crate) fn hookd_policy(rules: &[Rule], vm_mac: &str) -> String {
    let mut r = String::new();
    for x in rules {
        let _ = write!(
            r,
            "<hookd:rule action='allow' protocol='udp' ports='{}' remote='{}/{}'/>",
            x.port, x.net, x.len
        );
    }
    support::xml::policy(&format!(
        "<hookd:interface mac='{vm_mac}'><hookd:address prefix='{VM_IP}/32'/>\
         <hookd:egress default='deny'>{r}</hookd:egress></hookd:interface>"
    ))
}

pub(crate) fn hookd_xml(rules: &[Rule], phase_tap: &str) -> String {
    support::xml::DomainXml::new("bench", "00000000-0000-4000-8000-00000000be0c")
        .metadata(&hookd_policy(rules, VM_MAC))
        .nic("ethernet", VM_MAC, Some(phase_tap))
        .to_string()
}
