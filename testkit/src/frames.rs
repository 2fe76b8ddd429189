//! Frame builders for tests that play the VM or its peers, and a seeded
//! random generator for benchmarks and fuzz-like tests.

use std::net::{Ipv4Addr, Ipv6Addr};

/// A seeded xorshift generator, for benchmark inputs that repeat run to run.
pub struct Rng(pub u64);
impl Rng {
    #[allow(clippy::should_implement_trait)] // a generator, not an iterator
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// ---- frames -------------------------------------------------------------

pub fn mac(s: &str) -> [u8; 6] {
    s.parse::<hookd_model::mac::MacAddr>().unwrap().0
}

pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from(c[0]) << 8
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    while f.len() < 60 {
        f.push(0);
    }
    f
}

pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    ipv4_with_options(src, dst, proto, &[], payload)
}

/// An IPv4 packet whose header carries `options` (a multiple of 4 bytes).
pub fn ipv4_with_options(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0, "IPv4 options come in 4-byte words");
    let hl = 20 + options.len();
    let total = hl + payload.len();
    let mut h = vec![
        0x40 | (hl / 4) as u8,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40,
        0,
        64,
        proto,
        0,
        0,
    ];
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(options);
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// An IPv4 fragment of datagram `id`: `payload` at byte `offset` of the
/// datagram's payload, with more fragments to come or not.
pub fn ipv4_fragment(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    id: u16,
    offset: u16,
    more: bool,
    payload: &[u8],
) -> Vec<u8> {
    let mut ip = ipv4(src, dst, proto, payload);
    ip[4..6].copy_from_slice(&id.to_be_bytes());
    let field = (offset / 8) | if more { 0x2000 } else { 0 };
    ip[6..8].copy_from_slice(&field.to_be_bytes());
    ip[10..12].fill(0);
    let c = checksum(&ip[..20]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip
}

/// An IPv6 fragment: a Fragment header of datagram `id`, then `payload`
/// at byte `offset` of the fragmentable part.
pub fn ipv6_fragment(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    proto: u8,
    id: u32,
    offset: u16,
    more: bool,
    payload: &[u8],
) -> Vec<u8> {
    let field = ((offset / 8) << 3) | u16::from(more);
    let mut ext = vec![proto, 0];
    ext.extend_from_slice(&field.to_be_bytes());
    ext.extend_from_slice(&id.to_be_bytes());
    ext.extend_from_slice(payload);
    ipv6(src, dst, 44, &ext)
}

pub fn icmp_echo(seq: u16) -> Vec<u8> {
    let mut m = vec![8, 0, 0, 0, 0x12, 0x34, (seq >> 8) as u8, seq as u8];
    m.extend_from_slice(b"hookd-test-payload");
    let c = checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut u = vec![0; 8];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&(len as u16).to_be_bytes());
    u.extend_from_slice(payload);
    u
}

/// A DHCPv4 client message (BOOTP request) of `msg_type` (1 DISCOVER,
/// 3 REQUEST) from `chaddr`, asking for `requested` (option 50) if given:
/// the UDP payload, padded to BOOTP's 300 bytes.
pub fn dhcp_request(chaddr: [u8; 6], msg_type: u8, requested: Option<Ipv4Addr>) -> Vec<u8> {
    let mut b = vec![1, 1, 6, 0, 0x12, 0x34, 0x56, 0x78, 0, 0, 0x80, 0];
    b.extend_from_slice(&[0; 16]); // ciaddr, yiaddr, siaddr, giaddr
    b.extend_from_slice(&chaddr);
    b.extend_from_slice(&[0; 10 + 64 + 128]);
    b.extend_from_slice(&[99, 130, 83, 99, 53, 1, msg_type]);
    if let Some(r) = requested {
        b.extend_from_slice(&[50, 4]);
        b.extend_from_slice(&r.octets());
    }
    b.extend_from_slice(&[55, 3, 1, 3, 6, 255]);
    b.resize(300, 0);
    b
}

/// The options of a BOOTP message (`bootp`: from its first byte), by code.
pub fn dhcp_options(bootp: &[u8]) -> std::collections::BTreeMap<u8, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut i = 240;
    while i + 1 < bootp.len() && bootp[i] != 255 {
        if bootp[i] == 0 {
            i += 1;
            continue;
        }
        let len = usize::from(bootp[i + 1]);
        out.insert(bootp[i], bootp[i + 2..i + 2 + len].to_vec());
        i += 2 + len;
    }
    out
}

pub fn arp(sha: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
    a.extend_from_slice(&sha);
    a.extend_from_slice(&spa.octets());
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&tpa.octets());
    a
}

pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.push(next);
    h.push(255);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(payload);
    h
}

/// ICMPv6 message with a 4-byte body field then `target` (ND layout).
pub fn icmpv6_nd(kind: u8, target: Ipv6Addr) -> Vec<u8> {
    let mut m = vec![kind, 0, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&target.octets());
    m
}

/// The echo-reply frames among `frames` with our id and `seq`.
pub fn echo_replies(frames: &[Vec<u8>], seq: u16) -> usize {
    frames
        .iter()
        .filter(|f| f.len() >= 14 + 20 + 8 && f[12..14] == [8, 0] && f[14 + 9] == 1)
        .filter(|f| {
            let icmp = &f[14 + usize::from(f[14] & 0xf) * 4..];
            icmp[0] == 0 && icmp[4..6] == [0x12, 0x34] && icmp[6..8] == seq.to_be_bytes()
        })
        .count()
}

pub fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t[14] = 0xff;
    t
}

pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
pub const FIN: u8 = 0x01;
pub const RST: u8 = 0x04;

pub fn icmp(kind: u8, code: u8, id: u16, rest: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, code, 0, 0, (id >> 8) as u8, id as u8, 0, 1];
    m.extend_from_slice(rest);
    m
}
