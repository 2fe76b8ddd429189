//! The kernel side: loads hookd's eBPF object once, pins programs and maps
//! under the pin directory, attaches to taps (tcx, or a clsact qdisc via
//! netlink), pins the links so enforcement outlives the daemon, and writes
//! the per-NIC map entries.
//!
//! Pin layout under `pin_dir` (default /sys/fs/bpf/hookd):
//!   maps/hookd_nics, maps/hookd_addrs, maps/hookd_stats
//!   progs/hookd_from_vm, progs/hookd_to_vm
//!   links/<domain uuid>/<tap>-from_vm, links/<domain uuid>/<tap>-to_vm

use crate::config::AttachMode;
use crate::firewall::Compiled;
use crate::netdev;
use crate::plan::NicFirewall;
use crate::plan::NicMode;
use aya::maps::lpm_trie::Key;
use aya::maps::{HashMap, HashOfMaps, LpmTrie, Map, MapData, PerCpuHashMap, PerCpuValues, RingBuf};
use aya::programs::links::{FdLink, LinkOrder, PinnedLink};
use aya::programs::tc::{self, NlOptions, SchedClassifier, TcAttachOptions, TcAttachType};
use aya::{Ebpf, EbpfLoader};
use hookd_bpf::layout::{
    self, AddrData, AddrKey, CtEntry, CtKey, FwClassData, FwHitKey, FwRuleData, FwVerdict,
    NicConfig, NicStats,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("{path} is not on a bpf filesystem; mount one with: mount -t bpf bpf /sys/fs/bpf")]
    NotBpffs { path: PathBuf },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("loading hookd's eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("{what}: {source}")]
    Program {
        what: String,
        source: aya::programs::ProgramError,
    },
    #[error("{what}: {source}")]
    Map {
        what: String,
        source: aya::maps::MapError,
    },
    #[error("{what}: {source}")]
    Pin {
        what: String,
        source: aya::pin::PinError,
    },
    #[error("tap {tap}: {source}")]
    NoTap { tap: String, source: std::io::Error },
    #[error("eBPF object has no {0}")]
    Missing(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DatapathError {
    let what = what.into();
    move |source| DatapathError::Io { what, source }
}

fn map_err(what: impl Into<String>) -> impl FnOnce(aya::maps::MapError) -> DatapathError {
    let what = what.into();
    move |source| DatapathError::Map { what, source }
}

fn prog_err(what: impl Into<String>) -> impl FnOnce(aya::programs::ProgramError) -> DatapathError {
    let what = what.into();
    move |source| DatapathError::Program { what, source }
}

const BPF_FS_MAGIC: i64 = 0xcafe4a11;

fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into `buf`, which outlives the call.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut buf) };
    rc == 0 && buf.f_type as i64 == BPF_FS_MAGIC
}

/// The default pin location lives on /sys/fs/bpf; where nobody mounted a
/// bpffs there (no systemd, a container), hookd mounts one, as cilium does.
fn ensure_bpffs(dir: &Path) -> Result<(), DatapathError> {
    if is_bpffs(dir) {
        return Ok(());
    }
    if dir == Path::new("/sys/fs/bpf") {
        let c = |s: &str| std::ffi::CString::new(s).unwrap_or_default();
        let (src, target, fstype) = (c("bpf"), c("/sys/fs/bpf"), c("bpf"));
        // SAFETY: all pointers are valid NUL-terminated strings or null.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc == 0 {
            tracing::info!("mounted a bpf filesystem on /sys/fs/bpf");
            return Ok(());
        }
    }
    Err(DatapathError::NotBpffs {
        path: dir.to_owned(),
    })
}

/// How one NIC's programs were attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attachment {
    Tcx,
    Netlink,
}

impl Attachment {
    pub fn name(self) -> &'static str {
        match self {
            Attachment::Tcx => "tcx",
            Attachment::Netlink => "netlink",
        }
    }
    pub fn parse(s: &str) -> Option<Attachment> {
        match s {
            "tcx" => Some(Attachment::Tcx),
            "netlink" => Some(Attachment::Netlink),
            _ => None,
        }
    }
}

/// The two programs and where each goes on a tap.
const PROGRAMS: [(&str, TcAttachType, &str); 2] = [
    (hookd_bpf::PROG_FROM_VM, TcAttachType::Ingress, "from_vm"),
    (hookd_bpf::PROG_TO_VM, TcAttachType::Egress, "to_vm"),
];

