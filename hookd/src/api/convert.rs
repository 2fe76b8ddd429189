//! The core's types as the D-Bus contract spells them: errors mapped to
//! D-Bus error names (in this one place), records to `DomainDetail`.

use crate::core::migration::log::MigrationEvent;
use crate::core::networks::{Definition, NetworkStoreError, Source};
use crate::core::records::{DomainRecord, NicRecord};
use crate::core::{DaemonError, View};
use hookd_dbus::{
    Counter, DomainDetail, DomainSummary, Error, NetworkDetail, NetworkNic, NetworkSummary,
    NicInfo, RuleHits, SubnetInfo,
};

impl From<DaemonError> for Error {
    fn from(e: DaemonError) -> Error {
        let text = e.to_string();
        match e {
            DaemonError::Domain(_) | DaemonError::Plan(_) => Error::InvalidPolicy(text),
            DaemonError::InvalidArgument(_) => Error::InvalidArgument(text),
            DaemonError::AttachFailed { .. } | DaemonError::State(_) | DaemonError::Internal(_) => {
                Error::AttachFailed(text)
            }
            DaemonError::NotFound(_) => Error::NotFound(text),
            DaemonError::Network(n) => match n {
                NetworkStoreError::Invalid(_) => Error::InvalidNetwork(text),
                NetworkStoreError::NotFound(_) => Error::NotFound(text),
                NetworkStoreError::Refused(_) => Error::Refused(text),
                NetworkStoreError::Io { .. } => Error::AttachFailed(text),
            },
        }
    }
}

/// An over-long argument, as the D-Bus contract spells it.
pub fn too_long(e: hookd_model::hook::TooLong) -> Error {
    Error::InvalidArgument(e.to_string())
}

pub fn migration(e: &MigrationEvent) -> hookd_dbus::MigrationInfo {
    hookd_dbus::MigrationInfo {
        domain: e.domain.clone(),
        uuid: e.uuid.clone(),
        side: e.side.name().into(),
        outcome: e.outcome.name().into(),
        nics: e.carried.nics as u32,
        entries: e.carried.entries as u64,
        bytes: e.carried.bytes as u64,
        ms: e.ms,
        detail: e.detail.clone(),
        unix_time: e.unix_time,
    }
}

pub fn summary(r: &DomainRecord) -> DomainSummary {
    DomainSummary {
        name: r.name.clone(),
        uuid: r.uuid.clone(),
        managed: r.managed,
        attached_nics: r.nics.iter().filter(|n| n.attached()).count() as u32,
        attached_at: r.attached_at.clone(),
    }
}

pub fn detail(r: &DomainRecord, view: &View) -> DomainDetail {
    DomainDetail {
        name: r.name.clone(),
        uuid: r.uuid.clone(),
        managed: r.managed,
        attached_at: r.attached_at.clone(),
        generation: r.generation,
        nics: r.nics.iter().map(|n| nic_info(n, view)).collect(),
    }
}

fn nic_info(n: &NicRecord, view: &View) -> NicInfo {
    let hits = if n.attached() {
        view.rule_hits(n.ifindex)
    } else {
        Vec::new()
    };
    NicInfo {
        mac: n.mac.clone(),
        kind: n.kind.clone(),
        tap: n.tap.clone(),
        ifindex: n.ifindex,
        mode: match &n.network {
            Some(net) => format!("{}, network {net}", n.mode),
            None => n.mode.to_string(),
        },
        attach: n.attach.map(|a| a.name()).unwrap_or_default().to_string(),
        addresses: n.addresses.clone(),
        rules: n
            .rules
            .iter()
            .map(|r| RuleHits {
                direction: r.direction.to_string(),
                index: r.index,
                line: r.line,
                rule: r.text.clone(),
                hits: hits
                    .iter()
                    .find(|(k, _)| *k == (r.direction, r.index))
                    .map(|(_, h)| *h)
                    .unwrap_or(0),
            })
            .collect(),
        counters: n
            .attached()
            .then(|| view.stats(n.ifindex))
            .flatten()
            .map(|s| {
                let net = view.net_stats(n.ifindex);
                crate::core::counters(&s, net.as_ref())
                    .into_iter()
                    .map(|(name, value)| Counter { name, value })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn source(d: &Definition) -> String {
    match &d.source {
        Source::Defined(p) => format!("defined: {}", p.display()),
        Source::Config(p) => format!("configuration: {}", p.display()),
    }
}

pub fn network_summary(d: &Definition) -> NetworkSummary {
    let n = &d.network;
    NetworkSummary {
        name: n.name.clone(),
        tenant: n.tenant.clone(),
        vni: n.vni,
        subnets: n.subnets.iter().map(|s| s.prefix.to_string()).collect(),
        source: source(d),
    }
}

pub fn network_detail(d: &Definition, view: &View) -> NetworkDetail {
    let n = &d.network;
    let networks = view.networks();
    let tenant_here = view.records().iter().any(|r| {
        r.nics.iter().any(|nic| {
            nic.attached()
                && nic.network.as_deref().is_some_and(|name| {
                    networks
                        .iter()
                        .any(|o| o.network.name == name && o.network.tenant == n.tenant)
                })
        })
    });
    let namespace = if view.tenant_namespaces() && tenant_here {
        crate::datapath::tenant::ns_name(&n.tenant)
    } else {
        String::new()
    };
    let nics = view
        .records()
        .iter()
        .flat_map(|r| {
            r.nics
                .iter()
                .filter(|nic| nic.attached() && nic.network.as_deref() == Some(n.name.as_str()))
                .map(|nic| NetworkNic {
                    domain: r.name.clone(),
                    mac: nic.mac.clone(),
                    tap: nic.tap.clone(),
                    addresses: nic.addresses.clone(),
                })
        })
        .collect();
    NetworkDetail {
        name: n.name.clone(),
        tenant: n.tenant.clone(),
        vni: n.vni,
        mtu: u32::from(n.mtu),
        subnets: n
            .subnets
            .iter()
            .map(|s| SubnetInfo {
                prefix: s.prefix.to_string(),
                gateway: s.gateway.to_string(),
            })
            .collect(),
        dns: n.dns.iter().map(|a| a.to_string()).collect(),
        source: source(d),
        xml: d.xml.clone(),
        namespace,
        nics,
    }
}
