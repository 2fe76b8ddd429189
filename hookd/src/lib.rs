//! hookd, the daemon: an eBPF data plane for libvirt/KVM virtual machines.
//!
//! Layers, each using only those below it (the pure model is the
//! `hookd-model` crate; see docs/architecture.md):
//!
//! - [`api`]: the D-Bus face (`org.hookd.Hookd1.Manager`), access control,
//!   signals, and the hook's own socket;
//! - [`libvirt`]: libvirt's API (domain events, metadata writes) and the
//!   follower that re-applies what libvirt changes;
//! - [`core`]: the daemon (records, changes, the readers' view, tracing);
//! - [`datapath`]: the kernel (load, pin, attach, per-NIC maps, counters);
//! - [`config`], [`cli`], [`metrics`]: configuration, command line, the
//!   Prometheus endpoint.

pub mod api;
pub mod cli;
pub mod config;
pub mod core;
pub mod datapath;
pub mod libvirt;
pub mod metrics;

/// hookd's version, as reported over D-Bus and by `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
