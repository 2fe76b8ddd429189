//! Rust mirror of `c/lib/types.h`. `tests/layout.rs` checks every size and
//! field offset against the BTF that clang wrote into the object.

use std::net::IpAddr;

pub const NIC_F_MANAGED: u16 = 1 << 0;
pub const NIC_F_CHECK_IP: u16 = 1 << 1;
pub const NIC_F_ALLOW_DHCP_SERVER: u16 = 1 << 2;
pub const NIC_F_ALLOW_RA: u16 = 1 << 3;

/// Number of drop counters per NIC (`DROP_REASONS`).
pub const DROP_REASONS: usize = 16;

/// Why the data path dropped a frame; the index into [`NicStats::drops`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum DropReason {
    MacSpoof = 0,
    IpSpoof = 1,
    ArpSpoof = 2,
    NdSpoof = 3,
    DhcpServer = 4,
    RouterAdvert = 5,
    Vlan = 6,
    Ethertype = 7,
    Malformed = 8,
    FwRule = 9,
    FwDefault = 10,
    CtInvalid = 11,
    Fragment = 12,
}

impl DropReason {
    pub const ALL: [DropReason; 13] = [
        Self::MacSpoof,
        Self::IpSpoof,
        Self::ArpSpoof,
        Self::NdSpoof,
        Self::DhcpServer,
        Self::RouterAdvert,
        Self::Vlan,
        Self::Ethertype,
        Self::Malformed,
        Self::FwRule,
        Self::FwDefault,
        Self::CtInvalid,
        Self::Fragment,
    ];

    /// Stable name used in `hookctl` output, JSON and D-Bus.
    pub fn name(self) -> &'static str {
        match self {
            Self::MacSpoof => "mac_spoof",
            Self::IpSpoof => "ip_spoof",
            Self::ArpSpoof => "arp_spoof",
            Self::NdSpoof => "nd_spoof",
            Self::DhcpServer => "dhcp_server",
            Self::RouterAdvert => "router_advert",
            Self::Vlan => "vlan",
            Self::Ethertype => "ethertype",
            Self::Malformed => "malformed",
            Self::FwRule => "fw_rule",
            Self::FwDefault => "fw_default",
            Self::CtInvalid => "ct_invalid",
            Self::Fragment => "fragment",
        }
    }
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NicConfig {
    pub mac: [u8; 6],
    pub flags: u16,
    /// FW_* mode of traffic to the VM.
    pub fw_ingress: u8,
    /// FW_* mode of traffic from the VM.
    pub fw_egress: u8,
    /// Which half (0/1) of the firewall tables is live: a policy update
    /// writes the other half, then flips this in one map update.
    pub fw_gen: u8,
    /// `FW_KIND*`: class 0's lookups per direction, and whether class ids
    /// carry their own (see types.h).
    pub fw_kinds: u8,
    pub generation: u64,
}

pub const FW_OFF: u8 = 0;
pub const FW_ALLOW: u8 = 1;
pub const FW_DENY: u8 = 2;
/// `NicConfig::fw_kinds` (see types.h): which rule lookups can find a rule.
pub const FW_KINDS_VALID: u8 = 0x80;
pub const FW_KIND_PROTO: u8 = 0x1;
pub const FW_KIND_ANY: u8 = 0x2;
pub const DIR_INGRESS: u8 = 0;
pub const DIR_EGRESS: u8 = 1;

/// `struct fw_class_key` after `prefixlen`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FwClassData {
    pub ifindex: u32,
    pub half: u8,
    pub dir: u8,
    pub pad: [u8; 2],
    pub addr: [u8; 16],
}

/// `struct fw_rule_key` after `prefixlen`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FwRuleData {
    pub ifindex: u32,
    pub half: u8,
    pub dir: u8,
    pub proto: u8,
    pub any: u8,
    pub class: u32,
    /// Big endian, so that LPM prefix bits are the high bits.
    pub port: [u8; 2],
    pub pad: [u8; 2],
}

/// `struct fw_hit_key`: per-CPU hit counter of one rule.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FwHitKey {
    pub ifindex: u32,
    pub dir: u8,
    pub half: u8,
    pub rule: u16,
}

/// `struct ct_key`: a tracked connection, from the VM's point of view.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CtKey {
    pub ifindex: u32,
    pub proto: u8,
    pub pad: [u8; 3],
    pub vm_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    pub vm_port: u16,
    pub remote_port: u16,
}

/// `struct fw_event`: a packet decided by a rule with `log="true"`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FwEvent {
    pub ts: u64,
    pub ifindex: u32,
    pub dir: u8,
    pub deny: u8,
    pub rule: u16,
    pub proto: u8,
    pub pad: [u8; 3],
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
}

