//! The D-Bus face of hookd: `org.hookd.Hookd1.Manager` on the system bus
//! and on the hook's own socket, over the daemon core.
//!
//! - [`manager`]: the interface's methods and signals;
//! - [`access`]: who may call what;
//! - [`convert`]: core types and errors as the D-Bus contract spells them;
//! - [`signals`]: the core's changes announced as signals;
//! - [`hook_socket`]: the libvirt hook's peer-to-peer way in.
//! - [`vmstate`]: QEMU's dbus-vmstate helpers, carrying firewall state
//!   through live migrations.

pub mod access;
pub mod convert;
pub mod hook_socket;
pub mod manager;
pub mod signals;
pub mod vmstate;

pub use access::Readers;
pub use manager::Manager;

use crate::core::{Notices, SharedDaemon, View};
use crate::libvirt::Libvirt;
use zbus::Connection;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "{} is already owned on the bus: is another hookd running?",
        hookd_dbus::BUS_NAME
    )]
    NameTaken,
    #[error("connecting to the bus: {0}")]
    Bus(zbus::Error),
    #[error("hook socket {path}: {source}")]
    HookSocket {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Serves the Manager the way hookd does: on the bus `bus` leads to
/// (`Builder::system()` in production), claiming hookd's name last and with
/// replacement off either way, so that a second hookd fails instead of
/// stealing it; then, the name being hookd's single-instance lock, on the
/// hook socket at `hook_socket`, whose change signals are forwarded to the
/// bus.
pub async fn serve(
    bus: zbus::connection::Builder<'_>,
    daemon: SharedDaemon,
    view: View,
    readers: Readers,
    libvirt: Option<Libvirt>,
    hook_socket: &std::path::Path,
) -> Result<Served, ServeError> {
    let conn = bus
        .serve_at(
            hookd_dbus::MANAGER_PATH,
            Manager::new(daemon.clone(), view.clone(), readers, libvirt.clone()),
        )
        .name(hookd_dbus::BUS_NAME)
        .allow_name_replacements(false)
        .replace_existing_names(false)
        .build()
        .await
        .map_err(|e| match e {
            zbus::Error::NameTaken => ServeError::NameTaken,
            e => ServeError::Bus(e),
        })?;
    let (signals, queue) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(signals::forward(conn.clone(), queue));
    let notices = signals.clone();
    hook_socket::spawn(hook_socket, move || {
        Manager::new(
            daemon.clone(),
            view.clone(),
            Readers::RootOnly,
            libvirt.clone(),
        )
        .with_signals_to(signals.clone())
    })
    .map_err(|source| ServeError::HookSocket {
        path: hook_socket.to_owned(),
        source,
    })?;
    Ok(Served { conn, notices })
}

/// What [`serve`] gives back: the bus connection, and where changes made
/// outside a call (libvirt's events, logged packets) are announced.
pub struct Served {
    pub conn: Connection,
    pub notices: Notices,
}