pub struct Datapath {
    ebpf: Ebpf,
    nics: HashMap<MapData, u32, NicConfig>,
    addrs: LpmTrie<MapData, AddrData, u32>,
    stats: PerCpuHashMap<MapData, u32, NicStats>,
    fw_classes: LpmTrie<MapData, FwClassData, u32>,
    fw_rules: LpmTrie<MapData, FwRuleData, FwVerdict>,
    ct: HashOfMaps<MapData, u32>,
    fw_hits: PerCpuHashMap<MapData, FwHitKey, u64>,
    log_rate: HashMap<MapData, u32, [u8; 16]>,
    events: Option<RingBuf<MapData>>,
    pin_dir: PathBuf,
    mode: AttachMode,
    ncpus: usize,
    counters: Arc<Counters>,
    owned: Owned,
}

/// Gives the NIC its own connection-tracking table, once. Inserting into a
/// map of maps waits for an RCU grace period in the kernel.
fn ensure_ct_table(ct: &mut HashOfMaps<MapData, u32>, ifindex: u32) -> Result<(), DatapathError> {
    if ct.get(&ifindex, 0).is_ok() {
        return Ok(());
    }
    let def = aya_obj::Map::new_from_params(
        aya_obj::generated::bpf_map_type::BPF_MAP_TYPE_LRU_HASH as u32,
        std::mem::size_of::<CtKey>() as u32,
        std::mem::size_of::<CtEntry>() as u32,
        layout::CT_PER_NIC,
        0,
    );
    let table = MapData::create(def, "hookd_ct_nic", None)
        .map_err(map_err("creating a conntrack table"))?;
    ct.insert(ifindex, &table, 0)
        .map_err(map_err("adding the NIC's conntrack table"))
}

/// Attaches one program to `tap` with tcx and pins its link at `pin`.
fn attach_tcx_one(
    prog: &mut SchedClassifier,
    tap: &str,
    name: &str,
    kind: TcAttachType,
    pin: &Path,
) -> Result<(), DatapathError> {
    let _ = std::fs::remove_file(pin);
    let id = prog
        .attach_with_options(tap, kind, TcAttachOptions::TcxOrder(LinkOrder::default()))
        .map_err(prog_err(format!("tcx attach of {name} to {tap}")))?;
    let link = prog.take_link(id).map_err(prog_err("taking link"))?;
    let fd: FdLink = link.try_into().map_err(|e| DatapathError::Io {
        what: format!("link of {name}: {e}"),
        source: std::io::Error::other("not an fd link"),
    })?;
    fd.pin(pin).map_err(|source| DatapathError::Pin {
        what: format!("pinning {}", pin.display()),
        source,
    })?;
    Ok(())
}

/// Which firewall and address entries each NIC owns, so that re-applying a
/// policy or detaching a NIC touches only those, instead of walking maps
/// that every NIC shares (which made attaching N NICs cost N^2). Rebuilt
/// from the pinned maps when hookd starts.
#[derive(Default)]
struct Owned {
    classes: std::collections::HashMap<(u32, u8), Vec<Key<FwClassData>>>,
    rules: std::collections::HashMap<(u32, u8), Vec<Key<FwRuleData>>>,
    addrs: std::collections::HashMap<u32, Vec<AddrKey>>,
    /// Table halves (ifindex, half) a policy switch left behind: no packet
    /// reads them any more, `Datapath::tidy` empties them.
    retired: std::collections::HashSet<(u32, u8)>,
}

impl Owned {
    fn scan(
        classes: &LpmTrie<MapData, FwClassData, u32>,
        rules: &LpmTrie<MapData, FwRuleData, FwVerdict>,
        addrs: &LpmTrie<MapData, AddrData, u32>,
    ) -> Owned {
        let mut o = Owned::default();
        for k in classes.keys().filter_map(Result::ok) {
            let d = k.data();
            o.classes.entry((d.ifindex, d.half)).or_default().push(k);
        }
        for k in rules.keys().filter_map(Result::ok) {
            let d = k.data();
            o.rules.entry((d.ifindex, d.half)).or_default().push(k);
        }
        for k in addrs.keys().filter_map(Result::ok) {
            o.addrs.entry(k.data().ifindex).or_default().push(k);
        }
        o
    }

