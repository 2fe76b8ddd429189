//! The firewall state a VM carries through a live migration, and its
//! binary encoding (pure: no kernel, no clock of its own).
//!
//! What travels is each NIC's conntrack table, keyed by the NIC's MAC (the
//! tap's name and ifindex change on the destination), with each entry's
//! age instead of its timestamp (kernel clocks differ between hosts).
//! The encoding is compact (21 bytes an IPv4 connection, 45 an IPv6 one)
//! because it travels while the guest is stopped, and it is checked whole
//! before anything of it is loaded: a blob that is truncated, corrupt, of
//! another VM or of another layout version is refused.
//!
//! Layout (little-endian), version 1:
//!
//! ```text
//! magic "HOOKDCT\0" | version u16 | uuid-len u8 | uuid | nic-count u16
//! per NIC:   mac [6] | entry-count u32 | entries
//! per entry: flags u8 (bit 0: IPv6) | proto u8 | kind u8 | state u8 |
//!            origin u8 | vm_addr [4|16] | remote_addr [4|16] |
//!            vm_port u16 | remote_port u16 | age_ms u32
//! crc32 (IEEE) of all the bytes before it, u32
//! ```
//!
//! Ports are stored as the kernel holds them (network byte order inside
//! the u16), so a key round-trips bit for bit.

use hookd_bpf::layout::{CtEntry, CtKey};
use hookd_model::mac::MacAddr;

const MAGIC: &[u8; 8] = b"HOOKDCT\0";
/// The layout version this build writes and reads.
pub const VERSION: u16 = 1;
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
    #[error("firewall state of layout version {found}; this hookd reads version {VERSION}")]
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

    /// The encoding of the layout above.
    pub fn encode(&self) -> Result<Vec<u8>, BlobError> {
        let uuid = self.uuid.as_bytes();
        let uuid_len = u8::try_from(uuid.len()).map_err(|_| BlobError::TooBig("uuid"))?;
        let nic_count =
            u16::try_from(self.nics.len()).map_err(|_| BlobError::TooBig("NIC count"))?;
        let mut out = Vec::with_capacity(32 + uuid.len() + self.entry_count() * 45);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.push(uuid_len);
        out.extend_from_slice(uuid);
        out.extend_from_slice(&nic_count.to_le_bytes());
        for nic in &self.nics {
            out.extend_from_slice(&nic.mac.0);
            let n = u32::try_from(nic.entries.len()).map_err(|_| BlobError::TooBig("entries"))?;
            out.extend_from_slice(&n.to_le_bytes());
            for c in &nic.entries {
                let v4 = is_v4(&c.vm_addr) && is_v4(&c.remote_addr);
                out.extend_from_slice(&[
                    if v4 { 0 } else { FLAG_V6 },
                    c.proto,
                    c.kind,
                    c.state,
                    c.origin,
                ]);
                let from = if v4 { 12 } else { 0 };
                out.extend_from_slice(&c.vm_addr[from..]);
                out.extend_from_slice(&c.remote_addr[from..]);
                out.extend_from_slice(&c.vm_port.to_le_bytes());
                out.extend_from_slice(&c.remote_port.to_le_bytes());
                out.extend_from_slice(&c.age_ms.to_le_bytes());
            }
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    /// Decodes and checks a blob that must be the state of domain
    /// `expected_uuid`: all of it or nothing.
    pub fn decode(blob: &[u8], expected_uuid: &str) -> Result<Self, BlobError> {
        if blob.len() < MAGIC.len() || &blob[..MAGIC.len()] != MAGIC {
            return Err(BlobError::Magic);
        }
        let mut r = Reader {
            b: blob,
            at: MAGIC.len(),
        };
        let version = u16::from_le_bytes(r.take()?);
        if version != VERSION {
            return Err(BlobError::Version { found: version });
        }
        // The checksum first: nothing else is believed before it matches.
        let body_len = blob.len().checked_sub(4).ok_or(BlobError::Truncated {
            at: 0,
            len: blob.len(),
        })?;
        let found = u32::from_le_bytes([
            blob[body_len],
            blob[body_len + 1],
            blob[body_len + 2],
            blob[body_len + 3],
        ]);
        let computed = crc32fast::hash(&blob[..body_len]);
        if found != computed {
            return Err(BlobError::Checksum { found, computed });
        }
        let mut r = Reader {
            b: &blob[..body_len],
            at: r.at,
        };
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
            // Each entry is at least 21 bytes: a count past what is left
            // is a lie, and must not size an allocation.
            if n > r.left() / 21 {
                return Err(BlobError::Truncated {
                    at: r.at,
                    len: blob.len(),
                });
            }
            let mut entries = Vec::with_capacity(n);
            for _ in 0..n {
                let [flags, proto, kind, state, origin] = r.take()?;
                let width = if flags & FLAG_V6 != 0 { 16 } else { 4 };
                let mut vm_addr = [0u8; 16];
                let mut remote_addr = [0u8; 16];
                if width == 4 {
                    vm_addr[..12].copy_from_slice(&V4_MAPPED);
                    remote_addr[..12].copy_from_slice(&V4_MAPPED);
                }
                vm_addr[16 - width..].copy_from_slice(r.slice(width)?);
                remote_addr[16 - width..].copy_from_slice(r.slice(width)?);
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
            nics.push(CarriedNic { mac, entries });
        }
        if r.left() > 0 {
            return Err(BlobError::Trailing { extra: r.left() });
        }
        Ok(Self { uuid, nics })
    }
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
        for ((sk, se), (dk, de)) in src.iter().zip(&dst) {
            assert_eq!(dk.ifindex, 42);
            assert_eq!(CtKey { ifindex: 7, ..*dk }, *sk, "key bit for bit");
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
    fn ipv4_entries_take_21_bytes_and_ipv6_45() {
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
            .encode()
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
        .encode()
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
        let mut v2 = blob.clone();
        v2[8] = 2;
        assert_eq!(
            VmState::decode(&v2, UUID),
            Err(BlobError::Version { found: 2 })
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
        let mut blob = s.encode().unwrap();
        let at = 8 + 2 + 1 + UUID.len() + 2 + 6;
        blob[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let body = blob.len() - 4;
        let crc = crc32fast::hash(&blob[..body]);
        blob[body..].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            VmState::decode(&blob, UUID),
            Err(BlobError::Truncated { .. })
        ));
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
