//! Parsing and validating `<hookd:policy>`: every error names the
//! element, attribute and line, and nothing of an invalid policy is used.

use super::*;
use crate::xml_tree::Element;
use ipnet::IpNet;
use std::net::IpAddr;

/// A policy error, naming where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: <{element}>{}: {message}", attribute.as_ref().map(|a| format!(" attribute '{a}'")).unwrap_or_default())]
pub struct PolicyError {
    pub line: u32,
    pub element: String,
    pub attribute: Option<String>,
    pub message: String,
}

impl PolicyError {
    pub(crate) fn new(el: &Element, attribute: Option<&str>, message: impl Into<String>) -> Self {
        PolicyError {
            line: el.line,
            element: el.qname.to_string(),
            attribute: attribute.map(str::to_string),
            message: message.into(),
        }
    }
}

type Result<T> = std::result::Result<T, PolicyError>;

/// Refuses attributes other than `allowed`, and any child element when
/// `children` is false.
pub(crate) fn check_shape(el: &Element, allowed: &[&str], children: bool) -> Result<()> {
    for a in &el.attrs {
        if a.ns.is_some() || !allowed.contains(&a.name.as_str()) {
            let mut msg = match &a.ns {
                Some(ns) => format!(
                    "attribute '{}' in namespace {ns} is not accepted; write it without a prefix",
                    a.name
                ),
                None => format!("unknown attribute '{}'", a.name),
            };
            if !allowed.is_empty() {
                msg += &format!(" (allowed: {})", allowed.join(", "));
            }
            return Err(PolicyError::new(el, Some(&a.name), msg));
        }
    }
    if !children && let Some(c) = el.children.first() {
        return Err(PolicyError::new(
            c,
            None,
            format!("<{}> may not contain elements", el.qname),
        ));
    }
    if !el.text.trim().is_empty() {
        return Err(PolicyError::new(
            el,
            None,
            "text content is not allowed here",
        ));
    }
    Ok(())
}

/// The hookd-namespace children of `el`, refusing elements of other
/// namespaces and names not in `allowed`.
fn hookd_children<'a>(el: &'a Element, allowed: &[&str]) -> Result<Vec<&'a Element>> {
    children_in(el, NAMESPACE, allowed)
}

/// The children of `el` in namespace `ns`, refusing elements of other
/// namespaces and names not in `allowed`.
pub(crate) fn children_in<'a>(
    el: &'a Element,
    ns: &str,
    allowed: &[&str],
) -> Result<Vec<&'a Element>> {
    el.children
        .iter()
        .map(|c| {
            if c.ns.as_deref() != Some(ns) {
                return Err(PolicyError::new(
                    c,
                    None,
                    format!("element is not in hookd's namespace {ns}"),
                ));
            }
            if !allowed.contains(&c.name.as_str()) {
                return Err(PolicyError::new(
                    c,
                    None,
                    format!(
                        "unknown element in <{}> (allowed: {})",
                        el.qname,
                        allowed.join(", ")
                    ),
                ));
            }
            Ok(c)
        })
        .collect()
}

fn parse_bool(el: &Element, attr: &str) -> Result<bool> {
    match el.attr(attr) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(v) => Err(PolicyError::new(
            el,
            Some(attr),
            format!("'{v}' is not true or false"),
        )),
    }
}

/// Connections one NIC's conntrack table may be made to hold.
pub const CONNTRACK_ENTRIES: std::ops::RangeInclusive<u32> = 1024..=4_194_304;

fn parse_conntrack_entries(el: &Element) -> Result<Option<u32>> {
    let Some(v) = el.attr("conntrack-entries") else {
        return Ok(None);
    };
    match v.trim().parse::<u32>() {
        Ok(n) if CONNTRACK_ENTRIES.contains(&n) => Ok(Some(n)),
        _ => Err(PolicyError::new(
            el,
            Some("conntrack-entries"),
            format!(
                "'{v}' is not a number of connections from {} to {}",
                CONNTRACK_ENTRIES.start(),
                CONNTRACK_ENTRIES.end()
            ),
        )),
    }
}

