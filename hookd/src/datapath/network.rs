//! The network entries of network NICs: the NIC's network
//! (`hookd_nic_nets`), and the addresses on that network this host
//! answers for (its gateways) or switches to (its NICs' host addresses) in
//! `hookd_net_addrs`, and their host routes in their tenant's routing
//! domain (`hookd_routes`). Gateway entries are shared by the network's
//! NICs on this host: written with the first, removed with the last.

use crate::datapath::Datapath;
use crate::datapath::error::{DatapathError, map_err};
use aya::maps::lpm_trie::Key;
use aya::maps::{HashMap, MapData};
use hookd_bpf::layout::{
    self, DhcpLease, NetAddr, NetAddrKey, NetMembers, NetStats, NicNet, RaInfo, Route, RouteData,
};
use hookd_model::mac::MacAddr;
use hookd_model::plan::{NicNetwork, host_addresses};
use ipnet::IpNet;
use std::net::IpAddr;

/// Which network entries each NIC has, rebuilt from the maps at start.
#[derive(Default)]
pub(crate) struct NetOwned {
    /// ifindex -> (network id, its host-address keys).
    nics: std::collections::HashMap<u32, (u32, Vec<NetAddrKey>)>,
    /// ifindex -> its host routes.
    routes: std::collections::HashMap<u32, Vec<Key<RouteData>>>,
    /// ifindex -> its tenant's id.
    tenant_of: std::collections::HashMap<u32, u32>,
}

impl NetOwned {
    pub(crate) fn scan(
        nic_nets: &HashMap<MapData, u32, NicNet>,
        addrs: &HashMap<MapData, NetAddrKey, NetAddr>,
        routes: &aya::maps::LpmTrie<MapData, RouteData, Route>,
    ) -> NetOwned {
        let mut o = NetOwned::default();
        for (ifindex, n) in nic_nets.iter().filter_map(Result::ok) {
            o.nics.insert(ifindex, (n.net_id, Vec::new()));
            o.tenant_of.insert(ifindex, n.tenant_id);
        }
        for (k, a) in addrs.iter().filter_map(Result::ok) {
            if a.kind == layout::NET_ADDR_NIC
                && let Some((_, keys)) = o.nics.get_mut(&a.ifindex)
            {
                keys.push(k);
            }
        }
        for (k, r) in routes.iter().filter_map(Result::ok) {
            if r.kind == layout::ROUTE_NIC {
                o.routes.entry(r.ifindex).or_default().push(k);
            }
        }
        o
    }

    /// Has tenant `tenant_id` a NIC on this host?
    pub(crate) fn tenant_in_use(&self, tenant_id: u32) -> bool {
        self.tenant_of.values().any(|t| *t == tenant_id)
    }

    fn others_on(&self, net_id: u32, ifindex: u32) -> bool {
        self.nics
            .iter()
            .any(|(i, (n, _))| *i != ifindex && *n == net_id)
    }
}

