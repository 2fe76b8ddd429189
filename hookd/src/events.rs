//! Packets logged by `log="true"` rules: read from the eBPF ring buffer,
//! attributed to their domain and rule, logged, and kept for clients.

use crate::daemon::View;
use aya::maps::{MapData, RingBuf};
use hookd_bpf::layout::{DIR_INGRESS, FwEvent};
use hookd_dbus::LoggedPacket;
use std::collections::VecDeque;
use std::net::Ipv6Addr;
use tokio::io::unix::AsyncFd;

/// How many logged packets hookd keeps for clients.
pub const KEEP: usize = 1024;

/// Recent logged packets, oldest first.
#[derive(Debug, Default)]
pub struct EventLog {
    recent: VecDeque<LoggedPacket>,
}

impl EventLog {
    pub fn push(&mut self, p: LoggedPacket) {
        if self.recent.len() == KEEP {
            self.recent.pop_front();
        }
        self.recent.push_back(p);
    }

    /// The packets of `domain` (name or UUID is matched by name; "" = all).
    pub fn of(&self, domain: &str) -> Vec<LoggedPacket> {
        self.recent
            .iter()
            .filter(|p| domain.is_empty() || p.domain == domain)
            .cloned()
            .collect()
    }
}

/// An address as the data path stores it (IPv4 mapped) in its usual form.
pub fn addr_text(b: [u8; 16]) -> String {
    let a = Ipv6Addr::from(b);
    a.to_ipv4_mapped()
        .map(|v4| v4.to_string())
        .unwrap_or_else(|| a.to_string())
}

pub fn direction_name(dir: u8) -> &'static str {
    if dir == DIR_INGRESS {
        "ingress"
    } else {
        "egress"
    }
}

/// Reads the ring buffer until hookd stops, handing events to the daemon
/// and signalling them on D-Bus (PacketLogged).
pub async fn read(ring: RingBuf<MapData>, view: View, conn: zbus::Connection) {
    // SAFETY: the RingBuf owns its map fd, which stays open and unchanged
    // for as long as the AsyncFd owns the RingBuf.
    let registered =
        unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) };
    let mut fd = match registered {
        Ok(fd) => fd,
        Err(e) => {
            tracing::error!(error = %e, "cannot wait on the event ring buffer: logged packets are not reported");
            return;
        }
    };
    loop {
        let mut guard = match fd.readable_mut().await {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(error = %e, "event ring buffer failed");
                return;
            }
        };
        let mut batch = Vec::new();
        while let Some(item) = guard.get_inner_mut().next() {
            if let Some(ev) = FwEvent::from_bytes(&item) {
                batch.push(ev);
            }
        }
        guard.clear_ready();
        let packets: Vec<LoggedPacket> = batch
            .iter()
            .filter_map(|ev| view.record_event(ev))
            .collect();
        if let Ok(emitter) =
            zbus::object_server::SignalEmitter::new(&conn, hookd_dbus::MANAGER_PATH)
        {
            for p in packets {
                let _ = crate::service::Manager::packet_logged(&emitter, p).await;
            }
        }
    }
}
