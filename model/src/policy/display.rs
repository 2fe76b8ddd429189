//! A rule as one line of text, as hookd logs and reports it.

use super::{Protocol, Rule, protocol_name};

impl std::fmt::Display for Rule {
    /// One line, e.g. `allow tcp ports 22,443 remote 198.51.100.0/24 log`.
    /// Written straight to `f`: hookd formats every rule of a policy on
    /// each change, so no piece gets a String of its own.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = self;
        f.write_str(r.action.name())?;
        match r.protocol {
            Protocol::Any => f.write_str(" any")?,
            Protocol::Number(n) => match protocol_name(n) {
                Some(name) => write!(f, " {name}")?,
                None => write!(f, " protocol {n}")?,
            },
        }
        for (i, p) in r.ports.iter().enumerate() {
            f.write_str(if i == 0 { " ports " } else { "," })?;
            write!(f, "{}", p.first)?;
            if p.first != p.last {
                write!(f, "-{}", p.last)?;
            }
        }
        if let Some(t) = r.icmp_type {
            write!(f, " type {t}")?;
        }
        if let Some(c) = r.icmp_code {
            write!(f, " code {c}")?;
        }
        match r.remote {
            Some(n) => write!(f, " remote {n}")?,
            None => f.write_str(" remote any")?,
        }
        if r.log {
            f.write_str(" log")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::metadata::parse_policy_document;
    use crate::policy::Direction;

    #[test]
    fn every_part_of_a_rule_is_on_its_line() {
        let doc = parse_policy_document(
            "<hookd:policy xmlns:hookd='urn:hookd:policy:1'><hookd:interface>\
             <hookd:ingress default='deny'>\
             <hookd:rule action='allow' protocol='tcp' ports='22,8000-8080,443' remote='198.51.100.0/24' log='true'/>\
             <hookd:rule action='deny' protocol='icmp' icmp-type='8' icmp-code='0'/>\
             <hookd:rule action='allow' protocol='any'/>\
             <hookd:rule action='allow' protocol='47' remote='2001:db8::/32'/>\
             </hookd:ingress></hookd:interface></hookd:policy>",
        )
        .expect("valid policy");
        let rules = &doc.policy.interfaces[0]
            .rules(Direction::Ingress)
            .expect("ingress rules")
            .rules;
        let lines: Vec<String> = rules.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "allow tcp ports 22,8000-8080,443 remote 198.51.100.0/24 log",
                "deny icmp type 8 code 0 remote any",
                "allow any remote any",
                "allow protocol 47 remote 2001:db8::/32",
            ]
        );
    }
}