fn mapped(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn key(net_id: u32, a: IpAddr) -> NetAddrKey {
    NetAddrKey {
        net_id,
        addr: mapped(a),
    }
}

/// The route of `p` in tenant `tenant_id`'s routing domain.
fn route_key(tenant_id: u32, p: IpNet) -> Key<RouteData> {
    let bits = match p {
        IpNet::V4(_) => 96 + u32::from(p.prefix_len()),
        IpNet::V6(_) => u32::from(p.prefix_len()),
    };
    Key::new(
        layout::ROUTE_FIXED_BITS + bits,
        RouteData {
            tenant_id,
            addr: mapped(p.network()),
        },
    )
}

/// The address of a host route's key.
fn route_addr(k: &Key<RouteData>) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(k.data().addr);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// What DHCP gives the NIC (see `NicNetwork::served`): its address, with
/// its subnet's mask and gateway, the network's MTU and IPv4 DNS servers.
fn dhcp_lease(mac: [u8; 6], prefixes: &[IpNet], net: &NicNetwork) -> Option<DhcpLease> {
    let (addr, subnet, gw) = net.served(MacAddr(mac), prefixes).dhcp4?;
    let mut lease = DhcpLease {
        addr: addr.octets(),
        mask: subnet.netmask().octets(),
        router: gw.octets(),
        lease_secs: hookd_model::plan::DHCP_LEASE_SECS,
        mtu: net.mtu,
        ..Default::default()
    };
    let dns4 = net.dns.iter().filter_map(|d| match d {
        IpAddr::V4(v4) => Some(v4.octets()),
        IpAddr::V6(_) => None,
    });
    for (slot, d) in lease.dns.iter_mut().zip(dns4) {
        *slot = d;
        lease.ndns += 1;
    }
    Some(lease)
}

/// The link-local address of a network's gateway: the EUI-64 address of
/// its MAC, the source of its router advertisements.
fn gateway_link_local(net: &NicNetwork) -> IpAddr {
    IpAddr::V6(net.gateway_mac.eui64_link_local())
}

/// What router advertisements and DHCPv6 tell the NIC (see
/// `NicNetwork::served`).
fn ra_info(mac: [u8; 6], prefixes: &[IpNet], net: &NicNetwork) -> Option<RaInfo> {
    let served = net.served(MacAddr(mac), prefixes);
    let (prefix, slaac) = served.ra?;
    let IpAddr::V6(gw_ll) = gateway_link_local(net) else {
        return None;
    };
    let gw = net.subnets.iter().find_map(|(p, g)| match (p, g) {
        (IpNet::V6(p6), IpAddr::V6(g6)) if *p6 == prefix => Some(g6.octets()),
        _ => None,
    })?;
    let mut info = RaInfo {
        prefix: prefix.network().octets(),
        gw_ll: gw_ll.octets(),
        gw,
        mtu: u32::from(net.mtu),
        flags: if slaac { layout::RA_F_SLAAC } else { 0 },
        ..Default::default()
    };
    if let Some(a) = served.dhcp6 {
        info.flags |= layout::RA_F_DHCP6;
        info.addr = a.octets();
        let dns6 = net.dns.iter().filter_map(|d| match d {
            IpAddr::V6(v6) => Some(v6.octets()),
            IpAddr::V4(_) => None,
        });
        for (slot, d) in info.dns.iter_mut().zip(dns6) {
            *slot = d;
            info.ndns += 1;
        }
    }
    Some(info)
}

impl Datapath {
    /// Writes the network entries of a NIC on `net`: checked first (no
    /// address another NIC of the network holds), then gateways, the NIC's
    /// network and its addresses; stale addresses go last. Before its
    /// `nic_config` says `NIC_F_NETWORK`.
    pub(crate) fn write_network(
        &mut self,
        ifindex: u32,
        mac: [u8; 6],
        prefixes: &[IpNet],
        net: &NicNetwork,
    ) -> Result<(), DatapathError> {
        let keys: Vec<NetAddrKey> = host_addresses(prefixes)
            .into_iter()
            .map(|a| key(net.vni, a))
            .collect();
        for (k, a) in keys.iter().zip(host_addresses(prefixes)) {
            if let Ok(e) = self.net_addrs.get(k, 0)
                && (e.kind != layout::NET_ADDR_NIC || e.ifindex != ifindex)
            {
                return Err(DatapathError::Conflict(format!(
                    "address {a} on network {} is already {}",
                    net.name,
                    if e.kind == layout::NET_ADDR_GATEWAY {
                        "the network's gateway".to_string()
                    } else {
                        format!("taken by the NIC on ifindex {}", e.ifindex)
                    }
                )));
            }
        }
        self.ensure_tenant(&net.tenant, net.tenant_id)?;
        self.net_owned.tenant_of.insert(ifindex, net.tenant_id);
        let gw = NetAddr {
            mac: net.gateway_mac.0,
            kind: layout::NET_ADDR_GATEWAY,
            pad: 0,
            ifindex: 0,
        };
        let subnet = Route {
            kind: layout::ROUTE_SUBNET,
            net_id: net.vni,
            ..Default::default()
        };
        for (p, _) in &net.subnets {
            self.routes
                .insert(&route_key(net.tenant_id, *p), subnet, 0)
                .map_err(map_err(format!("adding subnet {p} of {}", net.name)))?;
        }
        let ll = net
            .gateways
            .iter()
            .any(IpAddr::is_ipv6)
            .then(|| gateway_link_local(net));
        for g in net.gateways.iter().chain(&ll) {
            self.net_addrs
                .insert(key(net.vni, *g), gw, 0)
                .map_err(map_err(format!("adding gateway {g} of {}", net.name)))?;
        }
        let entry = NicNet {
            net_id: net.vni,
            tenant_id: net.tenant_id,
            gw_mac: net.gateway_mac.0,
            pad: [0; 2],
        };
        self.nic_nets
            .insert(ifindex, entry, 0)
            .map_err(map_err("writing the NIC's network"))?;
        let own = NetAddr {
            mac,
            kind: layout::NET_ADDR_NIC,
            pad: 0,
            ifindex,
        };
        let (old_net, old_keys) = self.net_owned.nics.remove(&ifindex).unwrap_or_default();
        // Owned while being written, old keys included until removed.
        let mut both = old_keys.clone();
        both.extend(keys.iter().filter(|k| !old_keys.contains(k)));
        self.net_owned.nics.insert(ifindex, (net.vni, both));
        for k in &keys {
            self.net_addrs
                .insert(k, own, 0)
                .map_err(map_err("adding a NIC address on its network"))?;
        }
        for k in old_keys.iter().filter(|k| !keys.contains(k)) {
            let _ = self.net_addrs.remove(k);
        }
        self.net_owned.nics.insert(ifindex, (net.vni, keys));
        self.write_members(net.vni)?;
        if old_net != 0 && old_net != net.vni {
            let _ = self.write_members(old_net);
            self.release_gateways(old_net, ifindex);
        }
        self.write_routes(ifindex, mac, prefixes, net)?;
        if self.net_stats.get(&ifindex, 0).is_err() {
            let zero = aya::maps::PerCpuValues::try_from(vec![NetStats::default(); self.ncpus])
                .map_err(crate::datapath::error::io_err("per-CPU network counters"))?;
            self.net_stats
                .insert(ifindex, zero, 0)
                .map_err(map_err("creating the NIC's network counters"))?;
        }
        match ra_info(mac, prefixes, net) {
            Some(r) => self
                .ra
                .insert(ifindex, r, 0)
                .map_err(map_err("writing the NIC's router advertisement"))?,
            None => {
                let _ = self.ra.remove(&ifindex);
            }
        }
        match dhcp_lease(mac, prefixes, net) {
            Some(l) => self
                .dhcp
                .insert(ifindex, l, 0)
                .map_err(map_err("writing the NIC's DHCP lease")),
            None => {
                let _ = self.dhcp.remove(&ifindex);
                Ok(())
            }
        }
    }

    /// The NIC's host routes in its tenant's routing domain, so that the
    /// tenant's other networks reach it through their gateways.
    fn write_routes(
        &mut self,
        ifindex: u32,
        mac: [u8; 6],
        prefixes: &[IpNet],
        net: &NicNetwork,
    ) -> Result<(), DatapathError> {
        let route = Route {
            mac,
            kind: layout::ROUTE_NIC,
            pad: 0,
            ifindex,
            net_id: net.vni,
            gw_mac: net.gateway_mac.0,
            pad2: [0; 2],
        };
        let keys: Vec<Key<RouteData>> = host_addresses(prefixes)
            .into_iter()
            .map(|a| route_key(net.tenant_id, IpNet::from(a)))
            .collect();
        let old = self.net_owned.routes.remove(&ifindex).unwrap_or_default();
        let same = |a: &Key<RouteData>, b: &Key<RouteData>| a.data() == b.data();
        let mut both = old.clone();
        both.extend(
            keys.iter()
                .filter(|k| !old.iter().any(|o| same(o, k)))
                .cloned(),
        );
        self.net_owned.routes.insert(ifindex, both);
        for k in &keys {
            self.routes.insert(k, route, 0).map_err(map_err(
                "adding a host route in the tenant's routing domain",
            ))?;
        }
        // The way back from the tenant's namespace: its routes follow.
        let mut ns_changes: Vec<(u32, IpAddr, bool)> = keys
            .iter()
            .map(|k| (net.tenant_id, route_addr(k), true))
            .collect();
        for k in old.iter().filter(|o| !keys.iter().any(|n| same(n, o))) {
            let _ = self.routes.remove(k);
            ns_changes.push((k.data().tenant_id, route_addr(k), false));
        }
        self.tenant_routes(&ns_changes)?;
        self.net_owned.routes.insert(ifindex, keys);
        Ok(())
    }

    /// Removes the NIC's network entries, and its network's gateways if no
    /// other NIC of this host is on it.
    pub(crate) fn clear_network(&mut self, ifindex: u32) {
        let _ = self.nic_nets.remove(&ifindex);
        let _ = self.dhcp.remove(&ifindex);
        let _ = self.ra.remove(&ifindex);
        let _ = self.net_stats.remove(&ifindex);
        let mut ns_changes = Vec::new();
        for k in self.net_owned.routes.remove(&ifindex).unwrap_or_default() {
            let _ = self.routes.remove(&k);
            ns_changes.push((k.data().tenant_id, route_addr(&k), false));
        }
        if let Err(e) = self.tenant_routes(&ns_changes) {
            tracing::warn!(error = %e, "routes in a tenant namespace stay");
        }
        let tenant = self.net_owned.tenant_of.remove(&ifindex);
        if let Some((net_id, keys)) = self.net_owned.nics.remove(&ifindex) {
            for k in keys {
                let _ = self.net_addrs.remove(&k);
            }
            if let Err(e) = self.write_members(net_id) {
                tracing::warn!(error = %e, "a network's broadcast members were not updated");
            }
            self.release_gateways(net_id, ifindex);
        }
        if tenant.is_some() {
            self.release_idle_tenants();
        }
    }

    /// The network's broadcast members: its NICs on this host, the first
    /// `MAX_FLOOD` by ifindex; the entry goes with the last.
    fn write_members(&mut self, net_id: u32) -> Result<(), DatapathError> {
        let mut nics: Vec<u32> = self
            .net_owned
            .nics
            .iter()
            .filter(|(_, (n, _))| *n == net_id)
            .map(|(i, _)| *i)
            .collect();
        nics.sort_unstable();
        if nics.is_empty() {
            let _ = self.net_members.remove(&net_id);
            return Ok(());
        }
        let max = layout::MAX_FLOOD as usize;
        if nics.len() > max {
            tracing::warn!(
                net_id,
                nics = nics.len(),
                max,
                "the network has more NICs on this host than get its broadcast and multicast; the copies left out are counted as flood_bound drops"
            );
        }
        // `count` is all of them, so that the program counts the copies
        // the bound leaves out (drop reason flood_bound).
        let mut m = NetMembers {
            count: u32::try_from(nics.len()).unwrap_or(u32::MAX),
            ..NetMembers::default()
        };
        for (slot, i) in m.ifindex.iter_mut().zip(&nics) {
            *slot = *i;
        }
        self.net_members
            .insert(net_id, m, 0)
            .map_err(map_err("writing the network's broadcast members"))
    }

    fn release_gateways(&mut self, net_id: u32, ifindex: u32) {
        if self.net_owned.others_on(net_id, ifindex) {
            return;
        }
        let gateways: Vec<NetAddrKey> = self
            .net_addrs
            .iter()
            .filter_map(Result::ok)
            .filter(|(k, a)| k.net_id == net_id && a.kind == layout::NET_ADDR_GATEWAY)
            .map(|(k, _)| k)
            .collect();
        for k in gateways {
            let _ = self.net_addrs.remove(&k);
        }
        let subnets: Vec<Key<RouteData>> = self
            .routes
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, r)| r.kind == layout::ROUTE_SUBNET && r.net_id == net_id)
            .map(|(k, _)| k)
            .collect();
        for k in subnets {
            let _ = self.routes.remove(&k);
        }
    }

    /// The network entries of `ifindex`: its network id and how many of its
    /// addresses are on it (for tests and `hookctl show`).
    pub fn network_of(&self, ifindex: u32) -> Option<(u32, usize)> {
        let n = self.nic_nets.get(&ifindex, 0).ok()?;
        let count = self
            .net_addrs
            .iter()
            .filter_map(Result::ok)
            .filter(|(k, a)| k.net_id == n.net_id && a.ifindex == ifindex)
            .count();
        Some((n.net_id, count))
    }
}
