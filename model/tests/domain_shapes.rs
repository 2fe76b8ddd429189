//! Parsing and planning of real libvirt domain XML shapes (fixtures/).

use hookd_model::domain::{self, DomainError};
use hookd_model::plan::{self, NicMode, Stage};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn network_interface_with_unrelated_metadata_is_unmanaged() {
    let d = domain::parse(&fixture("network-nat.xml")).unwrap();
    assert_eq!(d.name, "web1");
    assert_eq!(d.uuid, "6f1a1b0e-2b7a-4c55-9a57-3b3f4f0f0a01");
    assert!(d.policy.is_none());
    assert_eq!(d.interfaces.len(), 1);
    let n = &d.interfaces[0];
    assert_eq!(
        (n.kind.as_str(), n.target_dev.as_deref(), n.alias.as_deref()),
        ("network", Some("vnet2"), Some("net0"))
    );
    assert_eq!(n.mac.unwrap().to_string(), "52:54:00:6b:3c:58");
    let p = plan::plan_domain(&d, true, Stage::TapsExist).unwrap();
    assert_eq!(p[0].mode, NicMode::CountersOnly);
    let p = plan::plan_domain(&d, false, Stage::TapsExist).unwrap();
    assert!(matches!(p[0].mode, NicMode::NotAttached { .. }));
}

#[test]
fn bridge_domain_with_policy_on_two_nics() {
    let d = domain::parse(&fixture("bridge-policy-multi.xml")).unwrap();
    assert_eq!(d.name, "db & cache");
    let pol = d.policy.as_ref().unwrap();
    assert_eq!(pol.interfaces.len(), 2);
    let p = plan::plan_domain(&d, true, Stage::TapsExist).unwrap();
    assert_eq!(p.len(), 2);
    let NicMode::Enforced(e) = &p[0].mode else {
        panic!("{:?}", p[0])
    };
    let a = &e.anti_spoofing;
    let names: Vec<String> = a.prefixes.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        names,
        [
            "192.0.2.10/32",
            "2001:db8::10/128",
            "fe80::5054:ff:fe00:a/128"
        ]
    );
    assert!(a.checks_ip() && !a.allow_dhcp_server && !a.allow_router_advertisements);
    let NicMode::Enforced(e) = &p[1].mode else {
        panic!()
    };
    assert!(e.anti_spoofing.allow_dhcp_server);
    assert_eq!(p[1].tap.as_deref(), Some("vnet1"));
}

#[test]
fn ethernet_tap_without_policy_is_counted() {
    let d = domain::parse(&fixture("ethernet-unmanaged.xml")).unwrap();
    let p = plan::plan_domain(&d, true, Stage::TapsExist).unwrap();
    assert_eq!(p[0].tap.as_deref(), Some("tap-tiny"));
    assert_eq!(p[0].mode, NicMode::CountersOnly);
}

#[test]
fn nics_without_a_host_tap_are_left_alone_when_unmanaged() {
    let d = domain::parse(&fixture("exotic-nics.xml")).unwrap();
    let kinds: Vec<&str> = d.interfaces.iter().map(|i| i.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "direct",
            "vhostuser",
            "user",
            "hostdev",
            "network",
            "network"
        ]
    );
    let p = plan::plan_domain(&d, true, Stage::TapsExist).unwrap();
    for nic in &p[..5] {
        assert!(matches!(nic.mode, NicMode::NotAttached { .. }), "{nic:?}");
    }
    // a network NIC whose XML has no tap (defined, not running)
    assert!(matches!(&p[5].mode, NicMode::NotAttached { reason } if reason.contains("target dev")));
    assert_eq!(
        plan::plan_domain(&d, true, Stage::BeforeTaps).unwrap()[5].mode,
        NicMode::CountersOnly
    );
}

#[test]
fn policy_on_a_nic_hookd_cannot_filter_is_refused() {
    let d = domain::parse(&fixture("policy-on-hostdev.xml")).unwrap();
    let e = plan::plan_domain(&d, true, Stage::BeforeTaps)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("hostdev") && e.contains("unprotected") && e.starts_with("line 12"),
        "{e}"
    );
}

