//! The daemon's core: turns hook events and policy changes into work on
//! the data plane and keeps the per-domain records. No D-Bus here: the
//! API layer (`crate::api`) calls in and announces what [`change::apply`]
//! reports.
//!
//! - [`records`]: what hookd attached, saved under the run directory;
//! - [`dataplane`]: what the core needs from the kernel (`kernel.rs` is the
//!   real one);
//! - [`view`]: what readers see without the daemon's lock;
//! - [`change`]: operations and the changes they made;
//! - [`trace`], [`trace_live`], [`events`]: tracing packets (by the
//!   rules, and through the live programs), logged packets.

pub mod change;
pub mod dataplane;
pub mod error;
pub mod events;
mod kernel;
pub mod migration;
pub mod networks;
mod promote;
pub mod records;
pub mod trace;
pub mod trace_live;
pub mod view;

pub use change::{Change, Notices, SharedDaemon};
pub use dataplane::{CounterSource, DataPlane};
pub use error::DaemonError;
pub use promote::Promotion;
pub use view::{Health, Records, View};

use crate::core::networks::{Definition, NetworkStore};
use crate::core::records::{DomainRecord, NicRecord, NicState, StateDir};
use crate::datapath::DatapathError;
use hookd_bpf::layout::{DropReason, NetStats, NicStats};
use hookd_model::domain::{self, Domain};
use hookd_model::hook::{HookAction, HookArgs, Operation};
use hookd_model::plan::{self, NicMode, Stage};
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::watch;

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
        Ok(hookd_model::metadata::policy_text(&self.previous_xml)?)
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
    /// (domain uuid, tap) of adopted NICs whose programs could not be
    /// replaced: they may read an earlier version of the maps, so a change
    /// to them first replaces their programs, or is refused.
    stale: HashSet<(String, String)>,
    networks: NetworkStore,
    publish_networks: watch::Sender<view::Networks>,
    /// The id-list of the migration helpers hookd serves (None: none):
    /// an incoming managed VM's QEMU is given a dbus-vmstate object for it.
    vmstate_ids: Option<String>,
    /// NICs on their clsact qdisc waiting to move to tcx (`promote.rs`).
    staged: promote::Staged,
}

fn mac_bytes(mac: &str) -> [u8; 6] {
    mac.parse::<hookd_model::mac::MacAddr>()
        .map(|m| m.0)
        .unwrap_or_default()
}

impl Daemon {
    /// Adopts the records of a previous daemon: NICs still attached keep
    /// their links and filters (which never stopped enforcing), and get
    /// this daemon's programs swapped in where they differ; NICs whose tap
    /// is gone are cleaned up.
    pub fn new(dp: Box<dyn DataPlane>, state: StateDir, count_unmanaged: bool) -> Daemon {
        Daemon::open(dp, state, count_unmanaged, NetworkStore::in_memory())
    }

