//! `/etc/hookd/hookd.toml`. Every key is optional; see packaging's commented
//! default file and docs/configuration.md.

use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const DEFAULT_PATH: &str = "/etc/hookd/hookd.toml";

/// How programs are attached to taps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// tcx where the kernel has it (6.6+), else a clsact qdisc via netlink.
    Auto,
    Tcx,
    Netlink,
    /// The default. A clsact qdisc at `start` (no RCU grace period: 1,000
    /// taps in seconds), each NIC moved to tcx in the background once its
    /// domain runs (`datapath/promote.rs`); tcx at once where the tap
    /// already has qdiscs of its own (libvirt's `<bandwidth>`).
    Staged,
}

impl AttachMode {
    /// The mode hookd runs in on a kernel with or without tcx: `staged`
    /// would move NICs to tcx links a kernel before 6.6 cannot make, so
    /// there it is `netlink` (what `auto` falls back to as well).
    pub fn on_kernel(self, has_tcx: bool) -> AttachMode {
        match self {
            AttachMode::Staged if !has_tcx => AttachMode::Netlink,
            m => m,
        }
    }
}

/// What a destination does with carried firewall state it cannot load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateErrors {
    /// The migration fails and the VM stays on the source, enforced.
    #[default]
    Refuse,
    /// The VM comes without its connections (policy still enforced);
    /// those through a deny-by-default direction break.
    Proceed,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// How to attach: auto, tcx, netlink or staged.
    pub attach: AttachMode,
    /// Count the traffic of domains without hookd policy (never filtered).
    pub count_unmanaged: bool,
    /// Where programs, maps and links are pinned (a directory on bpffs).
    pub pin_dir: PathBuf,
    /// Runtime state: what hookd attached, per domain.
    pub run_dir: PathBuf,
    /// Lasting state: networks defined over D-Bus, in `state_dir/networks/`.
    pub state_dir: PathBuf,
    /// Network definitions written by configuration management (read-only
    /// to hookd), `*.xml`.
    pub networks_dir: PathBuf,
    /// Give each tenant with NICs on this host a network namespace
    /// (`hookd-TENANT`), where traffic leaving its subnets goes. Off: that
    /// traffic is dropped.
    pub tenant_namespaces: bool,
    /// Where tenant namespaces are named (`ip netns` reads /run/netns).
    pub netns_dir: PathBuf,
    /// Connections each NIC's conntrack table holds (1,024 to 4,194,304);
    /// for NICs attached after a change, others keep their table.
    pub conntrack_entries: u32,
    /// The most a policy's `conntrack-entries` may give one NIC (1,024
    /// to 4,194,304): VM owners' policies cannot claim more kernel memory.
    pub conntrack_entries_max: u32,
    /// Serve per-NIC counters in the Prometheus text format on this
    /// address (loopback only), e.g. "127.0.0.1:9469". Off when absent.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// libvirt connection URI for following domain events (policy edited
    /// with `virsh metadata`, NIC hot-plug) and persisting policy set over
    /// D-Bus. Empty: no libvirt connection.
    pub libvirt_uri: String,
    /// Members of this group may read (list, show, trace, events); only
    /// root may change anything.
    pub read_group: String,
    /// The most firewall state a VM carries through a live migration, in
    /// MiB (0 to 255): one helper on the bus per MiB, which QEMU's
    /// `dbus-vmstate` calls (docs/migration.md). 0: none are served.
    pub migration_state_mib: u32,
    /// Carried state that cannot be loaded here (corrupt, of another
    /// layout version, from a source with another number of helpers):
    /// "refuse" fails the migration, "proceed" lets the VM come without it.
    pub migration_state_errors: StateErrors,
    /// Where libvirt writes each running domain's QEMU pid (`NAME.pid`):
    /// how the helpers know which VM's QEMU calls them.
    pub qemu_pid_dir: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            attach: AttachMode::Staged,
            count_unmanaged: true,
            pin_dir: PathBuf::from("/sys/fs/bpf/hookd"),
            run_dir: PathBuf::from("/run/hookd"),
            state_dir: PathBuf::from("/var/lib/hookd"),
            networks_dir: PathBuf::from("/etc/hookd/networks.d"),
            tenant_namespaces: true,
            conntrack_entries: hookd_bpf::layout::CT_PER_NIC,
            conntrack_entries_max: crate::datapath::DEFAULT_CT_ENTRIES_MAX,
            netns_dir: PathBuf::from("/run/netns"),
            metrics_listen: None,
            libvirt_uri: "qemu:///system".into(),
            read_group: "hookd".into(),
            migration_state_mib: 16,
            migration_state_errors: StateErrors::Refuse,
            qemu_pid_dir: PathBuf::from("/run/libvirt/qemu"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
}