    /// After a scan: the halves with entries or hit counters that no NIC
    /// uses, left by a hookd that stopped before tidying (or by an older
    /// one, which kept an idle half's hit counters until it wrote that
    /// half again).
    fn retire_idle(
        &mut self,
        nics: &HashMap<MapData, u32, NicConfig>,
        hits: &PerCpuHashMap<MapData, FwHitKey, u64>,
    ) {
        let halves: std::collections::HashSet<(u32, u8)> = self
            .classes
            .keys()
            .chain(self.rules.keys())
            .copied()
            .chain(
                hits.keys()
                    .filter_map(Result::ok)
                    .map(|k| (k.ifindex, k.half)),
            )
            .collect();
        for (ifindex, half) in halves {
            if nics.get(&ifindex, 0).map_or(true, |c| c.fw_gen != half) {
                self.retired.insert((ifindex, half));
            }
        }
    }
}

/// Read-only handles of their own on the pinned counter maps, for readers
/// on any thread: reading counters never waits for the daemon's lock, so
/// management calls and hook calls do not queue behind each other.
pub struct Counters {
    pin_dir: PathBuf,
    nics: HashMap<MapData, u32, NicConfig>,
    stats: PerCpuHashMap<MapData, u32, NicStats>,
    fw_hits: PerCpuHashMap<MapData, FwHitKey, u64>,
}

impl Counters {
    fn open(pin_dir: &Path) -> Result<Counters, DatapathError> {
        let pinned = |name: &'static str| {
            MapData::from_pin(pin_dir.join("maps").join(name))
                .and_then(aya::maps::Map::from_map_data)
                .map_err(map_err(name))
        };
        Ok(Counters {
            pin_dir: pin_dir.to_owned(),
            nics: HashMap::try_from(pinned(hookd_bpf::MAP_NICS)?).map_err(map_err("hookd_nics"))?,
            stats: PerCpuHashMap::try_from(pinned(hookd_bpf::MAP_STATS)?)
                .map_err(map_err("hookd_stats"))?,
            fw_hits: PerCpuHashMap::try_from(pinned(hookd_bpf::MAP_FW_HITS)?)
                .map_err(map_err("hookd_fw_hits"))?,
        })
    }

    /// A NIC's counters, summed over CPUs.
    pub fn stats(&self, ifindex: u32) -> Option<NicStats> {
        let per_cpu = self.stats.get(&ifindex, 0).ok()?;
        let mut total = NicStats::default();
        for s in per_cpu.iter() {
            total.add(s);
        }
        Some(total)
    }

    /// Hits per (direction, rule index) of the NIC's live policy half.
    pub fn rule_hits(&self, ifindex: u32) -> Vec<((u8, u16), u64)> {
        let Some(half) = self.nics.get(&ifindex, 0).ok().map(|c| c.fw_gen) else {
            return Vec::new();
        };
        let mut out: Vec<((u8, u16), u64)> = self
            .fw_hits
            .iter()
            .filter_map(Result::ok)
            .filter(|(k, _)| k.ifindex == ifindex && k.half == half)
            .map(|(k, v)| ((k.dir, k.rule), v.iter().sum()))
            .collect();
        out.sort();
        out
    }

    /// Programs and maps still pinned where hookd put them (someone may have
    /// unmounted or cleared the bpffs under a running hookd).
    pub fn health(&self) -> Result<(), String> {
        let mut missing: Vec<String> = PROGRAMS
            .iter()
            .map(|(name, _, _)| self.pin_dir.join("progs").join(name))
            .chain(
                [
                    hookd_bpf::MAP_NICS,
                    hookd_bpf::MAP_ADDRS,
                    hookd_bpf::MAP_STATS,
                    hookd_bpf::MAP_FW_RULES,
                ]
                .iter()
                .map(|m| self.pin_dir.join("maps").join(m)),
            )
            .filter(|p| !p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        missing.sort();
        Err(format!(
            "pins missing (restart hookd to restore them): {}",
            missing.join(", ")
        ))
    }
}

