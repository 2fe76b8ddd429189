//! The core's [`Change`]s announced as D-Bus signals.

use crate::api::convert;
use crate::api::manager::Manager;
use crate::core::Change;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use zbus::Connection;
use zbus::object_server::SignalEmitter;

/// Where the changes of a call go.
pub enum SignalSink<'a> {
    /// Emitted at once, on this connection (before the call's reply).
    Now(SignalEmitter<'a>),
    /// Queued for [`forward`] (calls on the hook socket, which must never
    /// wait for the bus).
    Queue(UnboundedSender<Change>),
}

impl SignalSink<'_> {
    /// The same sink, for a task that outlives the call.
    pub fn into_owned(self) -> SignalSink<'static> {
        match self {
            SignalSink::Now(emitter) => SignalSink::Now(emitter.into_owned()),
            SignalSink::Queue(q) => SignalSink::Queue(q),
        }
    }

    pub async fn send(&self, changes: Vec<Change>) {
        match self {
            SignalSink::Now(emitter) => {
                for c in &changes {
                    emit(emitter, c).await;
                }
            }
            SignalSink::Queue(q) => {
                for c in changes {
                    let _ = q.send(c);
                }
            }
        }
    }
}

/// One change as its signal. A failed emission never fails the change it
/// reports.
pub async fn emit(emitter: &SignalEmitter<'_>, c: &Change) {
    let _ = match c {
        Change::Attached { name, uuid, phase } => {
            Manager::domain_attached(emitter, name, uuid, phase).await
        }
        Change::Applied {
            name,
            uuid,
            generation,
        } => Manager::policy_applied(emitter, name, uuid, *generation).await,
        Change::Detached { name, uuid } => Manager::domain_detached(emitter, name, uuid).await,
        Change::PolicyRefused {
            name,
            uuid,
            message,
        } => Manager::policy_refused(emitter, name, uuid, message).await,
        Change::PacketLogged(p) => Manager::packet_logged(emitter, p.clone()).await,
        Change::Migration(e) => Manager::migration_state(emitter, convert::migration(e)).await,
    };
}

/// Emits queued changes on `bus`, in order, until hookd exits.
pub async fn forward(bus: Connection, mut queue: UnboundedReceiver<Change>) {
    let Ok(emitter) = SignalEmitter::new(&bus, hookd_dbus::MANAGER_PATH) else {
        return;
    };
    while let Some(c) = queue.recv().await {
        emit(&emitter, &c).await;
    }
}
