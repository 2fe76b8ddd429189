//! `hookctl policy ...`, `trace` and `explain`: reading, checking and
//! changing policy.

use crate::bus::{call_failed, proxy};
use crate::output::{EXIT_INVALID, Failure, Outcome, json, read_input};

pub async fn validate(file: &str, as_json: bool) -> Outcome {
    let xml = read_input(file)?;
    let summary = proxy()
        .await?
        .validate_policy(&xml)
        .await
        .map_err(call_failed)?;
    if as_json {
        json(&serde_json::json!({ "valid": true, "summary": summary }))
    } else {
        Ok(summary)
    }
}

pub async fn get(domain: &str, as_json: bool) -> Outcome {
    let text = proxy()
        .await?
        .get_policy(domain)
        .await
        .map_err(call_failed)?;
    if as_json {
        json(&serde_json::json!({ "domain": domain, "policy": text }))
    } else if text.is_empty() {
        eprintln!("hookctl: {domain} has no hookd policy");
        Ok(String::new())
    } else {
        Ok(text)
    }
}

/// The described packet of `hookctl trace`.
pub struct TraceArgs<'a> {
    pub domain: &'a str,
    pub mac: &'a str,
    pub direction: &'a str,
    pub remote: &'a str,
    pub protocol: &'a str,
    pub port: u16,
    pub icmp_type: u8,
    pub icmp_code: u8,
}

pub async fn trace(t: TraceArgs<'_>, as_json: bool) -> Outcome {
    let (action, line, why) = proxy()
        .await?
        .trace(
            t.domain,
            t.mac,
            t.direction,
            t.remote,
            t.protocol,
            t.port,
            t.icmp_type,
            t.icmp_code,
        )
        .await
        .map_err(call_failed)?;
    if as_json {
        json(&serde_json::json!({ "action": action, "rule_line": line, "explanation": why }))
    } else {
        Ok(format!("{action}: {why}"))
    }
}

pub async fn trace_live(t: TraceArgs<'_>, as_json: bool) -> Outcome {
    let (action, stage, rules_action, line, why, vm) = proxy()
        .await?
        .trace_live(
            t.domain,
            t.mac,
            t.direction,
            t.remote,
            t.protocol,
            t.port,
            t.icmp_type,
            t.icmp_code,
        )
        .await
        .map_err(call_failed)?;
    if as_json {
        json(&serde_json::json!({
            "live": { "action": action, "stage": stage, "vm_address": vm },
            "rules": { "action": rules_action, "rule_line": line, "explanation": why },
        }))
    } else {
        let differ = if action == rules_action {
            ""
        } else {
            "\n(the live programs and the rules differ: connection state, anti-spoofing or the network stage decided)"
        };
        Ok(format!(
            "live:  {action}: {stage} (the NIC's programs, {} {vm})\nrules: {rules_action}: {why}{differ}",
            if t.direction == "ingress" {
                "to"
            } else {
                "from"
            }
        ))
    }
}

pub async fn explain(file: &str, network_files: &[String], as_json: bool) -> Outcome {
    let xml = read_input(file)?;
    let mut networks = Vec::new();
    for f in network_files {
        let text = read_input(f)?;
        networks.push(
            hookd_model::network::parse_document(&text)
                .map_err(|e| Failure(EXIT_INVALID, format!("{f}: {e}")))?,
        );
    }
    if network_files.is_empty() {
        networks = daemon_networks(&xml).await;
    }
    let ex = hookd_model::explain::explain_with(&xml, &networks)
        .map_err(|e| Failure(EXIT_INVALID, format!("{file}: {e}")))?;
    if as_json { json(&ex) } else { Ok(ex.render()) }
}

/// The definitions of the networks `xml`'s policy names, from the running
/// hookd; none when it cannot be reached (explain works without it).
async fn daemon_networks(xml: &str) -> Vec<hookd_model::network::Network> {
    let Ok(dom) = hookd_model::domain::parse(xml) else {
        return Vec::new();
    };
    let names: Vec<String> = dom
        .policy
        .iter()
        .flat_map(|p| p.interfaces.iter())
        .filter_map(|i| i.network.as_ref().map(|n| n.name.clone()))
        .collect();
    if names.is_empty() {
        return Vec::new();
    }
    let Ok(p) = proxy().await else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for n in names {
        if let Ok(d) = p.get_network(&n).await
            && let Ok(net) = hookd_model::network::parse_document(&d.xml)
        {
            out.push(net);
        }
    }
    out
}

pub async fn set(domain: &str, policy: &str, persist: bool, as_json: bool) -> Outcome {
    let (generation, summary) = proxy()
        .await?
        .set_policy(domain, policy, persist)
        .await
        .map_err(call_failed)?;
    if as_json {
        json(&serde_json::json!({ "generation": generation, "summary": summary }))
    } else {
        Ok(format!("{summary} (generation {generation})"))
    }
}

/// `policy edit`: the policy in force, edited in a temporary file, then set.
/// The file is kept when the edit is refused, so no work is lost.
pub async fn edit(domain: &str, persist: bool, as_json: bool) -> Outcome {
    let p = proxy().await?;
    let current = p.get_policy(domain).await.map_err(call_failed)?;
    let start = if current.is_empty() {
        format!(
            "<policy xmlns=\"{}\">\n</policy>\n",
            hookd_model::policy::NAMESPACE
        )
    } else {
        format!("{current}\n")
    };
    let io = |e: std::io::Error| Failure(EXIT_INVALID, format!("temporary file: {e}"));
    let file = tempfile::Builder::new()
        .prefix("hookd-policy-")
        .suffix(".xml")
        .tempfile()
        .map_err(io)?;
    std::fs::write(file.path(), &start).map_err(io)?;
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into());
    // Through the shell, so that EDITOR may carry arguments ("emacs -nw").
    let status = std::process::Command::new("sh")
        .args(["-c", &format!("{editor} \"$1\""), "sh"])
        .arg(file.path())
        .status()
        .map_err(|e| Failure(EXIT_INVALID, format!("running {editor}: {e}")))?;
    if !status.success() {
        return Err(Failure(
            EXIT_INVALID,
            format!("{editor} failed ({status}); nothing changed"),
        ));
    }
    let edited = std::fs::read_to_string(file.path()).map_err(io)?;
    if edited.trim() == start.trim() {
        return Ok("policy unchanged; nothing to do".into());
    }
    match set(domain, &edited, persist, as_json).await {
        Ok(out) => Ok(out),
        Err(Failure(code, msg)) => {
            let kept = file.keep().map(|(_, path)| path.display().to_string());
            Err(Failure(
                code,
                match kept {
                    Ok(path) => format!("{msg}\nnothing changed; your edit is kept in {path}"),
                    Err(_) => format!("{msg}\nnothing changed"),
                },
            ))
        }
    }
}
