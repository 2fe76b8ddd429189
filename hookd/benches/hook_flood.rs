//! Hook calls under a flood of management calls. On a private dbus-daemon,
//! hookd's D-Bus service answers HookEvent calls made the way the libvirt
//! hook makes them (a new bus connection per call), alone and while
//! flooding clients keep many ListDomains / GetDomain / Trace calls in
//! flight, interleaved over rounds. Prints p50 / p99 / max side by side with
//! their ratios, and the rate at which the flood was served. A third
//! condition is hostile: 1,000 raw connections from 4 other uids
//! (`hookd_testkit::hostile`) that subscribe to every signal, pipeline
//! well-formed, refused, malformed and oversized calls, and never read a
//! reply; it also prints this process's resident memory before, at its
//! peak and after (the daemon, its runtimes and the hook caller: the
//! hostile clients are other processes). Then clients
//! drop their connections with calls in flight, after which hookd must still
//! answer a hook call.
//!
//! The data plane is a stand-in that attaches nothing (attaching to taps is
//! measured by the datapath bench and exercised by the VM tests): what is
//! measured is the path hook calls and management calls share (bus, D-Bus
//! dispatch, the daemon's lock, policy parsing and planning).
//! Needs root (a system-type bus): `cargo bench -p hookd --bench hook_flood`.

use hookd_testkit as support;

use futures_util::StreamExt;
use hookd_dbus::ManagerProxy;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::hostile::{Crowd, PER_UID, UIDS};
use support::private_bus::{Channel, ServedDaemon, hook_call};
use support::stats::{ms, pct_sorted, reset_peak_rss, rss_kib};
use support::xml;

const DOMAINS: usize = 50;
const RULES: usize = 20;
const HOOK_CALLS: usize = 100;
const ROUNDS: usize = 3;
const FLOODERS: usize = 8;
const IN_FLIGHT: usize = 32;
const DROPPED_CLIENTS: usize = 200;

fn domain_xml(i: usize) -> String {
    xml::numbered_domain(i, RULES)
}

async fn proxy(address: &str) -> ManagerProxy<'static> {
    let conn = zbus::connection::Builder::address(address)
        .build()
        .await
        .expect("connect");
    ManagerProxy::new(&conn).await.expect("proxy")
}

/// One flooding client: IN_FLIGHT calls outstanding at all times until
/// `stop`; counts answered calls.
async fn flood(address: String, seed: usize, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) {
    let p = proxy(&address).await;
    let calls = futures_util::stream::iter(seed..)
        .take_while(|_| std::future::ready(!stop.load(Ordering::Relaxed)))
        .map(|k| {
            let p = p.clone();
            async move {
                let vm = format!("vm{}", k % DOMAINS);
                match k % 3 {
                    0 => p.list_domains().await.map(|_| ()),
                    1 => p.get_domain(&vm).await.map(|_| ()),
                    _ => p
                        .trace(
                            &vm,
                            &format!("52:54:00:00:00:{:02x}", k % DOMAINS),
                            "ingress",
                            "198.51.100.3",
                            "tcp",
                            1002,
                            0,
                            0,
                        )
                        .await
                        .map(|_| ()),
                }
            }
        })
        .buffer_unordered(IN_FLIGHT);
    calls
        .for_each(|r| {
            if r.is_ok() {
                done.fetch_add(1, Ordering::Relaxed);
            }
            std::future::ready(())
        })
        .await;
}

async fn hook_round(
    ch: Channel,
    address: &str,
    socket: &std::path::Path,
    xml: &str,
) -> Vec<Duration> {
    let mut v = Vec::with_capacity(HOOK_CALLS);
    for k in 0..HOOK_CALLS {
        let op = if k % 2 == 0 { "start" } else { "stopped" };
        v.push(
            hook_call(ch, address, socket, "hookvm", op, xml)
                .await
                .expect("hook call answered"),
        );
    }
    v
}

