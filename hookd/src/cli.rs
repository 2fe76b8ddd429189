//! Command-line definitions of `hookd` and `hookctl`, kept in the library so
//! that man pages and shell completions are generated from them
//! (`hookd-gen-docs`).

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// eBPF data plane for libvirt/KVM virtual machines.
///
/// Runs as a D-Bus system service (org.hookd.Hookd1). The libvirt hook
/// /etc/libvirt/hooks/qemu.d/50-hookd calls it on every VM start and stop.
/// Programs and links are pinned under the pin directory, so VMs stay
/// protected while hookd restarts.
#[derive(Parser, Debug)]
#[command(name = "hookd", version)]
pub struct DaemonArgs {
    /// Configuration file.
    #[arg(long, default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Override the pin directory (on bpffs) from the configuration.
    #[arg(long)]
    pub pin_dir: Option<PathBuf>,
    /// Override the runtime state directory from the configuration.
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Override how programs are attached: auto, tcx or netlink.
    #[arg(long, value_parser = ["auto", "tcx", "netlink"])]
    pub attach: Option<String>,
}

/// Inspect hookd, the eBPF data plane for libvirt VMs.
///
/// `domains` and `show` ask the running daemon over D-Bus; `explain` needs
/// no daemon and checks a domain XML before `virsh define`.
#[derive(Parser, Debug)]
#[command(name = "hookctl", version)]
pub struct Hookctl {
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub cmd: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List the domains hookd has attached to.
    Domains,
    /// Show one domain: NICs, taps, what is attached, counters.
    Show {
        /// Domain name or UUID.
        domain: String,
    },
    /// Packets logged by `log="true"` rules (the most recent, rate-limited).
    Events {
        /// Domain name or UUID; all domains when absent.
        domain: Option<String>,
    },
    /// Parse a domain XML the way hookd does and print what it would attach
    /// and enforce, or the validation error with its line (exit status 1).
    Explain {
        /// Domain XML file (e.g. from `virsh dumpxml`), or - for stdin.
        file: String,
    },
}