#[test]
fn invalid_policy_names_element_attribute_and_line() {
    let e = domain::parse(&fixture("bad-port.xml")).unwrap_err();
    assert!(e.is_policy_error());
    assert_eq!(
        e.to_string(),
        "line 8: <hookd:rule> attribute 'ports': port 70000 is out of range 1-65535"
    );
}

#[test]
fn domain_without_devices_or_uuid() {
    let d = domain::parse(&fixture("no-devices.xml")).unwrap();
    assert_eq!(d.name, "headless");
    assert!(d.interfaces.is_empty() && d.uuid.is_empty());
}

#[test]
fn documents_that_are_not_domains() {
    assert!(matches!(
        domain::parse("<network><name>x</name></network>"),
        Err(DomainError::NotADomain { .. })
    ));
    assert!(matches!(
        domain::parse("<domain><uuid>x</uuid></domain>"),
        Err(DomainError::Missing {
            missing: "name",
            ..
        })
    ));
    let e = domain::parse(
        "<domain><name>a</name><devices><interface type='bridge'><mac address='zz'/></interface></devices></domain>",
    );
    assert!(matches!(e, Err(DomainError::BadMac { .. })));
    let two = "<domain><name>a</name><metadata><p xmlns='urn:hookd:policy:1'/><p xmlns='urn:hookd:policy:1'/></metadata></domain>";
    assert!(matches!(
        domain::parse(two),
        Err(DomainError::TwoPolicies { .. })
    ));
    let wrong = "<domain><name>a</name><metadata><h:rules xmlns:h='urn:hookd:policy:1'/></metadata></domain>";
    assert!(
        domain::parse(wrong)
            .unwrap_err()
            .to_string()
            .contains("<h:rules>")
    );
}

#[test]
fn hook_policy_detection_fails_closed() {
    assert!(domain::mentions_hookd_policy(&fixture(
        "bridge-policy-multi.xml"
    )));
    assert!(domain::mentions_hookd_policy(&fixture("bad-port.xml")));
    assert!(!domain::mentions_hookd_policy(&fixture("network-nat.xml")));
    // broken XML that mentions hookd's namespace counts as carrying policy
    assert!(domain::mentions_hookd_policy(
        "<domain><metadata><x xmlns='urn:hookd:policy:1'>"
    ));
    assert!(!domain::mentions_hookd_policy("<domain>"));
}

#[test]
fn explain_renders_what_would_be_enforced() {
    let ex = hookd_model::explain::explain(&fixture("bridge-policy-multi.xml")).unwrap();
    let text = ex.render();
    assert!(text.contains("managed"), "{text}");
    assert!(
        text.contains("nic 52:54:00:00:00:0a type bridge tap vnet0: anti-spoofing"),
        "{text}"
    );
    assert!(
        text.contains("192.0.2.10/32, 2001:db8::10/128, fe80::5054:ff:fe00:a/128"),
        "{text}"
    );
    assert!(
        text.contains("allow tcp ports 5432 remote 198.51.100.0/24"),
        "{text}"
    );
    let err = hookd_model::explain::explain(&fixture("bad-port.xml")).unwrap_err();
    assert!(err.contains("line 8"), "{err}");
}

#[test]
fn rules_too_large_for_the_maps_are_refused_whole() {
    // 16,000 rules each spanning many aligned port blocks.
    let rules: String = (0..16_000)
        .map(|i| format!("<hookd:rule action='allow' protocol='tcp' ports='1-65534' remote='2001:db8:{:x}::/48'/>", i))
        .collect();
    let xml = format!(
        "<domain><name>big</name><metadata><hookd:policy xmlns:hookd='urn:hookd:policy:1'>\n<hookd:interface>\
         <hookd:ingress default='deny'>{rules}</hookd:ingress></hookd:interface></hookd:policy></metadata>\
         <devices><interface type='bridge'><mac address='52:54:00:00:00:0a'/></interface></devices></domain>"
    );
    let d = domain::parse(&xml).unwrap();
    let e = plan::plan_domain(&d, true, Stage::BeforeTaps)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("line 2: <hookd:interface>")
            && e.contains("<hookd:ingress> rules compile to"),
        "{e}"
    );
}

