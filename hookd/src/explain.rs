//! `hookctl explain`: what hookd would attach and enforce for a domain XML,
//! without a daemon.

use crate::domain::{self, Domain};
use crate::plan::{self, NicMode, NicPlan, Stage};
use crate::policy::{Action, Direction, Protocol, Rule};
use serde::Serialize;
use std::fmt::Write;

#[derive(Debug, Serialize)]
pub struct Explanation {
    pub domain: Domain,
    pub managed: bool,
    pub nics: Vec<NicPlan>,
    pub warnings: Vec<String>,
}

/// Parses and plans `xml` the way hookd does at `prepare`.
pub fn explain(xml: &str) -> Result<Explanation, String> {
    let domain = domain::parse(xml).map_err(|e| e.to_string())?;
    let nics = plan::plan_domain(&domain, true, Stage::BeforeTaps).map_err(|e| e.to_string())?;
    Ok(Explanation {
        managed: domain.policy.is_some(),
        warnings: plan::warnings(&domain),
        nics,
        domain,
    })
}

fn rule_text(r: &Rule) -> String {
    let mut s = match r.action {
        Action::Allow => "allow".to_string(),
        Action::Deny => "deny".to_string(),
    };
    match r.protocol {
        Protocol::Any => s += " any",
        Protocol::Number(n) => {
            let name = match n {
                1 => "icmp".to_string(),
                6 => "tcp".to_string(),
                17 => "udp".to_string(),
                58 => "icmpv6".to_string(),
                132 => "sctp".to_string(),
                n => format!("protocol {n}"),
            };
            let _ = write!(s, " {name}");
        }
    }
    if !r.ports.is_empty() {
        let ports: Vec<String> = r
            .ports
            .iter()
            .map(|p| {
                if p.first == p.last {
                    p.first.to_string()
                } else {
                    format!("{}-{}", p.first, p.last)
                }
            })
            .collect();
        let _ = write!(s, " ports {}", ports.join(","));
    }
    if let Some(t) = r.icmp_type {
        let _ = write!(s, " type {t}");
    }
    if let Some(c) = r.icmp_code {
        let _ = write!(s, " code {c}");
    }
    let _ = write!(
        s,
        " remote {}",
        r.remote
            .map(|n| n.to_string())
            .unwrap_or_else(|| "any".into())
    );
    if r.log {
        s += " log";
    }
    let _ = write!(s, "  (line {})", r.line);
    s
}

fn direction_text(out: &mut String, name: &str, d: Option<&Direction>) {
    match d {
        None => {
            let _ = writeln!(out, "      {name}: allow (no <hookd:{name}> element)");
        }
        Some(d) => {
            let def = if d.default == Action::Allow {
                "allow"
            } else {
                "deny"
            };
            let _ = writeln!(
                out,
                "      {name}: default {def}, {} rule(s)",
                d.rules.len()
            );
            for r in &d.rules {
                let _ = writeln!(out, "        {}", rule_text(r));
            }
        }
    }
}

impl Explanation {
    /// The human-readable report.
    pub fn render(&self) -> String {
        let d = &self.domain;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "domain {} (uuid {})",
            d.name,
            if d.uuid.is_empty() { "-" } else { &d.uuid }
        );
        let _ = writeln!(
            out,
            "  {}",
            if self.managed {
                "managed: carries hookd policy (fails closed if it cannot be applied)"
            } else {
                "unmanaged: no hookd policy; never filtered (counted unless count_unmanaged = false)"
            }
        );
        if self.nics.is_empty() {
            let _ = writeln!(out, "  no <interface> elements");
        }
        for nic in &self.nics {
            let mac = nic
                .mac
                .map(|m| m.to_string())
                .unwrap_or_else(|| "(no mac)".into());
            let tap = nic.tap.as_deref().unwrap_or("(tap named at start)");
            let _ = writeln!(
                out,
                "  nic {mac} type {} tap {tap}: {}",
                nic.kind,
                nic.mode.describe()
            );
            if let NicMode::AntiSpoofing {
                flags, prefixes, ..
            } = &nic.mode
            {
                let _ = writeln!(out, "      source MAC must be {mac}");
                if prefixes.is_empty() {
                    let _ = writeln!(out, "      IP sources: not checked (no <hookd:address>)");
                } else {
                    let p: Vec<String> = prefixes.iter().map(|p| p.to_string()).collect();
                    let _ = writeln!(
                        out,
                        "      IP sources, ARP senders, ND targets within: {}",
                        p.join(", ")
                    );
                }
                let dhcp = flags & hookd_bpf::layout::NIC_F_ALLOW_DHCP_SERVER != 0;
                let ra = flags & hookd_bpf::layout::NIC_F_ALLOW_RA != 0;
                let _ = writeln!(
                    out,
                    "      DHCP server replies: {}; router advertisements: {}",
                    if dhcp { "allowed" } else { "dropped" },
                    if ra { "allowed" } else { "dropped" }
                );
                if let Some(p) = d.policy.as_ref().and_then(|p| p.for_mac(nic.mac)) {
                    direction_text(&mut out, "ingress", p.ingress.as_ref());
                    direction_text(&mut out, "egress", p.egress.as_ref());
                }
            }
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        out
    }
}
