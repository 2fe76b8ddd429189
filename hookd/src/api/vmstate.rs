//! QEMU's `dbus-vmstate` helpers: how a VM's firewall state travels inside
//! its own migration stream (docs/migration.md).
//!
//! QEMU, with a `dbus-vmstate` object whose id-list names hookd's helpers,
//! calls `org.qemu.VMState1.Save` on each of them while the guest is
//! stopped on the source, carries what they return in the migration
//! stream, and calls `Load` with it on the destination's helpers before
//! the guest resumes there. It takes at most 1 MiB from a helper, so hookd
//! serves `count` helpers (`migration_state_mib`), one bus connection
//! each, and each carries one piece of the blob (core::migration::chunks).
//!
//! One set of helpers serves every VM: the caller is told apart by its
//! process id, which the bus daemon vouches for and which must be the one
//! libvirt recorded for the domain (`<qemu_pid_dir>/NAME.pid`). A process
//! that is no VM's QEMU gets nothing, so one VM never reads or writes
//! another's state, however many migrate at once.

use crate::config::StateErrors;
use crate::core::migration::Carried;
use crate::core::migration::chunks::{self, Assembly};
use crate::core::migration::log::{MigrationEvent, Outcome, Side};
use crate::core::migration::snapshot::Snapshots;
use crate::core::{Change, Notices, SharedDaemon, View};
use serde_bytes::ByteBuf;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zbus::Connection;
use zbus::fdo;
use zbus::message::Header;

/// The name every helper queues for: QEMU lists its owners.
pub const VMSTATE_NAME: &str = "org.qemu.VMState1";
/// Where a helper serves `org.qemu.VMState1`.
pub const VMSTATE_PATH: &str = "/org/qemu/VMState1";
/// The namespace of the names each helper owns alone
/// (`org.hookd.Hookd1.VMState.Helper0`, ...): without queueing, so that a
/// second hookd cannot serve helpers beside the first one's (QEMU would
/// take the first owner of a duplicate Id, whichever hookd that is).
pub const HELPER_NAMESPACE: &str = "org.hookd.Hookd1.VMState";
/// How long a source's saved state waits for QEMU to take its other
/// pieces, and a destination's pieces for the rest to come.
const PENDING: Duration = Duration::from_secs(60);

/// Helper `i`'s Id, as QEMU's id-list names it.
pub fn helper_id(i: u8) -> String {
    format!("hookd-{i}")
}

/// The id-list of a QEMU `dbus-vmstate` object for `count` helpers.
pub fn id_list(count: u8) -> String {
    (0..count).map(helper_id).collect::<Vec<_>>().join(",")
}

/// How the helpers are set up (from hookd.toml).
pub struct Settings {
    /// Where libvirt writes each domain's QEMU pid (`NAME.pid`).
    pub pid_dir: PathBuf,
    /// Helpers served (`migration_state_mib`).
    pub count: u8,
    /// What to do with carried state that cannot be loaded.
    pub on_error: StateErrors,
    /// Where each migration's outcome is announced (the bus signal).
    pub notices: Option<Notices>,
    /// Each VM's state, read as its guest stops (shared with the libvirt
    /// event follower, which sees the stop).
    pub snapshots: Arc<Snapshots>,
}

/// What the helpers share: the daemon, its view (where outcomes are
/// noted), their settings, and each caller's migration under way.
pub struct Shared {
    daemon: SharedDaemon,
    view: View,
    pid_dir: PathBuf,
    count: u8,
    on_error: StateErrors,
    notices: Option<Notices>,
    snapshots: Arc<Snapshots>,
    /// Source side, by caller pid: the blob and the pieces taken.
    saves: Mutex<HashMap<u32, Saving>>,
    /// Destination side, by caller pid: the pieces come so far.
    loads: Mutex<HashMap<u32, (Instant, Assembly)>>,
    /// Callers' pids by (bus GUID, unique name), as the bus told them.
    pids: Mutex<HashMap<(String, String), (Instant, u32)>>,
}

struct Saving {
    at: Instant,
    blob: Arc<Vec<u8>>,
    taken: Vec<bool>,
}

impl Shared {
    pub fn new(daemon: SharedDaemon, view: View, settings: Settings) -> Arc<Shared> {
        Arc::new(Shared {
            daemon,
            view,
            pid_dir: settings.pid_dir,
            count: settings.count,
            on_error: settings.on_error,
            notices: settings.notices,
            snapshots: settings.snapshots,
            saves: Mutex::default(),
            loads: Mutex::default(),
            pids: Mutex::default(),
        })
    }

