//! hookd's eBPF programs, compiled from `c/` by `build.rs` and embedded here,
//! and the Rust side of their kernel interface, `c/lib/types.h`.

pub mod layout;

/// The object holding hookd's tap programs and maps.
pub static HOOKD_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/hookd.bpf.o"));

/// The tracing build of [`HOOKD_OBJ`] (`c/lib/trace.h`): the same programs
/// on the same maps, which write none of them but notes in their own
/// `hookd_trace`, for `hookctl trace --live`.
pub static HOOKD_TRACE_OBJ: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/hookd-trace.bpf.o"));

/// A classifier that does nothing, for side-by-side measurements.
pub static EMPTY_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/empty.bpf.o"));

/// Test fixture: a classifier that redirects every frame to the egress of
/// its global `TARGET_IFINDEX`.
pub static REDIRECT_OBJ: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/redirect.bpf.o"));

/// Not a program: the object whose BTF holds every type of `c/lib/types.h`,
/// which `build.rs` generates [`layout`]'s constants from. For tests.
#[doc(hidden)]
pub static ABI_OBJ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/abi.o"));

/// Program attached at tc ingress of a tap: frames sent by the VM.
pub const PROG_FROM_VM: &str = "hookd_from_vm";
/// Program attached at tc egress of a tap: frames delivered to the VM.
pub const PROG_TO_VM: &str = "hookd_to_vm";
/// Program attached at tc ingress of the host end of a tenant namespace's
/// veth: packets from the namespace to the tenant's VMs.
pub const PROG_FROM_TENANT: &str = "hookd_from_tenant";
/// Map: tap ifindex -> [`layout::NicConfig`].
pub const MAP_NICS: &str = "hookd_nics";
/// Map: tap ifindex (below [`layout::NIC_INDEX_DIRECT`]) -> 1 + the
/// position in [`MAP_NIC_CFGS`] of the config the programs read; 0 none.
pub const MAP_NIC_INDEX: &str = "hookd_nic_index";
/// Map: as [`MAP_NIC_INDEX`], for the other ifindexes (a hash).
pub const MAP_NIC_FAR: &str = "hookd_nic_far";
/// Map: the configs the programs read, two per slot (double-buffered).
pub const MAP_NIC_CFGS: &str = "hookd_nic_cfgs";
/// Map: LPM [`layout::AddrKey`] -> u32, the NIC's allowed source prefixes.
pub const MAP_ADDRS: &str = "hookd_addrs";
/// Map: a NIC's slot ([`layout::NicConfig::slot`]) -> per-CPU
/// [`layout::NicStats`].
pub const MAP_COUNTERS: &str = "hookd_counters";
/// Map: ifindex -> per-CPU [`layout::NicStats`]: the tenant namespaces'
/// veths, and NICs' counts from a hookd before slots.
pub const MAP_STATS: &str = "hookd_stats";
/// Map: LPM remote prefix -> firewall class.
pub const MAP_FW_CLASSES: &str = "hookd_fw_classes";
/// Map: LPM (class, protocol, port block) -> [`layout::FwVerdict`].
pub const MAP_FW_RULES: &str = "hookd_fw_rules";
/// Map: LRU connection tracking.
pub const MAP_CT: &str = "hookd_ct";
/// Map: per-CPU LRU hit counters per rule.
pub const MAP_FW_HITS: &str = "hookd_fw_hits";
/// Map: ring buffer of [`layout::FwEvent`]s.
pub const MAP_EVENTS: &str = "hookd_events";
/// Map: per-NIC log rate-limit windows.
pub const MAP_LOG_RATE: &str = "hookd_log_rate";
/// The network of each network NIC.
pub const MAP_NIC_NETS: &str = "hookd_nic_nets";
/// The addresses on each network this host answers for or switches to.
pub const MAP_NET_ADDRS: &str = "hookd_net_addrs";
/// Each tenant's routes (LPM).
pub const MAP_ROUTES: &str = "hookd_routes";
/// What the network's DHCP answers give each network NIC.
pub const MAP_DHCP: &str = "hookd_dhcp";
/// Per-NIC counters of the network stage (per CPU).
pub const MAP_NET_STATS: &str = "hookd_net_stats";
/// Map of the tracing build only: its [`layout::TraceNote`].
pub const MAP_TRACE: &str = "hookd_trace";
/// Map: per-CPU room for answers too large for a program's stack.
pub const MAP_SCRATCH: &str = "hookd_scratch";
/// Map: each CPU's conntrack clock, the coarse clock as last read.
pub const MAP_CLOCK: &str = "hookd_clock";
/// What router advertisements tell each network NIC -> [`layout::RaInfo`].
pub const MAP_RA: &str = "hookd_ra";
/// Each network's NICs on this host -> [`layout::NetMembers`].
pub const MAP_NET_MEMBERS: &str = "hookd_net_members";
/// The host ends of tenant namespaces' veths -> [`layout::Uplink`].
pub const MAP_UPLINKS: &str = "hookd_uplinks";
