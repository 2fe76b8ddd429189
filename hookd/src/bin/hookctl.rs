//! hookctl: the operator's client for hookd.

use clap::Parser;
use hookd::cli::{Command as Cmd, Hookctl as Cli, PolicyCommand};
use hookd_dbus::{DomainDetail, DomainSummary, ManagerProxy};
use std::io::Read;
use std::process::ExitCode;

/// Exit statuses: 0 ok, 1 invalid input or refused, 2 usage, 3 hookd unreachable, 4 not found.
const EXIT_INVALID: u8 = 1;
const EXIT_UNREACHABLE: u8 = 3;
const EXIT_NOT_FOUND: u8 = 4;

struct Failure(u8, String);

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{s:<w$}", w = widths[i]))
            .collect();
        out += line.join("  ").trim_end();
        out.push('\n');
    }
    out
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, Failure> {
    serde_json::to_string_pretty(v).map_err(|e| Failure(EXIT_INVALID, e.to_string()))
}

async fn proxy() -> Result<ManagerProxy<'static>, Failure> {
    let unreachable = |e: zbus::Error| {
        Failure(
            EXIT_UNREACHABLE,
            format!("cannot reach hookd on the system bus: {e}"),
        )
    };
    let conn = zbus::Connection::system().await.map_err(unreachable)?;
    let dbus = zbus::fdo::DBusProxy::new(&conn)
        .await
        .map_err(unreachable)?;
    let name = zbus::names::BusName::try_from(hookd_dbus::BUS_NAME)
        .map_err(|e| Failure(EXIT_INVALID, e.to_string()))?;
    if !dbus
        .name_has_owner(name)
        .await
        .map_err(|e| unreachable(e.into()))?
    {
        return Err(Failure(
            EXIT_UNREACHABLE,
            format!(
                "hookd is not running ({} has no owner on the system bus)",
                hookd_dbus::BUS_NAME
            ),
        ));
    }
    ManagerProxy::new(&conn).await.map_err(unreachable)
}

fn call_failed(e: hookd_dbus::Error) -> Failure {
    match e {
        hookd_dbus::Error::NotFound(m) => Failure(EXIT_NOT_FOUND, m),
        // The bus itself refused the call (its policy): a refusal, not an
        // unreachable hookd.
        hookd_dbus::Error::ZBus(zbus::Error::FDO(e))
            if matches!(*e, zbus::fdo::Error::AccessDenied(_)) =>
        {
            Failure(EXIT_INVALID, e.to_string())
        }
        hookd_dbus::Error::ZBus(e) => Failure(EXIT_UNREACHABLE, e.to_string()),
        e => Failure(EXIT_INVALID, e.to_string()),
    }
}