    /// Notes one side's outcome: logged, kept for `hookctl migrations`
    /// and the metrics, announced on the bus.
    fn note(&self, e: MigrationEvent) {
        let c = e.carried;
        match e.outcome {
            Outcome::Carried => tracing::info!(
                domain = %e.domain, nics = c.nics, entries = c.entries, bytes = c.bytes, ms = e.ms, detail = %e.detail,
                "migration: firewall state {}",
                if e.side == Side::Source { "saved for the destination" } else { "loaded from the source" }
            ),
            Outcome::Refused => tracing::error!(
                domain = %e.domain, side = e.side.name(), error = %e.detail,
                "migration: firewall state refused; the migration fails and the VM stays on the source"
            ),
            Outcome::Proceeded => tracing::error!(
                domain = %e.domain, error = %e.detail,
                "migration: firewall state not loaded; the VM comes without its connections (migration_state_errors = \"proceed\")"
            ),
        }
        if let Some(n) = &self.notices {
            let _ = n.send(Change::Migration(e.clone()));
        }
        self.view.record_migration(e);
    }

    /// A destination's answer to state it could not load: an error for
    /// QEMU (the migration fails), or, with `proceed`, none.
    fn refuse_or_proceed(&self, name: &str, uuid: &str, why: String) -> fdo::Result<()> {
        let proceed = self.on_error == StateErrors::Proceed;
        self.note(MigrationEvent {
            outcome: if proceed {
                Outcome::Proceeded
            } else {
                Outcome::Refused
            },
            detail: why.clone(),
            ..event(name, uuid, Side::Destination)
        });
        if proceed {
            Ok(())
        } else {
            Err(failed(format!("domain {name}: {why}")))
        }
    }
}

/// An outcome of `side` for domain `name`, nothing carried yet.
fn event(name: &str, uuid: &str, side: Side) -> MigrationEvent {
    MigrationEvent {
        domain: name.to_string(),
        uuid: uuid.to_string(),
        side,
        outcome: Outcome::Carried,
        carried: Carried::default(),
        ms: 0,
        detail: String::new(),
        unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    }
}

/// One helper: piece `index` of every VM's state.
pub struct Helper {
    index: u8,
    shared: Arc<Shared>,
}

fn failed(e: impl std::fmt::Display) -> fdo::Error {
    fdo::Error::Failed(e.to_string())
}

/// The pid of the caller, as the bus daemon knows it. QEMU calls every
/// helper in turn while the guest is stopped, from one connection: the
/// bus is asked once and the answer kept for the other helpers, which
/// takes a round trip per helper out of the downtime. That is the bus's
/// own answer again: a bus never gives a unique name twice, and its GUID
/// tells a restarted bus apart (whose names start over).
async fn caller_pid(shared: &Shared, hdr: &Header<'_>, conn: &Connection) -> fdo::Result<u32> {
    let sender = hdr
        .sender()
        .ok_or_else(|| fdo::Error::AccessDenied("no sender".into()))?;
    let key = (conn.server_guid().to_string(), sender.to_string());
    if let Some((_, pid)) = shared.pids.lock().map_err(failed)?.get(&key) {
        return Ok(*pid);
    }
    let pid = fdo::DBusProxy::new(conn)
        .await?
        .get_connection_unix_process_id(sender.clone().into())
        .await?;
    let mut pids = shared.pids.lock().map_err(failed)?;
    pids.retain(|_, (at, _)| at.elapsed() < PENDING);
    pids.insert(key, (Instant::now(), pid));
    Ok(pid)
}

/// The (name, uuid) of the domain whose QEMU is process `pid`.
async fn domain_of(shared: &Shared, pid: u32) -> fdo::Result<(String, String)> {
    let domains: Vec<(String, String)> = {
        let d = shared.daemon.lock().await;
        d.records()
            .iter()
            .map(|r| (r.name.clone(), r.uuid.clone()))
            .collect()
    };
    domains
        .into_iter()
        .find(|(name, _)| {
            let file = shared.pid_dir.join(format!("{name}.pid"));
            std::fs::read_to_string(file)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                == Some(pid)
        })
        .ok_or_else(|| {
            fdo::Error::AccessDenied(format!(
                "process {pid} is not the QEMU of a domain hookd enforces (no {}/NAME.pid names it)",
                shared.pid_dir.display()
            ))
        })
}

#[zbus::interface(name = "org.qemu.VMState1")]
impl Helper {
    #[zbus(property)]
    fn id(&self) -> String {
        helper_id(self.index)
    }

