//! A network definition (`DefineNetwork`, `hookctl network define`, files
//! in /etc/hookd/networks.d): parsed, checked against a set it would join,
//! and against policies that name it.
#![no_main]

use hookd_model::{domain, network};
use libfuzzer_sys::fuzz_target;

const OTHER: &str = r#"<network xmlns="urn:hookd:network:1" name="blue" tenant="acme" vni="10010">
  <subnet prefix="198.51.100.0/24" gateway="198.51.100.1"/>
  <subnet prefix="2001:db8:100::/64" gateway="2001:db8:100::1"/>
</network>"#;

const DOMAIN: &str = r#"<domain><name>vm</name><devices>
<interface type='ethernet'><mac address='52:54:00:00:00:0a'/></interface></devices>
<metadata><hookd:policy xmlns:hookd="urn:hookd:policy:1">
<hookd:interface mac="52:54:00:00:00:0a"><hookd:network name="NAME"/>
<hookd:address prefix="198.51.100.10/32"/></hookd:interface></hookd:policy></metadata></domain>"#;

fuzz_target!(|data: &[u8]| {
    let Ok(xml) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(net) = network::parse_document(xml) else {
        return;
    };
    let other = network::parse_document(OTHER).expect("the fixed network parses");
    let _ = network::check_set(&net, [&other]);
    assert!(
        network::check_set(&net, [&net]).is_err(),
        "a network does not conflict with itself"
    );
    for s in &net.subnets {
        assert!(net.contains(&s.prefix));
    }
    // A policy naming it: the name is an XML attribute, so escape it.
    let name = net
        .name
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;");
    if let Ok(dom) = domain::parse(&DOMAIN.replace("NAME", &name))
        && let Some(p) = &dom.policy
    {
        let _ = network::check_policy(p, |n| (n == net.name).then(|| net.clone()));
    }
});
