//! Changes to the daemon, and what they changed: every operation that
//! changes records runs through [`apply`], which reports the domains
//! attached, re-applied and detached as [`Change`]s. The API layer turns
//! them into D-Bus signals; the core knows nothing of the bus.

use crate::core::Daemon;
use crate::core::error::DaemonError;
use hookd_dbus::LoggedPacket;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// Something clients are told about.
#[derive(Debug, Clone)]
pub enum Change {
    Attached {
        name: String,
        uuid: String,
        phase: String,
    },
    Applied {
        name: String,
        uuid: String,
        generation: u64,
    },
    Detached {
        name: String,
        uuid: String,
    },
    /// A policy libvirt reported was refused; the previous one stays.
    PolicyRefused {
        name: String,
        uuid: String,
        message: String,
    },
    /// A packet decided by a `log="true"` rule.
    PacketLogged(LoggedPacket),
    /// One side of a live migration is done with a VM's firewall state.
    Migration(crate::core::migration::log::MigrationEvent),
}

/// Where changes made outside a client's call (libvirt's events, logged
/// packets) are sent, in order, for the API layer to announce.
pub type Notices = UnboundedSender<Change>;

/// The daemon, shared by the bus, the hook socket and the libvirt follower.
pub type SharedDaemon = Arc<Mutex<Daemon>>;

type Snapshot = Vec<(String, String, u64)>;

fn snapshot(d: &Daemon) -> Snapshot {
    d.records()
        .iter()
        .map(|r| (r.uuid.clone(), r.name.clone(), r.generation))
        .collect()
}

/// What changed between two snapshots of the records.
fn diff(before: &Snapshot, after: &Snapshot, phase: &str) -> Vec<Change> {
    let mut changes = Vec::new();
    for (uuid, name, generation) in after {
        let (name, uuid, generation) = (name.clone(), uuid.clone(), *generation);
        match before.iter().find(|b| b.0 == uuid) {
            None => {
                changes.push(Change::Attached {
                    name: name.clone(),
                    uuid: uuid.clone(),
                    phase: phase.to_string(),
                });
                changes.push(Change::Applied {
                    name,
                    uuid,
                    generation,
                });
            }
            Some(b) if b.2 != generation => changes.push(Change::Applied {
                name,
                uuid,
                generation,
            }),
            Some(_) => {}
        }
    }
    for (uuid, name, _) in before.iter().filter(|b| !after.iter().any(|a| a.0 == b.0)) {
        changes.push(Change::Detached {
            name: name.clone(),
            uuid: uuid.clone(),
        });
    }
    changes
}

/// Runs `f` on the daemon and returns its result with what it changed.
/// `f` runs on a blocking thread (attaching waits for RCU grace periods
/// in the kernel), never on the threads that serve the bus. The data
/// plane's housekeeping (`Daemon::tidy`) runs afterwards, also off those
/// threads, so the caller has its answer first.
pub async fn apply<T: Send + 'static>(
    daemon: &SharedDaemon,
    phase: &str,
    f: impl FnOnce(&mut Daemon) -> Result<T, DaemonError> + Send + 'static,
) -> (Result<T, DaemonError>, Vec<Change>) {
    let guard = daemon.clone().lock_owned().await;
    apply_locked(daemon, guard, phase, f).await
}

/// [`apply`] with the lock already held: a caller that must queue its
/// change ahead of later calls takes the lock first, answers, and runs
/// the change afterwards.
pub async fn apply_locked<T: Send + 'static>(
    daemon: &SharedDaemon,
    mut guard: OwnedMutexGuard<Daemon>,
    phase: &str,
    f: impl FnOnce(&mut Daemon) -> Result<T, DaemonError> + Send + 'static,
) -> (Result<T, DaemonError>, Vec<Change>) {
    let phase = phase.to_string();
    let work = tokio::task::spawn_blocking(move || {
        let before = snapshot(&guard);
        let result = f(&mut guard);
        let changes = diff(&before, &snapshot(&guard), &phase);
        (result, changes)
    });
    let (result, changes) = match work.await {
        Ok(done) => done,
        Err(e) => {
            // A panic in `f`: the lock is released, the records are as
            // `f` left them; say so rather than take hookd down.
            tracing::error!(error = %e, "a daemon operation panicked");
            return (Err(DaemonError::Internal(e.to_string())), Vec::new());
        }
    };
    let tidy = daemon.clone();
    tokio::spawn(async move {
        let mut d = tidy.lock_owned().await;
        let _ = tokio::task::spawn_blocking(move || d.tidy()).await;
    });
    (result, changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_reports_attach_apply_detach() {
        let s = |v: &[(&str, u64)]| -> Snapshot {
            v.iter()
                .map(|(n, g)| (format!("u-{n}"), n.to_string(), *g))
                .collect()
        };
        let changes = diff(
            &s(&[("a", 1), ("b", 2)]),
            &s(&[("b", 3), ("c", 4)]),
            "start",
        );
        let names: Vec<String> = changes
            .iter()
            .map(|c| match c {
                Change::Attached { name, phase, .. } => format!("attached {name} at {phase}"),
                Change::Applied {
                    name, generation, ..
                } => format!("applied {name} {generation}"),
                Change::Detached { name, .. } => format!("detached {name}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            names,
            [
                "applied b 3",
                "attached c at start",
                "applied c 4",
                "detached a"
            ]
        );
        assert!(diff(&s(&[("a", 1)]), &s(&[("a", 1)]), "x").is_empty());
    }
}
