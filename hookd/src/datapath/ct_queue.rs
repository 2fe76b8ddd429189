//! `attach = "staged"`: NICs' conntrack tables go into `hookd_ct` in
//! batches, from a thread of their own, instead of one by one on the
//! attach path.
//!
//! Why: every update of a map of maps waits for an RCU grace period in the
//! kernel (`maybe_wait_bpf_programs`, 5-20 ms here), while one
//! `BPF_MAP_UPDATE_BATCH` waits once for all its entries. Until its table
//! is in, a NIC with security groups fails closed (its programs drop what
//! the firewall would judge): never unjudged.
//!
//! Whoever needs a NIC's table (its removal, a migration's load, a re-apply,
//! `started`) waits for it to be in first ([`CtQueue::settle`]), so a table
//! is never inserted after its NIC was detached (an ifindex is reused: the
//! next NIC on it would inherit the connections).

use crate::datapath::batch;
use aya::maps::MapData;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

#[derive(Default)]
struct State {
    /// Tables made, not yet taken by the thread.
    queued: Vec<(u32, MapData)>,
    /// The ifindexes of the batch being inserted.
    inflight: Vec<u32>,
    stop: bool,
    /// The thread has ended: nothing queued will go in.
    dead: bool,
}

impl State {
    fn holds(&self, ifindex: u32) -> bool {
        !self.dead
            && (self.inflight.contains(&ifindex) || self.queued.iter().any(|(i, _)| *i == ifindex))
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

    /// Queues `table` as the table of `ifindex`; hands it back when the
    /// thread has ended (nothing queued would go in).
    #[must_use]
    pub(crate) fn push(&self, ifindex: u32, table: MapData) -> Option<MapData> {
        let mut st = self.shared.lock();
        if st.dead {
            return Some(table);
        }
        st.queued.push((ifindex, table));
        drop(st);
        self.shared.work.notify_one();
        None
    }

    /// Is a table of `ifindex` queued or going in?
    pub(crate) fn holds(&self, ifindex: u32) -> bool {
        self.shared.lock().holds(ifindex)
    }

    /// Waits until no table of `ifindex` is queued or going in (None: of
    /// any NIC).
    pub(crate) fn settle(&self, ifindex: Option<u32>) {
        let mut st = self.shared.lock();
        while match ifindex {
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
        if let Err(e) = batch::update_all(outer.as_fd(), &entries) {
            // Those that did not go in fail closed until the NIC's next
            // attach or re-apply gives them a table.
            tracing::error!(error = %e, tables = entries.len(), "inserting conntrack tables: NICs without theirs drop what their firewall would judge");
        }
        // The map of maps holds its own references: ours can go.
        drop(batch);
        shared.lock().inflight.clear();
        shared.done.notify_all();
    }
}