    /// [`Daemon::new`] with the networks of `networks` (read before the
    /// adoption, which rewrites network NICs' maps from them).
    pub fn open(
        dp: Box<dyn DataPlane>,
        state: StateDir,
        count_unmanaged: bool,
        networks: NetworkStore,
    ) -> Daemon {
        let (records, errors) = state.load_all();
        for e in errors {
            tracing::warn!(error = %e, "ignoring unreadable state file");
        }
        let generation = records.iter().map(|r| r.generation).max().unwrap_or(0);
        let (publish, published) = watch::channel(Arc::new(Vec::new()));
        let (publish_networks, published_networks) = watch::channel(Arc::new(Vec::new()));
        let view = View {
            records: published,
            networks: published_networks,
            counters: dp.counters(),
            events: Default::default(),
            migrations: Default::default(),
            tenant_namespaces: dp.tenant_namespaces_on(),
        };
        let mut d = Daemon {
            view,
            publish,
            dp,
            state,
            records: Vec::new(),
            count_unmanaged,
            generation,
            stale: HashSet::new(),
            vmstate_ids: None,
            networks,
            publish_networks,
            staged: Default::default(),
        };
        d.publish_networks();
        let upgrade = d.dp.other_build_before();
        for mut rec in records {
            let (alive, gone): (Vec<NicRecord>, Vec<NicRecord>) = rec
                .nics
                .drain(..)
                .partition(|n| !n.attached() || d.dp.still_attached(&rec.uuid, n));
            let mut t = Teardown::new(&rec.name, "cleaning up taps gone while hookd was away");
            for nic in &gone {
                tracing::info!(domain = %rec.name, tap = %nic.tap, "tap gone while hookd was away: cleaning up");
                t.check(&nic.tap, d.dp.detach_nic(&rec.uuid, nic));
            }
            t.log();
            rec.nics = alive;
            let mut moved = false;
            for nic in rec.nics.iter_mut().filter(|n| n.attached()) {
                match d.dp.finish_move(&rec.uuid, nic) {
                    Ok(Some(how)) => {
                        tracing::info!(domain = %rec.name, tap = %nic.tap, "finished a move to tcx links that the previous hookd left half done");
                        nic.attach = Some(how);
                        moved = true;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(domain = %rec.name, tap = %nic.tap, error = %e, "finishing a move to tcx that the previous hookd left half done failed; the tap keeps the programs it has")
                    }
                }
            }
            if rec.nics.iter().all(|n| !n.attached()) {
                let mut t = Teardown::new(&rec.name, "forgetting a domain no longer running");
                t.check("its pins", d.dp.forget_domain(&rec.uuid));
                t.check("its record", d.state.remove(&rec.uuid));
                t.log();
                tracing::info!(domain = %rec.name, "domain no longer running: forgotten");
            } else {
                // After an upgrade the taps still run the previous daemon's
                // programs, on maps it wrote. First the maps are rewritten
                // in this version's layout from the recorded XML (each
                // write atomic, and readable by the running programs);
                // then this daemon's programs are swapped in, in place. A
                // domain whose maps cannot be rewritten keeps the programs
                // that understand them; a NIC whose swap fails keeps what
                // it runs. Either way it stays protected. A restart of the
                // same build skips the rewrite: the maps are its own.
                let migrated = !upgrade
                    || match d.migrate_maps(&rec) {
                        Ok(n) => {
                            tracing::info!(domain = %rec.name, nics = n, "maps rewritten in this version's layout");
                            true
                        }
                        Err(e) => {
                            tracing::error!(domain = %rec.name, error = %e,
                            "rewriting the maps of an adopted domain failed; its taps keep the programs they run");
                            false
                        }
                    };
                for nic in rec.nics.iter().filter(|n| n.attached()) {
                    if !migrated {
                        d.stale.insert((rec.uuid.clone(), nic.tap.clone()));
                    } else if let Err(e) = d.dp.refresh_programs(&rec.uuid, nic) {
                        tracing::warn!(domain = %rec.name, tap = %nic.tap, error = %e,
                            "replacing the programs of a running tap failed; it keeps the ones it has");
                        d.stale.insert((rec.uuid.clone(), nic.tap.clone()));
                    }
                }
                tracing::info!(domain = %rec.name, nics = rec.nics.len(), "adopted pinned data path");
                if (moved || !gone.is_empty())
                    && let Err(e) = d.state.save(&rec)
                {
                    // The next restart cleans up what this one did again.
                    tracing::warn!(domain = %rec.name, error = %e, "saving the adopted record failed");
                }
                d.records.push(Arc::new(rec));
            }
        }
        // Earlier map versions that no tap reads any more go.
        d.dp.retire_old_maps();
        d.publish();
        d
    }

    /// A NIC whose programs could not be replaced at adoption may read an
    /// earlier version of the maps, where a change would not reach it: its
    /// programs are replaced first, and if that fails again the change is
    /// refused (the NIC keeps enforcing its old policy).
    fn refresh_stale(&mut self, uuid: &str, nic: &NicRecord) -> Result<(), DatapathError> {
        let key = (uuid.to_string(), nic.tap.clone());
        if !self.stale.contains(&key) {
            return Ok(());
        }
        self.dp.refresh_programs(uuid, nic).map_err(|e| DatapathError::Io {
            what: format!(
                "tap {} still runs the programs of an earlier hookd, which the change would not reach; replacing them failed",
                nic.tap
            ),
            source: std::io::Error::other(e.to_string()),
        })?;
        self.stale.remove(&key);
        tracing::info!(tap = %nic.tap, "programs of an earlier hookd replaced");
        self.dp.retire_old_maps();
        Ok(())
    }

