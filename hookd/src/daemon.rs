//! The daemon's core: turns hook events into attach/detach work on the data
//! plane and keeps the per-domain records. No D-Bus here (see `service`).

use crate::datapath::{Attachment, Datapath, DatapathError};
use crate::domain::{self, Domain};
use crate::hook::{HookAction, HookArgs};
use crate::netdev;
use crate::plan::{self, NicMode, Stage};
use crate::state::{DomainRecord, NicRecord, StateDir, StateError};
use hookd_bpf::layout::{DropReason, NicStats};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// What the daemon needs from the kernel. `Datapath` is the real one; unit
/// tests of the D-Bus service, which run without root, use a recording fake.
pub trait DataPlane: Send {
    /// Writes the NIC's maps, then attaches both programs to `tap`.
    fn attach_nic(
        &mut self,
        uuid: &str,
        tap: &str,
        mac: [u8; 6],
        mode: &NicMode,
        generation: u64,
    ) -> Result<(u32, Attachment), DatapathError>;
    /// Rewrites the maps of a NIC that is already attached.
    fn update_nic(
        &mut self,
        ifindex: u32,
        mac: [u8; 6],
        mode: &NicMode,
        generation: u64,
    ) -> Result<(), DatapathError>;
    /// Detaches from the NIC and removes its map entries.
    fn detach_nic(&mut self, uuid: &str, nic: &NicRecord) -> Result<(), DatapathError>;
    /// Removes what is left of the domain's pins.
    fn forget_domain(&mut self, uuid: &str) -> Result<(), DatapathError>;
    /// Is the NIC still attached as recorded (tap present, links pinned)?
    fn still_attached(&self, uuid: &str, nic: &NicRecord) -> bool;
    /// Readers of the data plane's counters, for use without the daemon.
    fn counters(&self) -> Arc<dyn CounterSource>;
    /// Housekeeping left out of the calls that change policy (emptying
    /// rule tables no longer in force); run after they are answered.
    fn tidy(&mut self) {}
}

/// The data plane's counters and health, readable from any thread.
pub trait CounterSource: Send + Sync {
    fn stats(&self, ifindex: u32) -> Option<NicStats>;
    /// Hits per (direction, rule index) of the NIC's live policy.
    fn rule_hits(&self, ifindex: u32) -> Vec<((u8, u16), u64)>;
    /// Can the data plane do its job? Err says what is wrong.
    fn health(&self) -> Result<(), String> {
        Ok(())
    }
}

impl CounterSource for crate::datapath::Counters {
    fn stats(&self, ifindex: u32) -> Option<NicStats> {
        crate::datapath::Counters::stats(self, ifindex)
    }
    fn rule_hits(&self, ifindex: u32) -> Vec<((u8, u16), u64)> {
        crate::datapath::Counters::rule_hits(self, ifindex)
    }
    fn health(&self) -> Result<(), String> {
        crate::datapath::Counters::health(self)
    }
}

impl DataPlane for Datapath {
    fn attach_nic(
        &mut self,
        uuid: &str,
        tap: &str,
        mac: [u8; 6],
        mode: &NicMode,
        generation: u64,
    ) -> Result<(u32, Attachment), DatapathError> {
        let ifindex = netdev::ifindex(tap).map_err(|source| DatapathError::NoTap {
            tap: tap.to_string(),
            source,
        })?;
        // The conntrack table is made while the programs attach (each
        // waits in the kernel); until it exists the programs fail closed.
        self.write_nic(ifindex, mac, mode, generation, false)?;
        let ct_for = mode.has_firewall().then_some(ifindex);
        match self.attach(uuid, tap, ct_for) {
            Ok(a) => Ok((ifindex, a)),
            Err(e) => {
                let _ = self.forget_nic(ifindex);
                Err(e)
            }
        }
    }