impl Config {
    /// Reads `path`; a missing file at the default path means defaults.
    pub fn load(path: &Path, must_exist: bool) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text).map_err(|message| ConfigError::Parse {
                path: path.to_owned(),
                message,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                Ok(Config::default())
            }
            Err(source) => Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        let c: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        let range = crate::datapath::CT_ENTRIES_RANGE;
        for (key, v, what) in [
            (
                "conntrack_entries",
                c.conntrack_entries,
                "each NIC's conntrack table holds",
            ),
            (
                "conntrack_entries_max",
                c.conntrack_entries_max,
                "a policy's conntrack-entries may ask for",
            ),
        ] {
            if !range.contains(&v) {
                return Err(format!(
                    "{key} = {v}: {what} {} to {} connections",
                    range.start(),
                    range.end()
                ));
            }
        }
        if c.migration_state_mib > 255 {
            return Err(format!(
                "migration_state_mib = {}: at most 255 (one helper on the bus per MiB)",
                c.migration_state_mib
            ));
        }
        if let Some(a) = c.metrics_listen
            && !a.ip().is_loopback()
        {
            return Err(format!(
                "metrics_listen = \"{a}\": the metrics endpoint has no authentication and binds to loopback only (e.g. 127.0.0.1:9469)"
            ));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        assert_eq!(Config::default().attach, AttachMode::Staged);
        let c = Config::parse("attach = \"netlink\"\ncount_unmanaged = false\n").unwrap();
        assert_eq!(c.attach, AttachMode::Netlink);
        assert!(!c.count_unmanaged);
        assert_eq!(
            Config::parse("attach = \"staged\"").unwrap().attach,
            AttachMode::Staged
        );
        assert_eq!(
            Config::parse("conntrack_entries = 200000")
                .unwrap()
                .conntrack_entries,
            200_000
        );
        let e = Config::parse("conntrack_entries = 100").unwrap_err();
        assert!(
            e.contains("conntrack_entries = 100") && e.contains("1024 to 4194304"),
            "{e}"
        );
        let e = Config::parse("atach = \"tcx\"").unwrap_err().to_string();
        assert!(e.contains("atach"), "{e}");
        assert!(Config::parse("attach = \"xdp\"").is_err());
        // Without tcx, staged cannot move a NIC: it is netlink from the start.
        assert_eq!(AttachMode::Staged.on_kernel(false), AttachMode::Netlink);
        assert_eq!(AttachMode::Staged.on_kernel(true), AttachMode::Staged);
        assert_eq!(AttachMode::Tcx.on_kernel(false), AttachMode::Tcx);
        assert_eq!(AttachMode::Auto.on_kernel(false), AttachMode::Auto);
        let c = Config::parse("metrics_listen = \"127.0.0.1:9469\"").unwrap();
        assert_eq!(c.metrics_listen.unwrap().port(), 9469);
        let e = Config::parse("metrics_listen = \"0.0.0.0:9469\"").unwrap_err();
        assert!(e.contains("loopback only"), "{e}");
        let c = Config::parse("migration_state_errors = \"proceed\"").unwrap();
        assert_eq!(c.migration_state_errors, StateErrors::Proceed);
        let e = Config::parse("conntrack_entries_max = 5000000").unwrap_err();
        assert!(e.contains("conntrack_entries_max = 5000000"), "{e}");
        let e = Config::parse("migration_state_errors = \"ignore\"").unwrap_err();
        assert!(e.contains("refuse") && e.contains("proceed"), "{e}");
    }
}
