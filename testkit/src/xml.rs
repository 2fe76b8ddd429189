//! One builder of libvirt domain XML for tests and benchmarks.

use std::fmt::Write;

/// A domain as libvirt hands it to the hook: name, UUID, hookd's
/// `<metadata>` content and NICs.
#[derive(Debug, Clone)]
pub struct DomainXml {
    name: String,
    uuid: String,
    metadata: String,
    nics: Vec<(String, String, Option<String>)>,
}

impl DomainXml {
    pub fn new(name: &str, uuid: &str) -> DomainXml {
        DomainXml {
            name: name.into(),
            uuid: uuid.into(),
            metadata: String::new(),
            nics: Vec::new(),
        }
    }

    /// The content of `<metadata>` (a `<hookd:policy>` element, usually).
    pub fn metadata(mut self, xml: &str) -> DomainXml {
        self.metadata = xml.into();
        self
    }

    /// An `<interface type=KIND>` with its MAC, and its tap when `tap` is
    /// given (libvirt fills `<target dev>` in from `start` on).
    pub fn nic(mut self, kind: &str, mac: &str, tap: Option<&str>) -> DomainXml {
        self.nics
            .push((kind.into(), mac.into(), tap.map(String::from)));
        self
    }
}

impl std::fmt::Display for DomainXml {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut devices = String::new();
        for (kind, mac, tap) in &self.nics {
            let _ = write!(
                devices,
                "<interface type='{kind}'><mac address='{mac}'/>{}</interface>",
                tap.as_ref()
                    .map(|t| format!("<target dev='{t}'/>"))
                    .unwrap_or_default()
            );
        }
        write!(
            f,
            "<domain type='kvm'>\n<name>{}</name>\n<uuid>{}</uuid>\n<metadata>{}</metadata>\n<devices>{devices}</devices></domain>",
            self.name, self.uuid, self.metadata
        )
    }
}

/// `<hookd:policy>` around `interfaces` (the `<hookd:interface>` elements).
pub fn policy(interfaces: &str) -> String {
    format!("<hookd:policy xmlns:hookd='urn:hookd:policy:1'>{interfaces}</hookd:policy>")
}

/// The `i`th domain of a crowd (name `vm{i}`): one ethernet NIC (tap
/// `vnet{i}`, MAC from `i`) with an address and a default-deny ingress of
/// `rules` TCP rules, as the benchmarks and load tests start them.
pub fn numbered_domain(i: usize, rules: usize) -> String {
    let rules: String = (0..rules)
        .map(|r| {
            format!(
                "<hookd:rule action='allow' protocol='tcp' ports='{}' remote='198.51.100.{}/32'/>",
                1000 + r,
                r % 250 + 1
            )
        })
        .collect();
    let mac = format!("52:54:00:00:{:02x}:{:02x}", i / 256, i % 256);
    DomainXml::new(
        &format!("vm{i}"),
        &format!("00000000-0000-4000-8000-{i:012}"),
    )
    .metadata(&policy(&format!(
        "<hookd:interface mac='{mac}'><hookd:address prefix='192.0.2.{}/32'/>\
             <hookd:ingress default='deny'>{rules}</hookd:ingress></hookd:interface>",
        i % 250 + 1
    )))
    .nic("ethernet", &mac, Some(&format!("vnet{i}")))
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_what_libvirt_sends() {
        let x = DomainXml::new("vm1", "u1")
            .metadata(&policy("<hookd:interface/>"))
            .nic("bridge", "52:54:00:00:00:0a", Some("vnet0"))
            .nic("ethernet", "52:54:00:00:00:0b", None)
            .to_string();
        let d = hookd_model::domain::parse(&x).unwrap();
        assert_eq!((d.name.as_str(), d.uuid.as_str()), ("vm1", "u1"));
        assert_eq!(d.interfaces.len(), 2);
        assert_eq!(d.interfaces[0].target_dev.as_deref(), Some("vnet0"));
        assert!(d.interfaces[1].target_dev.is_none());
        assert!(d.policy.is_some());
    }
}
