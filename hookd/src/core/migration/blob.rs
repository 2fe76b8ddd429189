//! The firewall state a VM carries through a live migration, and its
//! binary encoding (pure: no kernel, no clock of its own).
//!
//! What travels is each NIC's conntrack table, keyed by the NIC's MAC (the
//! tap's name and ifindex change on the destination), with each entry's
//! age instead of its timestamp (kernel clocks differ between hosts).
//! The encoding is compact because it travels while the guest is stopped:
//! 21 bytes an IPv4 connection and 45 an IPv6 one before compression, and
//! written field by field they compress about 4:1 when a NIC's
//! connections share their addresses (an LZ4 block: it decodes at
//! gigabytes a second, on the destination's side of the downtime). They
//! are not sorted first: that would compress them further but cost more
//! time reading them than it saves on the bus. It is
//! checked whole before anything of it is loaded: a blob that is truncated,
//! corrupt, of another VM or of another layout version is refused.
//!
//! Layout (little-endian), version 2:
//!
//! ```text
//! magic "HOOKDCT\0" | version u16 | body length u32 | body, LZ4-compressed
//! crc32 (IEEE) of all the bytes before it, u32
//! body:      uuid-len u8 | uuid | nic-count u16 | per NIC
//! per NIC:   mac [6] | entry-count n u32 | flags [n] (bit 0: IPv6) |
//!            proto [n] | kind [n] | state [n] | origin [n] |
//!            vm_addr [4|16] x n | remote_addr [4|16] x n |
//!            vm_port, remote_port (u16) and age_ms (u32), each as the
//!            first bytes of all n values, then the second bytes, ...
//! ```
//!
//! Version 1 (read, no longer written: a host upgraded first can take VMs
//! from hosts not upgraded yet) had the body uncompressed, no body length,
//! and each entry's fields together: flags u8 | proto u8 | kind u8 |
//! state u8 | origin u8 | vm_addr | remote_addr | vm_port | remote_port |
//! age_ms.
//!
//! Ports are stored as the kernel holds them (network byte order inside
//! the u16), so a key round-trips bit for bit.

use hookd_bpf::layout::{CtEntry, CtKey};
use hookd_model::mac::MacAddr;

const MAGIC: &[u8; 8] = b"HOOKDCT\0";
/// The layout version this build writes (it also reads version 1).
pub const VERSION: u16 = 2;
/// LZ4 never expands a body more than about 255 times.
const MAX_RATIO: usize = 256;
/// The most entries a NIC can carry: its table can be no bigger.
const MAX_NIC_ENTRIES: usize = *hookd_model::policy::CONNTRACK_ENTRIES.end() as usize;
/// The largest body written or decoded: 256 MiB, as much as 255
/// helpers carry uncompressed (more than a NIC's largest table of IPv6
/// connections, 189 MB).
const MAX_BODY: usize = 256 << 20;
const FLAG_V6: u8 = 1;
const V4_MAPPED: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
const NS_PER_MS: u64 = 1_000_000;

/// How long an entry lives after its last packet: the data path's
/// `ct_timeout` (conntrack.h), and FRAG_TIMEOUT for a fragment entry.
fn timeout_ns(k: &CtKey, e: &CtEntry) -> u64 {
    use hookd_bpf::layout as l;
    const TCP: u8 = 6;
    const ICMP: u8 = 1;
    const ICMPV6: u8 = 58;
    let s = if k.kind == l::CT_KEY_FRAGMENTS {
        l::FRAG_TIMEOUT
    } else {
        match (k.proto, e.state) {
            (TCP, l::CT_ESTABLISHED) => l::CT_TCP_EST_TIMEOUT,
            (TCP, l::CT_CLOSING) => l::CT_TCP_CLOSE_TIMEOUT,
            (TCP, _) => l::CT_TCP_SYN_TIMEOUT,
            (ICMP | ICMPV6, _) => l::CT_ICMP_TIMEOUT,
            (_, l::CT_ESTABLISHED) => l::CT_UDP_EST_TIMEOUT,
            _ => l::CT_UDP_TIMEOUT,
        }
    };
    s * 1_000_000_000
}

