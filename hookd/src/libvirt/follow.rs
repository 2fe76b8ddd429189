//! Keeps hookd in step with changes made through libvirt itself: a policy
//! edited with `virsh metadata --live`, a NIC plugged or unplugged (no hook
//! runs for either), and whatever changed while hookd was not listening.
//! Each event re-reads the domain's live XML from libvirt, without holding
//! the daemon's lock, and re-applies it like a hook call would.

use crate::core::change::{self, Change, Notices, SharedDaemon};
use crate::core::migration::snapshot::Snapshots;
use crate::libvirt::{Event, Libvirt, Lifecycle};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedReceiver;

/// Follows libvirt's events until the channel closes.
/// What changed is announced on `notices`; a guest stopped for a
/// migration has its state read for the Save to come (`snapshots`, when
/// hookd carries state).
pub async fn follow(
    daemon: SharedDaemon,
    libvirt: Libvirt,
    notices: Notices,
    snapshots: Option<Arc<Snapshots>>,
    mut events: UnboundedReceiver<Event>,
) {
    while let Some(ev) = events.recv().await {
        let targets = match ev {
            Event::Lifecycle { uuid, what } => {
                if let Some(s) = &snapshots {
                    match what {
                        Lifecycle::StoppedForMigration => s.guest_stopped(&uuid),
                        Lifecycle::RunningOrGone => s.forget(&uuid),
                    }
                }
                Vec::new()
            }
            Event::Changed { uuid, why } => vec![(uuid, why)],
            Event::Connected => {
                let lv = libvirt.clone();
                match tokio::task::spawn_blocking(move || lv.running_domains()).await {
                    Ok(Ok(uuids)) => uuids.into_iter().map(|u| (u, "reconcile")).collect(),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "cannot reconcile with libvirt");
                        Vec::new()
                    }
                    Err(_) => Vec::new(),
                }
            }
        };
        for (uuid, why) in targets {
            reapply(&daemon, &libvirt, &notices, &uuid, why).await;
        }
    }
}

async fn reapply(
    daemon: &SharedDaemon,
    libvirt: &Libvirt,
    notices: &Notices,
    uuid: &str,
    why: &'static str,
) {
    // Only domains hookd attached to are re-applied; skip the libvirt call
    // for the others.
    if daemon.lock().await.find(uuid).is_none() {
        return;
    }
    let lv = libvirt.clone();
    let id = uuid.to_string();
    let xml = match tokio::task::spawn_blocking(move || lv.domain_xml(&id)).await {
        Ok(Ok(xml)) => xml,
        Ok(Err(e)) => {
            // Usually the domain stopped meanwhile; its stop hook detaches.
            tracing::debug!(domain = uuid, error = %e, "domain gone before it could be re-read");
            return;
        }
        Err(_) => return,
    };
    let (result, changes) = change::apply(daemon, why, move |d| d.reapply(&xml, why)).await;
    for c in changes {
        let _ = notices.send(c);
    }
    match result {
        Ok(Some(summary)) => tracing::info!(domain = uuid, why, "re-applied: {summary}"),
        Ok(None) => tracing::debug!(domain = uuid, why, "nothing changed"),
        Err(e) => {
            let name = daemon
                .lock()
                .await
                .find(uuid)
                .map(|r| r.name.clone())
                .unwrap_or_default();
            tracing::error!(domain = %name, why, error = %e, "policy from libvirt refused; the previous policy stays in force");
            let _ = notices.send(Change::PolicyRefused {
                name,
                uuid: uuid.to_string(),
                message: e.to_string(),
            });
        }
    }
}
