//! A rule as one line of text, as hookd logs and reports it.

use super::{Protocol, Rule, protocol_name};

impl std::fmt::Display for Rule {
    /// One line, e.g. `allow tcp ports 22,443 remote 198.51.100.0/24 log`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write;
        let r = self;
        let mut s = r.action.name().to_string();
        match r.protocol {
            Protocol::Any => s += " any",
            Protocol::Number(n) => match protocol_name(n) {
                Some(name) => {
                    let _ = write!(s, " {name}");
                }
                None => {
                    let _ = write!(s, " protocol {n}");
                }
            },
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
        f.write_str(&s)
    }
}
