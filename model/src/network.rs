//! hookd's networks: the document `<network xmlns="urn:hookd:network:1">`
//! that defines one L2 segment of the distributed switch (name, tenant,
//! VXLAN network identifier, subnets with their anycast gateways), parsed
//! and validated as strictly as policies are, and the checks a set of
//! networks must pass together (unique names and VNIs, no overlapping
//! subnets within a tenant).

use crate::policy::PolicyError;
use crate::policy::parse::{check_shape, children_in, prefix_attr};
use crate::xml_tree::{self, Element};
use ipnet::IpNet;
use std::net::IpAddr;

/// Namespace of network documents.
pub const NAMESPACE: &str = "urn:hookd:network:1";
/// The largest VXLAN network identifier (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;
pub const MAX_SUBNETS: usize = 16;
pub const MAX_DNS: usize = 4;
/// The MTU of a network unless it says otherwise.
pub const DEFAULT_MTU: u16 = 1500;
/// Smallest and largest MTU a network may give its guests.
pub const MTU_RANGE: std::ops::RangeInclusive<u16> = 1280..=9000;

/// One subnet of a network, with its gateway (the same address on every
/// host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    pub prefix: IpNet,
    pub gateway: IpAddr,
    /// Line of the `<subnet>` element.
    pub line: u32,
}

/// A network definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub name: String,
    pub tenant: String,
    pub vni: u32,
    pub mtu: u16,
    pub subnets: Vec<Subnet>,
    /// DNS servers given to guests by DHCP and RA.
    pub dns: Vec<IpAddr>,
}

impl Network {
    /// The subnet `addr` lies in.
    pub fn subnet_of(&self, addr: IpAddr) -> Option<&Subnet> {
        self.subnets.iter().find(|s| s.prefix.contains(&addr))
    }

    /// Does `prefix` lie inside one of the subnets?
    pub fn contains(&self, prefix: &IpNet) -> bool {
        self.subnets.iter().any(|s| s.prefix.contains(prefix))
    }
}

type Result<T> = std::result::Result<T, NetworkError>;

/// Why a network document is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    #[error(transparent)]
    Xml(#[from] xml_tree::XmlError),
    /// What is wrong and where (element, attribute, line).
    #[error(transparent)]
    Invalid(#[from] PolicyError),
}

/// The MAC address of a network's gateway: the same on every host (so a
/// VM that migrates needs no new ARP entry), locally administered, one per
/// network: 02:68:6b ("hk") and the VNI's three bytes.
pub fn gateway_mac(vni: u32) -> crate::mac::MacAddr {
    let v = vni.to_be_bytes();
    crate::mac::MacAddr([0x02, 0x68, 0x6b, v[1], v[2], v[3]])
}

/// The id of a tenant in the data path's route keys: FNV-1a of its name,
/// never 0 (0 is "no tenant"). The same on every host. [`check_set`]
/// refuses a tenant whose id is another tenant's.
pub fn tenant_id(tenant: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in tenant.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h.max(1)
}

/// A name or tenant: letters, digits, `-`, `_` and `.`, not starting with
/// a dot, 1 to 64 characters (it names a file and a namespace).
fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

pub(crate) fn name_attr(el: &Element, attr: &str) -> std::result::Result<String, PolicyError> {
    let v = el
        .attr(attr)
        .ok_or_else(|| PolicyError::new(el, Some(attr), "is required"))?;
    if !valid_name(v) {
        return Err(PolicyError::new(
            el,
            Some(attr),
            format!(
                "'{v}' is not a valid {attr}: 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'"
            ),
        ));
    }
    Ok(v.to_string())
}

fn number_attr<T>(
    el: &Element,
    attr: &str,
    range: std::ops::RangeInclusive<T>,
) -> std::result::Result<Option<T>, PolicyError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    let Some(v) = el.attr(attr) else {
        return Ok(None);
    };
    let out_of_range = || {
        PolicyError::new(
            el,
            Some(attr),
            format!(
                "'{v}' is not a number from {} to {}",
                range.start(),
                range.end()
            ),
        )
    };
    let n: T = v.trim().parse().map_err(|_| out_of_range())?;
    if !range.contains(&n) {
        return Err(out_of_range());
    }
    Ok(Some(n))
}

