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
        return json(&d);
    }
    let mut out = render_domain(&d);
    // The domain's latest migration here, from a hookd that keeps them.
    if let Ok(all) = proxy().await?.list_migrations().await
        && let Some(m) = all.iter().rev().find(|m| m.uuid == d.uuid)
    {
        out += &format!("last migration: {}\n", migration_line(m));
    }
    Ok(out)
}

/// The live migrations this host took part in, oldest first.
pub async fn migrations(as_json: bool) -> Outcome {
    let all = proxy()
        .await?
        .list_migrations()
        .await
        .map_err(call_failed)?;
    if as_json {
        return json(&all);
    }
    if all.is_empty() {
        return Ok("no live migrations since hookd started\n".into());
    }
    Ok(all.iter().map(|m| migration_line(m) + "\n").collect())
}

/// One side of one migration, as a line.
pub fn migration_line(m: &hookd_dbus::MigrationInfo) -> String {
    let when = match m.unix_time {
        0 => String::new(),
        t => format!(" at {}", utc(t)),
    };
    let what = if m.side == "source" {
        "saved for the destination"
    } else {
        "loaded from the source"
    };
    let how = match m.detail.as_str() {
        "" => String::new(),
        d => format!(" ({d})"),
    };
    match m.outcome.as_str() {
        "carried" => format!(
            "{} as {}: firewall state {what}, {} connection(s) of {} NIC(s), {} bytes, in {} ms{how}{when}",
            m.domain, m.side, m.entries, m.nics, m.bytes, m.ms
        ),
        outcome => format!(
            "{} as {}: firewall state {outcome}: {}{when}",
            m.domain, m.side, m.detail
        ),
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

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC` (the civil date
/// from the day count, as in Howard Hinnant's `civil_from_days`).
fn utc(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3_600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn epoch_seconds_read_as_utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(super::utc(1_796_233_627), "2026-12-02 17:47:07 UTC");
    }
}