fn parse_action(el: &Element, attr: &str, value: Option<&str>) -> Result<Action> {
    match value {
        Some("allow") => Ok(Action::Allow),
        Some("deny") => Ok(Action::Deny),
        Some(v) => Err(PolicyError::new(
            el,
            Some(attr),
            format!("'{v}' is not allow or deny"),
        )),
        None => Err(PolicyError::new(
            el,
            Some(attr),
            "is required (allow or deny)",
        )),
    }
}

/// Parses an IP prefix; a bare address is a host prefix. Host bits must be
/// zero so that `192.0.2.10/24` is not silently widened or narrowed.
pub fn parse_prefix(s: &str) -> std::result::Result<IpNet, String> {
    let net: IpNet = match s.parse() {
        Ok(n) => n,
        Err(_) => match s.parse::<IpAddr>() {
            Ok(a) => IpNet::from(a),
            Err(_) => {
                return Err(format!(
                    "'{s}' is not an IP prefix (expected e.g. 192.0.2.0/24 or 2001:db8::/64)"
                ));
            }
        },
    };
    if net.trunc() != net {
        return Err(format!(
            "'{s}' has host bits set: write {} for the network or {}/{} for the host",
            net.trunc(),
            net.addr(),
            net.max_prefix_len()
        ));
    }
    Ok(net)
}

/// Does `net` overlap ::ffff:0:0/96 (contain it, or lie inside it)?
fn overlaps_ipv4_mapped(net: &ipnet::Ipv6Net) -> bool {
    let mapped = u128::from(std::net::Ipv6Addr::from([0, 0, 0, 0, 0, 0xffff, 0, 0]));
    if net.prefix_len() <= 96 {
        net.contains(&std::net::Ipv6Addr::from(mapped))
    } else {
        u128::from(net.addr()) >> 32 == mapped >> 32
    }
}

pub(crate) fn prefix_attr(el: &Element, attr: &str) -> Result<Option<IpNet>> {
    el.attr(attr)
        .map(|v| parse_prefix(v.trim()).map_err(|m| PolicyError::new(el, Some(attr), m)))
        .transpose()
}

/// The IP protocol number of a name (tcp, udp, icmp, icmpv6, sctp) or a
/// number 0-255.
pub fn protocol_number(s: &str) -> Option<u8> {
    PROTOCOL_NAMES
        .iter()
        .find(|(name, _)| *name == s)
        .map(|(_, n)| *n)
        .or_else(|| s.parse().ok())
}

fn parse_protocol(el: &Element) -> Result<Protocol> {
    let v = el.attr("protocol").unwrap_or("any");
    if v == "any" {
        return Ok(Protocol::Any);
    }
    protocol_number(v).map(Protocol::Number).ok_or_else(|| {
        let names: Vec<&str> = PROTOCOL_NAMES.iter().map(|(name, _)| *name).collect();
        PolicyError::new(
            el,
            Some("protocol"),
            format!("'{v}' is not {}, any or a number 0-255", names.join(", ")),
        )
    })
}

fn parse_port(el: &Element, s: &str) -> Result<u16> {
    match s.trim().parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        Ok(p) => Err(PolicyError::new(
            el,
            Some("ports"),
            format!("port {p} is out of range 1-65535"),
        )),
        Err(_) => Err(PolicyError::new(
            el,
            Some("ports"),
            format!("'{}' is not a port number", s.trim()),
        )),
    }
}

/// `22,443,8000-8080`
fn parse_ports(el: &Element, v: &str) -> Result<Vec<PortRange>> {
    let mut out = Vec::new();
    for item in v.split(',') {
        let (first, last) = match item.split_once('-') {
            Some((a, b)) => (parse_port(el, a)?, parse_port(el, b)?),
            None => {
                let p = parse_port(el, item)?;
                (p, p)
            }
        };
        if first > last {
            return Err(PolicyError::new(
                el,
                Some("ports"),
                format!("range {first}-{last} is backwards"),
            ));
        }
        out.push(PortRange { first, last });
    }
    if out.len() > MAX_PORT_RANGES {
        return Err(PolicyError::new(
            el,
            Some("ports"),
            format!("more than {MAX_PORT_RANGES} ports or ranges"),
        ));
    }
    Ok(out)
}