fn address_attr(el: &Element, attr: &str) -> std::result::Result<IpAddr, PolicyError> {
    let v = el
        .attr(attr)
        .ok_or_else(|| PolicyError::new(el, Some(attr), "is required"))?;
    v.trim()
        .parse()
        .map_err(|_| PolicyError::new(el, Some(attr), format!("'{v}' is not an IP address")))
}

fn parse_subnet(el: &Element) -> std::result::Result<Subnet, PolicyError> {
    check_shape(el, &["prefix", "gateway"], false)?;
    let prefix = prefix_attr(el, "prefix")?
        .ok_or_else(|| PolicyError::new(el, Some("prefix"), "is required"))?;
    let gateway = address_attr(el, "gateway")?;
    let bad = |m: String| PolicyError::new(el, Some("gateway"), m);
    if !prefix.contains(&gateway) {
        return Err(bad(format!("{gateway} is not inside {prefix}")));
    }
    match prefix {
        IpNet::V4(p) if p.prefix_len() > 30 => {
            return Err(PolicyError::new(
                el,
                Some("prefix"),
                format!("{prefix} has no room for a gateway and a guest (at most /30)"),
            ));
        }
        IpNet::V6(p) if p.prefix_len() > 126 => {
            return Err(PolicyError::new(
                el,
                Some("prefix"),
                format!("{prefix} has no room for a gateway and a guest (at most /126)"),
            ));
        }
        IpNet::V4(p) if gateway == IpAddr::V4(p.network()) => {
            return Err(bad(format!("{gateway} is the network address of {prefix}")));
        }
        IpNet::V4(p) if gateway == IpAddr::V4(p.broadcast()) => {
            return Err(bad(format!(
                "{gateway} is the broadcast address of {prefix}"
            )));
        }
        IpNet::V6(p) if gateway == IpAddr::V6(p.network()) => {
            return Err(bad(format!(
                "{gateway} is the subnet-router anycast address of {prefix}"
            )));
        }
        _ => {}
    }
    Ok(Subnet {
        prefix,
        gateway,
        line: el.line,
    })
}

/// Parses and validates a `<network>` element on its own (see [`check_set`]
/// for what it must agree on with the other networks).
pub fn parse_network(el: &Element) -> Result<Network> {
    if el.ns.as_deref() != Some(NAMESPACE) || el.name != "network" {
        return Err(PolicyError::new(
            el,
            None,
            format!("a network document's root element is <network> in namespace {NAMESPACE}"),
        )
        .into());
    }
    check_shape(el, &["name", "tenant", "vni", "mtu"], true)?;
    let name = name_attr(el, "name")?;
    let tenant = name_attr(el, "tenant")?;
    let vni = number_attr(el, "vni", 1..=MAX_VNI)?.ok_or_else(|| {
        PolicyError::new(el, Some("vni"), format!("is required (1 to {MAX_VNI})"))
    })?;
    let mtu = number_attr(el, "mtu", MTU_RANGE)?.unwrap_or(DEFAULT_MTU);
    let mut net = Network {
        name,
        tenant,
        vni,
        mtu,
        subnets: Vec::new(),
        dns: Vec::new(),
    };
    for c in children_in(el, NAMESPACE, &["subnet", "dns"])? {
        if c.name == "subnet" {
            let s = parse_subnet(c)?;
            if let Some(o) = net.subnets.iter().find(|o| overlap(&o.prefix, &s.prefix)) {
                return Err(PolicyError::new(
                    c,
                    Some("prefix"),
                    format!("{} overlaps {} (line {})", s.prefix, o.prefix, o.line),
                )
                .into());
            }
            net.subnets.push(s);
            if net.subnets.len() > MAX_SUBNETS {
                return Err(
                    PolicyError::new(c, None, format!("more than {MAX_SUBNETS} subnets")).into(),
                );
            }
        } else {
            check_shape(c, &["server"], false)?;
            net.dns.push(address_attr(c, "server")?);
            if net.dns.len() > MAX_DNS {
                return Err(
                    PolicyError::new(c, None, format!("more than {MAX_DNS} DNS servers")).into(),
                );
            }
        }
    }
    if net.subnets.is_empty() {
        return Err(PolicyError::new(el, None, "a network needs at least one <subnet>").into());
    }
    Ok(net)
}

