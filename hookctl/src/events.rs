//! `hookctl events` and `monitor`: logged packets and hookd's signals.

use crate::bus::{call_failed, proxy};
use crate::output::{EXIT_UNREACHABLE, Failure, Outcome, json, table};

pub async fn recent(domain: Option<&str>, as_json: bool) -> Outcome {
    let list = proxy()
        .await?
        .recent_events(domain.unwrap_or(""))
        .await
        .map_err(call_failed)?;
    if as_json {
        return json(&list);
    }
    let mut rows = vec![vec![
        "TIME (s)".into(),
        "DOMAIN".into(),
        "DIR".into(),
        "ACTION".into(),
        "FROM".into(),
        "TO".into(),
        "PROTO".into(),
        "RULE".into(),
    ]];
    for p in &list {
        rows.push(vec![
            format!("{:.3}", p.time_ns as f64 / 1e9),
            p.domain.clone(),
            p.direction.clone(),
            p.action.clone(),
            format!("{}:{}", p.source, p.source_port),
            format!("{}:{}", p.destination, p.destination_port),
            p.protocol.to_string(),
            format!("line {}: {}", p.rule_line, p.rule),
        ]);
    }
    Ok(table(&rows))
}

/// Prints hookd's signals as they come, in order, until the connection ends.
pub async fn monitor(as_json: bool) -> Outcome {
    use futures_util::StreamExt;
    use std::io::Write;
    let p = proxy().await?;
    let err = |e: zbus::Error| Failure(EXIT_UNREACHABLE, e.to_string());
    // One stream for all of hookd's signals keeps them in the order sent.
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface(hookd_dbus::MANAGER_INTERFACE)
        .build()
        .map_err(err)?;
    let mut stream = zbus::MessageStream::for_match_rule(rule, p.inner().connection(), None)
        .await
        .map_err(err)?;
    while let Some(msg) = stream.next().await {
        let Ok(msg) = msg else { continue };
        let member = msg
            .header()
            .member()
            .map(|m| m.to_string())
            .unwrap_or_default();
        let body = msg.body();
        let out = match member.as_str() {
            "DomainAttached" => body.deserialize::<(String, String, String)>().map(|(name, uuid, phase)| {
                let text = format!("attached {name} ({uuid}) at {phase}");
                (serde_json::json!({"signal": member, "name": name, "uuid": uuid, "phase": phase}), text)
            }),
            "DomainDetached" => body.deserialize::<(String, String)>().map(|(name, uuid)| {
                let text = format!("detached {name} ({uuid})");
                (serde_json::json!({"signal": member, "name": name, "uuid": uuid}), text)
            }),
            "PolicyApplied" => body.deserialize::<(String, String, u64)>().map(|(name, uuid, generation)| {
                let text = format!("policy applied to {name} ({uuid}): generation {generation}");
                (serde_json::json!({"signal": member, "name": name, "uuid": uuid, "generation": generation}), text)
            }),
            "PolicyRefused" => body.deserialize::<(String, String, String)>().map(|(name, uuid, message)| {
                let text = format!("policy refused for {name} ({uuid}), the previous one stays: {message}");
                (serde_json::json!({"signal": member, "name": name, "uuid": uuid, "message": message}), text)
            }),
            "PacketLogged" => body.deserialize::<hookd_dbus::LoggedPacket>().map(|p| {
                let text = format!(
                    "{} {} {} {}:{} -> {}:{} proto {} (line {}: {})",
                    p.domain, p.direction, p.action, p.source, p.source_port, p.destination, p.destination_port, p.protocol, p.rule_line, p.rule
                );
                let mut v = serde_json::to_value(&p).unwrap_or_default();
                v["signal"] = serde_json::json!(member);
                (v, text)
            }),
            "MigrationState" => body.deserialize::<hookd_dbus::MigrationInfo>().map(|m| {
                let text = crate::domains::migration_line(&m);
                let mut v = serde_json::to_value(&m).unwrap_or_default();
                v["signal"] = serde_json::json!(member);
                (v, text)
            }),
            _ => continue,
        };
        let line = match out {
            Ok((v, text)) => {
                if as_json {
                    v.to_string()
                } else {
                    text
                }
            }
            Err(e) => format!("bad {member} signal: {e}"),
        };
        let mut stdout = std::io::stdout();
        let _ = writeln!(stdout, "{line}").and_then(|_| stdout.flush());
    }
    Ok(String::new())
}
