//! org.hookd.Hookd1.Manager on a private dbus-daemon (whose policy lets
//! anybody call anything: access control is dbus_access.rs's subject), and
//! on hookd's peer-to-peer hook socket. The data plane here is a recording
//! stand-in (the real one is exercised in antispoofing.rs, attach.rs, firewall.rs and vm-tests/): it
//! lets these tests check what the service asks of the kernel side.

use hookd_testkit as support;

use support::plane::{Calls, FakePlane};
use support::private_bus::PrivateBus;

use hookd::api::Readers;
use hookd::core::Daemon;
use hookd::core::records::StateDir;
use hookd::libvirt::Libvirt;
use hookd_dbus::{Error, ManagerProxy};
use std::sync::Arc;
use support::xml::DomainXml;

const UUID: &str = "00000000-0000-4000-8000-0000000000c1";

fn xml(policy: &str, tap: &str) -> String {
    DomainXml::new("vm1", UUID)
        .metadata(policy)
        .nic("bridge", "52:54:00:00:00:0a", Some(tap))
        .to_string()
}

const POLICY: &str = "<hookd:policy xmlns:hookd='urn:hookd:policy:1'>\n<hookd:interface mac='52:54:00:00:00:0a'>\n<hookd:address prefix='192.0.2.10/32'/>\n<hookd:ingress default='deny'><hookd:rule action='allow' protocol='tcp' ports='22'/></hookd:ingress>\n</hookd:interface>\n</hookd:policy>";

/// hookd's service on a private bus and on a hook socket, alive while held.
struct Served {
    _bus: PrivateBus,
    _server: hookd::api::Served,
    socket: std::path::PathBuf,
}

async fn setup() -> (ManagerProxy<'static>, Calls, tempfile::TempDir, Served) {
    setup_with(None).await
}

async fn setup_with(
    libvirt: Option<Libvirt>,
) -> (ManagerProxy<'static>, Calls, tempfile::TempDir, Served) {
    let (plane, calls) = FakePlane::recording();
    let run = tempfile::tempdir().unwrap();
    let daemon = Daemon::new(Box::new(plane), StateDir::open(run.path()).unwrap(), true);
    let view = daemon.view();
    let daemon = Arc::new(tokio::sync::Mutex::new(daemon));
    let bus = PrivateBus::start(false);
    let socket = run.path().join("hook.sock");
    let server = hookd::api::serve(
        zbus::connection::Builder::address(bus.address.as_str()),
        daemon,
        view,
        Readers::Everyone,
        libvirt,
        &socket,
    )
    .await
    .unwrap();
    let client = zbus::connection::Builder::address(bus.address.as_str())
        .build()
        .await
        .unwrap();
    let proxy = ManagerProxy::new(&client).await.unwrap();
    (
        proxy,
        calls,
        run,
        Served {
            _bus: bus,
            _server: server,
            socket,
        },
    )
}

async fn hook(p: &ManagerProxy<'_>, op: &str, xml: &str) -> Result<String, Error> {
    p.hook_event("vm1", op, "begin", "-", xml).await
}

/// `start` then `started`, as libvirt calls them: `start` answers once the
/// domain is checked, `started` once it is attached.
async fn start_vm(p: &ManagerProxy<'_>, xml: &str) {
    hook(p, "start", xml).await.unwrap();
    hook(p, "started", xml).await.unwrap();
}

