//! The object behind `org.hookd.Hookd1.Manager`: each method checks its
//! caller, then reads the core's [`View`] or runs a change through
//! [`change::apply`] and announces what it changed.

use crate::api::access::{Readers, require_reader, require_root};
use crate::api::convert::{self, too_long};
use crate::api::signals::SignalSink;
use crate::core::change::{self, Change, SharedDaemon};
use crate::core::trace::{self, TraceQuery};
use crate::core::{DaemonError, View};
use crate::libvirt::Libvirt;
use hookd_dbus::{DomainDetail, DomainSummary, Error, NetworkDetail, NetworkSummary};
use hookd_model::hook::{HookArgs, Operation, check_length};
use hookd_model::xml_tree::MAX_XML_BYTES;
use tokio::sync::mpsc::UnboundedSender;
use zbus::Connection;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;

/// Calls that change something take the daemon's lock (on a blocking
/// thread); reading calls use its [`View`] and never take the lock, so a
/// flood of them cannot delay a hook call.
pub struct Manager {
    daemon: SharedDaemon,
    view: View,
    readers: Readers,
    libvirt: Option<Libvirt>,
    /// Where change signals go when calls arrive on the hook's own socket
    /// (a task that emits them on the bus); None: on the call's connection.
    signals: Option<UnboundedSender<Change>>,
}