    fn update_nic(
        &mut self,
        ifindex: u32,
        mac: [u8; 6],
        mode: &NicMode,
        generation: u64,
    ) -> Result<(), DatapathError> {
        self.program_nic(ifindex, mac, mode, generation)
    }

    fn detach_nic(&mut self, uuid: &str, nic: &NicRecord) -> Result<(), DatapathError> {
        self.detach(uuid, &nic.tap, Attachment::parse(&nic.attach))?;
        self.forget_nic(nic.ifindex)
    }

    fn forget_domain(&mut self, uuid: &str) -> Result<(), DatapathError> {
        self.remove_domain_pins(uuid)
    }

    fn tidy(&mut self) {
        Datapath::tidy(self)
    }

    fn still_attached(&self, uuid: &str, nic: &NicRecord) -> bool {
        let same_dev = netdev::ifindex(&nic.tap).is_ok_and(|i| i == nic.ifindex);
        let linked = match Attachment::parse(&nic.attach) {
            Some(Attachment::Tcx) => self.links_pinned(uuid, &nic.tap),
            _ => true,
        };
        same_dev && linked
    }

    fn counters(&self) -> Arc<dyn CounterSource> {
        Datapath::counters(self)
    }
}

/// A packet to trace, from the VM's point of view.
#[derive(Debug, Clone)]
pub struct TraceQuery {
    pub mac: String,
    /// "ingress" (to the VM) or "egress" (from it).
    pub direction: String,
    pub remote: String,
    pub protocol: String,
    pub port: u16,
    pub icmp_type: u8,
    pub icmp_code: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceAnswer {
    pub action: String,
    /// Line of the deciding rule, 0 when the default or no policy decided.
    pub rule_line: u32,
    pub explanation: String,
}

impl TraceAnswer {
    fn allow(why: &str) -> TraceAnswer {
        TraceAnswer {
            action: "allow".into(),
            rule_line: 0,
            explanation: why.to_string(),
        }
    }
}

/// What `set_policy` did.
#[derive(Debug, Clone)]
pub struct PolicyChange {
    pub uuid: String,
    pub name: String,
    pub generation: u64,
    /// The domain XML in force before: `previous_policy` reads the policy
    /// to restore from it, only when a restore is needed.
    pub previous_xml: String,
    /// The policy text now in force (None: removed).
    pub applied: Option<String>,
    pub summary: String,
}

impl PolicyChange {
    /// The policy text in force before the change (None: there was none).
    /// Parsed on demand: a change's own latency does not pay for it.
    pub fn previous_policy(&self) -> Result<Option<String>, DaemonError> {
        crate::metadata::policy_text(&self.previous_xml)
            .map_err(|e| DaemonError::InvalidPolicy(e.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    InvalidPolicy(String),
    #[error("{0}")]
    AttachFailed(String),
    #[error("no domain '{0}' is known to hookd")]
    NotFound(String),
    #[error(transparent)]
    State(#[from] StateError),
}

/// The domain records as published to readers.
pub type Records = Arc<Vec<Arc<DomainRecord>>>;

/// What readers see without taking the daemon's lock: the domain records as
/// of the last change, the data plane's counters and the logged packets.
/// Management calls read here, so they never delay a hook call.
#[derive(Clone)]
pub struct View {
    records: watch::Receiver<Records>,
    counters: Arc<dyn CounterSource>,
    events: Arc<Mutex<crate::events::EventLog>>,
}

impl View {
    /// The records as of the last change.
    pub fn records(&self) -> Records {
        self.records.borrow().clone()
    }

    /// A domain by UUID or name.
    pub fn find(&self, key: &str) -> Option<Arc<DomainRecord>> {
        self.records
            .borrow()
            .iter()
            .find(|r| r.uuid == key || r.name == key)
            .cloned()
    }

    pub fn stats(&self, ifindex: u32) -> Option<NicStats> {
        self.counters.stats(ifindex)
    }

    pub fn rule_hits(&self, ifindex: u32) -> Vec<((u8, u16), u64)> {
        self.counters.rule_hits(ifindex)
    }

    /// The hookd policy of a domain hookd knows: its uuid, and the policy
    /// element's text (None for a domain without hookd policy).
    pub fn policy(&self, domain: &str) -> Result<(String, Option<String>), DaemonError> {
        let rec = self
            .find(domain)
            .ok_or_else(|| DaemonError::NotFound(domain.to_string()))?;
        let text = crate::metadata::policy_text(&rec.xml)
            .map_err(|e| DaemonError::InvalidPolicy(e.to_string()))?;
        Ok((rec.uuid.clone(), text))
    }

    /// ("ok" or "degraded", a one-line explanation).
    pub fn health(&self) -> (String, String) {
        let records = self.records();
        let nics: usize = records
            .iter()
            .map(|r| r.nics.iter().filter(|n| !n.attach.is_empty()).count())
            .sum();
        match self.counters.health() {
            Ok(()) => (
                "ok".into(),
                format!("{} domain(s), {nics} attached NIC(s)", records.len()),
            ),
            Err(why) => ("degraded".into(), why),
        }
    }

    pub fn recent_events(&self, domain: &str) -> Vec<hookd_dbus::LoggedPacket> {
        let name = self
            .find(domain)
            .map(|r| r.name.clone())
            .unwrap_or(domain.to_string());
        self.events
            .lock()
            .map(|log| log.of(&name))
            .unwrap_or_default()
    }

    /// A packet logged by a `log="true"` rule: attributed, logged, kept.
    pub fn record_event(
        &self,
        ev: &hookd_bpf::layout::FwEvent,
    ) -> Option<hookd_dbus::LoggedPacket> {
        use crate::events::{addr_text, direction_name};
        let direction = direction_name(ev.dir);
        let records = self.records();
        let found = records.iter().find_map(|r| {
            r.nics
                .iter()
                .find(|n| n.ifindex == ev.ifindex && !n.attach.is_empty())
                .map(|n| (r, n))
        });
        // None: the NIC went away meanwhile.
        let (rec, nic) = found?;
        let rule = nic
            .rules
            .iter()
            .find(|r| r.direction == direction && r.index == ev.rule);
        let p = hookd_dbus::LoggedPacket {
            time_ns: ev.ts,
            domain: rec.name.clone(),
            mac: nic.mac.clone(),
            direction: direction.to_string(),
            action: if ev.deny != 0 { "deny" } else { "allow" }.to_string(),
            rule_line: rule.map(|r| r.line).unwrap_or(0),
            rule: rule.map(|r| r.text.clone()).unwrap_or_default(),
            protocol: ev.proto,
            source: addr_text(ev.saddr),
            destination: addr_text(ev.daddr),
            source_port: ev.sport,
            destination_port: ev.dport,
        };
        tracing::info!(
            target: "hookd::firewall",
            domain = %p.domain, mac = %p.mac, direction, action = %p.action, line = p.rule_line,
            "{} {}:{} -> {}:{} proto {} ({})",
            p.action, p.source, p.source_port, p.destination, p.destination_port, p.protocol, p.rule
        );
        if let Ok(mut log) = self.events.lock() {
            log.push(p.clone());
        }
        Some(p)
    }
}

pub struct Daemon {
    view: View,
    publish: watch::Sender<Records>,
    dp: Box<dyn DataPlane>,
    state: StateDir,
    /// Shared with readers through `publish`: a change copies pointers,
    /// not records.
    records: Vec<Arc<DomainRecord>>,
    count_unmanaged: bool,
    generation: u64,
}

fn mac_bytes(mac: &str) -> [u8; 6] {
    mac.parse::<crate::mac::MacAddr>()
        .map(|m| m.0)
        .unwrap_or_default()
}

impl Daemon {
    /// Adopts the records of a previous daemon: NICs still attached are kept
    /// as they are (their pinned links never stopped enforcing); NICs whose
    /// tap is gone are cleaned up.
    pub fn new(dp: Box<dyn DataPlane>, state: StateDir, count_unmanaged: bool) -> Daemon {
        let (records, errors) = state.load_all();
        for e in errors {
            tracing::warn!(error = %e, "ignoring unreadable state file");
        }
        let generation = records.iter().map(|r| r.generation).max().unwrap_or(0);
        let (publish, published) = watch::channel(Arc::new(Vec::new()));
        let view = View {
            records: published,
            counters: dp.counters(),
            events: Default::default(),
        };
        let mut d = Daemon {
            view,
            publish,
            dp,
            state,
            records: Vec::new(),
            count_unmanaged,
            generation,
        };
        for mut rec in records {
            let (alive, gone): (Vec<NicRecord>, Vec<NicRecord>) = rec
                .nics
                .drain(..)
                .partition(|n| n.attach.is_empty() || d.dp.still_attached(&rec.uuid, n));
            for nic in &gone {
                tracing::info!(domain = %rec.name, tap = %nic.tap, "tap gone while hookd was away: cleaning up");
                if let Err(e) = d.dp.detach_nic(&rec.uuid, nic) {
                    tracing::warn!(domain = %rec.name, tap = %nic.tap, error = %e, "cleanup failed");
                }
            }
            rec.nics = alive;
            if rec.nics.iter().all(|n| n.attach.is_empty()) {
                let _ = d.dp.forget_domain(&rec.uuid);
                let _ = d.state.remove(&rec.uuid);
                tracing::info!(domain = %rec.name, "domain no longer running: forgotten");
            } else {
                tracing::info!(domain = %rec.name, nics = rec.nics.len(), "adopted pinned data path");
                if !gone.is_empty() {
                    let _ = d.state.save(&rec);
                }
                d.records.push(Arc::new(rec));
            }
        }
        d.publish();
        d
    }

    /// The readers' view of this daemon.
    pub fn view(&self) -> View {
        self.view.clone()
    }

    /// Shows readers the records as they are now.
    fn publish(&self) {
        self.publish.send_replace(Arc::new(self.records.clone()));
    }

    /// The verdict the live rules give a described packet, without touching
    /// connection tracking (established connections pass whatever it says).
    /// Works on a copy of the domain's record, so callers parse and compile
    /// without holding the daemon's lock.
    pub fn trace(rec: &DomainRecord, q: &TraceQuery) -> Result<TraceAnswer, DaemonError> {
        let dom = domain::parse(&rec.xml).map_err(|e| DaemonError::InvalidPolicy(e.to_string()))?;
        let mac: crate::mac::MacAddr = q
            .mac
            .parse()
            .map_err(|e: crate::mac::MacParseError| DaemonError::InvalidArgument(e.to_string()))?;
        if !rec.nics.iter().any(|n| n.mac == mac.to_string()) {
            return Err(DaemonError::InvalidArgument(format!(
                "domain {} has no NIC {mac}",
                rec.name
            )));
        }
        let Some(policy) = dom.policy.as_ref().and_then(|p| p.for_mac(Some(mac))) else {
            return Ok(TraceAnswer::allow(
                "the NIC has no hookd policy: never filtered",
            ));
        };
        let (dir, name) = match q.direction.as_str() {
            "ingress" => (policy.ingress.as_ref(), "ingress"),
            "egress" => (policy.egress.as_ref(), "egress"),
            other => {
                return Err(DaemonError::InvalidArgument(format!(
                    "direction '{other}' is not ingress or egress"
                )));
            }
        };
        let Some(dir) = dir else {
            return Ok(TraceAnswer::allow(&format!(
                "no <hookd:{name}> element: {name} is allowed"
            )));
        };
        let remote: std::net::IpAddr = q.remote.parse().map_err(|_| {
            DaemonError::InvalidArgument(format!("'{}' is not an IP address", q.remote))
        })?;
        let proto = crate::policy::protocol_number(&q.protocol).ok_or_else(|| {
            DaemonError::InvalidArgument(format!(
                "'{}' is not a protocol name or number",
                q.protocol
            ))
        })?;
        let packet = crate::firewall::Packet {
            remote,
            proto,
            port: crate::firewall::packet_port(proto, q.port, q.icmp_type, q.icmp_code),
        };
        let (action, rule) = crate::firewall::compile(dir).lookup(&packet);
        let verdict = if action == crate::policy::Action::Allow {
            "allow"
        } else {
            "deny"
        };
        Ok(match rule {
            Some(i) => TraceAnswer {
                action: verdict.into(),
                rule_line: dir.rules[i].line,
                explanation: format!(
                    "{name} rule at line {}: {}",
                    dir.rules[i].line, dir.rules[i]
                ),
            },
            None => TraceAnswer {
                action: verdict.into(),
                rule_line: 0,
                explanation: format!("no {name} rule matches: default {verdict}"),
            },
        })
    }

    pub fn records(&self) -> &[Arc<DomainRecord>] {
        &self.records
    }

    /// See [`DataPlane::tidy`].
    pub fn tidy(&mut self) {
        self.dp.tidy()
    }

    pub fn find(&self, key: &str) -> Option<&DomainRecord> {
        self.records
            .iter()
            .find(|r| r.uuid == key || r.name == key)
            .map(|r| &**r)
    }

    /// Replaces a running domain's policy with `policy` (a standalone
    /// `<policy>` document; None removes it). The document is checked on its
    /// own first, so errors carry its own line numbers; then it is spliced
    /// into the recorded domain XML and applied like a re-apply at `start`:
    /// maps swapped atomically, nothing changed on any error.
    pub fn set_policy(
        &mut self,
        domain: &str,
        policy: Option<&str>,
    ) -> Result<PolicyChange, DaemonError> {
        let doc = policy
            .map(crate::metadata::parse_policy_document)
            .transpose()
            .map_err(|e| DaemonError::InvalidPolicy(e.to_string()))?;
        let rec = self
            .find(domain)
            .ok_or_else(|| DaemonError::NotFound(domain.to_string()))?;
        let uuid = rec.uuid.clone();
        let previous_xml = rec.xml.clone();
        let (xml, dom) = crate::metadata::with_policy_document(&rec.xml, doc.as_ref())
            .map_err(|e| DaemonError::InvalidPolicy(e.to_string()))?;
        let summary = self.attach_domain(&dom, &xml, "policy-set")?;
        Ok(PolicyChange {
            uuid,
            name: dom.name,
            generation: self.generation,
            previous_xml,
            applied: doc.map(|d| d.text),
            summary,
        })
    }

    /// Re-applies a domain hookd knows from the XML libvirt reports now
    /// (its metadata changed, a NIC was plugged or unplugged). Ok(None) when
    /// the domain is unknown to hookd or nothing hookd reads changed.
    pub fn reapply(&mut self, xml: &str, why: &str) -> Result<Option<String>, DaemonError> {
        let dom = domain::parse(xml).map_err(|e| DaemonError::InvalidPolicy(e.to_string()))?;
        let Some(rec) = self.records.iter().find(|r| r.uuid == dom.uuid) else {
            return Ok(None);
        };
        if domain::parse(&rec.xml).is_ok_and(|old| old == dom) {
            return Ok(None);
        }
        self.attach_domain(&dom, xml, why).map(Some)
    }

    /// One libvirt hook call. Returns a one-line summary.
    pub fn hook_event(&mut self, args: &HookArgs, xml: &str) -> Result<String, DaemonError> {
        let op = args.op();
        match op.action() {
            HookAction::Ignore => Ok(format!(
                "{} {}: nothing to do",
                args.operation, args.sub_operation
            )),
            HookAction::Validate => {
                let dom =
                    domain::parse(xml).map_err(|e| DaemonError::InvalidPolicy(e.to_string()))?;
                let plans = plan::plan_domain(&dom, self.count_unmanaged, Stage::BeforeTaps)
                    .map_err(|e| DaemonError::InvalidPolicy(e.to_string()))?;
                Ok(format!(
                    "{}: policy valid, {} NIC(s)",
                    dom.name,
                    plans.len()
                ))
            }
            HookAction::Attach => {
                let dom =
                    domain::parse(xml).map_err(|e| DaemonError::InvalidPolicy(e.to_string()))?;
                self.attach_domain(&dom, xml, &args.operation)
            }
            HookAction::Detach => {
                // stopped/release XML may lack <target dev>: detach what the
                // record says was attached.
                let key = domain::parse(xml)
                    .map(|d| d.uuid)
                    .ok()
                    .filter(|u| !u.is_empty())
                    .unwrap_or_else(|| args.domain.clone());
                self.detach_domain(&key)
            }
        }
    }

    fn attach_domain(
        &mut self,
        dom: &Domain,
        xml: &str,
        phase: &str,
    ) -> Result<String, DaemonError> {
        let plans = plan::plan_domain(dom, self.count_unmanaged, Stage::TapsExist)
            .map_err(|e| DaemonError::InvalidPolicy(e.to_string()))?;
        let previous = self
            .records
            .iter()
            .position(|r| r.uuid == dom.uuid)
            .map(|i| self.records.remove(i));
        self.generation += 1;
        let generation = self.generation;
        let mut nics: Vec<NicRecord> = Vec::new();
        let mut failure = None;
        for p in &plans {
            let mac = p.mac.map(|m| m.to_string()).unwrap_or_default();
            let mut rec = NicRecord {
                mac: mac.clone(),
                kind: p.kind.clone(),
                tap: p.tap.clone().unwrap_or_default(),
                ifindex: 0,
                mode: p.mode.describe(),
                attach: String::new(),
                rules: p.rules.clone(),
                addresses: match &p.mode {
                    NicMode::AntiSpoofing { prefixes, .. } => {
                        prefixes.iter().map(|n| n.to_string()).collect()
                    }
                    _ => Vec::new(),
                },
            };
            // Already attached to this very tap (started after start, a
            // reconnect): keep the links, refresh the maps.
            let existing = previous.as_ref().and_then(|prev| {
                prev.nics.iter().find(|o| {
                    o.tap == rec.tap && !o.attach.is_empty() && self.dp.still_attached(&dom.uuid, o)
                })
            });
            let result = match (&p.mode, existing) {
                (NicMode::NotAttached { .. }, _) => Ok(None),
                (mode, Some(old)) => self
                    .dp
                    .update_nic(old.ifindex, mac_bytes(&mac), mode, generation)
                    .map(|()| Some((old.ifindex, old.attach.clone()))),
                (mode, None) => self
                    .dp
                    .attach_nic(&dom.uuid, &rec.tap, mac_bytes(&mac), mode, generation)
                    .map(|(i, how)| Some((i, how.name().to_string()))),
            };
            match result {
                Ok(Some((ifindex, how))) => {
                    rec.ifindex = ifindex;
                    rec.attach = how;
                }
                Ok(None) => {}
                Err(e) => {
                    failure = Some(format!("NIC {mac} (tap {}): {e}", rec.tap));
                    break;
                }
            }
            nics.push(rec);
        }
        if let Some(why) = failure {
            self.undo_attach(&dom.uuid, &nics, previous);
            tracing::error!(domain = %dom.name, error = %why, "attach failed");
            return Err(DaemonError::AttachFailed(why));
        }
        let rec = DomainRecord {
            name: dom.name.clone(),
            uuid: dom.uuid.clone(),
            managed: dom.policy.is_some(),
            attached_at: previous
                .as_ref()
                .map(|p| p.attached_at.clone())
                .unwrap_or_else(|| phase.to_string()),
            generation,
            nics,
            xml: xml.to_string(),
        };
        if let Err(e) = self.state.save(&rec) {
            // Without its record hookd could not detach at stop: undo.
            self.undo_attach(&dom.uuid, &rec.nics, previous);
            return Err(e.into());
        }
        // NICs of the previous attachment that are not in the new one.
        for old in previous.iter().flat_map(|p| &p.nics) {
            let kept = rec
                .nics
                .iter()
                .any(|n| n.tap == old.tap && n.ifindex == old.ifindex && !n.attach.is_empty());
            if !kept && !old.attach.is_empty() {
                let _ = self.dp.detach_nic(&dom.uuid, old);
            }
        }
        let attached = rec.nics.iter().filter(|n| !n.attach.is_empty()).count();
        let summary = format!(
            "{}: {} on {attached} of {} NIC(s)",
            dom.name,
            if rec.managed {
                "policy applied"
            } else {
                "counting (no hookd policy)"
            },
            rec.nics.len()
        );
        for w in plan::warnings(dom) {
            tracing::warn!(domain = %dom.name, "{w}");
        }
        tracing::info!(domain = %dom.name, phase, generation, "{summary}");
        self.records.push(Arc::new(rec));
        self.publish();
        Ok(summary)
    }

    /// Nothing half-applied: undoes what an attach call attached. NICs that
    /// were already attached keep their links, and the domain keeps its
    /// previous record, so a failed re-apply never unprotects it.
    fn undo_attach(&mut self, uuid: &str, nics: &[NicRecord], previous: Option<Arc<DomainRecord>>) {
        let was_attached = |n: &NicRecord| {
            previous.as_ref().is_some_and(|p| {
                p.nics
                    .iter()
                    .any(|o| o.tap == n.tap && o.ifindex == n.ifindex)
            })
        };
        for n in nics
            .iter()
            .filter(|n| !n.attach.is_empty() && !was_attached(n))
        {
            let _ = self.dp.detach_nic(uuid, n);
        }
        match previous {
            Some(prev) => self.records.push(prev),
            None => {
                let _ = self.dp.forget_domain(uuid);
                let _ = self.state.remove(uuid);
            }
        }
        self.publish();
    }

    fn detach_domain(&mut self, key: &str) -> Result<String, DaemonError> {
        let Some(i) = self
            .records
            .iter()
            .position(|r| r.uuid == key || r.name == key)
        else {
            return Ok(format!("{key}: not attached, nothing to do"));
        };
        let rec = self.records.remove(i);
        self.publish();
        let mut errors = Vec::new();
        for nic in rec.nics.iter().filter(|n| !n.attach.is_empty()) {
            if let Err(e) = self.dp.detach_nic(&rec.uuid, nic) {
                errors.push(format!("{}: {e}", nic.tap));
            }
        }
        if let Err(e) = self.dp.forget_domain(&rec.uuid) {
            errors.push(e.to_string());
        }
        self.state.remove(&rec.uuid)?;
        if errors.is_empty() {
            tracing::info!(domain = %rec.name, "detached");
            Ok(format!("{}: detached", rec.name))
        } else {
            tracing::warn!(domain = %rec.name, errors = ?errors, "detached with errors");
            Ok(format!(
                "{}: detached, with errors: {}",
                rec.name,
                errors.join("; ")
            ))
        }
    }
}

/// Counters as name/value pairs, in a stable order.
pub fn counters(s: &NicStats) -> Vec<(String, u64)> {
    let mut v = vec![
        ("to_vm_packets".to_string(), s.to_vm_packets),
        ("to_vm_bytes".to_string(), s.to_vm_bytes),
        ("from_vm_packets".to_string(), s.from_vm_packets),
        ("from_vm_bytes".to_string(), s.from_vm_bytes),
    ];
    for r in DropReason::ALL {
        v.push((format!("drop_{}", r.name()), s.drops[r as usize]));
    }
    v
}
