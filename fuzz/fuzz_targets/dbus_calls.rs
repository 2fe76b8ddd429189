//! Every method of org.hookd.Hookd1.Manager, called with what the fuzzer
//! makes of its arguments, in sequences of up to 8 calls, over a
//! peer-to-peer connection to a fresh hookd (its daemon code, state
//! directory and D-Bus layer; the data plane is the test kit's recording
//! stand-in, as the kernel's part is not under test here). Checks: every
//! call is answered within 10 s, and a call answered with an error leaves
//! what hookd reports unchanged (its networks, its domains and their
//! policies): nothing half-applied.
#![no_main]

use arbitrary::Arbitrary;
use hookd::api::{Manager, Readers};
use hookd::core::Daemon;
use hookd::core::records::StateDir;
use hookd_dbus::ManagerProxy;
use hookd_testkit::plane::FakePlane;
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// An XML argument: text as the fuzzer makes it, or a domain around a
/// policy fragment the fuzzer makes (which reaches the policy code).
#[derive(Debug, Arbitrary)]
enum Xml {
    Raw(String),
    Domain {
        name: Name,
        nic: bool,
        policy: String,
    },
    Network {
        name: Name,
        vni: u32,
        subnet: String,
    },
}

/// A domain or network name: one of a few that calls share, or any.
#[derive(Debug, Arbitrary)]
enum Name {
    Vm1,
    Vm2,
    Blue,
    Any(String),
}

impl Name {
    fn text(&self) -> &str {
        match self {
            Name::Vm1 => "vm1",
            Name::Vm2 => "vm2",
            Name::Blue => "blue",
            Name::Any(s) => s,
        }
    }
}

fn escaped(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('\'', "&apos;")
}

