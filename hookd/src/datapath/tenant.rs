//! Each tenant's way out: a network namespace per tenant with NICs on this
//! host (`hookd-TENANT` under `/run/netns`), joined to the data path by a
//! veth. Its host end (`hktXXXXXXXX`, the tenant id in hex) runs
//! `hookd_from_tenant` at tc ingress; its namespace end is `hookd`, up,
//! without ARP (the kernel sends to its own MAC, which the host end
//! ignores). In the namespace, forwarding is on and each local VM address
//! has a route `dev hookd proto 99`; operators add the rest (an uplink,
//! nftables SNAT, FRR). In the data path, the tenant's default routes
//! (`ROUTE_UPLINK`, IPv4 and IPv6) send what leaves its subnets to the
//! veth, and its subnets' routes (`ROUTE_SUBNET`) keep an address of the
//! tenant with no NIC here from leaving.
//!
//! Made with the tenant's first NIC, removed with its last; adopted by a
//! restarted hookd from the directory of namespaces.

use crate::datapath::error::{DatapathError, io_err, map_err, prog_err};
use crate::datapath::{Datapath, netdev, netns};
use aya::maps::PerCpuValues;
use aya::maps::lpm_trie::Key;
use aya::programs::links::PinnedLink;
use aya::programs::tc::{SchedClassifier, TcAttachType};
use hookd_bpf::layout::{self, NicStats, Route, RouteData, Uplink};
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The namespace end of every tenant's veth, inside its namespace.
pub const NS_END: &str = "hookd";
/// The routing protocol number of the routes hookd adds in a tenant's
/// namespace (`ip route show proto 99`), so that they are told apart from
/// the operator's.
pub const ROUTE_PROTO: u8 = 99;
/// The veth's MACs. Each veth is a link of its own, so every tenant's can
/// be the same; they are not gateway MACs (02:68:6b:...).
const NS_END_MAC: [u8; 6] = [0x02, 0x68, 0x6e, 0, 0, 1];
const HOST_END_MAC: [u8; 6] = [0x02, 0x68, 0x74, 0, 0, 1];

/// The namespace of `tenant`.
pub fn ns_name(tenant: &str) -> String {
    format!("hookd-{tenant}")
}

/// The host end of tenant `tenant_id`'s veth (15 bytes at most).
pub fn host_end(tenant_id: u32) -> String {
    format!("hkt{tenant_id:08x}")
}

/// The tenant's default routes in the data path: IPv4 (mapped) and IPv6.
fn default_keys(tenant_id: u32) -> [Key<RouteData>; 2] {
    let mut v4 = [0u8; 16];
    v4[10] = 0xff;
    v4[11] = 0xff;
    [
        Key::new(
            layout::ROUTE_FIXED_BITS + 96,
            RouteData {
                tenant_id,
                addr: v4,
            },
        ),
        Key::new(
            layout::ROUTE_FIXED_BITS,
            RouteData {
                tenant_id,
                addr: [0; 16],
            },
        ),
    ]
}

/// A tenant namespace this daemon made or adopted.
#[derive(Debug, Clone)]
pub(crate) struct TenantNs {
    pub(crate) tenant: String,
    /// The veth's host end.
    pub(crate) ifindex: u32,
}

/// The tenant namespaces, and where they are named.
#[derive(Default)]
pub(crate) struct Tenants {
    /// None: no namespaces; traffic leaving a tenant's subnets is dropped.
    pub(crate) dir: Option<PathBuf>,
    pub(crate) up: HashMap<u32, TenantNs>,
}

fn link_msg(index: u32, flags: LinkFlags, mask: LinkFlags) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.header.flags = flags;
    m.header.change_mask = mask;
    m
}

/// Brings the device `index` up (with `noarp`, without ARP) on `rtnl`'s
/// namespace.
fn set_up(rtnl: &mut netns::Rtnl, index: u32, noarp: bool) -> std::io::Result<()> {
    let mut flags = LinkFlags::Up;
    let mut mask = LinkFlags::Up;
    if noarp {
        flags |= LinkFlags::Noarp;
        mask |= LinkFlags::Noarp;
    }
    rtnl.request(
        RouteNetlinkMessage::SetLink(link_msg(index, flags, mask)),
        0,
    )
}

