//! hookd's D-Bus contract, shared by the daemon, `hookctl` and the libvirt
//! hook: well-known names, error names, the types carried by methods, and a
//! client proxy. The bus policy file and introspection XML sit beside this
//! crate in `dbus/`.

use serde::{Deserialize, Serialize};
use zbus::zvariant::Type;

/// Well-known name hookd owns on the system bus.
pub const BUS_NAME: &str = "org.hookd.Hookd1";
/// Object path of the manager object.
pub const MANAGER_PATH: &str = "/org/hookd/Hookd1";
/// Interface of the manager object.
pub const MANAGER_INTERFACE: &str = "org.hookd.Hookd1.Manager";
/// hookd's peer-to-peer D-Bus socket for the libvirt hook (root only): the
/// same Manager interface, reached without the system bus, so that a flood
/// of management calls queued there cannot delay VM starts. The hook falls
/// back to the bus when the socket is absent.
pub const HOOK_SOCKET: &str = "/run/hookd/hook.sock";
/// The bus policy file installed in /usr/share/dbus-1/system.d/.
pub const BUS_POLICY: &str = include_str!("../org.hookd.Hookd1.conf");

/// Errors hookd returns, named `org.hookd.Hookd1.Error.<Variant>` on the bus.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.hookd.Hookd1.Error")]
pub enum Error {
    #[zbus(error)]
    ZBus(zbus::Error),
    /// The domain XML or its hookd policy is invalid; the message names the
    /// element, attribute and line.
    InvalidPolicy(String),
    /// An argument (operation name, domain name, ...) is not acceptable.
    InvalidArgument(String),
    /// hookd could not attach or program the data path.
    AttachFailed(String),
    /// No such domain is known to hookd.
    NotFound(String),
    /// The caller may not do this.
    AccessDenied(String),
    /// libvirt refused a call or could not be reached.
    Libvirt(String),
    /// A network definition is invalid; the message names the element,
    /// attribute and line, or the network it conflicts with.
    InvalidNetwork(String),
    /// The change would break what uses it (the message names them), or
    /// is not hookd's to make.
    Refused(String),
}

/// A row of `ListDomains`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct DomainSummary {
    pub name: String,
    pub uuid: String,
    /// true when the domain carries hookd policy.
    pub managed: bool,
    /// Number of NICs hookd attached to.
    pub attached_nics: u32,
    /// The libvirt hook phase at which hookd attached, e.g. "start".
    pub attached_at: String,
}

/// One counter of a NIC: name and value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct Counter {
    pub name: String,
    pub value: u64,
}

/// A security-group rule and how often it decided a packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct RuleHits {
    /// "ingress" or "egress".
    pub direction: String,
    pub index: u16,
    /// Line of the rule in the domain XML.
    pub line: u32,
    pub rule: String,
    pub hits: u64,
}

/// A NIC of a domain as hookd sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct NicInfo {
    pub mac: String,
    /// libvirt interface type: network, bridge, ethernet, ...
    pub kind: String,
    /// Tap device, empty when the NIC has none hookd can attach to.
    pub tap: String,
    pub ifindex: u32,
    /// "anti-spoofing", "counters only" or "not attached: <why>".
    pub mode: String,
    /// "tcx", "netlink" or "" when not attached.
    pub attach: String,
    /// Allowed source prefixes (the policy's addresses plus the link-local).
    pub addresses: Vec<String>,
    /// Counters: to_vm/from_vm packets and bytes, then drops by reason.
    pub counters: Vec<Counter>,
    /// Security-group rules in force, with their hit counts.
    pub rules: Vec<RuleHits>,
}

/// Everything hookd knows about one domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct DomainDetail {
    pub name: String,
    pub uuid: String,
    pub managed: bool,
    pub attached_at: String,
    pub generation: u64,
    pub nics: Vec<NicInfo>,
}

/// A packet decided by a rule with `log="true"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct LoggedPacket {
    /// Kernel monotonic time of the packet, in nanoseconds.
    pub time_ns: u64,
    pub domain: String,
    pub mac: String,
    /// "ingress" (to the VM) or "egress" (from it).
    pub direction: String,
    /// "allow" or "deny".
    pub action: String,
    pub rule_line: u32,
    pub rule: String,
    pub protocol: u8,
    pub source: String,
    pub destination: String,
    pub source_port: u16,
    pub destination_port: u16,
}

/// What one host did with a VM's firewall state in a live migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct MigrationInfo {
    pub domain: String,
    pub uuid: String,
    /// "source" (the state was saved) or "destination" (it was loaded).
    pub side: String,
    /// "carried", "refused" (the migration failed with it) or "proceeded
    /// without state" (`migration_state_errors = "proceed"`).
    pub outcome: String,
    pub nics: u32,
    /// Connections carried.
    pub entries: u64,
    /// Bytes of state carried.
    pub bytes: u64,
    /// Time hookd took, in milliseconds.
    pub ms: u64,
    /// Why the state was not carried; when it was, how (on the source:
    /// read as the guest stopped, or when QEMU asked).
    pub detail: String,
    /// Seconds since the epoch.
    pub unix_time: u64,
}

/// A row of `ListNetworks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct NetworkSummary {
    pub name: String,
    pub tenant: String,
    pub vni: u32,
    /// The subnets' prefixes.
    pub subnets: Vec<String>,
    /// "defined: FILE" (over D-Bus) or "configuration: FILE" (networks.d).
    pub source: String,
}

/// A subnet of a network and its gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct SubnetInfo {
    pub prefix: String,
    pub gateway: String,
}

