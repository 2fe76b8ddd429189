//! hookd's command line, kept in the library so that its man page is
//! generated from it (`hookd-gen-docs`).

use clap::Parser;
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
    /// Override the lasting state directory (defined networks) from the
    /// configuration.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Override how programs are attached: staged (the default: clsact at
    /// start, moved to tcx a second later), auto, tcx or netlink.
    #[arg(long, value_enum)]
    pub attach: Option<crate::config::AttachMode>,
}
