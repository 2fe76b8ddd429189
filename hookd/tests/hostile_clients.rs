//! Tier 2 (root): hostile bus clients at volume. 1,000 raw connections from
//! 4 unprivileged uids (`hookd_testkit::hostile`) subscribe to all of
//! hookd's signals, pipeline well-formed, refused, malformed and oversized
//! calls, and never read a reply, while root makes the calls hookd must
//! keep answering and sends it invalid changes. hookd's service is the real
//! one (dispatch, access checks, the daemon core, its state directory) on a
//! private dbus-daemon; the data plane is the test kit's stand-in, as in
//! dbus_api.rs, since the kernel is not under test here.
//!
//! Needs root (setpriv to other uids). `#[ignore]`d in a plain `cargo test`,
//! run by scripts/test-privileged.sh, where it fails, never skips.

use hookd_testkit as support;

use hookd_dbus::ManagerProxy;
use std::time::Duration;
use support::hostile::{Crowd, OVERSIZED, PER_UID, UIDS};
use support::private_bus::{Channel, ServedDaemon, hook_call};
use support::stats::{ms, pct, reset_peak_rss, rss_kib};
use support::xml::numbered_domain;

const DOMAINS: usize = 50;
const RULES: usize = 20;
/// The most hookd's process may grow while the hostile clients are
/// connected (measured: see docs/management.md).
const RSS_GROWTH_BOUND_MIB: u64 = 64;
/// Each well-formed call must be answered within this.
const ANSWERED_WITHIN: Duration = Duration::from_secs(10);

const BLUE: &str = "<network xmlns='urn:hookd:network:1' name='blue' tenant='acme' vni='10010'>\
     <subnet prefix='203.0.113.0/24' gateway='203.0.113.1'/></network>";

/// What hookd reports: domains, their policies, networks.
async fn snapshot(p: &ManagerProxy<'_>) -> String {
    let mut out = String::new();
    let mut names: Vec<String> = answered(p.list_domains())
        .await
        .into_iter()
        .map(|d| d.name)
        .collect();
    names.sort();
    for n in names {
        let policy = answered(p.get_policy(&n)).await;
        out.push_str(&format!("{n}: {policy}\n"));
    }
    for n in answered(p.list_networks()).await {
        out.push_str(&format!("network {}\n", n.name));
    }
    out
}

async fn answered<T>(call: impl std::future::Future<Output = Result<T, hookd_dbus::Error>>) -> T {
    tokio::time::timeout(ANSWERED_WITHIN, call)
        .await
        .expect("a well-formed call answered in time")
        .expect("a well-formed call answered without error")
}

async fn refused<T: std::fmt::Debug>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, hookd_dbus::Error>>,
) -> String {
    let r = tokio::time::timeout(ANSWERED_WITHIN, call)
        .await
        .unwrap_or_else(|_| panic!("{what}: not answered in time"));
    format!("{:?}", r.expect_err(what))
}

