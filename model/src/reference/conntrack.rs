//! The model's connection tracking: a plain map from key to entry, as
//! docs/datapath.md "Connection tracking" and docs/policy.md "Connection
//! tracking" describe the NIC's table. No timeouts (see the module doc of
//! `reference`), no capacity: the callers keep to a few hundred entries.

use crate::policy::Direction;
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv6Addr;

/// What an entry stands for (`ct_key.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyKind {
    /// A connection: ports, or for ICMP echo the identifier twice.
    Connection,
    /// The later fragments of a datagram whose first fragment passed: the
    /// IP ID's high and low 16 bits in the port fields.
    Fragments,
}

/// A key from the VM's point of view, so both directions of a connection
/// find the same entry. Addresses in the 128-bit form (IPv4 mapped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CtKey {
    pub proto: u8,
    pub kind: KeyKind,
    pub vm_addr: Ipv6Addr,
    pub remote_addr: Ipv6Addr,
    pub vm_port: u16,
    pub remote_port: u16,
}

/// `CT_NEW`, `CT_ESTABLISHED`, `CT_CLOSING`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CtState {
    New,
    Established,
    Closing,
}

impl CtState {
    /// The state's number in the table (docs/datapath.md's state table).
    pub fn number(self) -> u8 {
        match self {
            CtState::New => 1,
            CtState::Established => 2,
            CtState::Closing => 3,
        }
    }
}

/// An entry: its state and the direction of its first packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CtEntry {
    pub state: CtState,
    pub origin: Direction,
}

/// What the model keeps of a NIC between frames: its conntrack table
/// (which survives policy changes, as the kernel's does) and the rule hits
/// of the policy in force (which restart at every apply).
#[derive(Debug, Default, Clone)]
pub struct Conntrack {
    pub entries: HashMap<CtKey, CtEntry>,
    /// Packets decided by each rule, by direction and rule index.
    pub hits: BTreeMap<(Direction, usize), u64>,
    /// Packets the firewall passed, by the step that passed them: what a
    /// differential run covered.
    pub passed_by: BTreeMap<&'static str, u64>,
}

impl Conntrack {
    /// A policy was applied: its rules have no hits yet.
    pub fn applied(&mut self) {
        self.hits.clear();
    }

    /// The table, sorted: to compare with the kernel's.
    pub fn sorted(&self) -> Vec<(CtKey, CtEntry)> {
        let mut v: Vec<_> = self.entries.iter().map(|(k, e)| (*k, *e)).collect();
        v.sort();
        v
    }

    pub(super) fn passed(&mut self, how: &'static str) {
        *self.passed_by.entry(how).or_default() += 1;
    }

    /// Starts tracking `key`, opened in direction `dir`, replacing whatever
    /// entry had that key.
    pub(super) fn open(&mut self, key: CtKey, dir: Direction) {
        self.entries.insert(
            key,
            CtEntry {
                state: CtState::New,
                origin: dir,
            },
        );
    }
}
