//! `Trace`: the verdict the live rules give a described packet, computed
//! from the recorded domain XML (no kernel state is read or written).

use crate::core::error::DaemonError;
use crate::core::records::DomainRecord;
use hookd_model::firewall::{self, Packet};
use hookd_model::mac::MacAddr;
use hookd_model::policy::{Action, Direction};
use std::net::IpAddr;

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