    /// Rewrites the maps of an adopted domain's attached NICs from its
    /// recorded XML, as this version writes them: what a previous hookd
    /// wrote is migrated, not read through compatibility bits. Returns how
    /// many NICs were rewritten.
    fn migrate_maps(&mut self, rec: &DomainRecord) -> Result<usize, DaemonError> {
        let dom = domain::parse(&rec.xml)?;
        let plans = self.plan(&dom, Stage::TapsExist)?;
        let mut rewritten = 0;
        for nic in rec.nics.iter().filter(|n| n.attached()) {
            let plan = plans
                .iter()
                .find(|p| p.tap.as_deref() == Some(nic.tap.as_str()));
            let Some(mode) = plan.map(|p| &p.mode) else {
                continue;
            };
            if matches!(mode, NicMode::NotAttached { .. }) {
                continue;
            }
            self.dp
                .update_nic(nic.ifindex, mac_bytes(&nic.mac), mode, rec.generation)
                .map_err(|source| DaemonError::AttachFailed {
                    mac: nic.mac.clone(),
                    tap: nic.tap.clone(),
                    source: Box::new(source),
                })?;
            rewritten += 1;
        }
        Ok(rewritten)
    }

    fn publish_networks(&self) {
        let all: Vec<Arc<Definition>> = self.networks.list().cloned().map(Arc::new).collect();
        self.publish_networks.send_replace(Arc::new(all));
    }

    /// Plans `dom`'s NICs, with the networks they join.
    fn plan(&self, dom: &Domain, stage: Stage) -> Result<Vec<plan::NicPlan>, DaemonError> {
        let mut plans = plan::plan_domain(dom, self.count_unmanaged, stage)?;
        plan::join_networks(&mut plans, dom, |n| {
            self.networks.get(n).map(|d| d.network.clone())
        });
        Ok(plans)
    }

    /// The networks `dom`'s policy joins exist, and hold its addresses.
    fn check_networks(&self, dom: &Domain) -> Result<(), DaemonError> {
        let Some(policy) = &dom.policy else {
            return Ok(());
        };
        hookd_model::network::check_policy(policy, |n| {
            self.networks.get(n).map(|d| d.network.clone())
        })
        .map_err(|e| DaemonError::Domain(e.into()))
    }

    /// The NICs of running domains on network `name` ("vm1 (MAC)"), for
    /// messages.
    fn network_users(&self, name: &str) -> Vec<String> {
        self.records
            .iter()
            .flat_map(|r| {
                r.nics
                    .iter()
                    .filter(|n| n.attached() && n.network.as_deref() == Some(name))
                    .map(|n| format!("{} ({})", r.name, n.mac))
            })
            .collect()
    }

    /// Defines (or redefines) a network from its document. Returns a
    /// one-line summary.
    pub fn define_network(&mut self, xml: &str) -> Result<String, DaemonError> {
        let users: Vec<(String, Vec<String>)> = self
            .networks
            .list()
            .map(|d| (d.network.name.clone(), self.network_users(&d.network.name)))
            .collect();
        let users_of = |n: &str| {
            users
                .iter()
                .find(|(name, _)| name == n)
                .map(|(_, u)| u.clone())
                .unwrap_or_default()
        };
        let (def, replaced) = self.networks.define(xml, users_of)?;
        self.publish_networks();
        let n = &def.network;
        let summary = format!(
            "network {} {} (tenant {}, VNI {}, {} subnet(s), MTU {})",
            n.name,
            if replaced { "redefined" } else { "defined" },
            n.tenant,
            n.vni,
            n.subnets.len(),
            n.mtu
        );
        tracing::info!(network = %n.name, file = %def.source.path().display(), "{summary}");
        Ok(summary)
    }

    /// Removes a network that no NIC uses.
    pub fn undefine_network(&mut self, name: &str) -> Result<String, DaemonError> {
        let users = self.network_users(name);
        let def = self.networks.undefine(name, |_| users.clone())?;
        self.publish_networks();
        tracing::info!(network = %name, file = %def.source.path().display(), "network undefined");
        Ok(format!("network {name} undefined"))
    }

    /// Router advertisements to the network NICs with IPv6 (see
    /// `datapath::ra`); how many were sent.
    pub fn advertise_routers(&self) -> usize {
        self.dp.advertise_routers()
    }

    /// The readers' view of this daemon.
    pub fn view(&self) -> View {
        self.view.clone()
    }