/// Parses a network document.
pub fn parse_document(text: &str) -> Result<Network> {
    parse_network(&xml_tree::parse(text)?)
}

fn overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(b) || b.contains(a)
}

/// Why `new` cannot join the networks `others` (which do not include an
/// earlier definition of the same name): another network has its VNI, or
/// one of its subnets overlaps a subnet of another network of its tenant.
/// Subnets of different tenants may overlap.
pub fn check_set<'a>(
    new: &Network,
    others: impl IntoIterator<Item = &'a Network>,
) -> std::result::Result<(), String> {
    for o in others {
        if o.vni == new.vni {
            return Err(format!(
                "network {}: VNI {} is already network {}'s",
                new.name, new.vni, o.name
            ));
        }
        if o.tenant != new.tenant {
            if tenant_id(&o.tenant) == tenant_id(&new.tenant) {
                return Err(format!(
                    "network {}: tenant {} has the same id as tenant {} (of network {}); choose another tenant name",
                    new.name, new.tenant, o.tenant, o.name
                ));
            }
            continue;
        }
        for s in &new.subnets {
            if let Some(os) = o.subnets.iter().find(|os| overlap(&os.prefix, &s.prefix)) {
                return Err(format!(
                    "network {}: line {}: subnet {} overlaps {} of network {} (tenant {})",
                    new.name, s.line, s.prefix, os.prefix, o.name, o.tenant
                ));
            }
        }
    }
    Ok(())
}

