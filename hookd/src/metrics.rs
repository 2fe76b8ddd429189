//! Per-NIC counters in the Prometheus text exposition format, served over
//! plain HTTP on a loopback address when `metrics_listen` is set.

use crate::core::View;
use crate::core::migration::log::{Outcome, Side, Totals};
use hookd_bpf::layout::{DropReason, NetStats};
use std::fmt::Write;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition text for every attached NIC.
pub fn render(d: &View) -> String {
    let mut out = String::new();
    let families = [
        (
            "hookd_nic_packets_total",
            "Packets through a VM NIC, by direction.",
        ),
        (
            "hookd_nic_bytes_total",
            "Bytes through a VM NIC, by direction.",
        ),
        (
            "hookd_nic_drops_total",
            "Frames hookd dropped on a VM NIC, by reason.",
        ),
        (
            "hookd_nic_network_total",
            "Frames of a NIC on a hookd network, by what the network did: switched, routed, answered_*.",
        ),
    ];
    let mut samples: [Vec<String>; 4] = Default::default();
    for r in d.records().iter() {
        for n in r.nics.iter().filter(|n| n.attached()) {
            let Some(s) = d.stats(n.ifindex) else {
                continue;
            };
            let base = format!(
                "domain=\"{}\",uuid=\"{}\",mac=\"{}\",tap=\"{}\"",
                label(&r.name),
                label(&r.uuid),
                label(&n.mac),
                label(&n.tap)
            );
            for (dir, packets, bytes) in [
                ("to_vm", s.to_vm_packets, s.to_vm_bytes),
                ("from_vm", s.from_vm_packets, s.from_vm_bytes),
            ] {
                for (kind, value) in [(0, packets), (1, bytes)] {
                    samples[kind].push(format!(
                        "{}{{{base},direction=\"{dir}\"}} {value}",
                        families[kind].0
                    ));
                }
            }
            for r in DropReason::ALL {
                samples[2].push(format!(
                    "hookd_nic_drops_total{{{base},reason=\"{}\"}} {}",
                    r.name(),
                    s.drops[r as usize]
                ));
            }
            if let Some(net) = d.net_stats(n.ifindex) {
                for (i, kind) in NetStats::NAMES {
                    samples[3].push(format!(
                        "hookd_nic_network_total{{{base},kind=\"{kind}\"}} {}",
                        net.count[i]
                    ));
                }
            }
        }
    }
    for ((name, help), lines) in families.iter().zip(samples.iter()) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for l in lines {
            let _ = writeln!(out, "{l}");
        }
    }
    render_migrations(&mut out, d.migrations().1);
    out
}

/// Live migrations since hookd started, by side and outcome, and what
/// they carried.
fn render_migrations(out: &mut String, t: Totals) {
    let sides = [Side::Source, Side::Destination];
    let outcomes = [Outcome::Carried, Outcome::Refused, Outcome::Proceeded];
    let _ = writeln!(
        out,
        "# HELP hookd_migrations_total Live migrations this host took part in, by side and what became of the firewall state.\n# TYPE hookd_migrations_total counter"
    );
    for s in sides {
        for o in outcomes {
            let _ = writeln!(
                out,
                "hookd_migrations_total{{side=\"{}\",outcome=\"{}\"}} {}",
                s.name(),
                o.name(),
                t.count[s as usize][o as usize]
            );
        }
    }
    for (name, help, v) in [
        (
            "hookd_migration_entries_total",
            "Connections carried through live migrations, by side.",
            t.entries,
        ),
        (
            "hookd_migration_bytes_total",
            "Bytes of firewall state carried through live migrations, by side.",
            t.bytes,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for s in sides {
            let _ = writeln!(out, "{name}{{side=\"{}\"}} {}", s.name(), v[s as usize]);
        }
    }
}

/// Serves `render` to every connection until hookd stops.
pub async fn serve(listener: TcpListener, view: View) {
    loop {
        let (mut sock, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: accept failed");
                continue;
            }
        };
        let view = view.clone();
        tokio::spawn(async move {
            // The request itself does not matter: every path gets the metrics.
            let mut buf = [0u8; 1024];
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(2), sock.read(&mut buf)).await;
            let body = render(&view);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
        });
    }
}