#[test]
#[ignore = "privileged: run by scripts/test-privileged.sh"]
fn a_thousand_clients_that_never_read_block_no_call_and_change_nothing() {
    support::hostile::serve_if_child();
    support::require_root();
    let served = ServedDaemon::start();
    let (address, socket) = (served.bus.address.clone(), served.socket.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let root = rt.block_on(async {
        let conn = zbus::connection::Builder::address(address.as_str())
            .build()
            .await
            .expect("root's connection");
        ManagerProxy::new(&conn).await.expect("proxy")
    });
    let before = rt.block_on(async {
        for i in 0..DOMAINS {
            hook_call(
                Channel::Socket,
                &address,
                &socket,
                &format!("vm{i}"),
                "start",
                &numbered_domain(i, RULES),
            )
            .await
            .expect("domain started");
        }
        answered(root.define_network(BLUE)).await;
        snapshot(&root).await
    });
    let (rss_before, _) = rss_kib();
    reset_peak_rss();

    let crowd = Crowd::start(
        &address,
        &[
            "--exact",
            "a_thousand_clients_that_never_read_block_no_call_and_change_nothing",
            "--ignored",
            "--nocapture",
        ],
        &UIDS,
        PER_UID,
    );
    assert_eq!(crowd.connections, 1000);
    let latencies = rt.block_on(async {
        // Every well-formed call is answered, with what it said before.
        assert_eq!(snapshot(&root).await, before);
        for i in 0..DOMAINS {
            answered(root.get_domain(&format!("vm{i}"))).await;
        }
        // Hook calls keep being answered, on both ways in.
        let mut v = Vec::new();
        for k in 0..40 {
            let ch = if k % 2 == 0 {
                Channel::Socket
            } else {
                Channel::Bus
            };
            let op = if k % 4 < 2 { "start" } else { "stopped" };
            let t = tokio::time::timeout(
                ANSWERED_WITHIN,
                hook_call(
                    ch,
                    &address,
                    &socket,
                    "hookvm",
                    op,
                    &numbered_domain(DOMAINS, RULES),
                ),
            )
            .await
            .expect("a hook call answered in time")
            .expect("a hook call answered");
            v.push(t);
        }
        v
    });
    // Before root's own oversized calls, which this process builds.
    let (_, rss_peak) = rss_kib();
    rt.block_on(async {
        // Invalid changes from root are refused and change nothing.
        let huge = format!(
            "<hookd:policy xmlns:hookd='urn:hookd:policy:1'>{}</hookd:policy>",
            " ".repeat(OVERSIZED)
        );
        let e = refused("an oversized policy", root.set_policy("vm1", &huge, false)).await;
        assert!(e.contains("limit"), "{e}");
        let e = refused(
            "a policy with a bad port",
            root.set_policy(
                "vm1",
                "<hookd:policy xmlns:hookd='urn:hookd:policy:1'><hookd:interface>\
                 <hookd:ingress><hookd:rule action='allow' protocol='tcp' ports='70000'/>\
                 </hookd:ingress></hookd:interface></hookd:policy>",
                false,
            ),
        )
        .await;
        assert!(e.contains("70000"), "{e}");
        refused(
            "a network that overlaps blue",
            root.define_network(&BLUE.replace("'blue'", "'red'")),
        )
        .await;
        // An oversized argument to every method that takes a string.
        let big = "v".repeat(OVERSIZED);
        let b = big.as_str();
        let vm1 = numbered_domain(1, RULES);
        for (what, e) in [
            (
                "HookEvent, domain",
                refused("", root.hook_event(b, "start", "begin", "-", &vm1)).await,
            ),
            (
                "HookEvent, operation",
                refused("", root.hook_event("vm1", b, "begin", "-", &vm1)).await,
            ),
            (
                "HookEvent, xml",
                refused("", root.hook_event("vm1", "start", "begin", "-", b)).await,
            ),
            ("GetDomain", refused("", root.get_domain(b)).await),
            ("ValidatePolicy", refused("", root.validate_policy(b)).await),
            (
                "Trace",
                refused("", root.trace(b, b, b, b, b, 1, 0, 0)).await,
            ),
            (
                "TraceLive",
                refused("", root.trace_live(b, b, b, b, b, 1, 0, 0)).await,
            ),
            ("RecentEvents", refused("", root.recent_events(b)).await),
            ("GetPolicy", refused("", root.get_policy(b)).await),
            (
                "SetPolicy, domain",
                refused("", root.set_policy(b, "", false)).await,
            ),
            ("DefineNetwork", refused("", root.define_network(b)).await),
            (
                "UndefineNetwork",
                refused("", root.undefine_network(b)).await,
            ),
            ("GetNetwork", refused("", root.get_network(b)).await),
        ] {
            assert!(
                e.len() < 4096,
                "{what}: the error echoes the argument back ({} bytes)",
                e.len()
            );
        }
        assert_eq!(snapshot(&root).await, before);
    });
    crowd.stop();
    let mut latencies = latencies;
    println!(
        "1000 hostile connections: hook calls p50 {} p99 {}; resident {} KiB before, peak {} KiB",
        ms(pct(&mut latencies, 0.5)),
        ms(pct(&mut latencies, 0.99)),
        rss_before,
        rss_peak
    );
    assert!(
        rss_peak <= rss_before + RSS_GROWTH_BOUND_MIB * 1024,
        "hookd's process grew from {rss_before} KiB to {rss_peak} KiB with hostile clients connected"
    );
    rt.block_on(async {
        assert_eq!(snapshot(&root).await, before);
    });
}
