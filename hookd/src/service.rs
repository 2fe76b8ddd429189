//! `org.hookd.Hookd1.Manager` on D-Bus, over the daemon core.

use crate::daemon::{self, Daemon, DaemonError, View};
use crate::hook::HookArgs;
use crate::libvirt::Libvirt;
use crate::xml_tree::MAX_XML_BYTES;
use hookd_dbus::{Counter, DomainDetail, DomainSummary, Error, NicInfo, RuleHits};
use std::sync::Arc;
use tokio::sync::Mutex;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use zbus::Connection;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;

/// The object behind `org.hookd.Hookd1.Manager`. Calls that change
/// something take the daemon's lock; reading calls use its [`View`] and
/// never take the lock, so a flood of them cannot delay a hook call.
pub struct Manager {
    daemon: Arc<Mutex<Daemon>>,
    view: View,
    readers: Readers,
    libvirt: Option<Libvirt>,
    /// Where change signals go when calls arrive on the hook's own socket
    /// (a task that emits them on the bus); None: on the call's connection.
    signals: Option<UnboundedSender<Change>>,
}

/// Who may call the reading methods. Root may always call everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readers {
    /// Any caller (peer-to-peer tests).
    Everyone,
    /// Members of this group (`read_group` in hookd.toml).
    Group(u32),
    /// Nobody but root (`read_group` names no group on this host).
    RootOnly,
}

impl Manager {
    /// `view` is the daemon's (`Daemon::view`), taken before it is shared.
    pub fn new(
        daemon: Arc<Mutex<Daemon>>,
        view: View,
        readers: Readers,
        libvirt: Option<Libvirt>,
    ) -> Manager {
        Manager {
            daemon,
            view,
            readers,
            libvirt,
            signals: None,
        }
    }

    /// Hands change signals to `queue` (see [`forward_signals`]) rather
    /// than emitting them on the connection a call arrived on: for the
    /// hook's socket, whose calls then never wait for the bus.
    pub fn with_signals_to(mut self, queue: UnboundedSender<Change>) -> Manager {
        self.signals = Some(queue);
        self
    }

