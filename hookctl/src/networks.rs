//! `hookctl network ...`: hookd's networks, defined, removed and shown.

use crate::bus::{call_failed, proxy};
use crate::output::{Outcome, json, read_input, table};
use hookd_dbus::{NetworkDetail, NetworkSummary};

pub async fn define(file: &str, as_json: bool) -> Outcome {
    let xml = read_input(file)?;
    let summary = proxy()
        .await?
        .define_network(&xml)
        .await
        .map_err(call_failed)?;
    said(summary, as_json)
}

/// A change's one-line summary, or `{summary}` with --json.
fn said(summary: String, as_json: bool) -> Outcome {
    if as_json {
        json(&serde_json::json!({ "summary": summary }))
    } else {
        Ok(summary)
    }
}

pub async fn undefine(name: &str, as_json: bool) -> Outcome {
    let summary = proxy()
        .await?
        .undefine_network(name)
        .await
        .map_err(call_failed)?;
    said(summary, as_json)
}

pub async fn list(as_json: bool) -> Outcome {
    let list = proxy().await?.list_networks().await.map_err(call_failed)?;
    if as_json {
        json(&list)
    } else {
        Ok(render_list(&list))
    }
}

pub async fn show(name: &str, as_json: bool) -> Outcome {
    let d = proxy()
        .await?
        .get_network(name)
        .await
        .map_err(call_failed)?;
    if as_json {
        json(&d)
    } else {
        Ok(render_detail(&d))
    }
}

pub fn render_list(list: &[NetworkSummary]) -> String {
    if list.is_empty() {
        return "no networks defined\n".to_string();
    }
    let mut rows = vec![
        ["NAME", "TENANT", "VNI", "SUBNETS", "SOURCE"]
            .map(String::from)
            .to_vec(),
    ];
    for n in list {
        rows.push(vec![
            n.name.clone(),
            n.tenant.clone(),
            n.vni.to_string(),
            n.subnets.join(","),
            n.source.clone(),
        ]);
    }
    table(&rows)
}

pub fn render_detail(d: &NetworkDetail) -> String {
    let mut out = format!(
        "network {}\n  tenant {}\n  VNI {}\n  MTU {}\n  source {}\n",
        d.name, d.tenant, d.vni, d.mtu, d.source
    );
    for s in &d.subnets {
        out += &format!("  subnet {} gateway {}\n", s.prefix, s.gateway);
    }
    for a in &d.dns {
        out += &format!("  dns {a}\n");
    }
    if !d.namespace.is_empty() {
        out += &format!(
            "  tenant namespace {} (traffic leaving the tenant's subnets; ip netns exec {} ...)\n",
            d.namespace, d.namespace
        );
    }
    if d.nics.is_empty() {
        out += "  no NICs on this host\n";
    } else {
        let mut rows = vec![
            ["DOMAIN", "MAC", "TAP", "ADDRESSES"]
                .map(String::from)
                .to_vec(),
        ];
        for n in &d.nics {
            rows.push(vec![
                n.domain.clone(),
                n.mac.clone(),
                n.tap.clone(),
                n.addresses.join(","),
            ]);
        }
        out += &table(&rows);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookd_dbus::SubnetInfo;

    #[test]
    fn renders() {
        let l = render_list(&[NetworkSummary {
            name: "blue".into(),
            tenant: "acme".into(),
            vni: 10010,
            subnets: vec!["198.51.100.0/24".into(), "2001:db8:100::/64".into()],
            source: "defined: /var/lib/hookd/networks/blue.xml".into(),
        }]);
        assert!(l.starts_with("NAME  TENANT  VNI"), "{l}");
        assert!(
            l.contains("blue  acme    10010  198.51.100.0/24,2001:db8:100::/64"),
            "{l}"
        );
        assert_eq!(render_list(&[]), "no networks defined\n");
        let d = render_detail(&NetworkDetail {
            name: "blue".into(),
            tenant: "acme".into(),
            vni: 10010,
            mtu: 1500,
            subnets: vec![SubnetInfo {
                prefix: "198.51.100.0/24".into(),
                gateway: "198.51.100.1".into(),
            }],
            dns: vec!["198.51.100.53".into()],
            source: "configuration: /etc/hookd/networks.d/blue.xml".into(),
            xml: String::new(),
            nics: vec![hookd_dbus::NetworkNic {
                domain: "vm1".into(),
                mac: "52:54:00:00:00:0a".into(),
                tap: "vnet0".into(),
                addresses: vec!["198.51.100.10/32".into()],
            }],
            namespace: "hookd-acme".into(),
        });
        assert!(
            d.contains("  subnet 198.51.100.0/24 gateway 198.51.100.1\n"),
            "{d}"
        );
        assert!(d.contains("  dns 198.51.100.53\n"), "{d}");
        assert!(d.contains("  tenant namespace hookd-acme (traffic"), "{d}");
        assert!(
            d.contains("vm1     52:54:00:00:00:0a  vnet0  198.51.100.10/32"),
            "{d}"
        );
    }
}