#[test]
fn explain_shows_what_a_network_serves_its_nic() {
    let net = hookd_model::network::parse_document(
        "<network xmlns='urn:hookd:network:1' name='blue' tenant='acme' vni='10010'>\
         <subnet prefix='198.51.100.0/24' gateway='198.51.100.1'/>\
         <subnet prefix='2001:db8:10::/64' gateway='2001:db8:10::1'/>\
         <dns server='198.51.100.53'/></network>",
    )
    .unwrap();
    let xml = |v6: &str| {
        format!(
            "<domain type='qemu'><name>nb1</name><metadata><hookd:policy xmlns:hookd='urn:hookd:policy:1'>\
             <hookd:interface mac='52:54:00:00:01:01'><hookd:network name='blue'/>\
             <hookd:address prefix='198.51.100.10/32'/><hookd:address prefix='{v6}'/></hookd:interface>\
             </hookd:policy></metadata><devices><interface type='ethernet'><mac address='52:54:00:00:01:01'/>\
             </interface></devices></domain>"
        )
    };
    let out = hookd_model::explain::explain_with(
        &xml("2001:db8:10::5054:ff:fe00:101/128"),
        std::slice::from_ref(&net),
    )
    .unwrap()
    .render();
    assert!(out.contains("network blue (tenant acme, VNI 10010, MTU 1500): gateway 198.51.100.1, 2001:db8:10::1 (MAC 02:68:6b:00:27:1a)"), "{out}");
    assert!(out.contains("DHCPv4 serves: 198.51.100.10, mask 255.255.255.0, router 198.51.100.1, MTU 1500, DNS 198.51.100.53"), "{out}");
    assert!(out.contains("default route via fe80::68:6bff:fe00:271a, MTU 1500, prefix 2001:db8:10::/64 autonomous"), "{out}");
    // Not the EUI-64 address: on-link, and DHCPv6 gives the address.
    let other = hookd_model::explain::explain_with(&xml("2001:db8:10::10/128"), &[net])
        .unwrap()
        .render();
    assert!(
        other.contains("prefix 2001:db8:10::/64 on-link, managed: DHCPv6 serves 2001:db8:10::10"),
        "{other}"
    );
    // Without the definition, the network is only named.
    let bare = hookd_model::explain::explain(&xml("2001:db8:10::10/128"))
        .unwrap()
        .render();
    assert!(
        bare.contains("network blue (definition not known here"),
        "{bare}"
    );
    assert!(!bare.contains("not implemented"), "{bare}");
}

#[test]
fn the_same_domain_with_its_lines_moved() {
    // libvirt's XML at `started` has elements `start`'s lacked, above the
    // NICs and the policy: the domain is the same, its lines are not.
    let xml = fixture("bridge-policy-multi.xml");
    let start = domain::parse(&xml).unwrap();
    let moved = xml.replacen("<name>", "<resource/>\n<name>", 1).replacen(
        "<devices>",
        "<seclabel/>\n\n<devices>",
        1,
    );
    let started = domain::parse(&moved).unwrap();
    assert_ne!(start, started, "the lines did move");
    assert!(start.same_apart_from_lines(&started));
    // A changed rule, or a NIC on another tap, is a different domain.
    let changed = domain::parse(&xml.replacen("ports=\"5432\"", "ports=\"5433\"", 1)).unwrap();
    assert!(!start.same_apart_from_lines(&changed));
    let retapped = domain::parse(&xml.replacen("vnet1", "vnet9", 1)).unwrap();
    assert!(!start.same_apart_from_lines(&retapped));
}