impl Manager {
    /// `view` is the daemon's (`Daemon::view`), taken before it is shared.
    pub fn new(
        daemon: SharedDaemon,
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

    /// Hands change signals to `queue` (see [`crate::api::signals::forward`])
    /// rather than emitting them on the connection a call arrived on: for
    /// the hook's socket, whose calls then never wait for the bus.
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

    /// The `start` hook: answered once the domain is checked (policy,
    /// networks, taps), with the attach queued behind the lock it holds,
    /// so the tcx attaches' RCU grace periods overlap QEMU's own start
    /// instead of adding to it. Every later call, `started` first, waits
    /// for the attach; `started` attaches again, and fails the start, if
    /// it did not succeed. The guest runs only after `started` returns.
    async fn start_in_background(
        &self,
        args: HookArgs,
        xml: String,
        emitter: &SignalEmitter<'_>,
    ) -> Result<String, Error> {
        let guard = self.daemon.clone().lock_owned().await;
        let x = xml.clone();
        let (guard, checked) = tokio::task::spawn_blocking(move || {
            let r = guard.check_start(&x);
            (guard, r)
        })
        .await
        .map_err(|e| Error::from(DaemonError::Internal(e.to_string())))?;
        let summary = checked.map_err(|e| {
            tracing::warn!(hook = %args, error = %e, "hook event refused");
            Error::from(e)
        })?;
        let daemon = self.daemon.clone();
        let sink = self.sink(emitter).into_owned();
        tokio::spawn(async move {
            let phase = args.operation.clone();
            let call = args.clone();
            let (result, changes) =
                change::apply_locked(&daemon, guard, &phase, move |d| d.hook_event(&call, &xml))
                    .await;
            if let Err(e) = result {
                tracing::warn!(hook = %args, error = %e, "attach at start failed; `started` will try again and fail the start");
            }
            sink.send(changes).await;
        });
        Ok(summary)
    }

    /// `Trace`'s answer: the rules' verdict for `q` from the recorded
    /// policy, and where the network stage sends it.
    fn trace_rules(&self, domain: &str, q: &TraceQuery) -> Result<trace::TraceAnswer, Error> {
        let rec = self.view.find(domain);
        let rec = rec.ok_or_else(|| Error::from(DaemonError::NotFound(domain.to_string())))?;
        let (records, networks) = (self.view.records(), self.view.networks());
        let ctx = trace::RouteContext {
            records: &records,
            networks: &networks,
            namespaces: self.view.tenant_namespaces(),
        };
        Ok(trace::trace_routed(&rec, q, &ctx)?)
    }

    /// Once a domain with hookd policy runs (`started` answered): gives
    /// its QEMU the dbus-vmstate object that carries the firewall state
    /// when it migrates, in the background, since libvirt finishes the
    /// start first. A failure costs the carrying, not enforcement: logged.
    async fn carry_state_from(&self, domain: &str) {
        let (Some(lv), Some((uuid, ids))) = (self.libvirt.clone(), {
            let d = self.daemon.lock().await;
            d.find(domain).filter(|r| r.managed).and_then(|r| {
                d.migration_helpers()
                    .map(|ids| (r.uuid.clone(), ids.to_string()))
            })
        }) else {
            return;
        };
        let name = domain.to_string();
        tokio::spawn(async move {
            match tokio::task::spawn_blocking(move || lv.add_vmstate_object(&uuid, &ids)).await {
                Ok(Ok(true)) => {
                    tracing::info!(domain = %name, "QEMU carries the firewall state when it migrates (dbus-vmstate object added)")
                }
                Ok(Ok(false)) => {
                    tracing::debug!(domain = %name, "QEMU has hookd's dbus-vmstate object already")
                }
                Ok(Err(e)) => {
                    tracing::warn!(domain = %name, error = %e, "a live migration of this domain will carry no firewall state")
                }
                Err(_) => {}
            }
        });
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
        args.check_lengths().map_err(too_long)?;
        let via = if hdr.sender().is_some() {
            "system bus"
        } else {
            "hook socket"
        };
        tracing::info!(hook = %args, via, "hook call");
        let phase = args.operation.clone();
        let call = args.clone();
        if args.op() == Operation::Start {
            return self.start_in_background(call, xml, &emitter).await;
        }
        let (result, changes) =
            change::apply(&self.daemon, &phase, move |d| d.hook_event(&call, &xml)).await;
        self.sink(&emitter).send(changes).await;
        if args.op() == Operation::Started && result.is_ok() {
            self.carry_state_from(&args.domain).await;
        }
        result.map_err(|e| {
            tracing::warn!(hook = %args, error = %e, "hook event refused");
            e.into()
        })
    }

    /// hookd attached to a domain's taps (at the hook phase given).
    #[zbus(signal)]
    pub async fn domain_attached(
        emitter: &SignalEmitter<'_>,
        name: &str,
        uuid: &str,
        phase: &str,
    ) -> zbus::Result<()>;

    /// hookd detached from a domain and forgot it.
    #[zbus(signal)]
    pub async fn domain_detached(
        emitter: &SignalEmitter<'_>,
        name: &str,
        uuid: &str,
    ) -> zbus::Result<()>;

    /// A domain's policy (generation) is now enforced.
    #[zbus(signal)]
    pub async fn policy_applied(
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

    /// One side of a live migration is done with a VM's firewall state.
    #[zbus(signal)]
    pub async fn migration_state(
        emitter: &SignalEmitter<'_>,
        info: hookd_dbus::MigrationInfo,
    ) -> zbus::Result<()>;

    /// The latest live migrations this host took part in, oldest first.
    async fn list_migrations(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<hookd_dbus::MigrationInfo>, Error> {
        require_reader(self.readers, &hdr, conn, "ListMigrations").await?;
        Ok(self
            .view
            .migrations()
            .0
            .iter()
            .map(convert::migration)
            .collect())
    }

    async fn list_domains(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<DomainSummary>, Error> {
        require_reader(self.readers, &hdr, conn, "ListDomains").await?;
        Ok(self
            .view
            .records()
            .iter()
            .map(|r| convert::summary(r))
            .collect())
    }

    async fn get_domain(
        &self,
        domain: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<DomainDetail, Error> {
        require_reader(self.readers, &hdr, conn, "GetDomain").await?;
        check_length("the domain", &domain).map_err(too_long)?;
        let r = self
            .view
            .find(&domain)
            .ok_or_else(|| Error::from(DaemonError::NotFound(domain.clone())))?;
        Ok(convert::detail(&r, &self.view))
    }

    /// Validates a policy without applying it: a whole domain XML, or a
    /// `<policy>` element in hookd's namespace. Returns a summary.
    async fn validate_policy(
        &self,
        xml: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String, Error> {
        require_reader(self.readers, &hdr, conn, "ValidatePolicy").await?;
        let summary = hookd_model::explain::validate(&xml).map_err(Error::InvalidPolicy)?;
        // What only this host knows: the networks the policy joins.
        let policy = hookd_model::domain::parse(&xml)
            .ok()
            .and_then(|d| d.policy)
            .or_else(|| {
                hookd_model::metadata::parse_policy_document(&xml)
                    .ok()
                    .map(|d| d.policy)
            });
        if let Some(p) = policy {
            hookd_model::network::check_policy(&p, |n| {
                self.view.network(n).ok().map(|d| d.network.clone())
            })
            .map_err(|e| Error::InvalidPolicy(e.to_string()))?;
        }
        Ok(summary)
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
        require_reader(self.readers, &hdr, conn, "Trace").await?;
        let q = trace_query(
            [&domain, &mac, &direction, &remote, &protocol],
            port,
            icmp_type,
            icmp_code,
        )?;
        let a = self.trace_rules(&domain, &q)?;
        Ok((a.action.to_string(), a.rule_line, a.explanation))
    }

    /// The described packet through the NIC's attached programs: their
    /// tracing build, run by BPF_PROG_TEST_RUN on the live maps, which
    /// writes nothing (no conntrack entry, counter or rule hit) and sees
    /// what the rules alone cannot: connection state, anti-spoofing, the
    /// network stage. Returns the live action, the stage that decided and
    /// why, then what `Trace` answers, and the NIC's address it used.
    #[allow(clippy::too_many_arguments)] // one argument per packet field
    #[zbus(out_args(
        "action",
        "stage",
        "rules_action",
        "rules_line",
        "rules_explanation",
        "vm_address"
    ))]
    async fn trace_live(
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
    ) -> Result<(String, String, String, u32, String, String), Error> {
        require_reader(self.readers, &hdr, conn, "TraceLive").await?;
        let q = trace_query(
            [&domain, &mac, &direction, &remote, &protocol],
            port,
            icmp_type,
            icmp_code,
        )?;
        let rules = self.trace_rules(&domain, &q)?;
        let live = self.daemon.lock().await.trace_live(&domain, &q)?;
        Ok((
            live.action.to_string(),
            live.stage,
            rules.action.to_string(),
            rules.rule_line,
            rules.explanation,
            live.vm_address.to_string(),
        ))
    }

    async fn recent_events(
        &self,
        domain: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<hookd_dbus::LoggedPacket>, Error> {
        require_reader(self.readers, &hdr, conn, "RecentEvents").await?;
        check_length("the domain", &domain).map_err(too_long)?;
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
        require_reader(self.readers, &hdr, conn, "GetPolicy").await?;
        check_length("the domain", &domain).map_err(too_long)?;
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
        check_length("the domain", &domain).map_err(too_long)?;
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
        let text = Some(policy).filter(|p| !p.trim().is_empty());
        let sink = self.sink(&emitter);
        let (result, changes) = change::apply(&self.daemon, "policy-set", move |d| {
            d.set_policy(&domain, text.as_deref())
        })
        .await;
        sink.send(changes).await;
        let c = result?;
        let Some(libvirt) = libvirt else {
            tracing::info!(domain = %c.name, generation = c.generation, "policy set (not persisted)");
            return Ok((c.generation, c.summary));
        };
        let uuid = c.uuid.clone();
        let persisted = c
            .applied
            .as_deref()
            .map(hookd_model::metadata::unqualified)
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
                        let uuid = c.uuid.clone();
                        let (restored, changes) =
                            change::apply(&self.daemon, "policy-restore", move |d| {
                                d.set_policy(&uuid, previous.as_deref())
                            })
                            .await;
                        sink.send(changes).await;
                        restored
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
        require_reader(self.readers, &hdr, conn, "Health").await?;
        let h = self.view.health();
        Ok((h.status().to_string(), h.detail().to_string()))
    }

    /// Defines a network, or replaces the definition of that name, from a
    /// `<network xmlns="urn:hookd:network:1">` document. An invalid one, or
    /// one that conflicts with another network, changes nothing. Root only.
    async fn define_network(
        &self,
        xml: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String, Error> {
        require_root(&hdr, conn, "DefineNetwork").await?;
        let (result, _) = change::apply(&self.daemon, "network-define", move |d| {
            d.define_network(&xml)
        })
        .await;
        result.map_err(Error::from)
    }

    /// Removes a network that no NIC uses. Root only.
    async fn undefine_network(
        &self,
        name: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String, Error> {
        require_root(&hdr, conn, "UndefineNetwork").await?;
        check_length("the network name", &name).map_err(too_long)?;
        let (result, _) = change::apply(&self.daemon, "network-undefine", move |d| {
            d.undefine_network(&name)
        })
        .await;
        result.map_err(Error::from)
    }

    /// The networks hookd knows, by name.
    async fn list_networks(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<NetworkSummary>, Error> {
        require_reader(self.readers, &hdr, conn, "ListNetworks").await?;
        Ok(self
            .view
            .networks()
            .iter()
            .map(|d| convert::network_summary(d))
            .collect())
    }

    /// One network: its definition and where it comes from.
    async fn get_network(
        &self,
        name: String,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<NetworkDetail, Error> {
        require_reader(self.readers, &hdr, conn, "GetNetwork").await?;
        check_length("the network name", &name).map_err(too_long)?;
        let d = self.view.network(&name)?;
        Ok(convert::network_detail(&d, &self.view))
    }

    #[zbus(property)]
    async fn version(&self) -> String {
        crate::VERSION.to_string()
    }
}

/// The packet of `Trace` and `TraceLive` from their arguments (domain,
/// MAC, direction, remote, protocol; then port, ICMP type and code), each
/// checked, with an error that names it.
fn trace_query(
    text: [&str; 5],
    port: u16,
    icmp_type: u8,
    icmp_code: u8,
) -> Result<TraceQuery, Error> {
    let names = [
        "the domain",
        "the MAC",
        "the direction",
        "the remote address",
        "the protocol",
    ];
    for (what, v) in names.into_iter().zip(text) {
        check_length(what, v).map_err(too_long)?;
    }
    let [_, mac, direction, remote, protocol] = text;
    Ok(TraceQuery::parse(
        mac, direction, remote, protocol, port, icmp_type, icmp_code,
    )?)
}
