//! libvirt domain XML as hookd needs it: name, UUID, NICs and hookd's
//! `<metadata>` policy. Everything else in the document is ignored, so any
//! domain XML libvirt accepts is accepted here.

use crate::mac::MacAddr;
use crate::policy::{self, Policy, PolicyError};
use crate::xml_tree::{self, Element, XmlError};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Interface {
    /// libvirt's interface type: network, bridge, ethernet, direct, user, ...
    pub kind: String,
    pub mac: Option<MacAddr>,
    /// `<target dev>`: the tap (or macvtap) libvirt created, when it exists.
    pub target_dev: Option<String>,
    pub alias: Option<String>,
    pub model: Option<String>,
    pub line: u32,
}

impl Interface {
    /// Whether hookd can put its programs on this NIC: a tap that the host
    /// kernel sees. macvtap (`direct`), vhost-user, user-mode, hostdev and
    /// vDPA NICs bypass the host's tap, so hookd cannot filter them.
    pub fn attachable(&self) -> Result<(), String> {
        match self.kind.as_str() {
            "network" | "bridge" | "ethernet" => match &self.target_dev {
                Some(dev) if dev.starts_with("macvtap") || dev.starts_with("macvlan") => {
                    Err(format!(
                        "its network uses macvtap ({dev}), which has no tap hookd can attach to"
                    ))
                }
                _ => Ok(()),
            },
            other => Err(format!(
                "type '{other}' has no host tap hookd can attach to"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Domain {
    pub name: String,
    pub uuid: String,
    pub interfaces: Vec<Interface>,
    /// hookd's policy, when the domain carries one.
    pub policy: Option<Policy>,
}

impl Domain {
    /// Do both describe the same NICs and policy, wherever in their
    /// documents the elements are? libvirt's XML at `started` has more
    /// elements than at `start`, which moves every line below them.
    pub fn same_apart_from_lines(&self, other: &Domain) -> bool {
        fn lineless(d: &Domain) -> Domain {
            let mut d = d.clone();
            d.interfaces.iter_mut().for_each(|n| n.line = 0);
            if let Some(p) = &mut d.policy {
                p.each_line(|l| *l = 0);
            }
            d
        }
        lineless(self) == lineless(other)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error(transparent)]
    Xml(#[from] XmlError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("line {line}: the root element is <{found}>, not <domain>")]
    NotADomain { line: u32, found: String },
    #[error("line {line}: <domain> has no <{missing}>")]
    Missing { line: u32, missing: &'static str },
    #[error("line {line}: <interface> <mac address>: {message}")]
    BadMac { line: u32, message: String },
    #[error(
        "line {line}: <metadata> holds more than one <policy> in namespace {}",
        policy::NAMESPACE
    )]
    TwoPolicies { line: u32 },
}

impl DomainError {
    /// True when the document is a domain whose hookd policy is invalid (as
    /// opposed to a document that is not a domain at all).
    pub fn is_policy_error(&self) -> bool {
        matches!(
            self,
            DomainError::Policy(_) | DomainError::TwoPolicies { .. }
        )
    }
}

fn parse_interface(el: &Element) -> Result<Interface, DomainError> {
    let mac = el
        .child("mac")
        .and_then(|m| m.attr("address"))
        .map(|a| {
            a.trim()
                .parse::<MacAddr>()
                .map_err(|e| DomainError::BadMac {
                    line: el.line,
                    message: e.to_string(),
                })
        })
        .transpose()?;
    Ok(Interface {
        kind: el.attr("type").unwrap_or("").to_string(),
        mac,
        target_dev: el
            .child("target")
            .and_then(|t| t.attr("dev"))
            .filter(|d| !d.is_empty())
            .map(str::to_string),
        alias: el
            .child("alias")
            .and_then(|a| a.attr("name"))
            .map(str::to_string),
        model: el
            .child("model")
            .and_then(|m| m.attr("type"))
            .map(str::to_string),
        line: el.line,
    })
}

/// The `<hookd:policy>` element of `<metadata>`, if present.
pub(crate) fn policy_element(root: &Element) -> Result<Option<&Element>, DomainError> {
    let Some(meta) = root.child("metadata") else {
        return Ok(None);
    };
    let mut found = meta
        .children
        .iter()
        .filter(|c| c.ns.as_deref() == Some(policy::NAMESPACE));
    let first = found.next();
    if let Some(second) = found.next() {
        return Err(DomainError::TwoPolicies { line: second.line });
    }
    match first {
        Some(el) if el.name != "policy" => Err(PolicyError {
            line: el.line,
            element: el.qname.to_string(),
            attribute: None,
            message: "unknown element: hookd's metadata element is <policy>".into(),
        }
        .into()),
        other => Ok(other),
    }
}

/// Parses a libvirt domain XML document.
pub fn parse(xml: &str) -> Result<Domain, DomainError> {
    let root = xml_tree::parse(xml)?;
    let mut dom = from_tree(&root)?;
    dom.policy = policy_element(&root)?
        .map(policy::parse_policy)
        .transpose()?;
    Ok(dom)
}

/// The domain a parsed document describes, leaving out its hookd policy
/// (`policy` is None): for callers that have the policy parsed already.
pub fn from_tree(root: &Element) -> Result<Domain, DomainError> {
    if root.name != "domain" || root.ns.is_some() {
        return Err(DomainError::NotADomain {
            line: root.line,
            found: root.qname.to_string(),
        });
    }
    let text = |name: &'static str| {
        root.child(name)
            .map(|e| e.text.trim().to_string())
            .filter(|t| !t.is_empty())
            .ok_or(DomainError::Missing {
                line: root.line,
                missing: name,
            })
    };
    let name = text("name")?;
    // libvirt generates a UUID when a definition has none, so hook and event
    // XML always carry one; a file given to `hookctl explain` may not.
    let uuid = text("uuid").unwrap_or_default();
    let interfaces = root
        .child("devices")
        .map(|d| d.children_named("interface").map(parse_interface).collect())
        .transpose()?
        .unwrap_or_default();
    Ok(Domain {
        name,
        uuid,
        interfaces,
        policy: None,
    })
}

/// Cheap check used by the hook when hookd cannot be reached: does this
/// document carry hookd metadata? Errs on the side of "yes" for anything that
/// mentions hookd's namespace, so a protected VM never starts unprotected.
pub fn mentions_hookd_policy(xml: &str) -> bool {
    match xml_tree::parse(xml) {
        Ok(root) => match policy_element(&root) {
            Ok(el) => el.is_some(),
            Err(_) => true,
        },
        Err(_) => xml.contains(policy::NAMESPACE),
    }
}
