//! The source's state, read as soon as its guest stops for the
//! switch-over.
//!
//! libvirt announces `Suspended Migrated` when QEMU stops the vCPUs; QEMU
//! then sends the last memory pages and only after them calls Save on
//! hookd's helpers (40 to 120 ms later in the VM test). Reading the tables at the
//! announcement takes that read (about 40 ms for 100,000 connections) out
//! of the downtime, and it is exactly the state the spec asks for: the
//! connections as they were when the source stopped the guest. Save takes
//! what was read if it is fresh, waits for it if the read is still going,
//! and reads itself when no announcement came (hookd not following
//! libvirt's events, a guest already paused by its owner).

use crate::core::SharedDaemon;
use crate::core::migration::{Carried, MigrationError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// How long a read stays good for a Save. The guest is stopped from the
/// announcement until QEMU saves, so what was read holds for as long as
/// that takes (its ages are those of the read: a connection arrives at
/// most this much younger than it is); the bound keeps a read whose
/// "running again" event was missed (libvirt unreachable) from serving
/// a later migration.
pub const FRESH: Duration = Duration::from_secs(5);

/// One read of a VM's state, for every piece QEMU takes.
#[derive(Debug)]
pub struct Snapshot {
    pub blob: Arc<Vec<u8>>,
    pub carried: Carried,
    /// How long the read took.
    pub read_ms: u64,
    /// When the read was started.
    pub started: Instant,
    /// Started at the guest's stop (true) or by a Save (false).
    pub at_stop: bool,
}

struct Slot {
    made: Instant,
    cell: Arc<OnceCell<Arc<Snapshot>>>,
}

/// Each VM's read, by UUID, from its announcement until it runs again.
pub struct Snapshots {
    daemon: SharedDaemon,
    slots: Mutex<HashMap<String, Slot>>,
}

impl Snapshots {
    pub fn new(daemon: SharedDaemon) -> Arc<Snapshots> {
        Arc::new(Snapshots {
            daemon,
            slots: Mutex::default(),
        })
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.retain(|_, s| s.made.elapsed() < FRESH);
        slots
    }

    /// The fresh slot of `uuid`, made now if there is none.
    fn slot(&self, uuid: &str) -> Arc<OnceCell<Arc<Snapshot>>> {
        self.slots()
            .entry(uuid.to_string())
            .or_insert_with(|| Slot {
                made: Instant::now(),
                cell: Arc::default(),
            })
            .cell
            .clone()
    }

    /// Whether `cell` is still the slot of `uuid` (not forgotten since).
    fn current(&self, uuid: &str, cell: &Arc<OnceCell<Arc<Snapshot>>>) -> bool {
        self.slots()
            .get(uuid)
            .is_some_and(|s| Arc::ptr_eq(&s.cell, cell))
    }

    /// The guest of `uuid` stopped for the switch-over: its state is read
    /// now, in the background, for the Save to come. The slot is made
    /// here, before anything waits, so that a `forget` that comes after
    /// this announcement always drops what it would read.
    pub fn guest_stopped(self: &Arc<Self>, uuid: &str) {
        let cell = self.slot(uuid);
        let me = self.clone();
        let uuid = uuid.to_string();
        tokio::spawn(async move {
            // Domains hookd does not enforce: nothing to read.
            if me.daemon.lock().await.find(&uuid).is_none() {
                return;
            }
            if !me.current(&uuid, &cell) {
                return;
            }
            match me.fill(&uuid, &cell, true).await {
                Ok(s) => {
                    tracing::debug!(domain = %uuid, entries = s.carried.entries, ms = s.read_ms, "migration: firewall state read as the guest stopped")
                }
                Err(e) => {
                    tracing::debug!(domain = %uuid, error = %e, "migration: firewall state could not be read as the guest stopped; Save reads again")
                }
            }
        });
    }

    /// The guest of `uuid` runs again (a failed migration) or is gone:
    /// what was read no longer holds.
    pub fn forget(&self, uuid: &str) {
        self.slots().remove(uuid);
    }

    /// Whether a read of `uuid` is done and fresh (for tests and
    /// diagnostics; Save just takes it).
    pub fn ready(&self, uuid: &str) -> bool {
        self.slots().get(uuid).is_some_and(|s| s.cell.initialized())
    }

    /// The state of `uuid` for QEMU's Save: the read started at the
    /// announcement (waited for if it is still going), or one made now.
    /// A read that fails is not kept: a Save waiting for it reads again.
    pub async fn take(&self, uuid: &str) -> Result<Arc<Snapshot>, MigrationError> {
        let cell = self.slot(uuid);
        self.fill(uuid, &cell, false).await
    }

    /// The read of `cell`, made now unless it is made or being made.
    async fn fill(
        &self,
        uuid: &str,
        cell: &OnceCell<Arc<Snapshot>>,
        at_stop: bool,
    ) -> Result<Arc<Snapshot>, MigrationError> {
        cell.get_or_try_init(|| async {
            let started = Instant::now();
            let daemon = self.daemon.clone().lock_owned().await;
            let u = uuid.to_string();
            let (blob, carried) = tokio::task::spawn_blocking(move || daemon.save_state(&u))
                .await
                .map_err(|e| MigrationError::Interrupted(e.to_string()))??;
            Ok(Arc::new(Snapshot {
                blob: Arc::new(blob),
                carried,
                read_ms: started.elapsed().as_millis() as u64,
                started,
                at_stop,
            }))
        })
        .await
        .cloned()
    }
}