    fn sink<'a>(&self, call: &SignalEmitter<'a>) -> SignalSink<'a> {
        match &self.signals {
            Some(q) => SignalSink::Queue(q.clone()),
            None => SignalSink::Now(call.clone()),
        }
    }

    /// Checks that the caller may read.
    async fn require_reader(
        &self,
        hdr: &Header<'_>,
        conn: &Connection,
        what: &str,
    ) -> Result<(), Error> {
        if self.readers == Readers::Everyone {
            return Ok(());
        }
        let c = caller(hdr, conn).await?;
        match self.readers {
            _ if c.uid == 0 => Ok(()),
            Readers::Group(gid) if c.gids.contains(&gid) => Ok(()),
            _ => Err(Error::AccessDenied(format!(
                "{what} is reserved to root and the read group (caller uid {})",
                c.uid
            ))),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "{} is already owned on the bus: is another hookd running?",
        hookd_dbus::BUS_NAME
    )]
    NameTaken,
    #[error("connecting to the bus: {0}")]
    Bus(zbus::Error),
    #[error("hook socket {path}: {source}")]
    HookSocket {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Serves the Manager the way hookd does: on the bus `bus` leads to
/// (`Builder::system()` in production), claiming hookd's name last and with
/// replacement off either way, so that a second hookd fails instead of
/// stealing it; then, the name being hookd's single-instance lock, on the
/// hook socket at `hook_socket`, whose change signals are forwarded to the
/// bus. Returns the bus connection.
pub async fn serve(
    bus: zbus::connection::Builder<'_>,
    daemon: Arc<Mutex<Daemon>>,
    view: View,
    readers: Readers,
    libvirt: Option<Libvirt>,
    hook_socket: &std::path::Path,
) -> Result<Connection, ServeError> {
    let conn = bus
        .serve_at(
            hookd_dbus::MANAGER_PATH,
            Manager::new(daemon.clone(), view.clone(), readers, libvirt.clone()),
        )
        .name(hookd_dbus::BUS_NAME)
        .allow_name_replacements(false)
        .replace_existing_names(false)
        .build()
        .await
        .map_err(|e| match e {
            zbus::Error::NameTaken => ServeError::NameTaken,
            e => ServeError::Bus(e),
        })?;
    let (signals, queue) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(forward_signals(conn.clone(), queue));
    crate::hook_socket::spawn(hook_socket, move || {
        Manager::new(
            daemon.clone(),
            view.clone(),
            Readers::RootOnly,
            libvirt.clone(),
        )
        .with_signals_to(signals.clone())
    })
    .map_err(|source| ServeError::HookSocket {
        path: hook_socket.to_owned(),
        source,
    })?;
    Ok(conn)
}

/// A change worth a signal.
#[derive(Debug, Clone)]
pub enum Change {
    Attached {
        name: String,
        uuid: String,
        phase: String,
    },
    Applied {
        name: String,
        uuid: String,
        generation: u64,
    },
    Detached {
        name: String,
        uuid: String,
    },
}

/// Where change signals go.
pub enum SignalSink<'a> {
    /// Emitted at once, on this connection.
    Now(SignalEmitter<'a>),
    /// Queued for [`forward_signals`].
    Queue(UnboundedSender<Change>),
}

async fn emit(emitter: &SignalEmitter<'_>, c: &Change) {
    // A failed emission never fails the change it reports.
    let _ = match c {
        Change::Attached { name, uuid, phase } => {
            Manager::domain_attached(emitter, name, uuid, phase).await
        }
        Change::Applied {
            name,
            uuid,
            generation,
        } => Manager::policy_applied(emitter, name, uuid, *generation).await,
        Change::Detached { name, uuid } => Manager::domain_detached(emitter, name, uuid).await,
    };
}

/// Emits queued change signals on `bus`, in order, until hookd exits.
pub async fn forward_signals(bus: Connection, mut queue: UnboundedReceiver<Change>) {
    let Ok(emitter) = SignalEmitter::new(&bus, hookd_dbus::MANAGER_PATH) else {
        return;
    };
    while let Some(c) = queue.recv().await {
        emit(&emitter, &c).await;
    }
}

/// Applies a change to the daemon, then signals what changed: domains
/// attached or detached, policies applied. The data plane's housekeeping
/// (`Daemon::tidy`) runs afterwards in a task of its own, so the caller has
/// its answer first.
pub async fn change<T>(
    daemon: &Arc<Mutex<Daemon>>,
    sink: &SignalSink<'_>,
    phase: &str,
    f: impl FnOnce(&mut Daemon) -> Result<T, DaemonError>,
) -> Result<T, DaemonError> {
    let snapshot = |d: &Daemon| -> Vec<(String, String, u64)> {
        d.records()
            .iter()
            .map(|r| (r.uuid.clone(), r.name.clone(), r.generation))
            .collect()
    };
    let (result, before, after) = {
        let mut d = daemon.lock().await;
        let before = snapshot(&d);
        let result = f(&mut d);
        (result, before, snapshot(&d))
    };
    let tidy = Arc::clone(daemon);
    tokio::spawn(async move { tidy.lock().await.tidy() });
    let mut changes = Vec::new();
    for (uuid, name, generation) in &after {
        let (name, uuid, generation) = (name.clone(), uuid.clone(), *generation);
        match before.iter().find(|b| b.0 == uuid) {
            None => {
                changes.push(Change::Attached {
                    name: name.clone(),
                    uuid: uuid.clone(),
                    phase: phase.to_string(),
                });
                changes.push(Change::Applied {
                    name,
                    uuid,
                    generation,
                });
            }
            Some(b) if b.2 != generation => changes.push(Change::Applied {
                name,
                uuid,
                generation,
            }),
            Some(_) => {}
        }
    }
    for (uuid, name, _) in before
        .into_iter()
        .filter(|b| !after.iter().any(|a| a.0 == b.0))
    {
        changes.push(Change::Detached { name, uuid });
    }
    match sink {
        SignalSink::Now(emitter) => {
            for c in &changes {
                emit(emitter, c).await;
            }
        }
        SignalSink::Queue(q) => {
            for c in changes {
                let _ = q.send(c);
            }
        }
    }
    result
}

impl From<DaemonError> for Error {
    fn from(e: DaemonError) -> Error {
        match e {
            DaemonError::InvalidPolicy(m) => Error::InvalidPolicy(m),
            DaemonError::InvalidArgument(m) => Error::InvalidArgument(m),
            DaemonError::AttachFailed(m) => Error::AttachFailed(m),
            DaemonError::NotFound(m) => {
                Error::NotFound(format!("no domain '{m}' is known to hookd"))
            }
            DaemonError::State(e) => Error::AttachFailed(e.to_string()),
        }
    }
}

struct Caller {
    uid: u32,
    gids: Vec<u32>,
}

/// The caller's uid and groups: from the bus for bus connections, from the
/// socket for peer-to-peer ones. Groups come with the credentials where the
/// bus gives them, else from the caller's /proc entry.
async fn caller(hdr: &Header<'_>, conn: &Connection) -> Result<Caller, Error> {
    let creds = match hdr.sender() {
        Some(sender) => {
            let dbus = zbus::fdo::DBusProxy::new(conn).await?;
            Arc::new(
                dbus.get_connection_credentials(sender.clone().into())
                    .await
                    .map_err(|e| Error::AccessDenied(e.to_string()))?,
            )
        }
        None => conn
            .peer_creds()
            .await
            .map_err(|e| Error::AccessDenied(format!("reading the peer's credentials: {e}")))?
            .clone(),
    };
    let uid = creds
        .unix_user_id()
        .ok_or_else(|| Error::AccessDenied("the caller's uid is unknown".into()))?;
    let gids = match (creds.unix_group_ids(), creds.process_id()) {
        (Some(g), _) => g.clone(),
        (None, Some(pid)) => proc_groups(pid),
        (None, None) => Vec::new(),
    };
    Ok(Caller { uid, gids })
}

/// Primary and supplementary groups from /proc/PID/status.
fn proc_groups(pid: u32) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .filter_map(|l| {
            l.strip_prefix("Groups:").or_else(|| {
                l.strip_prefix("Gid:")
                    .map(|r| r.split_whitespace().next().unwrap_or(""))
            })
        })
        .flat_map(|r| r.split_whitespace().filter_map(|g| g.parse().ok()))
        .collect()
}