/// Checks the networks a policy's interfaces join: each must be defined
/// (`lookup` finds definitions by name), and each address prefix of such
/// an interface must lie inside one of its network's subnets.
pub fn check_policy(
    policy: &crate::policy::Policy,
    lookup: impl Fn(&str) -> Option<Network>,
) -> std::result::Result<(), PolicyError> {
    for ip in &policy.interfaces {
        let Some(r) = &ip.network else { continue };
        let Some(net) = lookup(&r.name) else {
            return Err(PolicyError {
                line: r.line,
                element: "hookd:network".into(),
                attribute: Some("name".into()),
                message: format!(
                    "no network '{}' is defined on this host (hookctl network list; hookctl network define FILE)",
                    r.name
                ),
            });
        };
        for a in &ip.addresses {
            if !net.contains(a) {
                let subnets: Vec<String> =
                    net.subnets.iter().map(|s| s.prefix.to_string()).collect();
                return Err(PolicyError {
                    line: ip.line,
                    element: "hookd:address".into(),
                    attribute: Some("prefix".into()),
                    message: format!(
                        "{a} is not inside a subnet of network {} ({})",
                        net.name,
                        subnets.join(", ")
                    ),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(attrs: &str, body: &str) -> String {
        format!("<network xmlns='urn:hookd:network:1' {attrs}>\n{body}\n</network>")
    }

    const BLUE: &str = "<subnet prefix='198.51.100.0/24' gateway='198.51.100.1'/>\n\
                        <subnet prefix='2001:db8:100::/64' gateway='2001:db8:100::1'/>";

    fn err(text: &str) -> String {
        parse_document(text).unwrap_err().to_string()
    }

    #[test]
    fn parses_the_design_document() {
        let n = parse_document(&doc("name='blue' tenant='acme' vni='10010'", BLUE)).unwrap();
        assert_eq!(
            (n.name.as_str(), n.tenant.as_str(), n.vni),
            ("blue", "acme", 10010)
        );
        assert_eq!(n.mtu, DEFAULT_MTU);
        assert_eq!(n.subnets.len(), 2);
        assert_eq!(n.subnets[0].line, 2);
        assert_eq!(n.subnets[1].gateway.to_string(), "2001:db8:100::1");
        let a: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(
            n.subnet_of(a).unwrap().prefix.to_string(),
            "198.51.100.0/24"
        );
        assert!(n.contains(&"198.51.100.7/32".parse().unwrap()));
        assert!(!n.contains(&"198.51.0.0/16".parse().unwrap()));
    }

    #[test]
    fn options() {
        let n = parse_document(&doc(
            "name='b' tenant='t' vni='1' mtu='9000'",
            "<subnet prefix='192.0.2.0/24' gateway='192.0.2.1'/><dns server='192.0.2.53'/>",
        ))
        .unwrap();
        assert_eq!(n.mtu, 9000);
        assert_eq!(n.dns, vec!["192.0.2.53".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn errors_name_element_attribute_and_line() {
        let cases = [
            (
                doc("tenant='t' vni='1'", BLUE),
                "line 1: <network> attribute 'name': is required",
            ),
            (
                doc("name='a/b' tenant='t' vni='1'", BLUE),
                "'a/b' is not a valid name",
            ),
            (
                doc("name='.x' tenant='t' vni='1'", BLUE),
                "'.x' is not a valid name",
            ),
            (
                doc("name='b' tenant='' vni='1'", BLUE),
                "'' is not a valid tenant",
            ),
            (
                doc("name='b' tenant='t' vni='0'", BLUE),
                "attribute 'vni': '0' is not a number from 1 to 16777215",
            ),
            (
                doc("name='b' tenant='t' vni='16777216'", BLUE),
                "from 1 to 16777215",
            ),
            (
                doc("name='b' tenant='t'", BLUE),
                "attribute 'vni': is required",
            ),
            (
                doc("name='b' tenant='t' vni='1' mtu='100'", BLUE),
                "'100' is not a number from 1280 to 9000",
            ),
            (
                doc("name='b' tenant='t' vni='1' colour='red'", BLUE),
                "unknown attribute 'colour'",
            ),
            (
                doc("name='b' tenant='t' vni='1'", ""),
                "a network needs at least one <subnet>",
            ),
            (
                doc(
                    "name='b' tenant='t' vni='1'",
                    "<subnet prefix='192.0.2.0/24' gateway='198.51.100.1'/>",
                ),
                "line 2: <subnet> attribute 'gateway': 198.51.100.1 is not inside 192.0.2.0/24",
            ),
            (
                doc(
                    "name='b' tenant='t' vni='1'",
                    "<subnet prefix='192.0.2.0/24' gateway='192.0.2.0'/>",
                ),
                "network address",
            ),
            (
                doc(
                    "name='b' tenant='t' vni='1'",
                    "<subnet prefix='192.0.2.0/24' gateway='192.0.2.255'/>",
                ),
                "broadcast address",
            ),
            (
                doc(
                    "name='b' tenant='t' vni='1'",
                    "<subnet prefix='192.0.2.5/24' gateway='192.0.2.1'/>",
                ),
                "attribute 'prefix': '192.0.2.5/24' has host bits set",
            ),
            (
                doc(
                    "name='b' tenant='t' vni='1'",
                    "<subnet prefix='192.0.2.4/31' gateway='192.0.2.4'/>",
                ),
                "no room for a gateway",
            ),
            (
                doc(
                    "name='b' tenant='t' vni='1'",
                    "<subnet prefix='192.0.2.0/24'/>",
                ),
                "attribute 'gateway': is required",
            ),
            (
                doc(
                    "name='b' tenant='t' vni='1'",
                    "<subnet prefix='192.0.2.0/24' gateway='192.0.2.1'/>\n<subnet prefix='192.0.2.128/25' gateway='192.0.2.129'/>",
                ),
                "line 3: <subnet> attribute 'prefix': 192.0.2.128/25 overlaps 192.0.2.0/24 (line 2)",
            ),
            (
                doc("name='b' tenant='t' vni='1'", "<route/>"),
                "unknown element in <network> (allowed: subnet, dns)",
            ),
            (
                "<network name='b' tenant='t' vni='1'/>".to_string(),
                "root element is <network> in namespace urn:hookd:network:1",
            ),
            ("<network".to_string(), "line 1"),
        ];
        for (text, want) in cases {
            let e = err(&text);
            assert!(e.contains(want), "{text}\n  gave: {e}\n  want: {want}");
        }
    }

    fn net(name: &str, tenant: &str, vni: u32, prefix: &str, gw: &str) -> Network {
        parse_document(&doc(
            &format!("name='{name}' tenant='{tenant}' vni='{vni}'"),
            &format!("<subnet prefix='{prefix}' gateway='{gw}'/>"),
        ))
        .unwrap()
    }

    #[test]
    fn networks_agree_on_vnis_and_tenant_subnets() {
        let blue = net("blue", "acme", 10, "198.51.100.0/24", "198.51.100.1");
        let red = net("red", "acme", 11, "198.51.100.128/25", "198.51.100.129");
        let e = check_set(&red, [&blue]).unwrap_err();
        assert!(
            e.contains(
                "subnet 198.51.100.128/25 overlaps 198.51.100.0/24 of network blue (tenant acme)"
            ),
            "{e}"
        );
        // Another tenant may use the same addresses.
        let other = net("green", "globex", 12, "198.51.100.0/24", "198.51.100.1");
        check_set(&other, [&blue]).unwrap();
        // But never another network's VNI.
        let dup = net("grey", "globex", 10, "203.0.113.0/24", "203.0.113.1");
        let e = check_set(&dup, [&blue, &other]).unwrap_err();
        assert!(e.contains("VNI 10 is already network blue's"), "{e}");
    }

    #[test]
    fn a_policy_joins_defined_networks_with_addresses_inside_them() {
        let blue = net("blue", "acme", 10, "198.51.100.0/24", "198.51.100.1");
        let lookup = |n: &str| (n == "blue").then(|| blue.clone());
        let policy = |body: &str| {
            let root = xml_tree::parse(&format!(
                "<hookd:policy xmlns:hookd='urn:hookd:policy:1'>\n<hookd:interface>{body}</hookd:interface></hookd:policy>"
            ))
            .unwrap();
            crate::policy::parse_policy(&root).unwrap()
        };
        check_policy(
            &policy("<hookd:network name='blue'/><hookd:address prefix='198.51.100.10/32'/>"),
            lookup,
        )
        .unwrap();
        // No network named: nothing to check.
        check_policy(&policy("<hookd:address prefix='203.0.113.1/32'/>"), lookup).unwrap();
        let e = check_policy(&policy("<hookd:network name='red'/>"), lookup).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2: <hookd:network> attribute 'name': no network 'red' is defined on this host (hookctl network list; hookctl network define FILE)"
        );
        let e = check_policy(
            &policy("<hookd:network name='blue'/><hookd:address prefix='203.0.113.1/32'/>"),
            lookup,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("<hookd:address> attribute 'prefix': 203.0.113.1/32 is not inside a subnet of network blue (198.51.100.0/24)"),
            "{e}"
        );
    }

    #[test]
    fn tenant_ids_and_gateway_macs_are_the_same_everywhere() {
        // FNV-1a, fixed: a host computing another id would route apart.
        assert_eq!(tenant_id(""), 0x811c_9dc5);
        assert_eq!(tenant_id("a"), 0xe40c_292c);
        assert_ne!(tenant_id("acme"), tenant_id("globex"));
        assert_eq!(gateway_mac(10010).to_string(), "02:68:6b:00:27:1a");
        assert_eq!(gateway_mac(MAX_VNI).to_string(), "02:68:6b:ff:ff:ff");
    }
}
