//! Packets logged by `log="true"` rules: attributed to their domain and
//! rule, logged, kept for clients, and announced as [`Change::PacketLogged`].

use crate::core::change::{Change, Notices};
use crate::core::view::View;
use crate::datapath::direction_of;
use aya::maps::{MapData, RingBuf};
use hookd_bpf::layout::FwEvent;
use hookd_dbus::LoggedPacket;
use std::collections::VecDeque;
use std::net::Ipv6Addr;

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

impl View {
    /// A packet logged by a `log="true"` rule: attributed, logged, kept.
    pub fn record_event(&self, ev: &FwEvent) -> Option<LoggedPacket> {
        let direction = direction_of(ev.dir);
        let records = self.records();
        let found = records.iter().find_map(|r| {
            r.nics
                .iter()
                .find(|n| n.ifindex == ev.ifindex && n.attached())
                .map(|n| (r, n))
        });
        // None: the NIC went away meanwhile.
        let (rec, nic) = found?;
        let rule = nic
            .rules
            .iter()
            .find(|r| r.direction == direction && r.index == ev.rule);
        let p = LoggedPacket {
            time_ns: ev.ts,
            domain: rec.name.clone(),
            mac: nic.mac.clone(),
            direction: direction.to_string(),
            action: if ev.deny != 0 { "deny" } else { "allow" }.to_string(),
            rule_line: rule.map(|r| r.line).unwrap_or(0),
            rule: rule.map(|r| r.text.clone()).unwrap_or_default(),
            protocol: ev.proto,
            source: addr_text(ev.saddr),
            destination: addr_text(ev.daddr),
            source_port: ev.sport,
            destination_port: ev.dport,
        };
        tracing::info!(
            target: "hookd::firewall",
            domain = %p.domain, mac = %p.mac, %direction, action = %p.action, line = p.rule_line,
            "{} {}:{} -> {}:{} proto {} ({})",
            p.action, p.source, p.source_port, p.destination, p.destination_port, p.protocol, p.rule
        );
        if let Ok(mut log) = self.events.lock() {
            log.push(p.clone());
        }
        Some(p)
    }
}

/// Follows the data path's ring buffer until hookd stops: every logged
/// packet is recorded in `view` and announced on `notices`.
pub async fn follow(ring: RingBuf<MapData>, view: View, notices: Notices) {
    crate::datapath::events::read(ring, |batch| {
        for p in batch.iter().filter_map(|ev| view.record_event(ev)) {
            let _ = notices.send(Change::PacketLogged(p));
        }
    })
    .await
}