/// Prints hookd's signals as they come, in order, until the connection ends.
async fn monitor(as_json: bool) -> Result<String, Failure> {
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

/// The contents of FILE, or stdin for "-", up to hookd's size limit.
fn read_input(file: &str) -> Result<String, Failure> {
    let mut xml = String::new();
    let limit = hookd::xml_tree::MAX_XML_BYTES as u64 + 1;
    let read = if file == "-" {
        std::io::stdin().take(limit).read_to_string(&mut xml)
    } else {
        std::fs::File::open(file).and_then(|f| f.take(limit).read_to_string(&mut xml))
    };
    read.map_err(|e| Failure(EXIT_INVALID, format!("{file}: {e}")))?;
    Ok(xml)
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

async fn run(cli: Cli) -> Result<String, Failure> {
    match cli.cmd {
        Cmd::Domains => {
            let list = proxy().await?.list_domains().await.map_err(call_failed)?;
            if cli.json {
                json(&list)
            } else {
                Ok(render_domains(&list))
            }
        }
        Cmd::Show { domain } => {
            let d = proxy()
                .await?
                .get_domain(&domain)
                .await
                .map_err(call_failed)?;
            if cli.json {
                json(&d)
            } else {
                Ok(render_domain(&d))
            }
        }
        Cmd::Events { domain } => {
            let list = proxy()
                .await?
                .recent_events(domain.as_deref().unwrap_or(""))
                .await
                .map_err(call_failed)?;
            if cli.json {
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
        Cmd::Monitor => monitor(cli.json).await,
        Cmd::Health => {
            let p = proxy().await?;
            let (status, detail) = p.health().await.map_err(call_failed)?;
            let version = p.version().await.unwrap_or_default();
            let out = if cli.json {
                json(
                    &serde_json::json!({ "status": status, "detail": detail, "version": version }),
                )?
            } else {
                format!("{status}: {detail} (hookd {version})")
            };
            if status == "ok" {
                Ok(out)
            } else {
                Err(Failure(EXIT_INVALID, out))
            }
        }
        Cmd::Stats => {
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
            if cli.json {
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
        Cmd::Policy(PolicyCommand::Validate { file }) => {
            let xml = read_input(&file)?;
            let summary = proxy()
                .await?
                .validate_policy(&xml)
                .await
                .map_err(call_failed)?;
            if cli.json {
                json(&serde_json::json!({ "valid": true, "summary": summary }))
            } else {
                Ok(summary)
            }
        }
        Cmd::Policy(PolicyCommand::Get { domain }) => {
            let text = proxy()
                .await?
                .get_policy(&domain)
                .await
                .map_err(call_failed)?;
            if cli.json {
                json(&serde_json::json!({ "domain": domain, "policy": text }))
            } else if text.is_empty() {
                eprintln!("hookctl: {domain} has no hookd policy");
                Ok(String::new())
            } else {
                Ok(text)
            }
        }
        Cmd::Policy(PolicyCommand::Set {
            domain,
            file,
            no_persist,
        }) => {
            let policy = read_input(&file)?;
            set_policy(&domain, &policy, !no_persist, cli.json).await
        }
        Cmd::Policy(PolicyCommand::Remove { domain, no_persist }) => {
            set_policy(&domain, "", !no_persist, cli.json).await
        }
        Cmd::Policy(PolicyCommand::Edit { domain, no_persist }) => {
            edit_policy(&domain, !no_persist, cli.json).await
        }
        Cmd::Trace {
            domain,
            mac,
            direction,
            remote,
            protocol,
            port,
            icmp_type,
            icmp_code,
        } => {
            let (action, line, why) = proxy()
                .await?
                .trace(
                    &domain, &mac, &direction, &remote, &protocol, port, icmp_type, icmp_code,
                )
                .await
                .map_err(call_failed)?;
            if cli.json {
                json(
                    &serde_json::json!({ "action": action, "rule_line": line, "explanation": why }),
                )
            } else {
                Ok(format!("{action}: {why}"))
            }
        }
        Cmd::Explain { file } => {
            let xml = read_input(&file)?;
            let ex = hookd::explain::explain(&xml)
                .map_err(|e| Failure(EXIT_INVALID, format!("{file}: {e}")))?;
            if cli.json { json(&ex) } else { Ok(ex.render()) }
        }
    }
}

async fn set_policy(
    domain: &str,
    policy: &str,
    persist: bool,
    as_json: bool,
) -> Result<String, Failure> {
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
async fn edit_policy(domain: &str, persist: bool, as_json: bool) -> Result<String, Failure> {
    let p = proxy().await?;
    let current = p.get_policy(domain).await.map_err(call_failed)?;
    let start = if current.is_empty() {
        format!(
            "<policy xmlns=\"{}\">\n</policy>\n",
            hookd::policy::NAMESPACE
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
    match set_policy(domain, &edited, persist, as_json).await {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hookctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(out) => {
            print!("{out}");
            if !out.ends_with('\n') {
                println!();
            }
            ExitCode::SUCCESS
        }
        Err(Failure(code, msg)) => {
            eprintln!("hookctl: {msg}");
            ExitCode::from(code)
        }
    }
}