fn parse_u8(el: &Element, attr: &str) -> Result<Option<u8>> {
    el.attr(attr)
        .map(|v| {
            v.trim().parse::<u8>().map_err(|_| {
                PolicyError::new(el, Some(attr), format!("'{v}' is not a number 0-255"))
            })
        })
        .transpose()
}

fn parse_rule(el: &Element) -> Result<Rule> {
    check_shape(
        el,
        &[
            "action",
            "protocol",
            "ports",
            "icmp-type",
            "icmp-code",
            "remote",
            "log",
        ],
        false,
    )?;
    let protocol = parse_protocol(el)?;
    let ports = match el.attr("ports") {
        Some(v) if protocol.has_ports() => parse_ports(el, v)?,
        Some(_) => {
            return Err(PolicyError::new(
                el,
                Some("ports"),
                "ports need protocol tcp, udp or sctp",
            ));
        }
        None => Vec::new(),
    };
    let icmp_type = parse_u8(el, "icmp-type")?;
    let icmp_code = parse_u8(el, "icmp-code")?;
    if (icmp_type.is_some() || icmp_code.is_some()) && !protocol.is_icmp() {
        let a = if icmp_type.is_some() {
            "icmp-type"
        } else {
            "icmp-code"
        };
        return Err(PolicyError::new(
            el,
            Some(a),
            "needs protocol icmp or icmpv6",
        ));
    }
    if icmp_code.is_some() && icmp_type.is_none() {
        return Err(PolicyError::new(el, Some("icmp-code"), "needs icmp-type"));
    }
    let remote = prefix_attr(el, "remote")?;
    // IPv4 remotes live in the IPv4-mapped range of the tables: an IPv6
    // remote over it would also match IPv4 packets.
    if let Some(IpNet::V6(v6)) = remote
        && overlaps_ipv4_mapped(&v6)
    {
        return Err(PolicyError::new(
            el,
            Some("remote"),
            format!(
                "{v6} overlaps the IPv4-mapped range ::ffff:0:0/96; leave remote out to match any address, or write IPv4 prefixes as IPv4"
            ),
        ));
    }
    match (protocol, remote) {
        (Protocol::Number(PROTO_ICMP), Some(IpNet::V6(_))) => {
            return Err(PolicyError::new(
                el,
                Some("remote"),
                "protocol icmp is IPv4 only; use icmpv6 for an IPv6 remote",
            ));
        }
        (Protocol::Number(PROTO_ICMPV6), Some(IpNet::V4(_))) => {
            return Err(PolicyError::new(
                el,
                Some("remote"),
                "protocol icmpv6 is IPv6 only; use icmp for an IPv4 remote",
            ));
        }
        _ => {}
    }
    Ok(Rule {
        action: parse_action(el, "action", el.attr("action"))?,
        protocol,
        ports,
        icmp_type,
        icmp_code,
        remote,
        log: parse_bool(el, "log")?,
        line: el.line,
    })
}

fn parse_direction(el: &Element) -> Result<DirectionRules> {
    check_shape(el, &["default"], true)?;
    let default = parse_action(el, "default", Some(el.attr("default").unwrap_or("allow")))?;
    let rules = hookd_children(el, &["rule"])?
        .into_iter()
        .map(parse_rule)
        .collect::<Result<Vec<_>>>()?;
    if rules.len() > MAX_RULES {
        return Err(PolicyError::new(
            el,
            None,
            format!("more than {MAX_RULES} rules"),
        ));
    }
    Ok(DirectionRules { default, rules })
}