/// Everything hookd knows about one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct NetworkDetail {
    pub name: String,
    pub tenant: String,
    pub vni: u32,
    pub mtu: u32,
    pub subnets: Vec<SubnetInfo>,
    /// DNS servers given to guests.
    pub dns: Vec<String>,
    pub source: String,
    /// The definition as written.
    pub xml: String,
    /// Its NICs on this host.
    pub nics: Vec<NetworkNic>,
    /// Its tenant's network namespace on this host (`hookd-TENANT`), where
    /// traffic leaving the tenant's subnets goes; empty when the tenant has
    /// no NIC here or tenant namespaces are off.
    pub namespace: String,
}

/// A NIC on a network, on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct NetworkNic {
    pub domain: String,
    pub mac: String,
    pub tap: String,
    pub addresses: Vec<String>,
}

/// Client side of `org.hookd.Hookd1.Manager`.
#[zbus::proxy(
    interface = "org.hookd.Hookd1.Manager",
    default_service = "org.hookd.Hookd1",
    default_path = "/org/hookd/Hookd1"
)]
pub trait Manager {
    /// A libvirt hook invocation: `/etc/libvirt/hooks/qemu.d/50-hookd` calls
    /// this with its arguments and the domain XML it read on stdin. Returns a
    /// one-line summary of what hookd did; for `migrate` (an incoming
    /// migration), the domain XML libvirt is to use.
    fn hook_event(
        &self,
        domain: &str,
        operation: &str,
        sub_operation: &str,
        extra: &str,
        xml: &str,
    ) -> Result<String, Error>;

    /// Domains hookd has attached to.
    fn list_domains(&self) -> Result<Vec<DomainSummary>, Error>;

    /// One domain, by name or UUID.
    fn get_domain(&self, domain: &str) -> Result<DomainDetail, Error>;

    /// Validates a policy without applying it: a whole domain XML, or a
    /// `<policy>` element in hookd's namespace. Returns a summary, or
    /// InvalidPolicy naming element, attribute and line.
    fn validate_policy(&self, xml: &str) -> Result<String, Error>;

    /// The verdict a domain NIC's live rules give a described packet:
    /// (action, rule line or 0, explanation). Touches no connection tracking.
    #[allow(clippy::too_many_arguments)]
    fn trace(
        &self,
        domain: &str,
        mac: &str,
        direction: &str,
        remote: &str,
        protocol: &str,
        port: u16,
        icmp_type: u8,
        icmp_code: u8,
    ) -> Result<(String, u32, String), Error>;

    /// The described packet through the NIC's attached programs (their
    /// tracing build, on the live maps, by BPF_PROG_TEST_RUN; nothing is
    /// written): (action, the stage that decided and why, then `trace`'s
    /// action, rule line and explanation, and the NIC's address used).
    #[allow(clippy::too_many_arguments)]
    fn trace_live(
        &self,
        domain: &str,
        mac: &str,
        direction: &str,
        remote: &str,
        protocol: &str,
        port: u16,
        icmp_type: u8,
        icmp_code: u8,
    ) -> Result<(String, String, String, u32, String, String), Error>;

    /// The most recent packets logged by `log="true"` rules (rate-limited
    /// to 100 per NIC and second), oldest first; domain "" for all.
    fn recent_events(&self, domain: &str) -> Result<Vec<LoggedPacket>, Error>;

    /// The policy in force for a domain, as a `<policy>` document in
    /// hookd's namespace; empty when it has none.
    fn get_policy(&self, domain: &str) -> Result<String, Error>;

    /// Replaces a running domain's policy (empty removes it); with
    /// `persist`, also writes it into the domain's metadata through libvirt.
    /// Returns the new policy generation and a summary. Root only.
    fn set_policy(&self, domain: &str, policy: &str, persist: bool)
    -> Result<(u64, String), Error>;

    /// A policy libvirt reported (e.g. from `virsh metadata`) was refused.
    /// Defines a network (or replaces the definition of that name) from a
    /// `<network xmlns="urn:hookd:network:1">` document. Root only.
    fn define_network(&self, xml: &str) -> Result<String, Error>;

    /// Removes a network no NIC uses. Root only.
    fn undefine_network(&self, name: &str) -> Result<String, Error>;

    /// The networks hookd knows.
    fn list_networks(&self) -> Result<Vec<NetworkSummary>, Error>;

    /// One network.
    fn get_network(&self, name: &str) -> Result<NetworkDetail, Error>;

    #[zbus(signal)]
    fn policy_refused(&self, name: &str, uuid: &str, message: &str) -> zbus::Result<()>;

    /// hookd attached to a domain's taps (at the hook phase given).
    #[zbus(signal)]
    fn domain_attached(&self, name: &str, uuid: &str, phase: &str) -> zbus::Result<()>;

    /// hookd detached from a domain and forgot it.
    #[zbus(signal)]
    fn domain_detached(&self, name: &str, uuid: &str) -> zbus::Result<()>;

    /// A domain's policy (generation) is now enforced.
    #[zbus(signal)]
    fn policy_applied(&self, name: &str, uuid: &str, generation: u64) -> zbus::Result<()>;

    /// A packet decided by a `log="true"` rule.
    #[zbus(signal)]
    fn packet_logged(&self, packet: LoggedPacket) -> zbus::Result<()>;

    /// The latest live migrations this host took part in (up to 64),
    /// oldest first.
    fn list_migrations(&self) -> Result<Vec<MigrationInfo>, Error>;

    /// One side of a live migration is done with a VM's firewall state.
    #[zbus(signal)]
    fn migration_state(&self, info: MigrationInfo) -> zbus::Result<()>;

    /// ("ok" or "degraded", a one-line explanation).
    fn health(&self) -> Result<(String, String), Error>;

    /// hookd's version.
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
}