    /// Shows readers the records as they are now.
    fn publish(&self) {
        self.publish.send_replace(Arc::new(self.records.clone()));
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
            .map(hookd_model::metadata::parse_policy_document)
            .transpose()?;
        let rec = self
            .find(domain)
            .ok_or_else(|| DaemonError::NotFound(domain.to_string()))?;
        let uuid = rec.uuid.clone();
        let previous_xml = rec.xml.clone();
        let (xml, dom) = hookd_model::metadata::with_policy_document(&rec.xml, doc.as_ref())?;
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
        let dom = domain::parse(xml)?;
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
                let dom = domain::parse(xml)?;
                self.check_networks(&dom)?;
                let plans = self.plan(&dom, Stage::BeforeTaps)?;
                Ok(format!(
                    "{}: policy valid, {} NIC(s)",
                    dom.name,
                    plans.len()
                ))
            }
            HookAction::Incoming => self.incoming(xml),
            HookAction::Attach => {
                let dom = domain::parse(xml)?;
                if op == Operation::Started && self.already_enforced(&dom) {
                    return Ok(format!("{}: already enforced, unchanged", dom.name));
                }
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

    /// Everything that can refuse a domain at `start`, checked without
    /// attaching: its XML and policy, its networks and that each tap to
    /// attach exists. The attach itself (`hook_event`) then runs in the
    /// background while QEMU starts, and `started` waits for it: the
    /// guest's vCPUs run only after that hook returns.
    pub fn check_start(&self, xml: &str) -> Result<String, DaemonError> {
        let dom = domain::parse(xml)?;
        self.check_networks(&dom)?;
        let plans = self.plan(&dom, Stage::TapsExist)?;
        for p in &plans {
            if let (Some(tap), false) = (&p.tap, matches!(p.mode, NicMode::NotAttached { .. })) {
                self.dp
                    .find_tap(tap)
                    .map_err(|source| DaemonError::AttachFailed {
                        mac: p.mac.map(|m| m.to_string()).unwrap_or_default(),
                        tap: tap.clone(),
                        source: Box::new(source),
                    })?;
            }
        }
        Ok(format!(
            "{}: policy valid, attaching {} NIC(s)",
            dom.name,
            plans.len()
        ))
    }

    /// Is `dom` attached exactly as it is now (same domain model, every
    /// NIC to attach attached to its tap)? `started` then has nothing to do.
    fn already_enforced(&self, dom: &Domain) -> bool {
        let Some(rec) = self.records.iter().find(|r| r.uuid == dom.uuid) else {
            return false;
        };
        if !domain::parse(&rec.xml).is_ok_and(|old| old.same_apart_from_lines(dom)) {
            return false;
        }
        let Ok(plans) = self.plan(dom, Stage::TapsExist) else {
            return false;
        };
        plans
            .iter()
            .filter(|p| !matches!(p.mode, NicMode::NotAttached { .. }))
            .all(|p| {
                rec.nics.iter().any(|n| {
                    Some(&n.tap) == p.tap.as_ref()
                        && n.attached()
                        && self.dp.still_attached(&rec.uuid, n)
                        && self.dp.complete(n)
                })
            })
    }

    fn attach_domain(
        &mut self,
        dom: &Domain,
        xml: &str,
        phase: &str,
    ) -> Result<String, DaemonError> {
        self.check_networks(dom)?;
        let plans = self.plan(dom, Stage::TapsExist)?;
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
                mode: NicState::of(&p.mode),
                attach: None,
                rules: p.rules.clone(),
                network: p
                    .mode
                    .enforcement()
                    .and_then(|e| e.network.as_ref())
                    .map(|n| n.name.clone()),
                addresses: p
                    .mode
                    .enforcement()
                    .map(|e| {
                        e.anti_spoofing
                            .prefixes
                            .iter()
                            .map(|n| n.to_string())
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            // Already attached to this very tap (started after start, a
            // reconnect): keep the links, refresh the maps.
            let existing = previous.as_ref().and_then(|prev| {
                prev.nics.iter().find(|o| {
                    o.tap == rec.tap && o.attached() && self.dp.still_attached(&dom.uuid, o)
                })
            });
            let result = match (&p.mode, existing) {
                (NicMode::NotAttached { .. }, _) => Ok(None),
                // Maps first, so that programs swapped in find the policy.
                (mode, Some(old)) => self
                    .dp
                    .update_nic(old.ifindex, mac_bytes(&mac), mode, generation)
                    .and_then(|()| self.refresh_stale(&dom.uuid, old))
                    .map(|()| Some((old.ifindex, old.attach))),
                (mode, None) => self
                    .dp
                    .attach_nic(&dom.uuid, &rec.tap, mac_bytes(&mac), mode, generation)
                    .map(|(i, how)| Some((i, Some(how)))),
            };
            match result {
                Ok(Some((ifindex, how))) => {
                    rec.ifindex = ifindex;
                    rec.attach = how;
                }
                Ok(None) => {}
                Err(source) => {
                    failure = Some(DaemonError::AttachFailed {
                        mac,
                        tap: rec.tap,
                        source: Box::new(source),
                    });
                    break;
                }
            }
            nics.push(rec);
        }
        if let Some(e) = failure {
            self.undo_attach(&dom.uuid, &dom.name, &nics, previous);
            tracing::error!(domain = %dom.name, error = %e, "attach failed");
            return Err(e);
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
            self.undo_attach(&dom.uuid, &dom.name, &rec.nics, previous);
            return Err(e.into());
        }
        // NICs of the previous attachment that are not in the new one.
        let mut t = Teardown::new(&dom.name, "detaching NICs that left the domain");
        for old in previous.iter().flat_map(|p| &p.nics) {
            let kept = rec
                .nics
                .iter()
                .any(|n| n.tap == old.tap && n.ifindex == old.ifindex && n.attached());
            if !kept && old.attached() {
                t.check(&old.tap, self.dp.detach_nic(&dom.uuid, old));
            }
        }
        t.log();
        let attached = rec.nics.iter().filter(|n| n.attached()).count();
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
    fn undo_attach(
        &mut self,
        uuid: &str,
        name: &str,
        nics: &[NicRecord],
        previous: Option<Arc<DomainRecord>>,
    ) {
        let was_attached = |n: &NicRecord| {
            previous.as_ref().is_some_and(|p| {
                p.nics
                    .iter()
                    .any(|o| o.tap == n.tap && o.ifindex == n.ifindex)
            })
        };
        let mut t = Teardown::new(name, "undoing a failed attach");
        for n in nics.iter().filter(|n| n.attached() && !was_attached(n)) {
            t.check(&n.tap, self.dp.detach_nic(uuid, n));
        }
        match previous {
            Some(prev) => self.records.push(prev),
            None => {
                t.check("its pins", self.dp.forget_domain(uuid));
                t.check("its record", self.state.remove(uuid));
            }
        }
        t.log();
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
        let mut t = Teardown::new(&rec.name, "detaching");
        for nic in rec.nics.iter().filter(|n| n.attached()) {
            t.check(&nic.tap, self.dp.detach_nic(&rec.uuid, nic));
        }
        t.check("its pins", self.dp.forget_domain(&rec.uuid));
        self.state.remove(&rec.uuid)?;
        if t.errors.is_empty() {
            tracing::info!(domain = %rec.name, "detached");
            Ok(format!("{}: detached", rec.name))
        } else {
            let summary = format!(
                "{}: detached, with errors: {}",
                rec.name,
                t.errors.join("; ")
            );
            t.log();
            Ok(summary)
        }
    }
}

/// The failures of a teardown, each kept and logged: a teardown goes on
/// past a failed step (what can be removed is), and says what is left.
struct Teardown<'a> {
    domain: &'a str,
    what: &'static str,
    errors: Vec<String>,
}

impl<'a> Teardown<'a> {
    fn new(domain: &'a str, what: &'static str) -> Teardown<'a> {
        Teardown {
            domain,
            what,
            errors: Vec::new(),
        }
    }

    fn check<E: std::fmt::Display>(&mut self, step: &str, r: Result<(), E>) {
        if let Err(e) = r {
            self.errors.push(format!("{step}: {e}"));
        }
    }

    fn log(&self) {
        if !self.errors.is_empty() {
            tracing::warn!(domain = %self.domain, errors = ?self.errors, "{} left errors", self.what);
        }
    }
}

/// Counters as name/value pairs, in a stable order.
pub fn counters(s: &NicStats, net: Option<&NetStats>) -> Vec<(String, u64)> {
    let mut v = vec![
        ("to_vm_packets".to_string(), s.to_vm_packets),
        ("to_vm_bytes".to_string(), s.to_vm_bytes),
        ("from_vm_packets".to_string(), s.from_vm_packets),
        ("from_vm_bytes".to_string(), s.from_vm_bytes),
    ];
    for r in DropReason::ALL {
        v.push((format!("drop_{}", r.name()), s.drops[r as usize]));
    }
    if let Some(n) = net {
        for (i, name) in NetStats::NAMES {
            v.push((format!("net_{name}"), n.count[i]));
        }
    }
    v
}