fn parse_interface(el: &Element) -> Result<InterfacePolicy> {
    check_shape(
        el,
        &[
            "mac",
            "allow-dhcp-server",
            "allow-router-advertisements",
            "conntrack-entries",
        ],
        true,
    )?;
    let mac = el
        .attr("mac")
        .map(|m| {
            m.trim()
                .parse::<MacAddr>()
                .map_err(|e| PolicyError::new(el, Some("mac"), e.to_string()))
        })
        .transpose()?;
    if let Some(m) = mac.filter(MacAddr::is_multicast) {
        return Err(PolicyError::new(
            el,
            Some("mac"),
            format!("{m} is a multicast address"),
        ));
    }
    let mut ifp = InterfacePolicy {
        mac,
        addresses: Vec::new(),
        ingress: None,
        egress: None,
        allow_dhcp_server: parse_bool(el, "allow-dhcp-server")?,
        allow_router_advertisements: parse_bool(el, "allow-router-advertisements")?,
        conntrack_entries: parse_conntrack_entries(el)?,
        network: None,
        line: el.line,
    };
    for c in hookd_children(el, &["address", "ingress", "egress", "network", "route"])? {
        match c.name.as_str() {
            "address" => {
                check_shape(c, &["prefix"], false)?;
                let p = prefix_attr(c, "prefix")?
                    .ok_or_else(|| PolicyError::new(c, Some("prefix"), "is required"))?;
                // The data path keeps IPv4 prefixes as IPv4-mapped IPv6
                // (::ffff:a.b.c.d); an IPv6 prefix over that range would
                // silently allow IPv4 sources.
                if let IpNet::V6(v6) = p
                    && overlaps_ipv4_mapped(&v6)
                {
                    return Err(PolicyError::new(
                        c,
                        Some("prefix"),
                        format!(
                            "{p} overlaps the IPv4-mapped range ::ffff:0:0/96; write IPv4 prefixes as IPv4"
                        ),
                    ));
                }
                if ifp.addresses.contains(&p) {
                    return Err(PolicyError::new(
                        c,
                        Some("prefix"),
                        format!("{p} is listed twice"),
                    ));
                }
                ifp.addresses.push(p);
                if ifp.addresses.len() > MAX_ADDRESSES {
                    return Err(PolicyError::new(
                        c,
                        None,
                        format!("more than {MAX_ADDRESSES} addresses"),
                    ));
                }
            }
            "ingress" | "egress" => {
                let slot = if c.name == "ingress" {
                    &mut ifp.ingress
                } else {
                    &mut ifp.egress
                };
                if slot.is_some() {
                    return Err(PolicyError::new(
                        c,
                        None,
                        format!("only one <{}> per interface", c.qname),
                    ));
                }
                *slot = Some(parse_direction(c)?);
            }
            "network" => {
                check_shape(c, &["name"], false)?;
                if ifp.network.is_some() {
                    return Err(PolicyError::new(
                        c,
                        None,
                        format!("only one <{}> per interface", c.qname),
                    ));
                }
                let name = crate::network::name_attr(c, "name")?;
                ifp.network = Some(NetworkRef { name, line: c.line });
            }
            _ => {
                return Err(PolicyError::new(
                    c,
                    None,
                    "<hookd:route> is replaced by <hookd:network name=\"NAME\"/>, which puts the NIC on one of hookd's networks (docs/networks.md)",
                ));
            }
        }
    }
    Ok(ifp)
}