/// The route message for `addr/len` on device `oif`.
fn route_msg(addr: IpAddr, len: u8, oif: u32) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    m.header.destination_prefix_length = len;
    m.header.table = RouteHeader::RT_TABLE_MAIN;
    m.header.protocol = RouteProtocol::Other(ROUTE_PROTO);
    m.header.scope = RouteScope::Link;
    m.header.kind = RouteType::Unicast;
    m.attributes
        .push(RouteAttribute::Destination(RouteAddress::from(addr)));
    m.attributes.push(RouteAttribute::Oif(oif));
    m
}

/// In the namespace: loopback and the veth end up, forwarding on.
fn configure_inside() -> std::io::Result<()> {
    let mut rtnl = netns::Rtnl::open()?;
    set_up(&mut rtnl, netdev::ifindex("lo")?, false)?;
    set_up(&mut rtnl, netdev::ifindex(NS_END)?, true)?;
    // /proc/sys/net shows the namespace of the thread that opens it.
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")?;
    std::fs::write("/proc/sys/net/ipv6/conf/all/forwarding", "1")
}

/// Creates the veth `host` with its peer [`NS_END`] in the namespace `ns`.
fn create_veth(host: &str, ns: &Path) -> std::io::Result<()> {
    let ns_file = std::fs::File::open(ns)?;
    let mut peer = LinkMessage::default();
    peer.attributes.push(LinkAttribute::IfName(NS_END.into()));
    peer.attributes
        .push(LinkAttribute::Address(NS_END_MAC.to_vec()));
    peer.attributes
        .push(LinkAttribute::NetNsFd(ns_file.as_raw_fd()));
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(host.into()));
    m.attributes
        .push(LinkAttribute::Address(HOST_END_MAC.to_vec()));
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    let mut rtnl = netns::Rtnl::open()?;
    rtnl.request(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)
}

fn delete_link(index: u32) -> std::io::Result<()> {
    let mut rtnl = netns::Rtnl::open()?;
    rtnl.request(
        RouteNetlinkMessage::DelLink(link_msg(index, LinkFlags::empty(), LinkFlags::empty())),
        0,
    )
}

impl Datapath {
    /// Where tenant namespaces are named (`/run/netns` for the daemon), or
    /// None for none. The namespaces already there are adopted.
    pub fn set_tenant_namespaces(&mut self, dir: Option<PathBuf>) {
        self.tenants.up.clear();
        if dir.is_none() {
            self.drop_uplinks();
        }
        if let Some(d) = &dir
            && let Ok(entries) = std::fs::read_dir(d)
        {
            for e in entries.filter_map(Result::ok) {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(tenant) = name.strip_prefix("hookd-") else {
                    continue;
                };
                let id = hookd_model::network::tenant_id(tenant);
                if let Ok(ifindex) = netdev::ifindex(&host_end(id)) {
                    self.tenants.up.insert(
                        id,
                        TenantNs {
                            tenant: tenant.to_string(),
                            ifindex,
                        },
                    );
                }
            }
        }
        self.tenants.dir = dir;
    }

    /// Namespaces turned off: what a previous daemon left in the data path
    /// for them (uplinks, default routes, the veths' links) goes, so that
    /// traffic leaving a tenant's subnets is dropped as the setting says.
    /// The namespaces themselves are the operator's to remove (their
    /// directory is not known any more); each is named in the log.
    fn drop_uplinks(&mut self) {
        let uplinks: Vec<(u32, u32)> = self
            .uplinks
            .iter()
            .filter_map(Result::ok)
            .map(|(ifindex, u)| (ifindex, u.tenant_id))
            .collect();
        for (ifindex, tenant_id) in uplinks {
            self.forget_uplink(tenant_id, Some(ifindex));
            tracing::warn!(veth = %host_end(tenant_id),
                "tenant namespaces are off: the veth no longer leads anywhere; remove its namespace (hookd-TENANT) by hand");
        }
    }

    /// Takes the tenant's way out of the data path: its default routes, its
    /// veth's uplink entry and counters (`ifindex`, when known), the link of
    /// `hookd_from_tenant` on the veth.
    fn forget_uplink(&mut self, tenant_id: u32, ifindex: Option<u32>) {
        for k in default_keys(tenant_id) {
            let _ = self.routes.remove(&k);
        }
        if let Some(i) = ifindex {
            let _ = self.uplinks.remove(&i);
            let _ = self.stats.remove(&i);
        }
        let pin = self.tenant_link_pin(tenant_id);
        if let Ok(link) = PinnedLink::from_pin(&pin) {
            drop(link.unpin());
        }
        let _ = std::fs::remove_file(&pin);
    }

    fn tenant_ns_path(&self, tenant: &str) -> Option<PathBuf> {
        Some(self.tenants.dir.as_ref()?.join(ns_name(tenant)))
    }

