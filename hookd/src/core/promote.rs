//! `attach = "staged"`: which NICs move from their clsact qdisc to tcx
//! links, and when. The move itself is the data plane's
//! (`datapath/promote.rs`); here it is chosen, recorded and retried.
//!
//! A NIC moves once it has waited `settle` on its qdisc, one NIC per call,
//! so that each call holds the daemon's lock for one NIC's two grace
//! periods only, and hook calls queued behind it wait for no more.

use crate::core::Daemon;
use crate::core::records::DomainRecord;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A NIC's key: (domain uuid, tap).
type Key = (String, String);

/// When each waiting NIC was first seen waiting, and the ones that
/// failed to move (tried again after [`RETRY`]).
#[derive(Debug, Default)]
pub(crate) struct Staged {
    seen: HashMap<Key, Instant>,
    failed: HashMap<Key, Instant>,
}

/// How long a NIC whose move failed waits before the next try.
const RETRY: Duration = Duration::from_secs(30);

/// What one call of [`Daemon::promote_next`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Promotion {
    /// Nothing waits.
    Idle,
    /// NICs wait, none long enough yet (or all failed recently).
    Waiting(usize),
    /// One moved; this many still wait.
    Moved {
        domain: String,
        tap: String,
        left: usize,
    },
    /// One could not move and stays on its qdisc.
    Failed {
        domain: String,
        tap: String,
        error: String,
    },
}

impl Daemon {
    /// The NICs waiting to move to tcx.
    fn waiting(&self) -> Vec<Key> {
        self.records
            .iter()
            .flat_map(|r| {
                r.nics
                    .iter()
                    .filter(|n| n.attached() && self.dp.awaits_promotion(n))
                    .map(|n| (r.uuid.clone(), n.tap.clone()))
            })
            .collect()
    }

    /// Waits until every NIC attached so far has all it was given (see
    /// [`DataPlane::settle`](crate::core::DataPlane::settle)).
    pub fn settle(&self) {
        self.dp.settle();
    }

    /// How many NICs wait to move to tcx.
    pub fn promotions_waiting(&self) -> usize {
        self.waiting().len()
    }

    /// Moves one NIC that has waited at least `settle` from its clsact
    /// qdisc to tcx, and records it.
    pub fn promote_next(&mut self, settle: Duration) -> Promotion {
        let waiting = self.waiting();
        let now = Instant::now();
        let staged = &mut self.staged;
        staged.seen.retain(|k, _| waiting.contains(k));
        staged
            .failed
            .retain(|k, at| waiting.contains(k) && at.elapsed() < RETRY);
        for k in &waiting {
            staged.seen.entry(k.clone()).or_insert(now);
        }
        let ready = waiting.iter().find(|k| {
            !staged.failed.contains_key(*k)
                && staged.seen.get(*k).is_some_and(|t| t.elapsed() >= settle)
        });
        let Some((uuid, tap)) = ready.cloned() else {
            return if waiting.is_empty() {
                Promotion::Idle
            } else {
                Promotion::Waiting(waiting.len())
            };
        };
        let Some(i) = self.records.iter().position(|r| r.uuid == uuid) else {
            return Promotion::Waiting(waiting.len());
        };
        let mut rec: DomainRecord = (*self.records[i]).clone();
        let Some(nic) = rec.nics.iter_mut().find(|n| n.tap == tap) else {
            return Promotion::Waiting(waiting.len());
        };
        match self.dp.promote(&uuid, nic) {
            Ok(how) => {
                nic.attach = Some(how);
                self.staged.seen.remove(&(uuid, tap.clone()));
                // The kernel is on tcx whatever the file says: a record
                // that still says netlink detaches the links all the same.
                if let Err(e) = self.state.save(&rec) {
                    tracing::warn!(domain = %rec.name, error = %e, "moved to tcx, but the record could not be saved");
                }
                tracing::info!(domain = %rec.name, tap = %tap, "moved from the clsact qdisc to tcx links");
                let domain = rec.name.clone();
                self.records[i] = Arc::new(rec);
                self.publish();
                Promotion::Moved {
                    domain,
                    tap,
                    left: waiting.len() - 1,
                }
            }
            Err(e) => {
                tracing::warn!(domain = %rec.name, tap = %tap, ifindex = nic.ifindex, error = %e, "could not move to tcx: stays on its clsact qdisc, tried again in {}s", RETRY.as_secs());
                self.staged.failed.insert((uuid, tap.clone()), now);
                Promotion::Failed {
                    domain: rec.name,
                    tap,
                    error: e.to_string(),
                }
            }
        }
    }
}
