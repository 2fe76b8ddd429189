//! `Trace`: the verdict the live rules give a described packet, computed
//! from the recorded domain XML (no kernel state is read or written), and
//! for a network NIC where the network stage sends it.

use crate::core::error::DaemonError;
use crate::core::networks::Definition;
use crate::core::records::DomainRecord;
use hookd_model::firewall::{self, Packet};
use hookd_model::mac::MacAddr;
use hookd_model::policy::{Action, Direction};
use hookd_model::route::{self, NetNic, RouteDecision};
use ipnet::IpNet;
use std::net::IpAddr;
use std::sync::Arc;

/// A packet to trace, from the VM's point of view.
#[derive(Debug, Clone)]
pub struct TraceQuery {
    pub mac: MacAddr,
    pub direction: Direction,
    pub remote: IpAddr,
    /// IP protocol number.
    pub protocol: u8,
    /// Destination port (tcp, udp, sctp).
    pub port: u16,
    pub icmp_type: u8,
    pub icmp_code: u8,
}

impl TraceQuery {
    /// A query from the text a client sends (D-Bus `Trace`): each field
    /// checked, with an error that names it.
    #[allow(clippy::too_many_arguments)] // one argument per packet field
    pub fn parse(
        mac: &str,
        direction: &str,
        remote: &str,
        protocol: &str,
        port: u16,
        icmp_type: u8,
        icmp_code: u8,
    ) -> Result<TraceQuery, DaemonError> {
        let bad = DaemonError::InvalidArgument;
        Ok(TraceQuery {
            mac: mac.parse().map_err(|e| bad(format!("{e}")))?,
            direction: direction.parse().map_err(bad)?,
            remote: remote
                .parse()
                .map_err(|_| bad(format!("'{remote}' is not an IP address")))?,
            protocol: hookd_model::policy::protocol_number(protocol)
                .ok_or_else(|| bad(format!("'{protocol}' is not a protocol name or number")))?,
            port,
            icmp_type,
            icmp_code,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceAnswer {
    pub action: Action,
    /// Line of the deciding rule, 0 when the default or no policy decided.
    pub rule_line: u32,
    pub explanation: String,
}

impl TraceAnswer {
    fn allow(why: String) -> TraceAnswer {
        TraceAnswer {
            action: Action::Allow,
            rule_line: 0,
            explanation: why,
        }
    }
}

/// The verdict the live rules give a described packet, without touching
/// connection tracking (established connections pass whatever it says).
/// Works on a copy of the domain's record, so callers parse and compile
/// without holding the daemon's lock.
pub fn trace(rec: &DomainRecord, q: &TraceQuery) -> Result<TraceAnswer, DaemonError> {
    let dom = hookd_model::domain::parse(&rec.xml)?;
    let mac = q.mac;
    if !rec.nics.iter().any(|n| n.mac == mac.to_string()) {
        return Err(DaemonError::InvalidArgument(format!(
            "domain {} has no NIC {mac}",
            rec.name
        )));
    }
    let Some(policy) = dom.policy.as_ref().and_then(|p| p.for_mac(Some(mac))) else {
        return Ok(TraceAnswer::allow(
            "the NIC has no hookd policy: never filtered".into(),
        ));
    };
    let name = q.direction;
    let Some(dir) = policy.rules(q.direction) else {
        return Ok(TraceAnswer::allow(format!(
            "no <hookd:{name}> element: {name} is allowed"
        )));
    };
    let packet = Packet {
        remote: q.remote,
        proto: q.protocol,
        port: firewall::packet_port(q.protocol, q.port, q.icmp_type, q.icmp_code),
    };
    let (action, rule) = firewall::compile(dir).lookup(&packet);
    Ok(match rule {
        Some(i) => TraceAnswer {
            action,
            rule_line: dir.rules[i].line,
            explanation: format!(
                "{name} rule at line {}: {}",
                dir.rules[i].line, dir.rules[i]
            ),
        },
        None => TraceAnswer {
            action,
            rule_line: 0,
            explanation: format!("no {name} rule matches: default {action}"),
        },
    })
}

/// What `trace_routed` needs besides the record: every domain's record and
/// network definition, and whether tenants have namespaces.
pub struct RouteContext<'a> {
    pub records: &'a [Arc<DomainRecord>],
    pub networks: &'a [Arc<Definition>],
    pub namespaces: bool,
}

fn prefixes(addresses: &[String]) -> Vec<IpNet> {
    addresses.iter().filter_map(|a| a.parse().ok()).collect()
}

/// [`trace`], and for an egress packet of a network NIC that the firewall
/// lets go, the network stage's decision after it (`route::decide`): the
/// NIC it is switched or routed to, with that NIC's ingress verdict (every
/// packet delivered to a VM passes its ingress rules), the tenant's
/// namespace, or the drop and its reason.
pub fn trace_routed(
    rec: &DomainRecord,
    q: &TraceQuery,
    ctx: &RouteContext,
) -> Result<TraceAnswer, DaemonError> {
    let mut answer = trace(rec, q)?;
    if q.direction != Direction::Egress || answer.action == Action::Deny {
        return Ok(answer);
    }
    let mac = q.mac.to_string();
    let Some(nic) = rec.nics.iter().find(|n| n.mac == mac) else {
        return Ok(answer);
    };
    let Some(from) = nic
        .network
        .as_deref()
        .and_then(|name| ctx.networks.iter().find(|d| d.network.name == name))
    else {
        return Ok(answer);
    };
    let owned: Vec<(&str, &str, &str, Vec<IpNet>)> = ctx
        .records
        .iter()
        .flat_map(|r| {
            r.nics.iter().filter_map(|n| {
                let net = n.network.as_deref()?;
                Some((r.name.as_str(), n.mac.as_str(), net, prefixes(&n.addresses)))
            })
        })
        .collect();
    let nics: Vec<NetNic> = owned
        .iter()
        .map(|(domain, mac, network, addresses)| NetNic {
            domain,
            mac,
            network,
            addresses,
        })
        .collect();
    let networks: Vec<&hookd_model::network::Network> =
        ctx.networks.iter().map(|d| &d.network).collect();
    let echo = (q.protocol == 1 && q.icmp_type == 8) || (q.protocol == 58 && q.icmp_type == 128);
    let decision = route::decide(
        &from.network,
        &mac,
        q.remote,
        echo,
        &networks,
        &nics,
        ctx.namespaces,
    );
    answer.explanation = format!("{}; then {decision}", answer.explanation);
    let (domain, to_mac) = match decision {
        RouteDecision::Dropped { .. } | RouteDecision::Gateway { echo: false } => {
            answer.action = Action::Deny;
            return Ok(answer);
        }
        RouteDecision::Switched { domain, mac } | RouteDecision::Routed { domain, mac, .. } => {
            (domain, mac)
        }
        _ => return Ok(answer),
    };
    // The receiver sees the packet from the sender's address of its family.
    let source = prefixes(&nic.addresses)
        .into_iter()
        .map(|p| p.addr())
        .find(|a| a.is_ipv4() == q.remote.is_ipv4());
    let (Some(to_rec), Some(source)) = (ctx.records.iter().find(|r| r.name == domain), source)
    else {
        return Ok(answer);
    };
    let theirs = TraceQuery {
        mac: to_mac
            .parse()
            .map_err(|e| DaemonError::InvalidArgument(format!("{e}")))?,
        direction: Direction::Ingress,
        remote: source,
        ..q.clone()
    };
    let r = trace(to_rec, &theirs)?;
    answer.explanation = format!("{}; at {domain}: {}", answer.explanation, r.explanation);
    if r.action == Action::Deny {
        answer.action = Action::Deny;
        answer.rule_line = r.rule_line;
    }
    Ok(answer)
}