    fn tenant_link_pin(&self, tenant_id: u32) -> PathBuf {
        self.pin_dir
            .join("links")
            .join("tenants")
            .join(format!("{}-from_tenant", host_end(tenant_id)))
    }

    /// The tenant's namespace, veth, program and default routes, made or
    /// adopted (and the program swapped for this daemon's). Nothing is
    /// left of a namespace that could not be made whole.
    pub(crate) fn ensure_tenant(
        &mut self,
        tenant: &str,
        tenant_id: u32,
    ) -> Result<(), DatapathError> {
        let Some(path) = self.tenant_ns_path(tenant) else {
            return Ok(());
        };
        let pin = self.tenant_link_pin(tenant_id);
        if self.tenants.up.contains_key(&tenant_id)
            && pin.exists()
            && self
                .uplinks
                .get(&self.tenants.up[&tenant_id].ifindex, 0)
                .is_ok()
        {
            return Ok(());
        }
        let made = self.make_tenant(tenant, tenant_id, &path, &pin);
        if let Err(e) = &made {
            tracing::warn!(tenant, error = %e, "the tenant's namespace could not be made; removing what was");
            self.remove_tenant(tenant_id, tenant);
        }
        made
    }

    fn make_tenant(
        &mut self,
        tenant: &str,
        tenant_id: u32,
        path: &Path,
        pin: &Path,
    ) -> Result<(), DatapathError> {
        let host = host_end(tenant_id);
        let what = |s: &str| format!("tenant {tenant}'s namespace {}: {s}", path.display());
        if !netns::is_bound(path) {
            // An empty file left by a namespace that is gone.
            let _ = std::fs::remove_file(path);
            netns::create(path).map_err(io_err(what("creating it")))?;
            tracing::info!(tenant, netns = %path.display(), "created the tenant's namespace");
        }
        if netdev::ifindex(&host).is_err() {
            create_veth(&host, path).map_err(io_err(what(&format!("creating the veth {host}"))))?;
        }
        let ifindex = netdev::ifindex(&host).map_err(io_err(what(&format!("finding {host}"))))?;
        self.tenants.up.insert(
            tenant_id,
            TenantNs {
                tenant: tenant.to_string(),
                ifindex,
            },
        );
        let mut rtnl = netns::Rtnl::open().map_err(io_err("opening rtnetlink"))?;
        set_up(&mut rtnl, ifindex, false).map_err(io_err(what(&format!("bringing {host} up"))))?;
        netns::in_netns(path, configure_inside).map_err(io_err(what("configuring it")))?;
        if self.stats.get(&ifindex, 0).is_err() {
            let zero = PerCpuValues::try_from(vec![NicStats::default(); self.ncpus])
                .map_err(io_err("per-CPU counters"))?;
            self.stats
                .insert(ifindex, zero, 0)
                .map_err(map_err("creating the veth's counters"))?;
        }
        self.uplinks
            .insert(ifindex, Uplink { tenant_id }, 0)
            .map_err(map_err("writing the tenant's uplink"))?;
        self.attach_tenant_program(&host, pin)?;
        let route = Route {
            mac: NS_END_MAC,
            kind: layout::ROUTE_UPLINK,
            pad: 0,
            ifindex,
            net_id: 0,
            gw_mac: HOST_END_MAC,
            pad2: [0; 2],
        };
        for k in default_keys(tenant_id) {
            self.routes
                .insert(&k, route, 0)
                .map_err(map_err("adding the tenant's default route"))?;
        }
        Ok(())
    }

    /// `hookd_from_tenant` on the veth's host end: attached and pinned, or
    /// the pinned link given this daemon's program.
    fn attach_tenant_program(&mut self, host: &str, pin: &Path) -> Result<(), DatapathError> {
        let name = hookd_bpf::PROG_FROM_TENANT;
        if pin.exists() && PinnedLink::from_pin(pin).is_ok() {
            let (_, running) = SchedClassifier::query_tcx(host, TcAttachType::Ingress)
                .map_err(prog_err(format!("querying tcx programs of {host}")))?;
            if let Some(r) = self.refresh_tcx(host, pin, &[(name, running)])? {
                tracing::info!(
                    tap = host,
                    old_id = r.old_id,
                    new_id = r.new_id,
                    "replaced the program on a tenant namespace's veth"
                );
            }
            return Ok(());
        }
        if let Some(dir) = pin.parent() {
            std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        }
        let prog = self.program_mut(name)?;
        crate::datapath::attach::attach_tcx_one(prog, host, name, TcAttachType::Ingress, pin)
    }

