//! hookd: an eBPF data plane for libvirt/KVM virtual machines.
//!
//! Pure logic (XML, policy, planning, hook arguments) lives in modules that
//! need no privileges; `datapath` and `netdev` touch the kernel; `service`
//! is the D-Bus face of the daemon.

pub mod cli;
pub mod config;
pub mod daemon;
pub mod datapath;
pub mod domain;
pub mod events;
pub mod explain;
pub mod firewall;
pub mod hook;
pub mod hook_socket;
pub mod libvirt;
pub mod mac;
pub mod metadata;
pub mod metrics;
pub mod netdev;
pub mod plan;
pub mod policy;
pub mod reconcile;
pub mod service;
pub mod state;
pub mod xml_tree;

/// hookd's version, as reported over D-Bus and by `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