    /// The source's side: piece `index` of the calling QEMU's VM's state,
    /// read when its guest stopped for the switch-over, or at the first
    /// piece QEMU asks for (core::migration::snapshot).
    async fn save(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> fdo::Result<ByteBuf> {
        let pid = caller_pid(&self.shared, &hdr, conn).await?;
        let (name, uuid) = domain_of(&self.shared, pid).await?;
        let (i, count) = (usize::from(self.index), usize::from(self.shared.count));
        let fresh = {
            let saves = self.shared.saves.lock().map_err(failed)?;
            saves
                .get(&pid)
                .filter(|s| s.at.elapsed() < PENDING && !s.taken[i])
                .map(|s| s.blob.clone())
        };
        let blob = match fresh {
            Some(b) => b,
            None => {
                let asked = Instant::now();
                let snap = match self.shared.snapshots.take(&uuid).await {
                    Ok(s) => s,
                    Err(e) => {
                        self.shared.note(MigrationEvent {
                            outcome: Outcome::Refused,
                            detail: e.to_string(),
                            ..event(&name, &uuid, Side::Source)
                        });
                        return Err(failed(e));
                    }
                };
                // Read at the guest's stop, or by this (or an earlier) Save.
                let ahead = asked.saturating_duration_since(snap.started).as_millis();
                self.shared.note(MigrationEvent {
                    carried: snap.carried,
                    ms: snap.read_ms,
                    detail: if snap.at_stop {
                        format!("read as the guest stopped, {ahead} ms before QEMU asked")
                    } else {
                        "read when QEMU asked".into()
                    },
                    ..event(&name, &uuid, Side::Source)
                });
                self.shared.saves.lock().map_err(failed)?.insert(
                    pid,
                    Saving {
                        at: Instant::now(),
                        blob: snap.blob.clone(),
                        taken: vec![false; count],
                    },
                );
                snap.blob.clone()
            }
        };
        let piece = chunks::piece(&blob, self.index, self.shared.count).map_err(|e| {
            self.shared.note(MigrationEvent {
                outcome: Outcome::Refused,
                detail: e.to_string(),
                ..event(&name, &uuid, Side::Source)
            });
            failed(format!("domain {name}: {e}"))
        })?;
        let mut saves = self.shared.saves.lock().map_err(failed)?;
        if let Some(s) = saves.get_mut(&pid) {
            s.taken[i] = true;
            if s.taken.iter().all(|t| *t) {
                saves.remove(&pid);
            }
        }
        saves.retain(|_, s| s.at.elapsed() < PENDING);
        Ok(ByteBuf::from(piece))
    }

    /// The destination's side: takes piece `index`; with the last one,
    /// checks the whole state and loads it into the VM's NICs, or fails
    /// (and with it the migration: the source keeps the VM).
    async fn load(
        &self,
        data: ByteBuf,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> fdo::Result<()> {
        let pid = caller_pid(&self.shared, &hdr, conn).await?;
        let (name, uuid) = domain_of(&self.shared, pid).await?;
        let whole = {
            let mut loads = self.shared.loads.lock().map_err(failed)?;
            loads.retain(|_, (at, _)| at.elapsed() < PENDING);
            let (_, a) = loads
                .entry(pid)
                .or_insert_with(|| (Instant::now(), Assembly::default()));
            let r = a.add(&data, self.index, self.shared.count);
            if !matches!(r, Ok(None)) {
                loads.remove(&pid);
            }
            match r {
                Ok(whole) => whole,
                Err(e) => return self.shared.refuse_or_proceed(&name, &uuid, e.to_string()),
            }
        };
        let Some(blob) = whole else {
            return Ok(());
        };
        let t = Instant::now();
        let mut daemon = self.shared.daemon.clone().lock_owned().await;
        let u = uuid.clone();
        let r = tokio::task::spawn_blocking(move || daemon.load_state(&u, &blob))
            .await
            .map_err(failed)?;
        match r {
            Ok(carried) => {
                self.shared.note(MigrationEvent {
                    carried,
                    ms: t.elapsed().as_millis() as u64,
                    ..event(&name, &uuid, Side::Destination)
                });
                Ok(())
            }
            Err(e) => self.shared.refuse_or_proceed(&name, &uuid, e.to_string()),
        }
    }
}

/// Serves `shared.count` helpers on the bus `connect` opens, each on its
/// own connection: its object first, then its own name, then its place
/// in the queue for org.qemu.VMState1 (never taking it from another).
pub async fn serve<F, Fut>(shared: Arc<Shared>, connect: F) -> zbus::Result<Vec<Connection>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = zbus::Result<Connection>>,
{
    use zbus::fdo::{RequestNameFlags, RequestNameReply};
    let mut conns = Vec::with_capacity(usize::from(shared.count));
    for index in 0..shared.count {
        let conn = connect().await?;
        conn.object_server()
            .at(
                VMSTATE_PATH,
                Helper {
                    index,
                    shared: shared.clone(),
                },
            )
            .await?;
        let own = format!("{HELPER_NAMESPACE}.Helper{index}");
        let reply = conn
            .request_name_with_flags(own.as_str(), RequestNameFlags::DO_NOT_QUEUE)
            .await?;
        if reply != RequestNameReply::PrimaryOwner {
            return Err(zbus::Error::NameTaken);
        }
        conn.request_name_with_flags(VMSTATE_NAME, RequestNameFlags::empty())
            .await?;
        conns.push(conn);
    }
    Ok(conns)
}