/// One carried connection (or fragment-tracking entry): the key without
/// its ifindex, the state, and how long ago it last saw a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Carried {
    pub proto: u8,
    pub kind: u8,
    pub vm_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    pub vm_port: u16,
    pub remote_port: u16,
    pub state: u8,
    pub origin: u8,
    pub age_ms: u32,
}

/// A NIC's carried table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarriedNic {
    pub mac: MacAddr,
    pub entries: Vec<Carried>,
}

/// Everything a VM carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmState {
    /// The domain's UUID, as libvirt writes it.
    pub uuid: String,
    pub nics: Vec<CarriedNic>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BlobError {
    #[error("not hookd firewall state (no HOOKDCT header)")]
    Magic,
    #[error("firewall state of layout version {found}; this hookd reads versions 1 and {VERSION}")]
    Version { found: u16 },
    #[error("firewall state truncated at byte {at} of {len}")]
    Truncated { at: usize, len: usize },
    #[error("firewall state corrupt (checksum {found:08x}, computed {computed:08x})")]
    Checksum { found: u32, computed: u32 },
    #[error("firewall state has {extra} bytes after its end")]
    Trailing { extra: usize },
    #[error("firewall state of domain {found}, not of {expected}")]
    OtherVm { found: String, expected: String },
    #[error("firewall state names NIC {mac} twice")]
    DuplicateNic { mac: MacAddr },
    #[error("firewall state is too big to encode: {0}")]
    TooBig(&'static str),
    #[error("firewall state claims {claimed} bytes uncompressed, more than {max} its size allows")]
    Size { claimed: usize, max: usize },
    #[error("firewall state corrupt (its compression does not decode: {0})")]
    Decompress(String),
}

impl CarriedNic {
    /// The NIC's table as carried: the entries of `table` (read from the
    /// kernel), aged against `now_ns` on the same clock. An entry stamped
    /// after `now_ns` (seen while the table was read) has age 0.
    /// Entries that expired (the kernel's LRU keeps them until it needs
    /// their room) are left behind: the destination would only drop them.
    pub fn from_table(mac: MacAddr, table: &[(CtKey, CtEntry)], now_ns: u64) -> Self {
        let entries = table
            .iter()
            .filter(|(k, e)| now_ns.saturating_sub(e.last_seen) < timeout_ns(k, e))
            .map(|(k, e)| Carried {
                proto: k.proto,
                kind: k.kind,
                vm_addr: k.vm_addr,
                remote_addr: k.remote_addr,
                vm_port: k.vm_port,
                remote_port: k.remote_port,
                state: e.state,
                origin: e.origin,
                age_ms: (now_ns.saturating_sub(e.last_seen) / NS_PER_MS)
                    .try_into()
                    .unwrap_or(u32::MAX),
            })
            .collect();
        Self { mac, entries }
    }

    /// The table to write for the NIC's tap `ifindex` on this host, whose
    /// clock reads `now_ns`. The egress fast path's mark is not carried:
    /// the destination's policy generation is its own, so the first packet
    /// of each connection is checked again there.
    pub fn to_table(&self, ifindex: u32, now_ns: u64) -> Vec<(CtKey, CtEntry)> {
        self.entries
            .iter()
            .map(|c| {
                let key = CtKey {
                    ifindex,
                    proto: c.proto,
                    kind: c.kind,
                    pad: [0; 2],
                    vm_addr: c.vm_addr,
                    remote_addr: c.remote_addr,
                    vm_port: c.vm_port,
                    remote_port: c.remote_port,
                };
                let entry = CtEntry {
                    last_seen: now_ns.saturating_sub(u64::from(c.age_ms) * NS_PER_MS),
                    state: c.state,
                    origin: c.origin,
                    ..CtEntry::default()
                };
                (key, entry)
            })
            .collect()
    }
}

fn is_v4(a: &[u8; 16]) -> bool {
    a[..12] == V4_MAPPED
}

impl VmState {
    /// How many entries it carries, over all NICs.
    pub fn entry_count(&self) -> usize {
        self.nics.iter().map(|n| n.entries.len()).sum()
    }

    /// The encoding of the layout above, version 2.
    pub fn encode(&self) -> Result<Vec<u8>, BlobError> {
        let body = self.body()?;
        seal(&body)
    }

    /// The body of version 2, before it is compressed.
    fn body(&self) -> Result<Vec<u8>, BlobError> {
        let uuid = self.uuid.as_bytes();
        let uuid_len = u8::try_from(uuid.len()).map_err(|_| BlobError::TooBig("uuid"))?;
        let nic_count =
            u16::try_from(self.nics.len()).map_err(|_| BlobError::TooBig("NIC count"))?;
        let mut out = Vec::with_capacity(32 + uuid.len() + self.entry_count() * 45);
        out.push(uuid_len);
        out.extend_from_slice(uuid);
        out.extend_from_slice(&nic_count.to_le_bytes());
        for nic in &self.nics {
            out.extend_from_slice(&nic.mac.0);
            let n = u32::try_from(nic.entries.len()).map_err(|_| BlobError::TooBig("entries"))?;
            out.extend_from_slice(&n.to_le_bytes());
            let e = &nic.entries;
            let v4: Vec<bool> = e
                .iter()
                .map(|c| is_v4(&c.vm_addr) && is_v4(&c.remote_addr))
                .collect();
            out.extend(v4.iter().map(|&v4| if v4 { 0 } else { FLAG_V6 }));
            out.extend(e.iter().map(|c| c.proto));
            out.extend(e.iter().map(|c| c.kind));
            out.extend(e.iter().map(|c| c.state));
            out.extend(e.iter().map(|c| c.origin));
            for addr in [|c: &Carried| c.vm_addr, |c: &Carried| c.remote_addr] {
                for (c, &v4) in e.iter().zip(&v4) {
                    out.extend_from_slice(&addr(c)[if v4 { 12 } else { 0 }..]);
                }
            }
            planes(&mut out, e.iter().map(|c| c.vm_port.to_le_bytes()));
            planes(&mut out, e.iter().map(|c| c.remote_port.to_le_bytes()));
            planes(&mut out, e.iter().map(|c| c.age_ms.to_le_bytes()));
        }
        Ok(out)
    }

    /// Decodes and checks a blob that must be the state of domain
    /// `expected_uuid`: all of it or nothing. Reads layout versions 1 and 2.
    pub fn decode(blob: &[u8], expected_uuid: &str) -> Result<Self, BlobError> {
        if blob.len() < MAGIC.len() || &blob[..MAGIC.len()] != MAGIC {
            return Err(BlobError::Magic);
        }
        let mut r = Reader {
            b: blob,
            at: MAGIC.len(),
        };
        let version = u16::from_le_bytes(r.take()?);
        if version != VERSION && version != 1 {
            return Err(BlobError::Version { found: version });
        }
        // The checksum first: nothing else is believed before it matches.
        let body_end = blob.len().checked_sub(4).ok_or(BlobError::Truncated {
            at: 0,
            len: blob.len(),
        })?;
        let found = u32::from_le_bytes([
            blob[body_end],
            blob[body_end + 1],
            blob[body_end + 2],
            blob[body_end + 3],
        ]);
        let computed = crc32fast::hash(&blob[..body_end]);
        if found != computed {
            return Err(BlobError::Checksum { found, computed });
        }
        let mut r = Reader {
            b: &blob[..body_end],
            at: r.at,
        };
        if version == 1 {
            return Self::parse(r, expected_uuid, Entries::Rows);
        }
        let raw_len = u32::from_le_bytes(r.take()?) as usize;
        let packed = r.slice(r.left())?;
        // A size past what the compression can reach is a lie, and must
        // not size an allocation.
        let reach = packed.len().saturating_mul(MAX_RATIO);
        if raw_len > reach.min(MAX_BODY) {
            return Err(BlobError::Size {
                claimed: raw_len,
                max: reach.min(MAX_BODY),
            });
        }
        let mut body = vec![0u8; raw_len];
        match lz4_flex::block::decompress_into(packed, &mut body) {
            Ok(n) if n == raw_len => {}
            Ok(n) => {
                return Err(BlobError::Decompress(format!(
                    "{n} bytes, not the {raw_len} announced"
                )));
            }
            Err(e) => return Err(BlobError::Decompress(e.to_string())),
        }
        Self::parse(Reader { b: &body, at: 0 }, expected_uuid, Entries::Columns)
    }

    /// The body after the version (version 1) or once decompressed (2).
    fn parse(mut r: Reader<'_>, expected_uuid: &str, how: Entries) -> Result<Self, BlobError> {
        let [uuid_len] = r.take()?;
        let uuid = String::from_utf8_lossy(r.slice(usize::from(uuid_len))?).into_owned();
        if uuid != expected_uuid {
            return Err(BlobError::OtherVm {
                found: uuid,
                expected: expected_uuid.to_string(),
            });
        }
        let nic_count = u16::from_le_bytes(r.take()?);
        let mut nics: Vec<CarriedNic> = Vec::with_capacity(usize::from(nic_count));
        for _ in 0..nic_count {
            let mac = MacAddr(r.take()?);
            if nics.iter().any(|n| n.mac == mac) {
                return Err(BlobError::DuplicateNic { mac });
            }
            let n = u32::from_le_bytes(r.take()?) as usize;
            // Each entry is at least 21 bytes, and no NIC's table holds
            // more than MAX_NIC_ENTRIES: a count past either is a lie, and
            // must not size an allocation.
            if n > r.left() / 21 || n > MAX_NIC_ENTRIES {
                return Err(BlobError::Truncated {
                    at: r.at,
                    len: r.b.len(),
                });
            }
            let entries = match how {
                Entries::Rows => rows(&mut r, n)?,
                Entries::Columns => columns(&mut r, n)?,
            };
            nics.push(CarriedNic { mac, entries });
        }
        if r.left() > 0 {
            return Err(BlobError::Trailing { extra: r.left() });
        }
        Ok(Self { uuid, nics })
    }
}

/// How a NIC's entries are laid out: one after another (version 1), or
/// field by field (version 2).
#[derive(Clone, Copy)]
enum Entries {
    Rows,
    Columns,
}

/// Magic, version, the body compressed, and the checksum of it all.
fn seal(body: &[u8]) -> Result<Vec<u8>, BlobError> {
    if body.len() > MAX_BODY {
        return Err(BlobError::TooBig("state (256 MiB uncompressed at most)"));
    }
    let raw_len = u32::try_from(body.len()).map_err(|_| BlobError::TooBig("state"))?;
    let packed = lz4_flex::block::compress(body);
    let mut out = Vec::with_capacity(MAGIC.len() + 10 + packed.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&raw_len.to_le_bytes());
    out.extend_from_slice(&packed);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Values of W bytes, first byte of each, then the second of each, ...:
/// the bytes that rarely change (a port's high byte, an age's upper ones)
/// come in runs the compression takes whole.
fn planes<const W: usize>(out: &mut Vec<u8>, values: impl Iterator<Item = [u8; W]> + Clone) {
    for b in 0..W {
        out.extend(values.clone().map(|v| v[b]));
    }
}

/// The width of an entry's addresses, by its flags.
fn width(flags: u8) -> usize {
    if flags & FLAG_V6 != 0 { 16 } else { 4 }
}

/// An address as carried (4 or 16 bytes), v4-mapped when narrow.
fn widen(b: &[u8]) -> [u8; 16] {
    let mut a = [0u8; 16];
    if b.len() == 16 {
        a.copy_from_slice(b);
    } else {
        a[..12].copy_from_slice(&V4_MAPPED);
        a[12..].copy_from_slice(b);
    }
    a
}

/// Version 1: `n` entries one after another.
fn rows(r: &mut Reader<'_>, n: usize) -> Result<Vec<Carried>, BlobError> {
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let [flags, proto, kind, state, origin] = r.take()?;
        let vm_addr = widen(r.slice(width(flags))?);
        let remote_addr = widen(r.slice(width(flags))?);
        entries.push(Carried {
            proto,
            kind,
            vm_addr,
            remote_addr,
            vm_port: u16::from_le_bytes(r.take()?),
            remote_port: u16::from_le_bytes(r.take()?),
            state,
            origin,
            age_ms: u32::from_le_bytes(r.take()?),
        });
    }
    Ok(entries)
}

/// Version 2: `n` entries field by field, read in one pass.
fn columns(r: &mut Reader<'_>, n: usize) -> Result<Vec<Carried>, BlobError> {
    let [flags, proto, kind, state, origin] = [(); 5].map(|_| r.slice(n));
    let (flags, proto, kind, state, origin) = (flags?, proto?, kind?, state?, origin?);
    let addrs: usize = flags.iter().map(|&f| width(f)).sum();
    let vm_addrs = r.slice(addrs)?;
    let remote_addrs = r.slice(addrs)?;
    let vm_port = r.slice(2 * n)?;
    let remote_port = r.slice(2 * n)?;
    let age = r.slice(4 * n)?;
    let mut at = 0;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let w = width(flags[i]);
        out.push(Carried {
            proto: proto[i],
            kind: kind[i],
            vm_addr: widen(&vm_addrs[at..at + w]),
            remote_addr: widen(&remote_addrs[at..at + w]),
            vm_port: u16::from_le_bytes([vm_port[i], vm_port[n + i]]),
            remote_port: u16::from_le_bytes([remote_port[i], remote_port[n + i]]),
            state: state[i],
            origin: origin[i],
            age_ms: u32::from_le_bytes([age[i], age[n + i], age[2 * n + i], age[3 * n + i]]),
        });
        at += w;
    }
    Ok(out)
}

