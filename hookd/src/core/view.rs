//! What readers see without taking the daemon's lock: the domain records as
//! of the last change, the data plane's counters and the logged packets.
//! Management calls read here, so they never delay a hook call.

use crate::core::dataplane::CounterSource;
use crate::core::error::DaemonError;
use crate::core::events::EventLog;
use crate::core::migration::log::{MigrationEvent, MigrationLog, Totals};
use crate::core::networks::{Definition, NetworkStoreError};
use crate::core::records::DomainRecord;
use hookd_bpf::layout::{NetStats, NicStats};
use hookd_model::policy::Direction;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The domain records as published to readers.
pub type Records = Arc<Vec<Arc<DomainRecord>>>;
/// The network definitions as published to readers, by name.
pub type Networks = Arc<Vec<Arc<Definition>>>;

#[derive(Clone)]
pub struct View {
    pub(super) records: watch::Receiver<Records>,
    pub(super) networks: watch::Receiver<Networks>,
    pub(super) counters: Arc<dyn CounterSource>,
    pub(super) events: Arc<Mutex<EventLog>>,
    /// The live migrations the helpers took part in.
    pub(super) migrations: Arc<Mutex<MigrationLog>>,
    /// Tenants get namespaces (the data plane's setting), for trace.
    pub(super) tenant_namespaces: bool,
}

/// Whether hookd can do its job, with a one-line explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Ok(String),
    Degraded(String),
}

impl Health {
    /// "ok" or "degraded", as D-Bus and metrics report it.
    pub fn status(&self) -> &'static str {
        match self {
            Health::Ok(_) => "ok",
            Health::Degraded(_) => "degraded",
        }
    }

    pub fn detail(&self) -> &str {
        match self {
            Health::Ok(d) | Health::Degraded(d) => d,
        }
    }
}

impl View {
    /// Do tenants get namespaces for traffic leaving their subnets?
    pub fn tenant_namespaces(&self) -> bool {
        self.tenant_namespaces
    }

    /// The records as of the last change.
    pub fn records(&self) -> Records {
        self.records.borrow().clone()
    }

    /// The networks as of the last change, by name.
    pub fn networks(&self) -> Networks {
        self.networks.borrow().clone()
    }

    /// A network by name.
    pub fn network(&self, name: &str) -> Result<Arc<Definition>, DaemonError> {
        self.networks
            .borrow()
            .iter()
            .find(|d| d.network.name == name)
            .cloned()
            .ok_or_else(|| DaemonError::Network(NetworkStoreError::NotFound(name.to_string())))
    }

    /// A domain by UUID or name.
    pub fn find(&self, key: &str) -> Option<Arc<DomainRecord>> {
        self.records
            .borrow()
            .iter()
            .find(|r| r.uuid == key || r.name == key)
            .cloned()
    }

    pub fn stats(&self, ifindex: u32) -> Option<NicStats> {
        self.counters.stats(ifindex)
    }

    pub fn net_stats(&self, ifindex: u32) -> Option<NetStats> {
        self.counters.net_stats(ifindex)
    }

    pub fn rule_hits(&self, ifindex: u32) -> Vec<((Direction, u16), u64)> {
        self.counters.rule_hits(ifindex)
    }

    /// The hookd policy of a domain hookd knows: its uuid, and the policy
    /// element's text (None for a domain without hookd policy).
    pub fn policy(&self, domain: &str) -> Result<(String, Option<String>), DaemonError> {
        let rec = self
            .find(domain)
            .ok_or_else(|| DaemonError::NotFound(domain.to_string()))?;
        let text = hookd_model::metadata::policy_text(&rec.xml)?;
        Ok((rec.uuid.clone(), text))
    }

    pub fn health(&self) -> Health {
        let records = self.records();
        let nics: usize = records
            .iter()
            .map(|r| r.nics.iter().filter(|n| n.attached()).count())
            .sum();
        match self.counters.health() {
            Ok(()) => Health::Ok(format!(
                "{} domain(s), {nics} attached NIC(s)",
                records.len()
            )),
            Err(why) => Health::Degraded(why),
        }
    }

    /// Notes a migration's outcome (the helpers do, as it happens).
    pub fn record_migration(&self, e: MigrationEvent) {
        if let Ok(mut log) = self.migrations.lock() {
            log.record(e);
        }
    }

    /// The latest migrations, oldest first, and the totals since start.
    pub fn migrations(&self) -> (Vec<MigrationEvent>, Totals) {
        self.migrations
            .lock()
            .map(|log| (log.recent(), log.totals()))
            .unwrap_or_default()
    }

    pub fn recent_events(&self, domain: &str) -> Vec<hookd_dbus::LoggedPacket> {
        let name = self
            .find(domain)
            .map(|r| r.name.clone())
            .unwrap_or(domain.to_string());
        self.events
            .lock()
            .map(|log| log.of(&name))
            .unwrap_or_default()
    }
}