impl Xml {
    fn text(&self) -> String {
        match self {
            Xml::Raw(s) => s.clone(),
            Xml::Domain { name, nic, policy } => {
                let nic = if *nic {
                    "<interface type='bridge'><mac address='52:54:00:00:00:0a'/>\
                     <source bridge='br0'/><target dev='vnet0'/></interface>"
                } else {
                    ""
                };
                format!(
                    "<domain type='qemu'><name>{}</name>\
                     <uuid>00000000-0000-4000-8000-0000000000c1</uuid><metadata>\
                     <hookd:policy xmlns:hookd='urn:hookd:policy:1'>{policy}</hookd:policy>\
                     </metadata><devices>{nic}</devices></domain>",
                    escaped(name.text())
                )
            }
            Xml::Network { name, vni, subnet } => format!(
                "<network xmlns='urn:hookd:network:1' name='{}' tenant='acme' vni='{vni}'>\
                 <subnet prefix='{}' gateway='198.51.100.1'/></network>",
                escaped(name.text()),
                escaped(subnet)
            ),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Call {
    HookEvent {
        domain: Name,
        operation: String,
        sub: String,
        extra: String,
        xml: Xml,
    },
    ListDomains,
    GetDomain(Name),
    ValidatePolicy(Xml),
    Trace {
        domain: Name,
        mac: String,
        direction: String,
        remote: String,
        protocol: String,
        port: u16,
        icmp_type: u8,
        icmp_code: u8,
        /// TraceLive instead (with a fake data plane: refused, changing nothing).
        live: bool,
    },
    RecentEvents(Name),
    GetPolicy(Name),
    SetPolicy {
        domain: Name,
        policy: Xml,
        persist: bool,
    },
    DefineNetwork(Xml),
    UndefineNetwork(Name),
    ListNetworks,
    GetNetwork(Name),
    ListMigrations,
    Health,
    Version,
}

/// The hook operations libvirt passes, so that sequences reach attach and
/// detach; the fuzzer's own strings reach the rest.
const OPERATIONS: [&str; 6] = [
    "prepare", "start", "started", "stopped", "release", "migrate",
];

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

/// What hookd reports, to compare around a refused call.
async fn observed(p: &ManagerProxy<'_>) -> String {
    let mut out = format!(
        "{:?}\n{:?}\n",
        p.list_networks().await,
        p.list_domains().await
    );
    if let Ok(domains) = p.list_domains().await {
        for d in domains {
            out += &format!("{:?}\n", p.get_policy(&d.name).await);
        }
    }
    out
}

async fn call(p: &ManagerProxy<'_>, c: &Call) -> Result<(), hookd_dbus::Error> {
    match c {
        Call::HookEvent {
            domain,
            operation,
            sub,
            extra,
            xml,
        } => {
            let op = operation
                .bytes()
                .next()
                .and_then(|b| OPERATIONS.get(usize::from(b)))
                .copied()
                .unwrap_or(operation);
            p.hook_event(domain.text(), op, sub, extra, &xml.text())
                .await
                .map(drop)
        }
        Call::ListDomains => p.list_domains().await.map(drop),
        Call::GetDomain(n) => p.get_domain(n.text()).await.map(drop),
        Call::ValidatePolicy(x) => p.validate_policy(&x.text()).await.map(drop),
        Call::Trace {
            domain,
            mac,
            direction,
            remote,
            protocol,
            port,
            icmp_type,
            icmp_code,
            live: false,
        } => p
            .trace(
                domain.text(),
                mac,
                direction,
                remote,
                protocol,
                *port,
                *icmp_type,
                *icmp_code,
            )
            .await
            .map(drop),
        Call::Trace {
            domain,
            mac,
            direction,
            remote,
            protocol,
            port,
            icmp_type,
            icmp_code,
            live: true,
        } => p
            .trace_live(
                domain.text(),
                mac,
                direction,
                remote,
                protocol,
                *port,
                *icmp_type,
                *icmp_code,
            )
            .await
            .map(drop),
        Call::RecentEvents(n) => p.recent_events(n.text()).await.map(drop),
        Call::GetPolicy(n) => p.get_policy(n.text()).await.map(drop),
        Call::SetPolicy {
            domain,
            policy,
            persist,
        } => p
            .set_policy(domain.text(), &policy.text(), *persist)
            .await
            .map(drop),
        Call::DefineNetwork(x) => p.define_network(&x.text()).await.map(drop),
        Call::UndefineNetwork(n) => p.undefine_network(n.text()).await.map(drop),
        Call::ListNetworks => p.list_networks().await.map(drop),
        Call::GetNetwork(n) => p.get_network(n.text()).await.map(drop),
        Call::ListMigrations => p.list_migrations().await.map(drop),
        Call::Health => p.health().await.map(drop),
        Call::Version => p.version().await.map(drop).map_err(Into::into),
    }
}

async fn run(calls: &[Call]) {
    let state = tempfile::tempdir().expect("a state directory");
    let daemon = Daemon::new(
        Box::new(FakePlane::quiet()),
        StateDir::open(state.path()).expect("state directory opens"),
        true,
    );
    let view = daemon.view();
    let daemon = Arc::new(tokio::sync::Mutex::new(daemon));
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("a socket pair");
    let server = zbus::connection::Builder::unix_stream(theirs)
        .server(zbus::Guid::generate())
        .p2p()
        .serve_at(
            hookd_dbus::MANAGER_PATH,
            Manager::new(daemon, view, Readers::Everyone, None),
        )
        .build();
    let client = zbus::connection::Builder::unix_stream(ours).p2p().build();
    let (server, client) = tokio::try_join!(server, client).expect("the connection is made");
    let proxy = ManagerProxy::new(&client).await.expect("a proxy");
    for c in calls {
        let before = observed(&proxy).await;
        let answer = tokio::time::timeout(Duration::from_secs(10), call(&proxy, c))
            .await
            .unwrap_or_else(|_| panic!("no answer within 10 s to {c:?}"));
        if let Err(e) = answer {
            // A start is answered before its attach, which runs on: the
            // state may still move after an answer to an earlier call.
            if matches!(c, Call::HookEvent { .. }) {
                continue;
            }
            let after = observed(&proxy).await;
            assert_eq!(
                before, after,
                "{c:?} was refused ({e}) but changed hookd's state"
            );
        }
    }
    drop(server);
}

fuzz_target!(|calls: Vec<Call>| {
    if calls.len() > 8 {
        return;
    }
    runtime().block_on(run(&calls));
});