/// A cursor over the blob that fails with the offset where it ran out.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.b.len() - self.at
    }

    fn slice(&mut self, n: usize) -> Result<&'a [u8], BlobError> {
        let s = self
            .b
            .get(self.at..self.at + n)
            .ok_or(BlobError::Truncated {
                at: self.at,
                len: self.b.len(),
            })?;
        self.at += n;
        Ok(s)
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], BlobError> {
        let s = self.slice(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "6d0c8f6e-1f0b-4c59-9d53-0a5b2b7e0c01";

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut m = [0u8; 16];
        m[..12].copy_from_slice(&V4_MAPPED);
        m[12..].copy_from_slice(&a);
        m
    }

    fn v6(last: u8) -> [u8; 16] {
        let mut m = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        m[15] = last;
        m
    }

    fn table(ifindex: u32, n: u32, now: u64) -> Vec<(CtKey, CtEntry)> {
        (0..n)
            .map(|i| {
                let key = CtKey {
                    ifindex,
                    proto: if i % 3 == 0 { 17 } else { 6 },
                    kind: (i % 7 == 0) as u8,
                    pad: [0; 2],
                    vm_addr: if i % 2 == 0 {
                        v4([192, 0, 2, 10])
                    } else {
                        v6(0x10)
                    },
                    remote_addr: if i % 2 == 0 {
                        v4([198, 51, 100, (i % 250) as u8])
                    } else {
                        v6((i % 250) as u8)
                    },
                    vm_port: (i as u16).to_be(),
                    remote_port: 443u16.to_be(),
                };
                let entry = CtEntry {
                    last_seen: now - u64::from(i) * NS_PER_MS,
                    state: (i % 3 + 1) as u8,
                    origin: (i % 2) as u8,
                    vm_checked: 1,
                    pad: 0,
                    vm_gen: 7,
                };
                (key, entry)
            })
            .collect()
    }

    fn state(n: u32) -> VmState {
        let now = 1_000_000 * NS_PER_MS;
        VmState {
            uuid: UUID.into(),
            nics: vec![
                CarriedNic::from_table(
                    MacAddr([0x52, 0x54, 0, 0, 0, 0x0a]),
                    &table(7, n, now),
                    now,
                ),
                CarriedNic::from_table(
                    MacAddr([0x52, 0x54, 0, 0, 0, 0x0b]),
                    &table(8, 3, now),
                    now,
                ),
            ],
        }
    }

    #[test]
    fn a_table_round_trips_through_the_blob_on_another_clock_and_ifindex() {
        let src_now = 5_000 * NS_PER_MS;
        let src = table(7, 100, src_now);
        let s = VmState {
            uuid: UUID.into(),
            nics: vec![CarriedNic::from_table(
                MacAddr([2, 0, 0, 0, 0, 1]),
                &src,
                src_now,
            )],
        };
        let blob = s.encode().unwrap();
        let back = VmState::decode(&blob, UUID).unwrap();
        assert_eq!(back, s);
        // The destination's clock is far behind; its tap is ifindex 42.
        let dst_now = 900 * NS_PER_MS;
        let dst = back.nics[0].to_table(42, dst_now);
        assert_eq!(dst.len(), src.len());
        let by_key: std::collections::HashMap<CtKey, CtEntry> = src.iter().copied().collect();
        for (dk, de) in &dst {
            assert_eq!(dk.ifindex, 42);
            // Key bit for bit.
            let se = by_key[&CtKey { ifindex: 7, ..*dk }];
            assert_eq!((de.state, de.origin), (se.state, se.origin));
            assert_eq!(src_now - se.last_seen, dst_now - de.last_seen, "same age");
            assert_eq!(de.vm_checked, 0, "the fast path's mark is re-earned");
        }
    }

    #[test]
    fn expired_entries_stay_behind() {
        let now = 10_000_000 * NS_PER_MS;
        let mut t = table(7, 4, now);
        let s = 1_000_000_000;
        // UDP without a reply, 61 s idle: gone; TCP established, 61 s: live;
        // TCP closing, 31 s: gone; a fragment entry, 29 s: live.
        for (i, (proto, state, kind, idle)) in
            [(17, 1, 0, 61), (6, 2, 0, 61), (6, 3, 0, 31), (17, 1, 1, 29)]
                .into_iter()
                .enumerate()
        {
            t[i].0.proto = proto;
            t[i].0.kind = kind;
            t[i].1.state = state;
            t[i].1.last_seen = now - idle * s;
        }
        let c = CarriedNic::from_table(MacAddr([2, 0, 0, 0, 0, 1]), &t, now);
        let kept: Vec<(u8, u8)> = c.entries.iter().map(|e| (e.proto, e.state)).collect();
        assert_eq!(kept, [(6, 2), (17, 1)]);
        assert_eq!(c.entries[1].kind, 1);
    }

    #[test]
    fn ipv4_entries_take_21_bytes_and_ipv6_45_before_compression() {
        let one = |addr: [u8; 16]| {
            let c = Carried {
                proto: 6,
                kind: 0,
                vm_addr: addr,
                remote_addr: addr,
                vm_port: 1,
                remote_port: 2,
                state: 2,
                origin: 0,
                age_ms: 3,
            };
            VmState {
                uuid: UUID.into(),
                nics: vec![CarriedNic {
                    mac: MacAddr([2; 6]),
                    entries: vec![c],
                }],
            }
            .body()
            .unwrap()
            .len()
        };
        let empty = VmState {
            uuid: UUID.into(),
            nics: vec![CarriedNic {
                mac: MacAddr([2; 6]),
                entries: vec![],
            }],
        }
        .body()
        .unwrap()
        .len();
        assert_eq!(one(v4([192, 0, 2, 1])) - empty, 21);
        assert_eq!(one(v6(1)) - empty, 45);
    }

    #[test]
    fn future_stamps_are_fresh_and_old_ages_read_as_time_zero() {
        let now = 10 * NS_PER_MS;
        let mut t = table(1, 2, now);
        t[0].1.last_seen = now + 5 * NS_PER_MS; // stamped while read
        t[1].1.last_seen = 0;
        let n = CarriedNic::from_table(MacAddr([2; 6]), &t, now);
        assert_eq!(n.entries[0].age_ms, 0);
        // An age older than the destination's clock reads as time 0:
        // expired, never in the future.
        assert_eq!(n.to_table(1, 1)[1].1.last_seen, 0);
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_refused() {
        let blob = state(20).encode().unwrap();
        for len in 0..blob.len() {
            assert!(
                VmState::decode(&blob[..len], UUID).is_err(),
                "truncated to {len} bytes accepted"
            );
        }
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x40;
            assert!(
                VmState::decode(&bad, UUID).is_err(),
                "byte {i} flipped accepted"
            );
        }
        let mut long = blob.clone();
        long.push(0);
        assert!(VmState::decode(&long, UUID).is_err());
    }

    #[test]
    fn the_state_of_another_vm_or_version_is_refused_by_name() {
        let blob = state(2).encode().unwrap();
        let other = "00000000-0000-0000-0000-000000000000";
        assert_eq!(
            VmState::decode(&blob, other),
            Err(BlobError::OtherVm {
                found: UUID.into(),
                expected: other.into()
            })
        );
        let mut v3 = blob.clone();
        v3[8] = 3;
        assert_eq!(
            VmState::decode(&v3, UUID),
            Err(BlobError::Version { found: 3 })
        );
        assert_eq!(
            VmState::decode(b"{\"json\":1}", UUID),
            Err(BlobError::Magic)
        );
        let msg = VmState::decode(&blob, other).unwrap_err().to_string();
        assert!(msg.contains(UUID) && msg.contains(other), "{msg}");
    }

    #[test]
    fn a_lying_entry_count_is_refused_without_allocating_it() {
        let s = VmState {
            uuid: UUID.into(),
            nics: vec![CarriedNic {
                mac: MacAddr([2; 6]),
                entries: vec![],
            }],
        };
        let mut body = s.body().unwrap();
        let at = 1 + UUID.len() + 2 + 6;
        body[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            VmState::decode(&seal(&body).unwrap(), UUID),
            Err(BlobError::Truncated { .. })
        ));
    }

    /// A blob with a checksum that matches whatever its bytes are.
    fn resealed(mut blob: Vec<u8>) -> Vec<u8> {
        let end = blob.len() - 4;
        let crc = crc32fast::hash(&blob[..end]);
        blob[end..].copy_from_slice(&crc.to_le_bytes());
        blob
    }

    #[test]
    fn a_lying_body_length_or_compression_is_refused_without_allocating_it() {
        let blob = state(50).encode().unwrap();
        let packed = blob.len() - 8 - 2 - 4 - 4;
        // More than the compression can reach: refused before any allocation.
        let mut huge = blob.clone();
        huge[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            VmState::decode(&resealed(huge), UUID),
            Err(BlobError::Size {
                claimed: u32::MAX as usize,
                max: packed * MAX_RATIO
            })
        );
        // A length the body does not decode to, either way.
        for delta in [-1i64, 1] {
            let mut off = blob.clone();
            let raw = u32::from_le_bytes(off[10..14].try_into().unwrap());
            off[10..14].copy_from_slice(&((i64::from(raw) + delta) as u32).to_le_bytes());
            let e = VmState::decode(&resealed(off), UUID).unwrap_err();
            assert!(matches!(e, BlobError::Decompress(_)), "{delta}: {e}");
        }
        // Compressed garbage with a good checksum.
        let mut garbage = blob.clone();
        for b in &mut garbage[14..packed + 14] {
            *b = 0xff;
        }
        assert!(matches!(
            VmState::decode(&resealed(garbage), UUID),
            Err(BlobError::Decompress(_))
        ));
    }

    #[test]
    fn a_blob_of_version_2_written_by_an_earlier_build_is_read() {
        // Written from state(20) by the build that made version 2; a later
        // layout must keep reading it (it is also a seed of the fuzzer's
        // corpus, fuzz/corpus/state_blob).
        let v2 = include_bytes!("testdata/state-v2.bin");
        assert_eq!(u16::from_le_bytes([v2[8], v2[9]]), VERSION);
        assert_eq!(VmState::decode(v2, UUID).unwrap(), state(20));
    }

    #[test]
    fn a_blob_of_version_1_from_a_host_not_yet_upgraded_is_read() {
        // Written by the last build that wrote version 1, from state(20).
        let v1 = include_bytes!("testdata/state-v1.bin");
        assert_eq!(u16::from_le_bytes([v1[8], v1[9]]), 1);
        assert_eq!(VmState::decode(v1, UUID).unwrap(), state(20));
        // Its checks hold as before.
        let mut bad = v1.to_vec();
        bad[40] ^= 1;
        assert!(matches!(
            VmState::decode(&bad, UUID),
            Err(BlobError::Checksum { .. })
        ));
    }

    #[test]
    fn connections_that_share_their_addresses_compress_fourfold() {
        // 100,000 flows from one peer to one guest address, as the VM
        // test's flood makes, in the kernel's (hash) order.
        let now = 10_000_000 * NS_PER_MS;
        let mut t: Vec<(CtKey, CtEntry)> = (0..100_000u32)
            .map(|i| {
                let key = CtKey {
                    ifindex: 7,
                    proto: 17,
                    kind: 0,
                    pad: [0; 2],
                    vm_addr: v4([192, 0, 2, 40]),
                    remote_addr: v4([192, 0, 2, 1]),
                    vm_port: (10_000 + (i % 50_001) as u16).to_be(),
                    remote_port: (41_000 + (i / 50_001) as u16).to_be(),
                };
                let e = CtEntry {
                    last_seen: now - u64::from(i.wrapping_mul(2_654_435_761) % 3_000) * NS_PER_MS,
                    state: 2,
                    origin: 1,
                    ..CtEntry::default()
                };
                (key, e)
            })
            .collect();
        t.sort_unstable_by_key(|(k, _)| k.vm_port.wrapping_mul(40_503) ^ k.remote_port);
        let s = VmState {
            uuid: UUID.into(),
            nics: vec![CarriedNic::from_table(MacAddr([2; 6]), &t, now)],
        };
        let blob = s.encode().unwrap();
        let raw = s.body().unwrap().len();
        assert_eq!(raw, 100_000 * 21 + 1 + UUID.len() + 2 + 10);
        assert!(blob.len() * 4 < raw, "{} of {raw} bytes", blob.len());
        assert_eq!(VmState::decode(&blob, UUID).unwrap(), s);
    }

    #[test]
    fn a_nic_named_twice_is_refused() {
        let mut s = state(1);
        s.nics[1].mac = s.nics[0].mac;
        let blob = s.encode().unwrap();
        assert!(matches!(
            VmState::decode(&blob, UUID),
            Err(BlobError::DuplicateNic { .. })
        ));
    }
}