    /// Removes the tenant's namespace and everything of it. Best effort:
    /// each step is tried, failures logged.
    fn remove_tenant(&mut self, tenant_id: u32, tenant: &str) {
        let ifindex = self.tenants.up.remove(&tenant_id).map(|t| t.ifindex);
        self.forget_uplink(tenant_id, ifindex);
        if let Ok(ifindex) = netdev::ifindex(&host_end(tenant_id))
            && let Err(e) = delete_link(ifindex)
        {
            tracing::warn!(tenant, error = %e, "removing the tenant's veth failed");
        }
        if let Some(path) = self.tenant_ns_path(tenant) {
            match netns::remove(&path) {
                Ok(()) => {
                    tracing::info!(tenant, netns = %path.display(), "removed the tenant's namespace")
                }
                Err(e) => {
                    tracing::warn!(tenant, error = %e, "removing the tenant's namespace failed")
                }
            }
        }
    }

    /// Applies route changes in tenants' namespaces: (tenant id, a local
    /// address, add or remove), one entry into each namespace for all of
    /// its changes. Tenants without a namespace are skipped; removing a
    /// route that is gone is no error.
    pub(crate) fn tenant_routes(
        &self,
        changes: &[(u32, IpAddr, bool)],
    ) -> Result<(), DatapathError> {
        let mut tenants: Vec<u32> = changes.iter().map(|c| c.0).collect();
        tenants.sort_unstable();
        tenants.dedup();
        for tenant_id in tenants {
            let Some(t) = self.tenants.up.get(&tenant_id) else {
                continue;
            };
            let Some(path) = self.tenant_ns_path(&t.tenant) else {
                continue;
            };
            let mine: Vec<(IpAddr, bool)> = changes
                .iter()
                .filter(|c| c.0 == tenant_id)
                .map(|c| (c.1, c.2))
                .collect();
            netns::in_netns(&path, || {
                let oif = netdev::ifindex(NS_END)?;
                let mut rtnl = netns::Rtnl::open()?;
                for (addr, add) in &mine {
                    let m = route_msg(*addr, if addr.is_ipv4() { 32 } else { 128 }, oif);
                    let r = if *add {
                        rtnl.request(
                            RouteNetlinkMessage::NewRoute(m),
                            NLM_F_CREATE | NLM_F_REPLACE,
                        )
                    } else {
                        rtnl.request(RouteNetlinkMessage::DelRoute(m), 0)
                    };
                    match r {
                        Err(e) if !*add && e.raw_os_error() == Some(libc::ESRCH) => {}
                        Err(e) => {
                            return Err(std::io::Error::new(
                                e.kind(),
                                format!("{} {addr}: {e}", if *add { "adding" } else { "removing" }),
                            ));
                        }
                        Ok(()) => {}
                    }
                }
                Ok(())
            })
            .map_err(io_err(format!("routes in tenant {}'s namespace", t.tenant)))?;
        }
        Ok(())
    }

    /// Removes the namespaces of tenants that have no NIC here any more.
    pub(crate) fn release_idle_tenants(&mut self) {
        let idle: Vec<(u32, String)> = self
            .tenants
            .up
            .iter()
            .filter(|(id, _)| !self.net_owned.tenant_in_use(**id))
            .map(|(id, t)| (*id, t.tenant.clone()))
            .collect();
        for (id, tenant) in idle {
            self.remove_tenant(id, &tenant);
        }
    }

    /// The tenant namespaces this daemon keeps: (tenant, veth host end's ifindex).
    pub fn tenant_namespaces(&self) -> Vec<(String, u32)> {
        let mut v: Vec<(String, u32)> = self
            .tenants
            .up
            .values()
            .map(|t| (t.tenant.clone(), t.ifindex))
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_kernel_and_default_routes_cover_both_families() {
        assert_eq!(host_end(u32::MAX), "hktffffffff");
        assert!(host_end(u32::MAX).len() < 16);
        assert_eq!(ns_name("acme"), "hookd-acme");
        let [v4, v6] = default_keys(7);
        assert_eq!(v4.prefix_len(), layout::ROUTE_FIXED_BITS + 96);
        assert_eq!(&v4.data().addr[10..12], &[0xff, 0xff]);
        assert_eq!(v6.prefix_len(), layout::ROUTE_FIXED_BITS);
        assert_eq!(v6.data().tenant_id, 7);
    }
}
