//! `hookctl domains`, `show`, `stats`, `health`: what hookd attached, and its counters.

use crate::bus::{call_failed, proxy};
use crate::output::{EXIT_INVALID, Failure, Outcome, json, table};
use hookd_dbus::{DomainDetail, DomainSummary};

pub async fn domains(as_json: bool) -> Outcome {
    let list = proxy().await?.list_domains().await.map_err(call_failed)?;
    if as_json {
        json(&list)
    } else {
        Ok(render_domains(&list))
    }
}

pub async fn show(domain: &str, as_json: bool) -> Outcome {
    let d = proxy()
        .await?
        .get_domain(domain)
        .await
        .map_err(call_failed)?;
    if as_json {
        json(&d)
    } else {
        Ok(render_domain(&d))
    }
}

pub async fn health(as_json: bool) -> Outcome {
    let p = proxy().await?;
    let (status, detail) = p.health().await.map_err(call_failed)?;
    let version = p.version().await.unwrap_or_default();
    let out = if as_json {
        json(&serde_json::json!({ "status": status, "detail": detail, "version": version }))?
    } else {
        format!("{status}: {detail} (hookd {version})")
    };
    if status == "ok" {
        Ok(out)
    } else {
        Err(Failure(EXIT_INVALID, out))
    }
}

pub async fn stats(as_json: bool) -> Outcome {
    let p = proxy().await?;
    let mut all = Vec::new();
    for d in p.list_domains().await.map_err(call_failed)? {
        match p.get_domain(&d.uuid).await {
            Ok(detail) => all.push(detail),
            // Gone between the two calls: nothing to report.
            Err(hookd_dbus::Error::NotFound(_)) => {}
            Err(e) => return Err(call_failed(e)),
        }
    }
    if as_json {
        return json(&all);
    }
    let mut rows = vec![
        [
            "DOMAIN",
            "MAC",
            "TAP",
            "TO_VM PKTS",
            "FROM_VM PKTS",
            "TO_VM BYTES",
            "FROM_VM BYTES",
            "DROPPED",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>(),
    ];
    for d in &all {
        for n in d.nics.iter().filter(|n| !n.counters.is_empty()) {
            let c = |name: &str| {
                n.counters
                    .iter()
                    .find(|c| c.name == name)
                    .map_or(0, |c| c.value)
            };
            let dropped: u64 = n
                .counters
                .iter()
                .filter(|c| c.name.starts_with("drop_"))
                .map(|c| c.value)
                .sum();
            rows.push(vec![
                d.name.clone(),
                n.mac.clone(),
                n.tap.clone(),
                c("to_vm_packets").to_string(),
                c("from_vm_packets").to_string(),
                c("to_vm_bytes").to_string(),
                c("from_vm_bytes").to_string(),
                dropped.to_string(),
            ]);
        }
    }
    Ok(table(&rows))
}

fn render_domains(list: &[DomainSummary]) -> String {
    let mut rows = vec![vec![
        "NAME".into(),
        "UUID".into(),
        "POLICY".into(),
        "NICS".into(),
        "ATTACHED AT".into(),
    ]];
    for d in list {
        rows.push(vec![
            d.name.clone(),
            d.uuid.clone(),
            if d.managed {
                "hookd".into()
            } else {
                "none".into()
            },
            d.attached_nics.to_string(),
            d.attached_at.clone(),
        ]);
    }
    table(&rows)
}

fn render_domain(d: &DomainDetail) -> String {
    let mut out = format!(
        "domain {} ({})\n  policy: {}, generation {}, attached at {}\n",
        d.name,
        d.uuid,
        if d.managed {
            "hookd"
        } else {
            "none (counters only)"
        },
        d.generation,
        d.attached_at
    );
    let mut rows = vec![vec![
        "MAC".into(),
        "TYPE".into(),
        "TAP".into(),
        "IFINDEX".into(),
        "ATTACH".into(),
        "MODE".into(),
    ]];
    for n in &d.nics {
        rows.push(vec![
            n.mac.clone(),
            n.kind.clone(),
            if n.tap.is_empty() {
                "-".into()
            } else {
                n.tap.clone()
            },
            n.ifindex.to_string(),
            if n.attach.is_empty() {
                "-".into()
            } else {
                n.attach.clone()
            },
            n.mode.clone(),
        ]);
    }
    out += &table(&rows);
    for n in d.nics.iter().filter(|n| !n.counters.is_empty()) {
        out += &format!("\n{} {}\n", n.mac, n.tap);
        if !n.addresses.is_empty() {
            out += &format!("  allowed sources: {}\n", n.addresses.join(", "));
        }
        let nonzero: Vec<String> = n
            .counters
            .iter()
            .filter(|c| !c.name.starts_with("drop_") || c.value > 0)
            .map(|c| format!("  {:<22} {}", c.name, c.value))
            .collect();
        out += &nonzero.join("\n");
        out.push('\n');
        for r in &n.rules {
            out += &format!(
                "  {:<7} #{:<3} line {:<5} hits {:<8} {}\n",
                r.direction, r.index, r.line, r.hits, r.rule
            );
        }
    }
    out
}
