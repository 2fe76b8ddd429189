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

use crate::core::SharedDaemon;
use crate::core::migration::chunks::{self, Assembly};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
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

/// What the helpers share: the daemon, where libvirt keeps QEMU's pid
/// files, and each caller's migration under way.
pub struct Shared {
    daemon: SharedDaemon,
    pid_dir: PathBuf,
    count: u8,
    /// Source side, by caller pid: the blob and the pieces taken.
    saves: Mutex<HashMap<u32, Saving>>,
    /// Destination side, by caller pid: the pieces come so far.
    loads: Mutex<HashMap<u32, (Instant, Assembly)>>,
}

struct Saving {
    at: Instant,
    blob: Arc<Vec<u8>>,
    taken: Vec<bool>,
}

impl Shared {
    pub fn new(daemon: SharedDaemon, pid_dir: &Path, count: u8) -> Arc<Shared> {
        Arc::new(Shared {
            daemon,
            pid_dir: pid_dir.to_path_buf(),
            count,
            saves: Mutex::default(),
            loads: Mutex::default(),
        })
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

/// The pid of the caller, as the bus daemon knows it.
async fn caller_pid(hdr: &Header<'_>, conn: &Connection) -> fdo::Result<u32> {
    let sender = hdr
        .sender()
        .ok_or_else(|| fdo::Error::AccessDenied("no sender".into()))?;
    fdo::DBusProxy::new(conn)
        .await?
        .get_connection_unix_process_id(sender.clone().into())
        .await
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
    /// read from the kernel at the first piece QEMU asks for.
    async fn save(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> fdo::Result<Vec<u8>> {
        let pid = caller_pid(&hdr, conn).await?;
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
                let t = Instant::now();
                let daemon = self.shared.daemon.clone().lock_owned().await;
                let u = uuid.clone();
                let (blob, carried) = tokio::task::spawn_blocking(move || daemon.save_state(&u))
                    .await
                    .map_err(failed)?
                    .map_err(failed)?;
                tracing::info!(
                    domain = %name, nics = carried.nics, entries = carried.entries,
                    bytes = carried.bytes, ms = t.elapsed().as_millis() as u64,
                    "migration: firewall state saved for the destination"
                );
                let blob = Arc::new(blob);
                self.shared.saves.lock().map_err(failed)?.insert(
                    pid,
                    Saving {
                        at: Instant::now(),
                        blob: blob.clone(),
                        taken: vec![false; count],
                    },
                );
                blob
            }
        };
        let piece = chunks::piece(&blob, self.index, self.shared.count).map_err(|e| {
            tracing::error!(domain = %name, error = %e, "migration: firewall state not carried");
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
        Ok(piece)
    }

    /// The destination's side: takes piece `index`; with the last one,
    /// checks the whole state and loads it into the VM's NICs, or fails
    /// (and with it the migration: the source keeps the VM).
    async fn load(
        &self,
        data: Vec<u8>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> fdo::Result<()> {
        let pid = caller_pid(&hdr, conn).await?;
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
            r.map_err(|e| failed(format!("domain {name}: {e}")))?
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
            Ok(c) => {
                tracing::info!(
                    domain = %name, nics = c.nics, entries = c.entries, bytes = c.bytes,
                    ms = t.elapsed().as_millis() as u64,
                    "migration: firewall state loaded from the source"
                );
                Ok(())
            }
            Err(e) => {
                tracing::error!(domain = %name, error = %e, "migration: firewall state refused");
                Err(failed(format!("domain {name}: {e}")))
            }
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