impl FwEvent {
    /// Reads an event from ring-buffer bytes, if they are long enough.
    pub fn from_bytes(b: &[u8]) -> Option<FwEvent> {
        if b.len() < std::mem::size_of::<FwEvent>() {
            return None;
        }
        // SAFETY: FwEvent is plain data valid for any bit pattern, and the
        // length was checked; read_unaligned copes with any alignment.
        Some(unsafe { std::ptr::read_unaligned(b.as_ptr().cast::<FwEvent>()) })
    }
}

/// Size of each NIC's connection-tracking table (`CT_PER_NIC`).
pub const CT_PER_NIC: u32 = 16384;

/// `struct ct_entry`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CtEntry {
    pub last_seen: u64,
    pub state: u8,
    pub origin: u8,
    pub pad: [u8; 6],
}

/// Fixed bits of the firewall LPM keys, before the address / port bits.
pub const FW_CLASS_FIXED_BITS: u32 = 64;
pub const FW_RULE_FIXED_BITS: u32 = 96;

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FwVerdict {
    pub deny: u8,
    pub log: u8,
    pub rule: u16,
}

/// The part of `struct addr_key` after `prefixlen`; aya's
/// [`aya::maps::lpm_trie::Key`] adds the prefix length in front.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddrData {
    pub ifindex: u32,
    pub addr: [u8; 16],
}

/// `struct addr_key`: the LPM key of `hookd_addrs`.
pub type AddrKey = aya::maps::lpm_trie::Key<AddrData>;

/// Key for `ifindex`'s prefix `addr/len`; IPv4 is stored IPv4-mapped.
pub fn addr_key(ifindex: u32, addr: IpAddr, len: u8) -> AddrKey {
    let (addr, len) = match addr {
        IpAddr::V4(a) => (a.to_ipv6_mapped().octets(), u32::from(len) + 96),
        IpAddr::V6(a) => (a.octets(), u32::from(len)),
    };
    AddrKey::new(32 + len, AddrData { ifindex, addr })
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NicStats {
    pub to_vm_packets: u64,
    pub to_vm_bytes: u64,
    pub from_vm_packets: u64,
    pub from_vm_bytes: u64,
    pub drops: [u64; DROP_REASONS],
}

impl Default for NicStats {
    fn default() -> Self {
        Self {
            to_vm_packets: 0,
            to_vm_bytes: 0,
            from_vm_packets: 0,
            from_vm_bytes: 0,
            drops: [0; DROP_REASONS],
        }
    }
}

impl NicStats {
    /// Adds another CPU's counters to these.
    pub fn add(&mut self, other: &NicStats) {
        self.to_vm_packets += other.to_vm_packets;
        self.to_vm_bytes += other.to_vm_bytes;
        self.from_vm_packets += other.from_vm_packets;
        self.from_vm_bytes += other.from_vm_bytes;
        for (a, b) in self.drops.iter_mut().zip(other.drops.iter()) {
            *a += b;
        }
    }
}

// SAFETY: plain #[repr(C)] data with no padding holes the kernel could leak
// into, every bit pattern valid.
unsafe impl aya::Pod for NicConfig {}
unsafe impl aya::Pod for AddrData {}
unsafe impl aya::Pod for FwClassData {}
unsafe impl aya::Pod for FwRuleData {}
unsafe impl aya::Pod for FwVerdict {}
unsafe impl aya::Pod for CtKey {}
unsafe impl aya::Pod for FwHitKey {}
unsafe impl aya::Pod for CtEntry {}
unsafe impl aya::Pod for NicStats {}

const _: () = assert!(std::mem::size_of::<NicConfig>() == 24);
const _: () = assert!(std::mem::size_of::<AddrKey>() == 24);
// Also asserted in types.h: these two are not in the object's BTF.
const _: () = assert!(std::mem::size_of::<CtKey>() == 44);
const _: () = assert!(std::mem::size_of::<CtEntry>() == 16);
const _: () = assert!(std::mem::size_of::<FwEvent>() == 56);
const _: () = assert!(
    std::mem::offset_of!(CtKey, vm_addr) == 8 && std::mem::offset_of!(CtKey, vm_port) == 40
);
const _: () = assert!(std::mem::size_of::<aya::maps::lpm_trie::Key<FwClassData>>() == 28);
const _: () = assert!(std::mem::size_of::<aya::maps::lpm_trie::Key<FwRuleData>>() == 20);
const _: () = assert!(std::mem::size_of::<NicStats>() == 32 + 8 * DROP_REASONS);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_keys_are_mapped_and_count_the_ifindex() {
        let k = addr_key(7, "192.0.2.10".parse().unwrap(), 32);
        assert_eq!(k.prefix_len(), 32 + 128);
        assert_eq!(k.data().ifindex, 7);
        assert_eq!(
            &k.data().addr[..12],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]
        );
        assert_eq!(&k.data().addr[12..], &[192, 0, 2, 10]);
        let k6 = addr_key(7, "2001:db8::".parse().unwrap(), 64);
        assert_eq!(k6.prefix_len(), 96);
    }
}
