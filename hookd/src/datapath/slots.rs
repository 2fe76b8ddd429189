//! The NICs' counter slots: each NIC's `nic_config.slot` names its entry
//! in `hookd_counters`, a per-CPU array (an inlined lookup in the
//! programs, where a hash by ifindex cost a tenth of a packet's time).
//! Pure bookkeeping: which slots are taken, and which to give next.
//!
//! Slots are handed out in turn, not lowest first: a program that read a
//! removed NIC's config just before its removal may still count one
//! packet into the slot, which should not be a new NIC's by then.

use std::collections::BTreeSet;

#[derive(Debug)]
pub(crate) struct Slots {
    taken: BTreeSet<u32>,
    /// Where the search for the next free slot starts.
    next: u32,
    /// Slots are 1..=max (0 is no NIC's).
    max: u32,
}

impl Slots {
    pub(crate) fn new(max: u32) -> Slots {
        Slots {
            taken: BTreeSet::new(),
            next: 1,
            max,
        }
    }

    /// Takes `slot` as found in a pinned config, if it is a valid one that
    /// no other config has: false means the config needs a slot of its own.
    pub(crate) fn adopt(&mut self, slot: u32) -> bool {
        (1..=self.max).contains(&slot) && self.taken.insert(slot)
    }

    /// Is `slot` one this allocator gave out or adopted?
    pub(crate) fn owns(&self, slot: u32) -> bool {
        self.taken.contains(&slot)
    }

    /// A free slot, the first after the last one given; None when all are
    /// taken.
    pub(crate) fn take(&mut self) -> Option<u32> {
        let free = (self.next..=self.max)
            .chain(1..self.next)
            .find(|s| !self.taken.contains(s))?;
        self.taken.insert(free);
        self.next = if free == self.max { 1 } else { free + 1 };
        Some(free)
    }

    pub(crate) fn release(&mut self, slot: u32) {
        self.taken.remove(&slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_given_in_turn_and_never_twice() {
        let mut s = Slots::new(3);
        assert_eq!(s.take(), Some(1));
        assert_eq!(s.take(), Some(2));
        s.release(1);
        // Not the slot just freed: the next in turn.
        assert_eq!(s.take(), Some(3));
        assert_eq!(s.take(), Some(1), "wrapped around to the freed one");
        assert_eq!(s.take(), None, "all three taken");
        s.release(2);
        assert_eq!(s.take(), Some(2));
    }

    #[test]
    fn adopting_refuses_slot_zero_out_of_range_and_duplicates() {
        let mut s = Slots::new(4);
        assert!(!s.adopt(0));
        assert!(!s.adopt(5), "past the array");
        assert!(s.adopt(2));
        assert!(!s.adopt(2), "a second config with the same slot");
        assert!(s.owns(2) && !s.owns(1));
        assert_eq!(s.take(), Some(1));
        assert_eq!(s.take(), Some(3), "the adopted slot is skipped");
    }
}