#[tokio::test]
async fn version_and_empty_lists() {
    let (p, _, _run, _s) = setup().await;
    assert_eq!(p.version().await.unwrap(), hookd::VERSION);
    assert_eq!(
        p.health().await.unwrap(),
        (
            "ok".to_string(),
            "0 domain(s), 0 attached NIC(s)".to_string()
        )
    );
    assert!(p.list_domains().await.unwrap().is_empty());
    assert!(p.recent_events("").await.unwrap().is_empty());
    match p.get_domain("nope").await {
        Err(Error::NotFound(m)) => assert!(m.contains("nope")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn lifecycle_over_dbus() {
    let (p, calls, run, _s) = setup().await;
    let good = xml(POLICY, "vnet0");
    assert!(
        hook(&p, "prepare", &good)
            .await
            .unwrap()
            .contains("policy valid")
    );
    assert!(calls.lock().unwrap().is_empty(), "prepare attaches nothing");
    assert!(
        hook(&p, "start", &good)
            .await
            .unwrap()
            .contains("policy valid, attaching 1 NIC(s)")
    );
    // `started` waits for the attach `start` queued, and, with nothing
    // changed since, has nothing more to do.
    assert!(
        hook(&p, "started", &good)
            .await
            .unwrap()
            .contains("already enforced")
    );
    assert_eq!(
        *calls.lock().unwrap(),
        [format!("attach {UUID} vnet0 anti-spoofing")]
    );
    let list = p.list_domains().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (
            list[0].name.as_str(),
            list[0].managed,
            list[0].attached_nics,
            list[0].attached_at.as_str()
        ),
        ("vm1", true, 1, "start")
    );
    let d = p.get_domain(UUID).await.unwrap();
    assert_eq!(d.nics[0].tap, "vnet0");
    assert_eq!(
        d.nics[0].addresses,
        ["192.0.2.10/32", "fe80::5054:ff:fe00:a/128"]
    );
    let c: Vec<(String, u64)> = d.nics[0]
        .counters
        .iter()
        .map(|c| (c.name.clone(), c.value))
        .collect();
    assert!(
        c.contains(&("from_vm_packets".into(), 7)) && c.contains(&("drop_ip_spoof".into(), 3)),
        "{c:?}"
    );
    let r = &d.nics[0].rules[0];
    assert_eq!(
        (
            r.direction.as_str(),
            r.index,
            r.line,
            r.rule.as_str(),
            r.hits
        ),
        ("ingress", 0, 7, "allow tcp ports 22 remote any", 5)
    );
    assert!(run.path().join(format!("domains/{UUID}.json")).exists());
    // stopped XML without <target dev>: detached from what was recorded.
    hook(&p, "stopped", &xml(POLICY, "")).await.unwrap();
    assert_eq!(
        calls.lock().unwrap().last().unwrap(),
        &format!("detach {UUID} vnet0")
    );
    assert!(p.list_domains().await.unwrap().is_empty());
    assert!(!run.path().join(format!("domains/{UUID}.json")).exists());
    assert!(
        hook(&p, "release", &good)
            .await
            .unwrap()
            .contains("nothing to do")
    );
    // An incoming migration is answered with its XML (unchanged: this
    // daemon serves no migration helpers; tests/migration.rs has them).
    assert_eq!(hook(&p, "migrate", &good).await.unwrap(), good);
}

#[tokio::test]
async fn invalid_input_is_refused_with_typed_errors_and_changes_nothing() {
    let (p, calls, _run, _s) = setup().await;
    let bad = xml(&POLICY.replace("192.0.2.10/32", "192.0.2.10/40"), "vnet0");
    for op in ["prepare", "start"] {
        match hook(&p, op, &bad).await {
            Err(Error::InvalidPolicy(m)) => assert!(
                m.starts_with("line 6: <hookd:address> attribute 'prefix'"),
                "{m}"
            ),
            other => panic!("{op}: {other:?}"),
        }
    }
    match hook(&p, "start", "<domain><name>x</name>").await {
        Err(Error::InvalidPolicy(m)) => {
            assert!(m.contains("malformed") || m.contains("never closed"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    let huge = "x".repeat(hookd_model::xml_tree::MAX_XML_BYTES + 1);
    assert!(
        matches!(hook(&p, "start", &huge).await, Err(Error::InvalidPolicy(m)) if m.contains("limit"))
    );
    match hook(&p, "start", &xml(POLICY, "missing0")).await {
        Err(Error::AttachFailed(m)) => assert!(m.contains("missing0"), "{m}"),
        other => panic!("{other:?}"),
    }
    // The tap is there but the attach, queued by `start`, fails: `started`
    // tries again and fails the start, so the guest never runs.
    let failing = xml(POLICY, hookd_testkit::plane::FAILING_TAP);
    hook(&p, "start", &failing).await.unwrap();
    match hook(&p, "started", &failing).await {
        Err(Error::AttachFailed(m)) => assert!(m.contains("failing0"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(calls.lock().unwrap().is_empty());
    assert!(p.list_domains().await.unwrap().is_empty());
}

/// The contract is a file: dbus/org.hookd.Hookd1.Manager.xml must be exactly
/// what hookd serves (regenerate it with HOOKD_BLESS=1 after a deliberate
/// change, and review the diff).
#[tokio::test]
async fn served_interface_matches_the_introspection_file() {
    let (p, _, _run, _s) = setup().await;
    let intro = zbus::fdo::IntrospectableProxy::builder(p.inner().connection())
        .destination("org.hookd.Hookd1")
        .path(hookd_dbus::MANAGER_PATH)
        .build()
        .await
        .unwrap();
    let xml = intro.introspect().await.unwrap();
    let start = xml
        .find("<interface name=\"org.hookd.Hookd1.Manager\">")
        .expect("Manager interface served");
    let end = start + xml[start..].find("</interface>").unwrap() + "</interface>".len();
    let served = format!("{}\n", &xml[start..end]);
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../dbus/org.hookd.Hookd1.Manager.xml"
    );
    if std::env::var_os("HOOKD_BLESS").is_some() {
        std::fs::write(path, &served).unwrap();
    }
    let file = std::fs::read_to_string(path).expect("dbus/org.hookd.Hookd1.Manager.xml");
    assert_eq!(served, file, "the served interface differs from {path}");
}

#[tokio::test]
async fn validate_policy_without_applying_it() {
    let (p, calls, _run, _s) = setup().await;
    let summary = p.validate_policy(POLICY).await.unwrap();
    assert_eq!(summary, "valid policy: 1 interface(s), 1 rule(s)");
    assert!(
        p.validate_policy(&xml(POLICY, "vnet0"))
            .await
            .unwrap()
            .starts_with("valid domain vm1: managed, 1 NIC(s)")
    );
    match p
        .validate_policy(&POLICY.replace("ports='22'", "ports='22-1'"))
        .await
    {
        Err(Error::InvalidPolicy(m)) => assert!(
            m.contains("<hookd:rule> attribute 'ports': range 22-1 is backwards"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    match p
        .validate_policy("<hookd:rules xmlns:hookd='urn:hookd:policy:1'/>")
        .await
    {
        Err(Error::InvalidPolicy(m)) => assert!(m.contains("<hookd:rules>"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(
        calls.lock().unwrap().is_empty(),
        "validation applies nothing"
    );
    assert!(p.list_domains().await.unwrap().is_empty());
}

#[tokio::test]
async fn trace_a_packet_through_the_live_rules() {
    let (p, _, _run, _s) = setup().await;
    start_vm(&p, &xml(POLICY, "vnet0")).await;
    let mac = "52:54:00:00:00:0a";
    let t = |dir: &'static str, proto: &'static str, port: u16| {
        let p = &p;
        async move {
            p.trace("vm1", mac, dir, "198.51.100.7", proto, port, 0, 0)
                .await
        }
    };
    let (action, line, why) = t("ingress", "tcp", 22).await.unwrap();
    assert_eq!((action.as_str(), line), ("allow", 7), "{why}");
    assert!(why.contains("allow tcp ports 22"), "{why}");
    let (action, line, why) = t("ingress", "tcp", 23).await.unwrap();
    assert_eq!((action.as_str(), line), ("deny", 0));
    assert!(why.contains("default deny"), "{why}");
    let (action, _, why) = t("egress", "udp", 53).await.unwrap();
    assert_eq!(action, "allow");
    assert!(why.contains("no <hookd:egress>"), "{why}");
    assert!(matches!(
        t("sideways", "tcp", 22).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        t("ingress", "gre2", 22).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        p.trace(
            "vm1",
            "52:54:00:00:00:99",
            "ingress",
            "198.51.100.7",
            "tcp",
            22,
            0,
            0
        )
        .await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        p.trace("nope", mac, "ingress", "198.51.100.7", "tcp", 22, 0, 0)
            .await,
        Err(Error::NotFound(_))
    ));
}

#[tokio::test]
async fn metrics_in_the_prometheus_text_format() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (plane, _calls) = FakePlane::recording();
    let run = tempfile::tempdir().unwrap();
    let mut d = Daemon::new(Box::new(plane), StateDir::open(run.path()).unwrap(), true);
    let args = hookd_model::hook::HookArgs {
        domain: "vm1".into(),
        operation: "start".into(),
        sub_operation: "begin".into(),
        extra: "-".into(),
    };
    d.hook_event(&args, &xml(POLICY, "vnet0")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(hookd::metrics::serve(listener, d.view()));
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut resp = String::new();
    sock.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.contains("Content-Type: text/plain; version=0.0.4"));
    let labels = format!("domain=\"vm1\",uuid=\"{UUID}\",mac=\"52:54:00:00:00:0a\",tap=\"vnet0\"");
    assert!(
        resp.contains("# TYPE hookd_nic_packets_total counter"),
        "{resp}"
    );
    assert!(
        resp.contains(&format!(
            "hookd_nic_packets_total{{{labels},direction=\"from_vm\"}} 7"
        )),
        "{resp}"
    );
    assert!(
        resp.contains(&format!(
            "hookd_nic_drops_total{{{labels},reason=\"ip_spoof\"}} 3"
        )),
        "{resp}"
    );
}

const POLICY_WEB: &str = "<policy xmlns='urn:hookd:policy:1'>\n<interface mac='52:54:00:00:00:0a'>\n<address prefix='192.0.2.10/32'/>\n<ingress default='deny'><rule action='allow' protocol='tcp' ports='80'/></ingress>\n</interface>\n</policy>";

async fn trace_tcp(p: &ManagerProxy<'_>, port: u16) -> String {
    p.trace(
        "vm1",
        "52:54:00:00:00:0a",
        "ingress",
        "198.51.100.1",
        "tcp",
        port,
        0,
        0,
    )
    .await
    .unwrap()
    .0
}

#[tokio::test]
async fn get_and_set_policy_over_dbus() {
    use futures_util::StreamExt;
    let (p, calls, run, _s) = setup().await;
    start_vm(&p, &xml(POLICY, "vnet0")).await;
    assert_eq!(p.get_policy("vm1").await.unwrap(), POLICY);
    let g0 = p.get_domain("vm1").await.unwrap().generation;
    let mut applied = p.receive_policy_applied().await.unwrap();

    let (g1, summary) = p.set_policy("vm1", POLICY_WEB, false).await.unwrap();
    assert!(
        g1 > g0 && summary.contains("policy applied"),
        "{g1} {summary}"
    );
    let sig = applied.next().await.unwrap();
    assert_eq!(sig.args().unwrap().generation, g1);
    assert_eq!(
        calls.lock().unwrap().last().unwrap(),
        "update 42",
        "maps swapped, links kept"
    );
    assert_eq!(p.get_policy(UUID).await.unwrap(), POLICY_WEB);
    assert_eq!(
        (trace_tcp(&p, 80).await, trace_tcp(&p, 22).await),
        ("allow".into(), "deny".into())
    );
    let recorded =
        std::fs::read_to_string(run.path().join(format!("domains/{UUID}.json"))).unwrap();
    assert!(
        recorded.contains("ports='80'"),
        "the record holds the new policy"
    );

    // Invalid: refused with the document's own line, nothing changes.
    match p
        .set_policy("vm1", &POLICY_WEB.replace("'80'", "'70000'"), false)
        .await
    {
        Err(Error::InvalidPolicy(m)) => {
            assert!(m.starts_with("line 4: <rule> attribute 'ports'"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    match p
        .set_policy("vm1", "<policy xmlns='urn:other'/>", false)
        .await
    {
        Err(Error::InvalidPolicy(m)) => assert!(m.contains("urn:hookd:policy:1"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        p.set_policy("nope", POLICY_WEB, false).await,
        Err(Error::NotFound(_))
    ));
    match p.set_policy("vm1", POLICY_WEB, true).await {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("libvirt_uri"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(p.get_policy("vm1").await.unwrap(), POLICY_WEB);
    assert_eq!(p.get_domain("vm1").await.unwrap().generation, g1);

    // Empty removes the policy: the NIC is only counted from then on.
    let (g2, _) = p.set_policy("vm1", "", false).await.unwrap();
    assert!(g2 > g1);
    assert_eq!(p.get_policy("vm1").await.unwrap(), "");
    let list = p.list_domains().await.unwrap();
    assert!(!list[0].managed);
    assert_eq!(trace_tcp(&p, 22).await, "allow");
}

/// With persist, a libvirt that cannot be reached fails the call and puts
/// the previous policy back in force.
#[tokio::test]
async fn a_policy_libvirt_refuses_is_rolled_back() {
    let lv = Libvirt::new("qemu+unix:///system?socket=/nonexistent/libvirt-sock");
    let (p, _, _run, _s) = setup_with(Some(lv)).await;
    start_vm(&p, &xml(POLICY, "vnet0")).await;
    match p.set_policy("vm1", POLICY_WEB, true).await {
        Err(Error::Libvirt(m)) => assert!(m.contains("previous policy is back in force"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(p.get_policy("vm1").await.unwrap(), POLICY);
    assert_eq!(trace_tcp(&p, 22).await, "allow");
}

/// The hook's own socket: hook calls are served there (root only), their
/// signals still go out on the bus, and what they change is what the bus
/// side sees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_calls_on_the_hook_socket() {
    use futures_util::StreamExt;
    let (p, calls, _run, s) = setup().await;
    let mut attached = p.receive_domain_attached().await.unwrap();
    let stream = std::os::unix::net::UnixStream::connect(&s.socket).unwrap();
    let mode = std::fs::metadata(&s.socket).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    let hook_conn = zbus::connection::Builder::unix_stream(stream)
        .p2p()
        .build()
        .await
        .unwrap();
    let hook_side = ManagerProxy::new(&hook_conn).await.unwrap();
    let summary = hook_side
        .hook_event("vm1", "start", "begin", "-", &xml(POLICY, "vnet0"))
        .await
        .unwrap();
    assert!(summary.contains("attaching"), "{summary}");
    let sig = attached.next().await.unwrap();
    assert_eq!(sig.args().unwrap().name, "vm1", "signalled on the bus");
    assert_eq!(p.list_domains().await.unwrap()[0].name, "vm1");
    assert_eq!(calls.lock().unwrap().len(), 1);
}

const BLUE: &str = "<network xmlns='urn:hookd:network:1' name='blue' tenant='acme' vni='10010'>\n\
    <subnet prefix='198.51.100.0/24' gateway='198.51.100.1'/>\n\
    <subnet prefix='2001:db8:100::/64' gateway='2001:db8:100::1'/>\n</network>";

#[tokio::test]
async fn networks_are_defined_listed_shown_and_undefined() {
    let (p, calls, _run, _s) = setup().await;
    assert!(p.list_networks().await.unwrap().is_empty());
    let summary = p.define_network(BLUE).await.unwrap();
    assert_eq!(
        summary,
        "network blue defined (tenant acme, VNI 10010, 2 subnet(s), MTU 1500)"
    );
    let list = p.list_networks().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].subnets, ["198.51.100.0/24", "2001:db8:100::/64"]);
    let d = p.get_network("blue").await.unwrap();
    assert_eq!((d.tenant.as_str(), d.vni, d.mtu), ("acme", 10010, 1500));
    assert_eq!(d.subnets[1].gateway, "2001:db8:100::1");
    assert_eq!(d.xml, BLUE);

    // Invalid, or in conflict with blue: refused, nothing changes.
    let bad = BLUE.replace("gateway='198.51.100.1'", "gateway='203.0.113.1'");
    match p.define_network(&bad).await {
        Err(Error::InvalidNetwork(m)) => assert!(
            m.contains(
                "line 2: <subnet> attribute 'gateway': 203.0.113.1 is not inside 198.51.100.0/24"
            ),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    let clash = BLUE
        .replace("name='blue'", "name='red'")
        .replace("vni='10010'", "vni='7'");
    match p.define_network(&clash).await {
        Err(Error::InvalidNetwork(m)) => {
            assert!(
                m.contains("overlaps 198.51.100.0/24 of network blue"),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(p.get_network("blue").await.unwrap().xml, BLUE);
    assert_eq!(p.list_networks().await.unwrap().len(), 1);

    assert_eq!(
        p.undefine_network("blue").await.unwrap(),
        "network blue undefined"
    );
    match p.get_network("blue").await {
        Err(Error::NotFound(m)) => assert!(m.contains("no network 'blue'"), "{m}"),
        other => panic!("{other:?}"),
    }
    match p.undefine_network("blue").await {
        Err(Error::NotFound(_)) => {}
        other => panic!("{other:?}"),
    }
    // Networks touch no NIC.
    assert!(calls.lock().unwrap().is_empty());
}

/// vm1 with one NIC of `kind` on tap vnet0, whose policy puts it on
/// `network` with `address`.
fn on_network(kind: &str, network: &str, address: &str) -> String {
    DomainXml::new("vm1", UUID)
        .metadata(&format!(
            "<hookd:policy xmlns:hookd='urn:hookd:policy:1'>\n<hookd:interface mac='52:54:00:00:00:0a'>\n\
             <hookd:network name='{network}'/>\n<hookd:address prefix='{address}'/>\n</hookd:interface>\n</hookd:policy>"
        ))
        .nic(kind, "52:54:00:00:00:0a", Some("vnet0"))
        .to_string()
}

#[tokio::test]
async fn nics_join_defined_networks_only() {
    let (p, calls, _run, _s) = setup().await;
    p.define_network(BLUE).await.unwrap();
    let refused = |r: Result<String, Error>, want: &str| match r {
        Err(Error::InvalidPolicy(m)) => assert!(m.contains(want), "{m}\n  want: {want}"),
        other => panic!("{other:?}"),
    };
    // A network that does not exist, an address outside the network, a
    // bridged NIC: refused at prepare and at start, nothing attached.
    for op in ["prepare", "start"] {
        refused(
            hook(&p, op, &on_network("ethernet", "red", "198.51.100.10/32")).await,
            "<hookd:network> attribute 'name': no network 'red' is defined",
        );
        refused(
            hook(&p, op, &on_network("ethernet", "blue", "203.0.113.10/32")).await,
            "203.0.113.10/32 is not inside a subnet of network blue (198.51.100.0/24, 2001:db8:100::/64)",
        );
        refused(
            hook(&p, op, &on_network("bridge", "blue", "198.51.100.10/32")).await,
            "its policy puts it on network blue, but it is an <interface type='bridge'>",
        );
    }
    refused(
        p.validate_policy(&on_network("ethernet", "red", "198.51.100.10/32"))
            .await,
        "no network 'red' is defined",
    );
    assert!(calls.lock().unwrap().is_empty(), "nothing attached");
    assert!(p.list_domains().await.unwrap().is_empty());

    // On blue: attached, and blue can then be neither changed nor removed.
    let xml = on_network("ethernet", "blue", "198.51.100.10/32");
    p.validate_policy(&xml).await.unwrap();
    start_vm(&p, &xml).await;
    assert_eq!(p.list_domains().await.unwrap().len(), 1);
    let nics = p.get_network("blue").await.unwrap().nics;
    assert_eq!(nics.len(), 1);
    assert_eq!(
        (nics[0].domain.as_str(), nics[0].tap.as_str()),
        ("vm1", "vnet0")
    );
    assert!(nics[0].addresses.contains(&"198.51.100.10/32".to_string()));
    let d = p.get_domain("vm1").await.unwrap();
    assert_eq!(d.nics[0].mode, "anti-spoofing, network blue");
    for r in [
        p.undefine_network("blue").await,
        p.define_network(&BLUE.replace("vni='10010'", "vni='10011'"))
            .await,
    ] {
        match r {
            Err(Error::Refused(m)) => assert!(
                m.contains("network blue is in use by vm1 (52:54:00:00:00:0a)"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
    }
    // The same definition again changes nothing and is accepted.
    p.define_network(BLUE).await.unwrap();
    hook(&p, "release", &xml).await.unwrap();
    assert!(p.get_network("blue").await.unwrap().nics.is_empty());
    p.undefine_network("blue").await.unwrap();
}
