//! hookctl's command line, kept in the library so that its man page and
//! shell completions are generated from it (`hookd-gen-docs`).

use clap::{Parser, Subcommand};

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
    /// Policy operations.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// hookd's networks: the logical switches and routers VMs join with
    /// <hookd:network name="..."/> in their policy (docs/networks.md).
    #[command(subcommand)]
    Network(NetworkCommand),
    /// The verdict a domain NIC's live rules give a described packet, and
    /// the rule that decides it. Touches no connection tracking. With
    /// --live, the packet also goes through the NIC's attached programs
    /// themselves (BPF_PROG_TEST_RUN on the live maps, writing nothing),
    /// so connection state, anti-spoofing and the network stage count too.
    Trace {
        /// Domain name or UUID.
        domain: String,
        /// The NIC's MAC address.
        #[arg(long)]
        mac: String,
        /// ingress (to the VM) or egress (from it).
        #[arg(long, value_parser = ["ingress", "egress"])]
        direction: String,
        /// The other end: the source for ingress, the destination for egress.
        #[arg(long)]
        remote: String,
        /// tcp, udp, icmp, icmpv6, sctp or a protocol number.
        #[arg(long, default_value = "tcp")]
        protocol: String,
        /// Destination port (tcp, udp, sctp).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// ICMP type (icmp, icmpv6).
        #[arg(long, default_value_t = 0)]
        icmp_type: u8,
        /// ICMP code (icmp, icmpv6).
        #[arg(long, default_value_t = 0)]
        icmp_code: u8,
        /// Also run the packet (a TCP SYN, a UDP datagram, an ICMP message
        /// or a bare IP header, from or to the NIC's address of the
        /// remote's family) through the NIC's attached programs on the live
        /// maps, and show their verdict and the stage that decided beside
        /// the rules'. Nothing is written: no conntrack entry, counter or
        /// rule hit.
        #[arg(long)]
        live: bool,
    },
    /// The latest live migrations this host took part in (up to 64), and
    /// what became of each VM's firewall state: carried (how many
    /// connections, how long), refused (the migration failed with it) or
    /// proceeded without (migration_state_errors = "proceed").
    Migrations,
    /// Is hookd able to do its job? Exit status 1 when degraded.
    Health,
    /// Counters of every attached NIC of every domain, one row each.
    Stats,
    /// Follow hookd's signals (domains attached and detached, policies
    /// applied, logged packets, migrations), one line each, until
    /// interrupted.
    Monitor,
    /// Packets logged by `log="true"` rules (the most recent, rate-limited).
    Events {
        /// Domain name or UUID; all domains when absent.
        domain: Option<String>,
    },
    /// Parse a domain XML the way hookd does and print what it would attach
    /// and enforce, or the validation error with its line (exit status 1).
    /// For a NIC on one of hookd's networks it also shows the network's
    /// gateway and what DHCP and router advertisements serve the NIC, from
    /// the definitions given with --network, or else from the running
    /// hookd (GetNetwork); without either, the network is only named.
    Explain {
        /// Domain XML file (e.g. from `virsh dumpxml`), or - for stdin.
        file: String,
        /// A network definition file (urn:hookd:network:1); repeatable.
        #[arg(long = "network", value_name = "FILE")]
        networks: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Ask hookd to validate a policy without applying it: a domain XML or a
    /// bare <hookd:policy> element, from FILE or - for stdin.
    Validate { file: String },
    /// Print the policy in force for a running domain, as a <policy>
    /// document that `policy set` accepts (nothing when it has none).
    Get {
        /// Domain name or UUID.
        domain: String,
    },
    /// Replace a running domain's policy with the <policy> document in FILE
    /// (- for stdin). It is validated and swapped in atomically, then saved
    /// in the domain's metadata through libvirt (live and persistent
    /// definitions) so it survives a restart; if libvirt refuses, the
    /// previous policy is put back. Root only.
    Set {
        /// Domain name or UUID.
        domain: String,
        /// Policy document, or - for stdin.
        file: String,
        /// Apply to the running domain only; do not save it in libvirt.
        #[arg(long)]
        no_persist: bool,
    },
    /// Remove a running domain's policy: its NICs are no longer filtered
    /// (only counted). Saved in libvirt unless --no-persist. Root only.
    Remove {
        /// Domain name or UUID.
        domain: String,
        /// Apply to the running domain only; do not save it in libvirt.
        #[arg(long)]
        no_persist: bool,
    },
    /// Edit a running domain's policy in $VISUAL or $EDITOR (else vi), then
    /// set it as `policy set` does. An invalid edit changes nothing and the
    /// edited file is kept, its path printed. Root only.
    Edit {
        /// Domain name or UUID.
        domain: String,
        /// Apply to the running domain only; do not save it in libvirt.
        #[arg(long)]
        no_persist: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum NetworkCommand {
    /// Define a network from a <network xmlns="urn:hookd:network:1">
    /// document in FILE (- for stdin), or replace the definition of that
    /// name. It is checked alone and against the other networks (VNI,
    /// overlapping subnets of its tenant) and kept in
    /// /var/lib/hookd/networks/. An invalid one changes nothing. Root only.
    Define { file: String },
    /// Remove a network no NIC uses. Networks from
    /// /etc/hookd/networks.d/ are removed by removing their file. Root only.
    Undefine { name: String },
    /// List the networks hookd knows.
    List,
    /// Show one network: tenant, VNI, MTU, subnets and gateways, where
    /// its definition comes from.
    Show { name: String },
}
