//! `org.hookd.Hookd1.Manager` on D-Bus, over the daemon core.

use crate::daemon::{self, Daemon, DaemonError};
use crate::hook::HookArgs;
use crate::xml_tree::MAX_XML_BYTES;
use hookd_dbus::{Counter, DomainDetail, DomainSummary, Error, NicInfo, RuleHits};
use std::sync::Arc;
use tokio::sync::Mutex;
use zbus::Connection;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;

pub struct Manager {
    daemon: Arc<Mutex<Daemon>>,
}

impl Manager {
    pub fn new(daemon: Arc<Mutex<Daemon>>) -> Manager {
        Manager { daemon }
    }
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

/// The caller's uid: from the bus for bus connections, from the socket for
/// peer-to-peer ones.
async fn caller_uid(hdr: &Header<'_>, conn: &Connection) -> Result<u32, Error> {
    let uid = match hdr.sender() {
        Some(sender) => {
            let dbus = zbus::fdo::DBusProxy::new(conn).await?;
            dbus.get_connection_credentials(sender.clone().into())
                .await
                .map_err(|e| Error::AccessDenied(e.to_string()))?
                .unix_user_id()
        }
        None => conn
            .peer_creds()
            .await
            .map_err(|e| Error::AccessDenied(format!("reading the peer's credentials: {e}")))?
            .unix_user_id(),
    };
    uid.ok_or_else(|| Error::AccessDenied("the caller's uid is unknown".into()))
}

async fn require_root(hdr: &Header<'_>, conn: &Connection, what: &str) -> Result<(), Error> {
    match caller_uid(hdr, conn).await? {
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
        tracing::debug!(hook = %args, "hook event");
        let (result, before, after) = {
            let mut d = self.daemon.lock().await;
            let snapshot = |d: &Daemon| -> Vec<(String, String, u64)> {
                d.records()
                    .iter()
                    .map(|r| (r.uuid.clone(), r.name.clone(), r.generation))
                    .collect()
            };
            let before = snapshot(&d);
            let result = d.hook_event(&args, &xml);
            (result, before, snapshot(&d))
        };
        // Signals for what changed; a failed emission never fails the hook.
        for (uuid, name, generation) in &after {
            match before.iter().find(|b| &b.0 == uuid) {
                None => {
                    let _ = Self::domain_attached(&emitter, name, uuid, &args.operation).await;
                    let _ = Self::policy_applied(&emitter, name, uuid, *generation).await;
                }
                Some(b) if b.2 != *generation => {
                    let _ = Self::policy_applied(&emitter, name, uuid, *generation).await;
                }
                Some(_) => {}
            }
        }
        for (uuid, name, _) in before.iter().filter(|b| !after.iter().any(|a| a.0 == b.0)) {
            let _ = Self::domain_detached(&emitter, name, uuid).await;
        }
        result.map_err(|e| {
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

    async fn list_domains(&self) -> Vec<DomainSummary> {
        let d = self.daemon.lock().await;
        d.records()
            .iter()
            .map(|r| DomainSummary {
                name: r.name.clone(),
                uuid: r.uuid.clone(),
                managed: r.managed,
                attached_nics: r.nics.iter().filter(|n| !n.attach.is_empty()).count() as u32,
                attached_at: r.attached_at.clone(),
            })
            .collect()
    }

    async fn get_domain(&self, domain: String) -> Result<DomainDetail, Error> {
        let d = self.daemon.lock().await;
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
    async fn validate_policy(&self, xml: String) -> Result<String, Error> {
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
    ) -> Result<(String, u32, String), Error> {
        let q = crate::daemon::TraceQuery {
            mac,
            direction,
            remote,
            protocol,
            port,
            icmp_type,
            icmp_code,
        };
        let a = self.daemon.lock().await.trace(&domain, &q)?;
        Ok((a.action, a.rule_line, a.explanation))
    }

    async fn recent_events(&self, domain: String) -> Vec<hookd_dbus::LoggedPacket> {
        self.daemon.lock().await.recent_events(&domain)
    }

    /// ("ok" or "degraded", a one-line explanation).
    #[zbus(out_args("status", "detail"))]
    async fn health(&self) -> (String, String) {
        self.daemon.lock().await.health()
    }

    #[zbus(property)]
    async fn version(&self) -> String {
        crate::VERSION.to_string()
    }
}