impl Datapath {
    /// Loads the programs and opens (or creates) the pinned maps.
    pub fn open(pin_dir: &Path, mode: AttachMode) -> Result<Datapath, DatapathError> {
        let parent = pin_dir.parent().unwrap_or(pin_dir);
        ensure_bpffs(parent)?;
        std::fs::create_dir_all(pin_dir)
            .map_err(io_err(format!("creating {}", pin_dir.display())))?;
        let maps_dir = pin_dir.join("maps");
        let progs_dir = pin_dir.join("progs");
        for d in [&maps_dir, &progs_dir, &pin_dir.join("links")] {
            std::fs::create_dir_all(d).map_err(io_err(format!("creating {}", d.display())))?;
        }
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&maps_dir)
            .load(hookd_bpf::HOOKD_OBJ)?;
        for (name, _, _) in PROGRAMS {
            let prog: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or_else(|| DatapathError::Missing(name.to_string()))?
                .try_into()
                .map_err(prog_err(name))?;
            prog.load().map_err(prog_err(format!("loading {name}")))?;
            // Replace the pin of a previous daemon: links keep their own
            // reference to the program they were attached with.
            let pin = progs_dir.join(name);
            let _ = std::fs::remove_file(&pin);
            prog.pin(&pin).map_err(|source| DatapathError::Pin {
                what: format!("pinning {}", pin.display()),
                source,
            })?;
        }
        let take = |ebpf: &mut Ebpf, name: &'static str| {
            ebpf.take_map(name)
                .ok_or_else(|| DatapathError::Missing(name.to_string()))
        };
        let nics = HashMap::try_from(take(&mut ebpf, hookd_bpf::MAP_NICS)?)
            .map_err(map_err("hookd_nics"))?;
        let addrs = LpmTrie::try_from(take(&mut ebpf, hookd_bpf::MAP_ADDRS)?)
            .map_err(map_err("hookd_addrs"))?;
        let stats = PerCpuHashMap::try_from(take(&mut ebpf, hookd_bpf::MAP_STATS)?)
            .map_err(map_err("hookd_stats"))?;
        let fw_classes = LpmTrie::try_from(take(&mut ebpf, hookd_bpf::MAP_FW_CLASSES)?)
            .map_err(map_err("hookd_fw_classes"))?;
        let fw_rules = LpmTrie::try_from(take(&mut ebpf, hookd_bpf::MAP_FW_RULES)?)
            .map_err(map_err("hookd_fw_rules"))?;
        let ct = HashOfMaps::try_from(take(&mut ebpf, hookd_bpf::MAP_CT)?)
            .map_err(map_err("hookd_ct"))?;
        let fw_hits = PerCpuHashMap::try_from(take(&mut ebpf, hookd_bpf::MAP_FW_HITS)?)
            .map_err(map_err("hookd_fw_hits"))?;
        let log_rate = HashMap::try_from(take(&mut ebpf, hookd_bpf::MAP_LOG_RATE)?)
            .map_err(map_err("hookd_log_rate"))?;
        let events = RingBuf::try_from(take(&mut ebpf, hookd_bpf::MAP_EVENTS)?)
            .map_err(map_err("hookd_events"))?;
        let ncpus = aya::util::nr_cpus().map_err(|(what, source)| DatapathError::Io {
            what: what.to_string(),
            source,
        })?;
        let counters = Arc::new(Counters::open(pin_dir)?);
        let mut owned = Owned::scan(&fw_classes, &fw_rules, &addrs);
        owned.retire_idle(&nics, &fw_hits);
        Ok(Datapath {
            counters,
            owned,
            ebpf,
            nics,
            addrs,
            stats,
            fw_classes,
            fw_rules,
            ct,
            fw_hits,
            log_rate,
            events: Some(events),
            pin_dir: pin_dir.to_owned(),
            mode,
            ncpus,
        })
    }

    /// See [`Counters::health`].
    pub fn health(&self) -> Result<(), String> {
        self.counters.health()
    }

    /// The counter readers, shareable with other threads.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// The loaded program `name`, for BPF_PROG_TEST_RUN in tests and benchmarks.
    pub fn program(&self, name: &str) -> Option<&SchedClassifier> {
        self.ebpf.program(name).and_then(|p| p.try_into().ok())
    }

    fn link_pin(&self, uuid: &str, tap: &str, suffix: &str) -> PathBuf {
        // bpffs refuses dots in names ("reserved for future extensions").
        let tap = tap.replace('.', "_");
        self.pin_dir
            .join("links")
            .join(uuid)
            .join(format!("{tap}-{suffix}"))
    }

    /// Writes the NIC's map entries. Done before attaching, so the first
    /// frame the programs see is already judged by the policy.
    pub fn program_nic(
        &mut self,
        ifindex: u32,
        mac: [u8; 6],
        mode: &NicMode,
        generation: u64,
    ) -> Result<(), DatapathError> {
        self.write_nic(ifindex, mac, mode, generation, true)
    }

    /// `program_nic`, leaving out the conntrack table when `with_ct` is
    /// false: a new NIC gets it while its programs attach (see
    /// `attach_all_tcx`). Until it exists the programs fail closed.
    pub(crate) fn write_nic(
        &mut self,
        ifindex: u32,
        mac: [u8; 6],
        mode: &NicMode,
        generation: u64,
        with_ct: bool,
    ) -> Result<(), DatapathError> {
        let none = NicFirewall::default();
        let (flags, prefixes, fw) = match mode {
            NicMode::AntiSpoofing {
                flags,
                prefixes,
                firewall,
            } => (*flags, prefixes.as_slice(), firewall),
            _ => (0, &[][..], &none),
        };
        // New prefixes go in before stale ones go out, so a re-applied
        // policy never drops an address that both versions allow.
        let keys: Vec<AddrKey> = prefixes
            .iter()
            .map(|p| layout::addr_key(ifindex, p.addr(), p.prefix_len()))
            .collect();
        let same =
            |a: &AddrKey, b: &AddrKey| a.prefix_len() == b.prefix_len() && a.data() == b.data();
        // Owned while being written: a failure halfway leaves nothing that
        // a later clear would not find.
        let old = self.owned.addrs.remove(&ifindex).unwrap_or_default();
        let mut both = old.clone();
        both.extend(keys.iter().filter(|k| !old.iter().any(|o| same(o, k))));
        self.owned.addrs.insert(ifindex, both);
        for (key, p) in keys.iter().zip(prefixes) {
            self.addrs
                .insert(key, 1, 0)
                .map_err(map_err(format!("adding {p} for ifindex {ifindex}")))?;
        }
        for k in old.iter().filter(|o| !keys.iter().any(|n| same(n, o))) {
            self.addrs
                .remove(k)
                .map_err(map_err("removing a stale prefix"))?;
        }
        self.owned.addrs.insert(ifindex, keys.clone());
        let zero = PerCpuValues::try_from(vec![NicStats::default(); self.ncpus])
            .map_err(io_err("per-CPU stats"))?;
        if self.stats.get(&ifindex, 0).is_err() {
            self.stats
                .insert(ifindex, zero, 0)
                .map_err(map_err("creating counters"))?;
        }
        // Security groups: write the idle half of the tables, then switch
        // halves with the one nic_config update below, so a packet sees the
        // old rules or the new ones, never a mix; then drop the old half.
        if with_ct && (fw.ingress.is_some() || fw.egress.is_some()) {
            self.ensure_ct_table(ifindex)?;
        }
        let old = self.nics.get(&ifindex, 0).ok();
        let half = old.map(|c| c.fw_gen ^ 1).unwrap_or(0);
        // The idle half is empty once tidied. If not, empty it now, with its
        // hit counters (made by the programs, so finding a NIC's means
        // walking the whole hit map).
        if self.owned.retired.remove(&(ifindex, half)) {
            self.clear_hits(|k| k.ifindex == ifindex && k.half == half);
        }
        self.clear_fw(ifindex, Some(half));
        if let Err(e) = self.write_fw(ifindex, half, fw) {
            self.clear_fw(ifindex, Some(half));
            return Err(e);
        }
        let fw_mode = |c: &Option<Compiled>| match c {
            None => layout::FW_OFF,
            Some(c) if c.default_deny => layout::FW_DENY,
            Some(_) => layout::FW_ALLOW,
        };
        // Class 0's lookups per direction (class ids carry their own).
        let kinds0 = |c: &Option<Compiled>| {
            c.as_ref()
                .and_then(|c| c.kinds().get(&0).copied())
                .map_or(0, |k| k.bits())
        };
        let cfg = NicConfig {
            mac,
            flags,
            fw_ingress: fw_mode(&fw.ingress),
            fw_egress: fw_mode(&fw.egress),
            fw_gen: half,
            fw_kinds: layout::FW_KINDS_VALID | kinds0(&fw.ingress) | kinds0(&fw.egress) << 2,
            generation,
        };
        self.nics
            .insert(ifindex, cfg, 0)
            .map_err(map_err("writing NIC config"))?;
        if old.is_some() {
            // The new rules are in force: emptying the old half can wait
            // for `tidy`, after the caller has its answer.
            self.owned.retired.insert((ifindex, half ^ 1));
        }
        Ok(())
    }

    /// Empties the table halves that policy switches left behind, with
    /// their hit counters. The daemon runs it after answering the call that
    /// made the switch, so a policy change is not slowed by removing the
    /// rules it replaced.
    pub fn tidy(&mut self) {
        if self.owned.retired.is_empty() {
            return;
        }
        let retired = std::mem::take(&mut self.owned.retired);
        self.clear_hits(|k| retired.contains(&(k.ifindex, k.half)));
        for (ifindex, half) in retired {
            self.clear_fw(ifindex, Some(half));
        }
    }

    fn write_fw(&mut self, ifindex: u32, half: u8, fw: &NicFirewall) -> Result<(), DatapathError> {
        for (dir, table) in [
            (layout::DIR_INGRESS, &fw.ingress),
            (layout::DIR_EGRESS, &fw.egress),
        ] {
            let Some(t) = table else { continue };
            for (prefix, class) in &t.classes {
                let key = Key::new(
                    layout::FW_CLASS_FIXED_BITS + u32::from(prefix.len),
                    FwClassData {
                        ifindex,
                        half,
                        dir,
                        pad: [0; 2],
                        addr: prefix.addr.to_be_bytes(),
                    },
                );
                self.owned
                    .classes
                    .entry((ifindex, half))
                    .or_default()
                    .push(key);
                self.fw_classes.insert(&key, class, 0).map_err(map_err(
                    "writing a firewall class (too many rules for the maps?)",
                ))?;
            }
            for (k, v) in &t.rules {
                let key = Key::new(
                    layout::FW_RULE_FIXED_BITS + u32::from(k.block.len),
                    FwRuleData {
                        ifindex,
                        half,
                        dir,
                        proto: k.proto,
                        any: u8::from(k.any),
                        class: k.class,
                        port: k.block.value.to_be_bytes(),
                        pad: [0; 2],
                    },
                );
                let val = FwVerdict {
                    deny: u8::from(v.deny),
                    log: u8::from(v.log),
                    rule: v.rule,
                };
                self.owned
                    .rules
                    .entry((ifindex, half))
                    .or_default()
                    .push(key);
                self.fw_rules.insert(&key, val, 0).map_err(map_err(
                    "writing a firewall rule (too many rules for the maps?)",
                ))?;
            }
        }
        Ok(())
    }

    /// Removes the firewall entries of `ifindex` (of one half, or both).
    /// An entry already gone (pins cleared under hookd) is not an error.
    fn clear_fw(&mut self, ifindex: u32, half: Option<u8>) {
        for h in [0u8, 1]
            .into_iter()
            .filter(|h| half.is_none_or(|x| x == *h))
        {
            for k in self.owned.classes.remove(&(ifindex, h)).unwrap_or_default() {
                let _ = self.fw_classes.remove(&k);
            }
            for k in self.owned.rules.remove(&(ifindex, h)).unwrap_or_default() {
                let _ = self.fw_rules.remove(&k);
            }
        }
    }

    /// Number of firewall rule-table entries stored for `ifindex`.
    pub fn fw_rule_count(&self, ifindex: u32) -> usize {
        self.fw_rules
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.data().ifindex == ifindex)
            .count()
    }

    fn clear_addrs(&mut self, ifindex: u32) {
        for k in self.owned.addrs.remove(&ifindex).unwrap_or_default() {
            let _ = self.addrs.remove(&k);
        }
    }

    /// Removes every map entry of `ifindex`.
    pub fn forget_nic(&mut self, ifindex: u32) -> Result<(), DatapathError> {
        let _ = self.nics.remove(&ifindex);
        let _ = self.stats.remove(&ifindex);
        self.clear_fw(ifindex, None);
        self.owned.retired.retain(|(i, _)| *i != ifindex);
        self.clear_ct(ifindex);
        self.clear_hits(|k| k.ifindex == ifindex);
        let _ = self.log_rate.remove(&ifindex);
        self.clear_addrs(ifindex);
        Ok(())
    }

    /// Hands over the ring buffer of logged packets (once), for a reader
    /// that waits on its file descriptor.
    pub fn take_events(&mut self) -> Option<RingBuf<MapData>> {
        self.events.take()
    }

    /// Removes the hit counters `which` selects: one walk of the hit map,
    /// since the programs make its entries.
    fn clear_hits(&mut self, which: impl Fn(&FwHitKey) -> bool) {
        let keys: Vec<FwHitKey> = self
            .fw_hits
            .keys()
            .filter_map(Result::ok)
            .filter(|k| which(k))
            .collect();
        for k in keys {
            let _ = self.fw_hits.remove(&k);
        }
    }

    /// How often each rule of the live policy decided a packet:
    /// (direction, rule index) -> hits, summed over CPUs.
    pub fn rule_hits(&self, ifindex: u32) -> Vec<((u8, u16), u64)> {
        self.counters.rule_hits(ifindex)
    }

    /// Gives the NIC its own connection-tracking table, once.
    fn ensure_ct_table(&mut self, ifindex: u32) -> Result<(), DatapathError> {
        ensure_ct_table(&mut self.ct, ifindex)
    }

    /// Forgets the NIC's tracked connections with its table.
    fn clear_ct(&mut self, ifindex: u32) {
        let _ = self.ct.remove(&ifindex);
    }

    /// Number of tracked connections of `ifindex`.
    pub fn ct_count(&self, ifindex: u32) -> usize {
        let Ok(table) = self.ct.get(&ifindex, 0) else {
            return 0;
        };
        match HashMap::<MapData, CtKey, CtEntry>::try_from(Map::LruHashMap(table)) {
            Ok(t) => t.keys().filter_map(Result::ok).count(),
            Err(_) => 0,
        }
    }

    /// Attaches both programs to `tap` and pins the links under the domain.
    /// With `ct_for`, also gives that NIC its conntrack table, alongside.
    pub fn attach(
        &mut self,
        uuid: &str,
        tap: &str,
        ct_for: Option<u32>,
    ) -> Result<Attachment, DatapathError> {
        let dir = self.pin_dir.join("links").join(uuid);
        std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        // Both programs of a tap use the same method, so detach and
        // adoption only ever have one kind of attachment to deal with.
        let result = match self.mode {
            AttachMode::Netlink => self.attach_all_netlink(tap, ct_for),
            AttachMode::Tcx => self.attach_all_tcx(uuid, tap, ct_for),
            AttachMode::Auto => self.attach_all_tcx(uuid, tap, ct_for).or_else(|e| {
                tracing::warn!(tap, error = %e, "tcx attach failed; falling back to a clsact qdisc");
                let _ = self.detach(uuid, tap, Some(Attachment::Tcx));
                self.attach_all_netlink(tap, ct_for)
            }),
        };
        if result.is_err() {
            // Nothing half-applied: undo the program that did attach.
            let _ = self.detach(uuid, tap, None);
        }
        result
    }

    /// Both programs with tcx, side by side with the conntrack table's
    /// insert: each waits for an RCU grace period in the kernel (about 10 ms
    /// here), and a VM start then waits for one instead of three.
    fn attach_all_tcx(
        &mut self,
        uuid: &str,
        tap: &str,
        ct_for: Option<u32>,
    ) -> Result<Attachment, DatapathError> {
        let pins: Vec<PathBuf> = PROGRAMS
            .iter()
            .map(|(_, _, suffix)| self.link_pin(uuid, tap, suffix))
            .collect();
        let Datapath { ebpf, ct, .. } = self;
        let mut progs: Vec<(&str, TcAttachType, &mut SchedClassifier)> = Vec::new();
        for (name, prog) in ebpf.programs_mut() {
            if let Some((n, kind, _)) = PROGRAMS.iter().find(|(n, _, _)| *n == name) {
                progs.push((n, *kind, prog.try_into().map_err(prog_err(*n))?));
            }
        }
        let panicked = || DatapathError::Io {
            what: format!("attaching to {tap}"),
            source: std::io::Error::other("attach thread panicked"),
        };
        std::thread::scope(|s| {
            let ct_job = ct_for.map(|ifindex| s.spawn(move || ensure_ct_table(ct, ifindex)));
            let jobs: Vec<_> = progs
                .into_iter()
                .zip(&pins)
                .map(|((name, kind, prog), pin)| {
                    s.spawn(move || attach_tcx_one(prog, tap, name, kind, pin))
                })
                .collect();
            let mut result = Ok(());
            for j in jobs.into_iter().chain(ct_job) {
                let r = j.join().unwrap_or_else(|_| Err(panicked()));
                if result.is_ok() {
                    result = r;
                }
            }
            result
        })?;
        Ok(Attachment::Tcx)
    }

    fn attach_all_netlink(
        &mut self,
        tap: &str,
        ct_for: Option<u32>,
    ) -> Result<Attachment, DatapathError> {
        if let Some(ifindex) = ct_for {
            self.ensure_ct_table(ifindex)?;
        }
        for (name, kind, _) in PROGRAMS {
            self.attach_netlink(tap, name, kind)?;
        }
        Ok(Attachment::Netlink)
    }

    fn attach_netlink(
        &mut self,
        tap: &str,
        name: &str,
        kind: TcAttachType,
    ) -> Result<(), DatapathError> {
        // EEXIST when the qdisc is already there is fine.
        let _ = tc::qdisc_add_clsact(tap);
        let prog: &mut SchedClassifier = self.program_mut(name)?;
        let id = prog
            .attach_with_options(tap, kind, TcAttachOptions::Netlink(NlOptions::default()))
            .map_err(prog_err(format!("netlink attach of {name} to {tap}")))?;
        let link = prog.take_link(id).map_err(prog_err("taking link"))?;
        // A netlink filter stays on the qdisc until removed by name (see
        // `detach`); dropping the handle would detach it now.
        std::mem::forget(link);
        Ok(())
    }

    fn program_mut(&mut self, name: &str) -> Result<&mut SchedClassifier, DatapathError> {
        self.ebpf
            .program_mut(name)
            .ok_or_else(|| DatapathError::Missing(name.to_string()))?
            .try_into()
            .map_err(prog_err(name))
    }

    /// Detaches hookd's programs from `tap` (links pinned under the domain,
    /// or netlink filters by program name). A tap that is already gone is
    /// not an error: the kernel detached with it.
    pub fn detach(
        &mut self,
        uuid: &str,
        tap: &str,
        how: Option<Attachment>,
    ) -> Result<(), DatapathError> {
        for (name, kind, suffix) in PROGRAMS {
            let pin = self.link_pin(uuid, tap, suffix);
            if pin.exists() {
                match PinnedLink::from_pin(&pin) {
                    // Unpinning hands back the last reference; dropping it detaches.
                    Ok(link) => drop(
                        link.unpin()
                            .map_err(io_err(format!("unpinning {}", pin.display())))?,
                    ),
                    Err(_) => std::fs::remove_file(&pin)
                        .map_err(io_err(format!("removing {}", pin.display())))?,
                }
            }
            if how != Some(Attachment::Tcx) && netdev::ifindex(tap).is_ok() {
                let _ = tc::qdisc_detach_program(tap, kind, name);
            }
        }
        Ok(())
    }

    /// Removes the domain's link directory once its NICs are detached.
    pub fn remove_domain_pins(&self, uuid: &str) -> Result<(), DatapathError> {
        let dir = self.pin_dir.join("links").join(uuid);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io_err(format!("removing {}", dir.display()))(e))
            }
            _ => Ok(()),
        }
    }

    /// Are both links of `tap` still pinned?
    pub fn links_pinned(&self, uuid: &str, tap: &str) -> bool {
        PROGRAMS
            .iter()
            .all(|(_, _, s)| self.link_pin(uuid, tap, s).exists())
    }

    /// The NIC's counters summed over CPUs.
    pub fn stats(&self, ifindex: u32) -> Option<NicStats> {
        self.counters.stats(ifindex)
    }

    /// The NIC config hookd wrote for `ifindex`.
    pub fn nic_config(&self, ifindex: u32) -> Option<NicConfig> {
        self.nics.get(&ifindex, 0).ok()
    }

    /// Number of prefixes stored for `ifindex`.
    pub fn prefix_count(&self, ifindex: u32) -> usize {
        self.addrs
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.data().ifindex == ifindex)
            .count()
    }
}
