//! Anti-spoofing of frames from the VM, as docs/datapath.md's
//! "Anti-spoofing, frame by frame" states it, on a NIC on no network.

use super::{
    AH, DEST_OPTS, ETH_LEN, FRAGMENT, HOP_BY_HOP, ICMPV6, MAX_EXT, Nic, ROUTING,
    Reason::*,
    UDP,
    Verdict::{self, *},
    be16, byte, v4, v6,
};
use std::net::{Ipv4Addr, Ipv6Addr};

/// The verdict of anti-spoofing on `frame`, sent by the VM on `nic`.
pub fn from_vm(frame: &[u8], nic: &Nic) -> Verdict {
    if frame.len() < ETH_LEN {
        return Drop(Malformed);
    }
    if frame[6..12] != nic.mac {
        return Drop(MacSpoof);
    }
    match be16(frame, 12).unwrap_or(0) {
        0x0806 => arp(frame, nic),
        0x0800 => ipv4(frame, nic),
        0x86dd => ipv6(frame, nic),
        0x8035 => Pass,
        0x8100 | 0x88a8 => Drop(Vlan),
        _ => Drop(Ethertype),
    }
}

fn arp(f: &[u8], nic: &Nic) -> Verdict {
    let a = ETH_LEN;
    if f.len() < a + 28
        || be16(f, a) != Some(1)
        || be16(f, a + 2) != Some(0x0800)
        || byte(f, a + 4) != Some(6)
        || byte(f, a + 5) != Some(4)
    {
        return Drop(Malformed);
    }
    if f[a + 8..a + 14] != nic.mac {
        return Drop(ArpSpoof);
    }
    let spa = v4(f, a + 14).unwrap_or(Ipv4Addr::UNSPECIFIED);
    if nic.checks_ip() && !spa.is_unspecified() && !nic.inside(spa.into()) {
        return Drop(ArpSpoof);
    }
    Pass
}

fn ipv4(f: &[u8], nic: &Nic) -> Verdict {
    let l3 = ETH_LEN;
    if f.len() < l3 + 20 || f[l3] >> 4 != 4 || f[l3] & 0xf < 5 {
        return Drop(Malformed);
    }
    let l4 = l3 + usize::from(f[l3] & 0xf) * 4;
    let proto = f[l3 + 9];
    let later_frag = be16(f, l3 + 6).unwrap_or(0) & 0x1fff != 0;
    let src = v4(f, l3 + 12).unwrap_or(Ipv4Addr::UNSPECIFIED);
    let udp = proto == UDP && !later_frag;
    let ports = if udp {
        match (be16(f, l4), be16(f, l4 + 2), f.len() >= l4 + 8) {
            (Some(s), Some(d), true) => Some((s, d)),
            _ => return Drop(Malformed),
        }
    } else {
        None
    };
    if nic.checks_ip() && !nic.inside(src.into()) {
        let dhcp_client = src.is_unspecified() && ports == Some((68, 67));
        if !dhcp_client {
            return Drop(IpSpoof);
        }
    }
    if matches!(ports, Some((67, _))) && !nic.anti_spoofing.allow_dhcp_server {
        return Drop(DhcpServer);
    }
    Pass
}

