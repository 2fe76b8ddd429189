//! What hookd did in each live migration it took part in: the latest
//! ones for `hookctl migrations` and `show`, and running totals for the
//! metrics. Written by the migration helpers, read through the View.

use crate::core::migration::Carried;
use std::collections::VecDeque;

/// How many of the latest migrations are kept.
pub const KEPT: usize = 64;

/// This host's part in a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The VM left: its state was saved for the destination.
    Source,
    /// The VM arrived: its state was loaded, or not.
    Destination,
}

/// What became of the VM's firewall state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Saved (source) or loaded (destination) whole.
    Carried,
    /// Not carried, and the migration failed with it.
    Refused,
    /// Not loaded, but the VM came anyway (`migration_state_errors =
    /// "proceed"`): its connections through deny-by-default directions break.
    Proceeded,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Destination => "destination",
        }
    }
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Carried => "carried",
            Outcome::Refused => "refused",
            Outcome::Proceeded => "proceeded without state",
        }
    }
}

/// One migration, as one side saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationEvent {
    pub domain: String,
    pub uuid: String,
    pub side: Side,
    pub outcome: Outcome,
    pub carried: Carried,
    /// Time hookd took (reading or writing the tables), in ms.
    pub ms: u64,
    /// Why the state was not carried; when it was, how (the source says
    /// whether it read the tables as the guest stopped or when QEMU asked).
    pub detail: String,
    /// Seconds since the epoch.
    pub unix_time: u64,
}

/// Totals since hookd started, by side and outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Migrations, indexed `[side][outcome]` (Side and Outcome order).
    pub count: [[u64; 3]; 2],
    /// Connections carried, by side.
    pub entries: [u64; 2],
    /// Bytes of state carried, by side.
    pub bytes: [u64; 2],
}

#[derive(Debug, Default)]
pub struct MigrationLog {
    recent: VecDeque<MigrationEvent>,
    totals: Totals,
}

impl MigrationLog {
    pub fn record(&mut self, e: MigrationEvent) {
        let side = e.side as usize;
        self.totals.count[side][e.outcome as usize] += 1;
        if e.outcome == Outcome::Carried {
            self.totals.entries[side] += e.carried.entries as u64;
            self.totals.bytes[side] += e.carried.bytes as u64;
        }
        if self.recent.len() == KEPT {
            self.recent.pop_front();
        }
        self.recent.push_back(e);
    }

    /// The latest migrations, oldest first.
    pub fn recent(&self) -> Vec<MigrationEvent> {
        self.recent.iter().cloned().collect()
    }

    pub fn totals(&self) -> Totals {
        self.totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(side: Side, outcome: Outcome, entries: usize) -> MigrationEvent {
        MigrationEvent {
            domain: "vm1".into(),
            uuid: "u".into(),
            side,
            outcome,
            carried: Carried {
                nics: 1,
                entries,
                bytes: entries * 21,
            },
            ms: 1,
            detail: String::new(),
            unix_time: 0,
        }
    }

    #[test]
    fn totals_count_every_migration_and_the_latest_are_kept() {
        let mut log = MigrationLog::default();
        for _ in 0..KEPT + 6 {
            log.record(event(Side::Source, Outcome::Carried, 10));
        }
        log.record(event(Side::Destination, Outcome::Refused, 99));
        log.record(event(Side::Destination, Outcome::Proceeded, 0));
        let t = log.totals();
        assert_eq!(t.count[0][0], KEPT as u64 + 6);
        assert_eq!((t.count[1][1], t.count[1][2]), (1, 1));
        // Only carried state counts as carried.
        assert_eq!(t.entries, [10 * (KEPT as u64 + 6), 0]);
        let recent = log.recent();
        assert_eq!(recent.len(), KEPT);
        assert_eq!(recent.last().unwrap().outcome, Outcome::Proceeded);
    }
}
