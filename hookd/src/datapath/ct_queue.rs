//! `attach = "staged"`: NICs' conntrack tables go into `hookd_ct` (at
//! their configs' slots) in batches, from a thread of their own, instead
//! of one by one on the attach path.
//!
//! Why: every update of a map of maps waits for an RCU grace period in the
//! kernel (`maybe_wait_bpf_programs`, 5-20 ms here), while one
//! `BPF_MAP_UPDATE_BATCH` waits once for all its entries. Until its table
//! is in, a NIC with security groups fails closed (its programs drop what
//! the firewall would judge): never unjudged.
//!
//! Whoever needs a NIC's table (its removal, a migration's load, a re-apply,
//! `started`) waits for it to be in first ([`CtQueue::settle`]), so a table
//! is never inserted after its NIC was detached (a slot is reused: the
//! next NIC at it would inherit the connections).

use crate::datapath::batch;
use aya::maps::MapData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

#[derive(Default)]
struct State {
    /// Tables made, not yet taken by the thread.
    queued: Vec<(u32, MapData)>,
    /// The slots of the batch being inserted.
    inflight: Vec<u32>,
    stop: bool,
    /// The thread has ended: nothing queued will go in.
    dead: bool,
}

impl State {
    fn holds(&self, slot: u32) -> bool {
        !self.dead && (self.inflight.contains(&slot) || self.queued.iter().any(|(i, _)| *i == slot))
    }
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Tables were queued, or the queue is to stop.
    work: Condvar,
    /// A batch went in.
    done: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic of the thread poisons nothing the data is unsafe for.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The queue and its thread; dropping it inserts what is queued, then
/// ends the thread.
pub(crate) struct CtQueue {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl CtQueue {
    /// Starts the thread that inserts into the map of maps `outer`.
    pub(crate) fn start(outer: OwnedFd) -> std::io::Result<CtQueue> {
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("hookd-ct-tables".into())
            .spawn(move || run(&s, &outer))?;
        Ok(CtQueue {
            shared,
            thread: Some(thread),
        })
    }

    /// Queues `table` as the table of `slot`; hands it back when the
    /// thread has ended (nothing queued would go in).
    #[must_use]
    pub(crate) fn push(&self, slot: u32, table: MapData) -> Option<MapData> {
        let mut st = self.shared.lock();
        if st.dead {
            return Some(table);
        }
        st.queued.push((slot, table));
        drop(st);
        self.shared.work.notify_one();
        None
    }

    /// Is a table of `slot` queued or going in?
    pub(crate) fn holds(&self, slot: u32) -> bool {
        self.shared.lock().holds(slot)
    }

    /// Waits until no table of `slot` is queued or going in (None: of
    /// any NIC).
    pub(crate) fn settle(&self, slot: Option<u32>) {
        let mut st = self.shared.lock();
        while match slot {
            Some(i) => st.holds(i),
            None => !st.dead && (!st.queued.is_empty() || !st.inflight.is_empty()),
        } {
            st = self.shared.done.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Drop for CtQueue {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.work.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whatever ends the thread (a panic included) wakes those waiting, who
/// then wait no more.
struct Ended<'a>(&'a Shared);

impl Drop for Ended<'_> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.dead = true;
        st.queued.clear();
        st.inflight.clear();
        self.0.done.notify_all();
    }
}

fn run(shared: &Shared, outer: &OwnedFd) {
    let _ended = Ended(shared);
    loop {
        let batch = {
            let mut st = shared.lock();
            while st.queued.is_empty() && !st.stop {
                st = shared.work.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            if st.queued.is_empty() {
                return;
            }
            let batch = std::mem::take(&mut st.queued);
            st.inflight = batch.iter().map(|(i, _)| *i).collect();
            batch
        };
        let entries: Vec<(u32, u32)> = batch
            .iter()
            .map(|(i, t)| (*i, t.fd().as_fd().as_raw_fd() as u32))
            .collect();
        insert_tables(outer.as_fd(), &entries);
        // The map of maps holds its own references: ours can go.
        drop(batch);
        shared.lock().inflight.clear();
        shared.done.notify_all();
    }
}

/// Inserts `(slot, table fd)` entries into the map of maps `outer`: in
/// one batch (one grace period), or, where the batch fails, one by one, as
/// a batch stops at its first failure and would leave the rest out. Returns
/// the slots whose table did not go in, each logged: such a NIC fails
/// closed until `started` or its next re-apply gives it a table
/// (`DataPlane::complete`).
fn insert_tables(outer: BorrowedFd<'_>, entries: &[(u32, u32)]) -> Vec<u32> {
    let Err(e) = batch::update_all(outer, entries) else {
        return Vec::new();
    };
    tracing::warn!(error = %e, tables = entries.len(), "inserting conntrack tables in one batch failed; inserting them one by one");
    let mut failed = Vec::new();
    for entry in entries {
        if let Err(e) = batch::update_all(outer, std::slice::from_ref(entry)) {
            tracing::error!(slot = entry.0, error = %e, "inserting the NIC's conntrack table failed: it drops what its firewall would judge until `started` or a re-apply gives it one");
            failed.push(entry.0);
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AttachMode;
    use crate::datapath::Datapath;
    use aya_obj::generated::bpf_map_type;

    fn map(kind: bpf_map_type) -> MapData {
        let def = aya_obj::Map::new_from_params(
            kind as u32,
            if kind == bpf_map_type::BPF_MAP_TYPE_ARRAY {
                4
            } else {
                8
            },
            8,
            4,
            0,
        );
        MapData::create(def, "hookd_test", None).unwrap()
    }

    /// A batch that fails at one table still puts in those after it, and
    /// names the one that failed.
    #[test]
    #[ignore = "privileged: run by scripts/test-privileged.sh"]
    fn a_failed_table_does_not_take_the_rest_of_its_batch_with_it() {
        let fs = hookd_testkit::net::Bpffs::new();
        let dp = Datapath::open(&fs.pin_dir(), AttachMode::Staged).unwrap();
        let lru = crate::datapath::conntrack::new_ct_table(16).unwrap();
        let lru2 = crate::datapath::conntrack::new_ct_table(16).unwrap();
        // Not an LRU table of conntrack entries: the kernel refuses it.
        let wrong = map(bpf_map_type::BPF_MAP_TYPE_ARRAY);
        let fd = |m: &MapData| m.fd().as_fd().as_raw_fd() as u32;
        let entries = [(1001, fd(&lru)), (1002, fd(&wrong)), (1003, fd(&lru2))];
        let outer = MapData::from_pin(fs.pin_dir().join("maps").join(hookd_bpf::MAP_CT)).unwrap();
        let failed = insert_tables(outer.fd().as_fd(), &entries);
        assert_eq!(failed, vec![1002]);
        assert!(dp.ct.get(&1001, 0).is_ok());
        assert!(dp.ct.get(&1002, 0).is_err());
        assert!(
            dp.ct.get(&1003, 0).is_ok(),
            "the table after the failed one went in"
        );
    }
}