fn ipv6(f: &[u8], nic: &Nic) -> Verdict {
    let l3 = ETH_LEN;
    if f.len() < l3 + 40 || f[l3] >> 4 != 6 {
        return Drop(Malformed);
    }
    let src = v6(f, l3 + 8).unwrap_or(Ipv6Addr::UNSPECIFIED);
    if src.to_ipv4_mapped().is_some() {
        return Drop(IpSpoof);
    }
    if nic.checks_ip() && !src.is_unspecified() && !nic.inside(src.into()) {
        return Drop(IpSpoof);
    }
    // The extension-header chain.
    let (mut nh, mut off, mut later_frag) = (f[l3 + 6], l3 + 40, false);
    let mut walked = 0;
    while matches!(nh, HOP_BY_HOP | ROUTING | FRAGMENT | AH | DEST_OPTS) {
        if walked == MAX_EXT || f.len() < off + 8 {
            return Drop(Malformed);
        }
        let len = match nh {
            FRAGMENT => 8,
            AH => (usize::from(f[off + 1]) + 2) * 4,
            _ => (usize::from(f[off + 1]) + 1) * 8,
        };
        if nh == FRAGMENT && be16(f, off + 2).unwrap_or(0) & 0xfff8 != 0 {
            later_frag = true;
        }
        nh = f[off];
        off += len;
        walked += 1;
        if later_frag {
            break; // what follows is the fragment's data, not a header
        }
    }
    if nic.checks_ip() && src.is_unspecified() && nh != ICMPV6 {
        return Drop(IpSpoof);
    }
    if later_frag {
        return Pass;
    }
    match nh {
        ICMPV6 => {
            if f.len() < off + 4 {
                return Drop(Malformed);
            }
            let kind = f[off];
            if matches!(kind, 134 | 137) && !nic.anti_spoofing.allow_router_advertisements {
                return Drop(RouterAdvert);
            }
            let nd = kind == 136 || (kind == 135 && src.is_unspecified());
            if nic.checks_ip() && nd {
                match v6(f, off + 8) {
                    None => return Drop(Malformed),
                    Some(t) if !nic.inside(t.into()) => return Drop(NdSpoof),
                    Some(_) => {}
                }
            }
            Pass
        }
        UDP => {
            if f.len() < off + 8 {
                return Drop(Malformed);
            }
            if be16(f, off) == Some(547) && !nic.anti_spoofing.allow_dhcp_server {
                return Drop(DhcpServer);
            }
            Pass
        }
        _ => Pass,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::AntiSpoofing;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0a];

    fn nic(a: &AntiSpoofing) -> Nic<'_> {
        Nic {
            mac: MAC,
            anti_spoofing: a,
        }
    }

    fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&MAC);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn udp4(src: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut ip = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, UDP, 0, 0];
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&[192, 0, 2, 1]);
        ip.extend_from_slice(&sport.to_be_bytes());
        ip.extend_from_slice(&dport.to_be_bytes());
        ip.extend_from_slice(&[0, 8, 0, 0]);
        eth(0x0800, &ip)
    }

    #[test]
    fn the_documented_ipv4_rules() {
        let a = AntiSpoofing {
            prefixes: vec!["192.0.2.10/32".parse().unwrap()],
            ..Default::default()
        };
        let n = nic(&a);
        assert_eq!(from_vm(&udp4([192, 0, 2, 10], 1000, 53), &n), Pass);
        assert_eq!(from_vm(&udp4([192, 0, 2, 99], 1000, 53), &n), Drop(IpSpoof));
        assert_eq!(from_vm(&udp4([0, 0, 0, 0], 68, 67), &n), Pass);
        assert_eq!(from_vm(&udp4([0, 0, 0, 0], 68, 68), &n), Drop(IpSpoof));
        assert_eq!(
            from_vm(&udp4([192, 0, 2, 10], 67, 68), &n),
            Drop(DhcpServer)
        );
        let mut short = udp4([192, 0, 2, 10], 1000, 53);
        short.truncate(14 + 20 + 7);
        assert_eq!(from_vm(&short, &n), Drop(Malformed));
        let mut other = udp4([192, 0, 2, 10], 1000, 53);
        other[6] ^= 1;
        assert_eq!(from_vm(&other, &n), Drop(MacSpoof));
        assert_eq!(from_vm(&eth(0x8100, &[0; 40]), &n), Drop(Vlan));
        assert_eq!(from_vm(&eth(0x8035, &[]), &n), Pass);
        assert_eq!(from_vm(&eth(0x0042, &[0; 40]), &n), Drop(Ethertype));
    }

    #[test]
    fn ipv6_chains_are_walked_up_to_four_headers() {
        let a = AntiSpoofing::default();
        let n = nic(&a);
        let frame = |exts: usize| {
            let mut ip = vec![0x60, 0, 0, 0, 0, 0, DEST_OPTS, 64];
            ip.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            ip.extend_from_slice(&[0; 12]);
            ip.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            ip.extend_from_slice(&[0; 12]);
            for k in 0..exts {
                let next = if k + 1 == exts { UDP } else { DEST_OPTS };
                ip.extend_from_slice(&[next, 0, 0, 0, 0, 0, 0, 0]);
            }
            ip.extend_from_slice(&[0, 53, 0, 53, 0, 8, 0, 0]);
            eth(0x86dd, &ip)
        };
        assert_eq!(from_vm(&frame(4), &n), Pass);
        assert_eq!(from_vm(&frame(5), &n), Drop(Malformed));
    }
}