fn main() {
    support::hostile::serve_if_child();
    support::require_root();
    // hookd's side on a runtime of its own (2 workers, as hookd runs).
    let served = ServedDaemon::start();
    let (address, socket) = (served.bus.address.clone(), served.socket.clone());

    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // Hook calls come from a runtime of their own, as from the hook's own
    // process: they never wait behind the flooding clients' tasks.
    let hooks = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for i in 0..DOMAINS {
        hooks
            .block_on(hook_call(
                Channel::Socket,
                &address,
                &socket,
                &format!("vm{i}"),
                "start",
                &domain_xml(i),
            ))
            .expect("domain started");
    }
    let hook_xml = domain_xml(DOMAINS);
    let mut quiet = [Vec::new(), Vec::new()];
    let mut flooded = [Vec::new(), Vec::new()];
    let mut hostile = [Vec::new(), Vec::new()];
    let mut rss = Vec::new();
    let mut rates = Vec::new();
    let channels = [Channel::Socket, Channel::Bus];
    for _ in 0..ROUNDS {
        for (i, ch) in channels.iter().enumerate() {
            quiet[i].extend(hooks.block_on(hook_round(*ch, &address, &socket, &hook_xml)));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..FLOODERS)
            .map(|f| clients.spawn(flood(address.clone(), f * 7, stop.clone(), done.clone())))
            .collect();
        // Let the flood build up before hook calls start.
        std::thread::sleep(Duration::from_millis(300));
        let (t, before) = (Instant::now(), done.load(Ordering::Relaxed));
        for (i, ch) in channels.iter().enumerate() {
            flooded[i].extend(hooks.block_on(hook_round(*ch, &address, &socket, &hook_xml)));
        }
        let served = done.load(Ordering::Relaxed) - before;
        rates.push(served as f64 / t.elapsed().as_secs_f64());
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = clients.block_on(t);
        }

        // Clients that flood and never read what comes back.
        let (before, _) = rss_kib();
        reset_peak_rss();
        let crowd = Crowd::start(&address, &[], &UIDS, PER_UID);
        for (i, ch) in channels.iter().enumerate() {
            hostile[i].extend(hooks.block_on(hook_round(*ch, &address, &socket, &hook_xml)));
        }
        let (_, peak) = rss_kib();
        crowd.stop();
        rss.push((before, peak, rss_kib().0));
    }
    hooks.block_on(async {
        for v in quiet.iter_mut().chain(&mut flooded).chain(&mut hostile) {
            v.sort();
        }
        rates.sort_by(f64::total_cmp);
        println!(
            "hook calls (HookEvent start/stopped, new connection each, {DOMAINS} domains of {RULES} rules known), \
             {ROUNDS} interleaved rounds x {HOOK_CALLS} calls per row; flood: {FLOODERS} clients x {IN_FLIGHT} calls in flight"
        );
        println!("{:<26} {:>10} {:>10} {:>10} {:>10}", "", "p50", "p90", "p99", "max");
        let row = |name: &str, v: &[Duration]| {
            println!(
                "{name:<26} {:>10} {:>10} {:>10} {:>10}",
                ms(pct_sorted(v, 0.5)),
                ms(pct_sorted(v, 0.9)),
                ms(pct_sorted(v, 0.99)),
                ms(*v.last().unwrap_or(&Duration::ZERO))
            )
        };
        let ratio = |a: &[Duration], b: &[Duration], p: f64| {
            pct_sorted(a, p).as_secs_f64() / pct_sorted(b, p).as_secs_f64()
        };
        for (i, name) in ["hook socket", "system bus"].iter().enumerate() {
            row(&format!("{name}, quiet"), &quiet[i]);
            row(&format!("{name}, flood"), &flooded[i]);
            row(&format!("{name}, hostile"), &hostile[i]);
            for (what, v) in [("flood", &flooded[i]), ("hostile", &hostile[i])] {
                println!(
                    "{:<26} {:>9.2}x {:>9.2}x",
                    format!("{name}, {what} / quiet"),
                    ratio(v, &quiet[i], 0.5),
                    ratio(v, &quiet[i], 0.99)
                );
            }
        }
        println!(
            "under flood, hook socket p99 is {:.2}x the system bus's",
            ratio(&flooded[0], &flooded[1], 0.99)
        );
        println!(
            "management calls answered during the flood: median {:.0}/s",
            rates[rates.len() / 2]
        );
        let mib = |kib: u64| kib as f64 / 1024.0;
        for (round, (before, peak, after)) in rss.iter().enumerate() {
            println!(
                "round {}, {} hostile connections: hookd resident {:.1} MiB before, peak {:.1} MiB, {:.1} MiB after",
                round + 1,
                UIDS.len() * PER_UID,
                mib(*before),
                mib(*peak),
                mib(*after)
            );
        }

        // Clients that disconnect with calls in flight.
        for _ in 0..DROPPED_CLIENTS {
            let p = proxy(&address).await;
            let call = tokio::spawn(async move { p.get_domain("vm1").await.map(|_| ()) });
            tokio::task::yield_now().await;
            call.abort();
        }
        let t = hook_call(Channel::Socket, &address, &socket, "hookvm", "start", &hook_xml)
            .await
            .expect("hook call answered");
        let listed = proxy(&address)
            .await
            .list_domains()
            .await
            .expect("hookd still answers")
            .len();
        println!(
            "after {DROPPED_CLIENTS} clients dropped mid-call: a hook call answered in {}, ListDomains lists {listed} domains",
            ms(t)
        );
    });
}