/// Parses and validates a `<hookd:policy>` element.
pub fn parse_policy(el: &Element) -> Result<Policy> {
    check_shape(el, &[], true)?;
    let els = hookd_children(el, &["interface"])?;
    if els.len() > MAX_INTERFACES {
        return Err(PolicyError::new(
            el,
            None,
            format!("more than {MAX_INTERFACES} interfaces"),
        ));
    }
    let mut interfaces: Vec<InterfacePolicy> = Vec::new();
    for c in els {
        let ifp = parse_interface(c)?;
        if ifp.mac.is_none() && !interfaces.is_empty() || interfaces.iter().any(|i| i.mac.is_none())
        {
            return Err(PolicyError::new(
                c,
                Some("mac"),
                "an <interface> without mac covers every NIC and must be the only one",
            ));
        }
        if let Some(prev) = interfaces.iter().find(|i| i.mac == ifp.mac) {
            return Err(PolicyError::new(
                c,
                Some("mac"),
                format!(
                    "duplicate interface: mac {} is already configured at line {}",
                    c.attr("mac").unwrap_or(""),
                    prev.line
                ),
            ));
        }
        interfaces.push(ifp);
    }
    Ok(Policy { interfaces })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml_tree;

    fn parse(inner: &str) -> Result<Policy> {
        let xml = format!("<hookd:policy xmlns:hookd=\"{NAMESPACE}\">\n{inner}\n</hookd:policy>");
        let root = xml_tree::parse(&xml).expect("well-formed");
        parse_policy(&root)
    }

    fn err(inner: &str) -> PolicyError {
        parse(inner).expect_err("should be refused")
    }

    #[test]
    fn design_example_parses() {
        let p = parse(
            r#"<hookd:interface mac="52:54:00:00:00:0a">
      <hookd:address prefix="192.0.2.10/32"/>
      <hookd:address prefix="2001:db8::10/128"/>
      <hookd:ingress default="deny">
        <hookd:rule action="allow" protocol="tcp" ports="22,443,8000-8080" remote="198.51.100.0/24"/>
        <hookd:rule action="allow" protocol="icmp"/>
      </hookd:ingress>
      <hookd:egress default="allow">
        <hookd:rule action="deny" protocol="udp" ports="53" remote="203.0.113.0/24" log="true"/>
      </hookd:egress>
    </hookd:interface>"#,
        )
        .unwrap();
        let i = &p.interfaces[0];
        assert_eq!(i.mac.unwrap().to_string(), "52:54:00:00:00:0a");
        assert_eq!(i.addresses.len(), 2);
        let ing = i.ingress.as_ref().unwrap();
        assert_eq!(ing.default, Action::Deny);
        assert_eq!(
            ing.rules[0].ports,
            vec![
                PortRange {
                    first: 22,
                    last: 22
                },
                PortRange {
                    first: 443,
                    last: 443
                },
                PortRange {
                    first: 8000,
                    last: 8080
                }
            ]
        );
        assert_eq!(ing.rules[0].protocol, Protocol::Number(6));
        assert_eq!(ing.rules[1].line, 7);
        let eg = i.egress.as_ref().unwrap();
        assert!(eg.rules[0].log);
        assert_eq!(eg.default, Action::Allow);
    }

    #[test]
    fn a_nic_may_size_its_own_conntrack_table() {
        let p = parse("<hookd:interface conntrack-entries=\"200000\"/>").unwrap();
        assert_eq!(p.interfaces[0].conntrack_entries, Some(200_000));
        let p = parse("<hookd:interface/>").unwrap();
        assert_eq!(p.interfaces[0].conntrack_entries, None);
        for bad in ["100", "4194305", "lots", "-1", ""] {
            let e = err(&format!("<hookd:interface conntrack-entries=\"{bad}\"/>"));
            assert_eq!(e.attribute.as_deref(), Some("conntrack-entries"), "{bad}");
            assert!(e.to_string().contains("from 1024 to 4194304"), "{e}");
        }
    }

    #[test]
    fn errors_name_element_attribute_and_line() {
        let e = err(
            "<hookd:interface>\n<hookd:ingress>\n<hookd:rule action=\"allow\" protocol=\"tcp\" ports=\"70000\"/></hookd:ingress></hookd:interface>",
        );
        assert_eq!(
            (e.line, e.element.as_str(), e.attribute.as_deref()),
            (4, "hookd:rule", Some("ports"))
        );
        assert!(e.to_string().contains("port 70000 is out of range"), "{e}");
        assert_eq!(
            e.to_string(),
            "line 4: <hookd:rule> attribute 'ports': port 70000 is out of range 1-65535"
        );
    }

    #[test]
    fn invalid_policies_are_refused() {
        let cases = [
            (
                "<hookd:interface><hookd:address prefix=\"::/0\"/></hookd:interface>",
                "prefix",
                "IPv4-mapped",
            ),
            (
                "<hookd:interface><hookd:address prefix=\"::ffff:192.0.2.10/128\"/></hookd:interface>",
                "prefix",
                "IPv4-mapped",
            ),
            (
                "<hookd:interface hookd:mac=\"52:54:00:00:00:0a\"/>",
                "mac",
                "without a prefix",
            ),
            (
                "<hookd:interface><hookd:address prefix=\"192.0.2.300/32\"/></hookd:interface>",
                "prefix",
                "not an IP prefix",
            ),
            (
                "<hookd:interface><hookd:address prefix=\"192.0.2.10/24\"/></hookd:interface>",
                "prefix",
                "host bits",
            ),
            (
                "<hookd:interface><hookd:address prefix=\"192.0.2.0/33\"/></hookd:interface>",
                "prefix",
                "not an IP prefix",
            ),
            (
                "<hookd:interface><hookd:address/></hookd:interface>",
                "prefix",
                "required",
            ),
            ("<hookd:interface mac=\"zz\"/>", "mac", "not a MAC"),
            (
                "<hookd:interface mac=\"01:00:5e:00:00:01\"/>",
                "mac",
                "multicast",
            ),
            (
                "<hookd:interface mac=\"52:54:00:00:00:0a\"/><hookd:interface mac=\"52:54:00:00:00:0A\"/>",
                "mac",
                "duplicate",
            ),
            (
                "<hookd:interface/><hookd:interface mac=\"52:54:00:00:00:0a\"/>",
                "mac",
                "only one",
            ),
            (
                "<hookd:interface mac=\"52:54:00:00:00:0a\"/><hookd:interface/>",
                "mac",
                "only one",
            ),
            (
                "<hookd:interface><hookd:egress><hookd:rule action=\"allow\" protocol=\"gre\"/></hookd:egress></hookd:interface>",
                "protocol",
                "not tcp",
            ),
            (
                "<hookd:interface><hookd:egress><hookd:rule action=\"allow\" protocol=\"256\"/></hookd:egress></hookd:interface>",
                "protocol",
                "not tcp",
            ),
            (
                "<hookd:interface><hookd:egress><hookd:rule action=\"allow\" protocol=\"icmp\" ports=\"1\"/></hookd:egress></hookd:interface>",
                "ports",
                "tcp, udp or sctp",
            ),
            (
                "<hookd:interface><hookd:egress><hookd:rule action=\"allow\" protocol=\"tcp\" ports=\"0\"/></hookd:egress></hookd:interface>",
                "ports",
                "out of range",
            ),
            (
                "<hookd:interface><hookd:egress><hookd:rule action=\"allow\" protocol=\"tcp\" ports=\"90-80\"/></hookd:egress></hookd:interface>",
                "ports",
                "backwards",
            ),
            (
                "<hookd:interface><hookd:egress><hookd:rule action=\"allow\" protocol=\"tcp\" ports=\"http\"/></hookd:egress></hookd:interface>",
                "ports",
                "not a port",
            ),
            (
                "<hookd:interface><hookd:egress><hookd:rule action=\"maybe\"/></hookd:egress></hookd:interface>",
                "action",
                "not allow or deny",
            ),
            (
                "<hookd:interface><hookd:egress><hookd:rule/></hookd:egress></hookd:interface>",
                "action",
                "required",
            ),
            (
                "<hookd:interface><hookd:egress default=\"drop\"/></hookd:interface>",
                "default",
                "not allow or deny",
            ),
            (
                "<hookd:interface><hookd:egress><hookd:rule action=\"deny\" log=\"yes\"/></hookd:egress></hookd:interface>",
                "log",
                "true or false",
            ),
            (
                "<hookd:interface><hookd:egress><hookd:rule action=\"deny\" protocol=\"tcp\" icmp-type=\"8\"/></hookd:egress></hookd:interface>",
                "icmp-type",
                "icmp or icmpv6",
            ),
            (
                "<hookd:interface><hookd:egress><hookd:rule action=\"deny\" protocol=\"icmp\" icmp-code=\"0\"/></hookd:egress></hookd:interface>",
                "icmp-code",
                "needs icmp-type",
            ),
            (
                "<hookd:interface><hookd:egress><hookd:rule action=\"deny\" protocol=\"icmp\" icmp-type=\"300\"/></hookd:egress></hookd:interface>",
                "icmp-type",
                "0-255",
            ),
            (
                "<hookd:interface><hookd:egress><hookd:rule action=\"deny\" protocol=\"icmp\" remote=\"2001:db8::/32\"/></hookd:egress></hookd:interface>",
                "remote",
                "IPv4 only",
            ),
            (
                "<hookd:interface><hookd:egress><hookd:rule action=\"deny\" remote=\"::/0\"/></hookd:egress></hookd:interface>",
                "remote",
                "IPv4-mapped",
            ),
            (
                "<hookd:interface><hookd:egress><hookd:rule action=\"deny\" colour=\"red\"/></hookd:egress></hookd:interface>",
                "colour",
                "unknown attribute",
            ),
            (
                "<hookd:interface><hookd:network/></hookd:interface>",
                "name",
                "required",
            ),
            (
                "<hookd:interface><hookd:network name=\"a b\"/></hookd:interface>",
                "name",
                "'a b' is not a valid name",
            ),
            (
                "<hookd:interface><hookd:network name=\"blue\" gateway=\"192.0.2.1\"/></hookd:interface>",
                "gateway",
                "unknown attribute",
            ),
        ];
        for (xml, attr, msg) in cases {
            let e = err(xml);
            assert_eq!(e.attribute.as_deref(), Some(attr), "{xml}: {e}");
            assert!(e.to_string().contains(msg), "{xml}: {e}");
        }
    }

    #[test]
    fn unknown_or_foreign_elements_are_refused() {
        let e = err("<hookd:interface><hookd:firewall/></hookd:interface>");
        assert_eq!(e.element, "hookd:firewall");
        assert!(e.to_string().contains("unknown element"));
        let e = err("<hookd:interface><other xmlns=\"urn:x\"/></hookd:interface>");
        assert!(e.to_string().contains("not in hookd's namespace"));
        let e = err("<hookd:interface><hookd:ingress/><hookd:ingress/></hookd:interface>");
        assert!(e.to_string().contains("only one"));
        let e = err(
            "<hookd:interface><hookd:address prefix=\"192.0.2.1/32\"><hookd:x/></hookd:address></hookd:interface>",
        );
        assert!(e.to_string().contains("may not contain"));
        let e = err("<hookd:interface>text</hookd:interface>");
        assert!(e.to_string().contains("text content"));
        let e = err(
            "<hookd:interface><hookd:network name=\"a\"/><hookd:network name=\"b\"/></hookd:interface>",
        );
        assert!(e.to_string().contains("only one <hookd:network>"), "{e}");
        // The element reserved earlier is gone, with a pointer to its successor.
        let e = err(
            "<hookd:interface><hookd:route network=\"t1\" gateway=\"192.0.2.1\"/></hookd:interface>",
        );
        assert!(
            e.to_string()
                .contains("replaced by <hookd:network name=\"NAME\"/>"),
            "{e}"
        );
    }

    #[test]
    fn defaults_and_bare_addresses() {
        let p = parse("<hookd:interface><hookd:address prefix=\"192.0.2.10\"/><hookd:ingress/><hookd:network name=\"t1\"/></hookd:interface>").unwrap();
        let i = &p.interfaces[0];
        assert_eq!(i.addresses[0].to_string(), "192.0.2.10/32");
        assert_eq!(i.ingress.as_ref().unwrap().default, Action::Allow);
        assert!(i.egress.is_none());
        assert!(
            p.for_mac(Some("52:54:00:00:00:01".parse().unwrap()))
                .is_some()
        );
        assert_eq!(i.network.as_ref().unwrap().name, "t1");
    }

    #[test]
    fn size_limits() {
        let rules = "<hookd:rule action=\"deny\"/>".repeat(MAX_RULES + 1);
        let e = err(&format!(
            "<hookd:interface><hookd:egress>{rules}</hookd:egress></hookd:interface>"
        ));
        assert!(e.to_string().contains("more than"), "{e}");
        let ports: Vec<String> = (1..=MAX_PORT_RANGES as u32 + 1)
            .map(|p| p.to_string())
            .collect();
        let e = err(&format!(
            "<hookd:interface><hookd:egress><hookd:rule action=\"deny\" protocol=\"tcp\" ports=\"{}\"/></hookd:egress></hookd:interface>",
            ports.join(",")
        ));
        assert_eq!(e.attribute.as_deref(), Some("ports"));
    }
}