async fn require_root(hdr: &Header<'_>, conn: &Connection, what: &str) -> Result<(), Error> {
    match caller(hdr, conn).await?.uid {
        0 => Ok(()),
        uid => Err(Error::AccessDenied(format!(
            "{what} is reserved to root (caller uid {uid})"
        ))),
    }
}

#[zbus::interface(name = "org.hookd.Hookd1.Manager")]
impl Manager {
    #[allow(clippy::too_many_arguments)] // the D-Bus signature is the hook's five strings
    async fn hook_event(
        &self,
        domain: String,
        operation: String,
        sub_operation: String,
        extra: String,
        xml: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<String, Error> {
        require_root(&hdr, conn, "HookEvent").await?;
        if xml.len() > MAX_XML_BYTES {
            return Err(Error::InvalidPolicy(format!(
                "domain XML is {} bytes, more than the {MAX_XML_BYTES}-byte limit",
                xml.len()
            )));
        }
        let args = HookArgs {
            domain,
            operation,
            sub_operation,
            extra,
        };
        let via = if hdr.sender().is_some() {
            "system bus"
        } else {
            "hook socket"
        };
        tracing::info!(hook = %args, via, "hook call");
        change(&self.daemon, &self.sink(&emitter), &args.operation, |d| {
            d.hook_event(&args, &xml)
        })
        .await
        .map_err(|e| {
            tracing::warn!(hook = %args, error = %e, "hook event refused");
            e.into()
        })
    }

    /// hookd attached to a domain's taps (at the hook phase given).
    #[zbus(signal)]
    async fn domain_attached(
        emitter: &SignalEmitter<'_>,
        name: &str,
        uuid: &str,
        phase: &str,
    ) -> zbus::Result<()>;

    /// hookd detached from a domain and forgot it.
    #[zbus(signal)]
    async fn domain_detached(
        emitter: &SignalEmitter<'_>,
        name: &str,
        uuid: &str,
    ) -> zbus::Result<()>;

    /// A domain's policy (generation) is now enforced.
    #[zbus(signal)]
    async fn policy_applied(
        emitter: &SignalEmitter<'_>,
        name: &str,
        uuid: &str,
        generation: u64,
    ) -> zbus::Result<()>;

    /// A packet decided by a `log="true"` rule (rate-limited in the kernel
    /// to 100 per NIC and second).
    #[zbus(signal)]
    pub async fn packet_logged(
        emitter: &SignalEmitter<'_>,
        packet: hookd_dbus::LoggedPacket,
    ) -> zbus::Result<()>;

    async fn list_domains(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<DomainSummary>, Error> {
        self.require_reader(&hdr, conn, "ListDomains").await?;
        Ok(self
            .view
            .records()
            .iter()
            .map(|r| DomainSummary {
                name: r.name.clone(),
                uuid: r.uuid.clone(),
                managed: r.managed,
                attached_nics: r.nics.iter().filter(|n| !n.attach.is_empty()).count() as u32,
                attached_at: r.attached_at.clone(),
            })
            .collect())
    }

    async fn get_domain(
        &self,
        domain: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<DomainDetail, Error> {
        self.require_reader(&hdr, conn, "GetDomain").await?;
        let d = &self.view;
        let r = d
            .find(&domain)
            .ok_or_else(|| Error::from(DaemonError::NotFound(domain.clone())))?;
        Ok(DomainDetail {
            name: r.name.clone(),
            uuid: r.uuid.clone(),
            managed: r.managed,
            attached_at: r.attached_at.clone(),
            generation: r.generation,
            nics: r
                .nics
                .iter()
                .map(|n| NicInfo {
                    mac: n.mac.clone(),
                    kind: n.kind.clone(),
                    tap: n.tap.clone(),
                    ifindex: n.ifindex,
                    mode: n.mode.clone(),
                    attach: n.attach.clone(),
                    addresses: n.addresses.clone(),
                    rules: {
                        let hits = if n.attach.is_empty() {
                            Vec::new()
                        } else {
                            d.rule_hits(n.ifindex)
                        };
                        n.rules
                            .iter()
                            .map(|r| {
                                let dir = if r.direction == "ingress" {
                                    hookd_bpf::layout::DIR_INGRESS
                                } else {
                                    hookd_bpf::layout::DIR_EGRESS
                                };
                                RuleHits {
                                    direction: r.direction.clone(),
                                    index: r.index,
                                    line: r.line,
                                    rule: r.text.clone(),
                                    hits: hits
                                        .iter()
                                        .find(|(k, _)| *k == (dir, r.index))
                                        .map(|(_, h)| *h)
                                        .unwrap_or(0),
                                }
                            })
                            .collect()
                    },
                    counters: if n.attach.is_empty() {
                        Vec::new()
                    } else {
                        d.stats(n.ifindex)
                            .map(|s| {
                                daemon::counters(&s)
                                    .into_iter()
                                    .map(|(name, value)| Counter { name, value })
                                    .collect()
                            })
                            .unwrap_or_default()
                    },
                })
                .collect(),
        })
    }

    /// Validates a policy without applying it: a whole domain XML, or a
    /// `<policy>` element in hookd's namespace. Returns a summary.
    async fn validate_policy(
        &self,
        xml: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String, Error> {
        self.require_reader(&hdr, conn, "ValidatePolicy").await?;
        crate::explain::validate(&xml).map_err(Error::InvalidPolicy)
    }

    /// The verdict the live rules of a domain's NIC give a described packet
    /// (direction "ingress" or "egress"; port: destination port; ICMP type
    /// and code for icmp/icmpv6). Touches no connection tracking.
    #[allow(clippy::too_many_arguments)] // one argument per packet field
    #[zbus(out_args("action", "rule_line", "explanation"))]
    async fn trace(
        &self,
        domain: String,
        mac: String,
        direction: String,
        remote: String,
        protocol: String,
        port: u16,
        icmp_type: u8,
        icmp_code: u8,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(String, u32, String), Error> {
        self.require_reader(&hdr, conn, "Trace").await?;
        let q = crate::daemon::TraceQuery {
            mac,
            direction,
            remote,
            protocol,
            port,
            icmp_type,
            icmp_code,
        };
        let rec = self.view.find(&domain);
        let rec = rec.ok_or_else(|| Error::from(DaemonError::NotFound(domain.clone())))?;
        let a = Daemon::trace(&rec, &q)?;
        Ok((a.action, a.rule_line, a.explanation))
    }

    async fn recent_events(
        &self,
        domain: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<hookd_dbus::LoggedPacket>, Error> {
        self.require_reader(&hdr, conn, "RecentEvents").await?;
        Ok(self.view.recent_events(&domain))
    }

    /// The hookd policy in force for a domain, as a `<policy>` document in
    /// hookd's namespace; empty when the domain has none.
    async fn get_policy(
        &self,
        domain: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String, Error> {
        self.require_reader(&hdr, conn, "GetPolicy").await?;
        let (_, text) = self.view.policy(&domain)?;
        Ok(text.unwrap_or_default())
    }

    /// Replaces a running domain's policy with a `<policy>` document in
    /// hookd's namespace (empty: removes it): validated, compiled and
    /// swapped in atomically. With `persist`, it is also written into the
    /// domain's metadata through libvirt (live and persistent definitions),
    /// and the previous policy is restored if libvirt refuses. Returns the
    /// new policy generation and a summary.
    #[zbus(out_args("generation", "summary"))]
    async fn set_policy(
        &self,
        domain: String,
        policy: String,
        persist: bool,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(u64, String), Error> {
        require_root(&hdr, conn, "SetPolicy").await?;
        if policy.len() > MAX_XML_BYTES {
            return Err(Error::InvalidPolicy(format!(
                "policy is {} bytes, more than the {MAX_XML_BYTES}-byte limit",
                policy.len()
            )));
        }
        let libvirt = match (persist, &self.libvirt) {
            (false, _) => None,
            (true, Some(l)) => Some(l.clone()),
            (true, None) => {
                return Err(Error::InvalidArgument(
                    "persist needs hookd's libvirt connection, which libvirt_uri turns off in hookd.toml; \
                     set the policy without persisting, or with virsh metadata"
                        .into(),
                ));
            }
        };
        let text = Some(policy.as_str()).filter(|p| !p.trim().is_empty());
        let sink = self.sink(&emitter);
        let c = change(&self.daemon, &sink, "policy-set", |d| {
            d.set_policy(&domain, text)
        })
        .await?;
        let Some(libvirt) = libvirt else {
            tracing::info!(domain = %c.name, generation = c.generation, "policy set (not persisted)");
            return Ok((c.generation, c.summary));
        };
        let uuid = c.uuid.clone();
        let persisted = c
            .applied
            .as_deref()
            .map(crate::metadata::unqualified)
            .transpose()
            .map_err(|e| e.to_string());
        let persisted = match persisted {
            Ok(plain) => {
                tokio::task::spawn_blocking(move || libvirt.persist_policy(&uuid, plain.as_deref()))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()))
            }
            Err(e) => Err(e),
        };
        match persisted {
            Ok(written) => {
                tracing::info!(domain = %c.name, generation = c.generation, "policy set and saved in libvirt's {written}");
                Ok((
                    c.generation,
                    format!("{}; saved in libvirt's {written}", c.summary),
                ))
            }
            Err(why) => {
                let restored = match c.previous_policy() {
                    Ok(previous) => {
                        change(&self.daemon, &sink, "policy-restore", |d| {
                            d.set_policy(&c.uuid, previous.as_deref())
                        })
                        .await
                    }
                    Err(e) => Err(e),
                };
                tracing::error!(domain = %c.name, error = %why, restored = restored.is_ok(), "persisting the policy failed");
                Err(Error::Libvirt(match restored {
                    Ok(_) => format!("{why}; the previous policy is back in force"),
                    Err(e) => format!("{why}; restoring the previous policy failed too: {e}"),
                }))
            }
        }
    }

    /// A policy that libvirt reports (edited with `virsh metadata`, say)
    /// was refused; the domain keeps the policy it had.
    #[zbus(signal)]
    pub async fn policy_refused(
        emitter: &SignalEmitter<'_>,
        name: &str,
        uuid: &str,
        message: &str,
    ) -> zbus::Result<()>;

    /// ("ok" or "degraded", a one-line explanation).
    #[zbus(out_args("status", "detail"))]
    async fn health(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(String, String), Error> {
        self.require_reader(&hdr, conn, "Health").await?;
        Ok(self.view.health())
    }

    #[zbus(property)]
    async fn version(&self) -> String {
        crate::VERSION.to_string()
    }
}
