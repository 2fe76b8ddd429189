/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/* Map keys and values, and the constants in them, shared by hookd's eBPF
 * programs and the daemon. This header is the one definition: bpf/build.rs
 * reads it back from the BTF of c/abi.c, generates the Rust constants and
 * checks every size, field offset and field type of the Rust structs in
 * bpf/src/layout.rs at compile time; bpf/tests/layout.rs checks both again
 * with bpftool. Everything defined here must be anchored in c/abi.c. */
#ifndef HOOKD_TYPES_H
#define HOOKD_TYPES_H

#include <linux/types.h>

/* The constants are enums, not #defines: enums reach the BTF of c/abi.c,
 * from which bpf/build.rs generates their Rust twins (hookd_bpf::layout).
 * Each enum's Rust type is set in build.rs. */

/* nic_config.flags */
enum nic_flag {
	NIC_F_MANAGED           = 1 << 0, /* policy present: anti-spoofing on */
	NIC_F_CHECK_IP          = 1 << 1, /* address prefixes given: check IP sources */
	NIC_F_ALLOW_DHCP_SERVER = 1 << 2, /* may send DHCPv4/DHCPv6 server replies */
	NIC_F_ALLOW_RA          = 1 << 3, /* may send IPv6 router advertisements */
	NIC_F_NETWORK           = 1 << 4, /* on one of hookd's networks (hookd_nic_nets):
					   * switched at the tap, never handed to the host */
	NIC_F_PASS_FINAL        = 1 << 5, /* a pass ends the hook (TC_ACT_OK, not
					   * TCX_NEXT): set while a NIC moves from
					   * cls_bpf to tcx, so that the cls_bpf copy
					   * behind the tcx one never judges or counts a
					   * packet twice (datapath/promote.rs) */
};

/* Drop reasons: index into nic_stats.drops. The Rust DropReason is
 * generated from this enum; its stable names (hookctl, JSON, D-Bus) are
 * these names without DROP_, in lower case. */
enum drop_reason {
	DROP_MAC_SPOOF     = 0, /* source MAC is not the NIC's */
	DROP_IP_SPOOF      = 1, /* IPv4/IPv6 source outside the NIC's prefixes */
	DROP_ARP_SPOOF     = 2, /* ARP sender MAC or address not the NIC's */
	DROP_ND_SPOOF      = 3, /* ND target outside the NIC's prefixes */
	DROP_DHCP_SERVER   = 4, /* DHCPv4/DHCPv6 server reply, not allowed */
	DROP_ROUTER_ADVERT = 5, /* router advertisement or redirect, not allowed */
	DROP_VLAN          = 6, /* VLAN-tagged frame */
	DROP_ETHERTYPE     = 7, /* neither ARP, IPv4 nor IPv6 */
	DROP_MALFORMED     = 8, /* truncated or invalid headers */
	DROP_FW_RULE       = 9,  /* a deny rule matched */
	DROP_FW_DEFAULT    = 10, /* no rule matched and the default is deny */
	DROP_CT_INVALID    = 11, /* TCP segment of no tracked connection, not a SYN */
	DROP_FRAGMENT      = 12, /* non-first fragment where rules need ports */
	DROP_NO_ROUTE      = 13, /* network NIC: to the gateway, or beyond it with no route */
	DROP_UNKNOWN_UNICAST = 14, /* network NIC: no NIC of the network has that MAC and address */
	DROP_NOT_FORWARDED = 15, /* network NIC: broadcast, multicast, unanswered ARP, IPv6 */
	DROP_TTL           = 16, /* network NIC: routed packet whose TTL ran out */
	DROP_TENANT_MISMATCH = 17, /* network NIC: the NIC a lookup found is not on the
				    * sender's network (switched) or tenant (routed) */
	DROP_FLOOD_BOUND   = 18, /* network NIC: copies of a broadcast not sent to the
				  * network's NICs past the first MAX_FLOOD */
};

enum stats_size {
	DROP_REASONS = 32, /* drop counters per NIC (room for more reasons; 16
			    * up to hookd 0.1's layout, see datapath/versions.rs) */
};

/* nic_config.fw_ingress / fw_egress */
enum fw_mode {
	FW_OFF   = 0, /* no <ingress>/<egress> element: that direction is allowed */
	FW_ALLOW = 1, /* rules, default allow */
	FW_DENY  = 2, /* rules, default deny */
};

/* nic_config.fw_kinds: which rule lookups can find a rule, as hookd's
 * compiler knows; the others are skipped. FW_KIND_* of class 0 in bits 0-1
 * (ingress) and 2-3 (egress); class ids carry their own in their two low
 * bits. Maps a previous hookd wrote are rewritten by the next one before
 * it swaps its programs in (core::Daemon::migrate_maps), so the programs
 * trust these bits. */
enum fw_kind {
	FW_KIND_PROTO = 0x1, /* protocol-specific rules */
	FW_KIND_ANY   = 0x2, /* protocol="any" rules */
};

/* Directions, as in the policy: ingress = to the VM, egress = from it. */
enum direction {
	DIR_INGRESS = 0, /* to the VM */
	DIR_EGRESS  = 1, /* from the VM */
};

/* Fixed bits of the LPM keys, before the address / port bits. */
enum lpm_fixed_bits {
	ADDR_FIXED_BITS     = 32, /* addr_key: ifindex */
	FW_CLASS_FIXED_BITS = 64, /* fw_class_key: ifindex, half, dir, pad */
	FW_RULE_FIXED_BITS  = 96, /* fw_rule_key: ifindex, half, dir, proto, any, class */
};

/* Connection tracking timeouts, in seconds (conntrack.h, fragment.h);
 * hookd reads them too: a migration carries only live entries. */
enum ct_timeout_s {
	CT_TCP_SYN_TIMEOUT   = 60,
	CT_TCP_EST_TIMEOUT   = 7200,
	CT_TCP_CLOSE_TIMEOUT = 30,
	CT_UDP_TIMEOUT       = 60,
	CT_UDP_EST_TIMEOUT   = 180,
	CT_ICMP_TIMEOUT      = 30,
	FRAG_TIMEOUT         = 30,
};

/* Map sizes (maps.h). */
enum map_size {
	MAX_NICS       = 4096,    /* hookd_nics, hookd_counters and hookd_ct (slots
				   * 1..MAX_NICS), hookd_nic_cfgs (two per slot),
				   * hookd_nic_far, hookd_stats, hookd_log_rate */
	NIC_INDEX_DIRECT = 262144, /* hookd_nic_index: ifindexes below it; the
				   * others in hookd_nic_far */
	MAX_ADDRS      = 65536,   /* hookd_addrs */
	MAX_FW_CLASSES = 262144,  /* hookd_fw_classes */
	MAX_FW_RULES   = 1048576, /* hookd_fw_rules */
	MAX_FW_HITS    = 262144,  /* hookd_fw_hits */
	CT_PER_NIC     = 16384,   /* each NIC's conntrack table */
	EVENTS_BYTES   = 256 * 1024, /* hookd_events ring buffer */
	MAX_NET_ADDRS  = 65536,   /* hookd_net_addrs */
	MAX_ROUTES     = 65536,   /* hookd_routes */
	MAX_DNS        = 4,       /* dhcp_lease.dns */
	MAX_UPLINKS    = 4096,    /* hookd_uplinks: tenants with a namespace */
	MAX_FLOOD      = 32,      /* net_members: a network's NICs on this host that
				   * get its broadcast and multicast */
};

/* net_addr.kind */
/* net_stats.count: what the network stage did with a NIC's frames. */
enum net_counter {
	NET_SWITCHED      = 0, /* redirected to another NIC of its network */
	NET_ROUTED        = 1, /* routed to a NIC of another network of its tenant */
	NET_ANSWERED_ARP  = 2, /* ARP requests answered */
	NET_ANSWERED_ND   = 3, /* neighbour solicitations answered */
	NET_ANSWERED_ECHO = 4, /* echo requests to the gateway answered */
	NET_ANSWERED_DHCP = 5, /* DHCP requests answered */
	NET_TO_TENANT_NS  = 6, /* routed out of the tenant's networks, to its namespace */
	NET_FROM_TENANT_NS = 7, /* delivered to the NIC from the tenant's namespace */
	NET_ICMP_ERRORS   = 8, /* ICMP time exceeded sent for its routed packets */
	NET_FLOODED       = 9, /* copies of its broadcast and multicast frames sent */
	NET_ANSWERED_RA   = 10, /* router solicitations answered */
	NET_ANSWERED_DHCP6 = 11, /* DHCPv6 requests answered */
	NET_COUNTERS      = 12,
};

/* Value of hookd_net_stats (per CPU; key: ifindex). */
struct net_stats {
	__u64 count[NET_COUNTERS];
};

/* route.kind */
enum route_kind {
	ROUTE_NIC    = 1, /* a NIC on this host, on one of the tenant's networks */
	ROUTE_UPLINK = 2, /* the tenant's namespace (its default routes) */
	ROUTE_SUBNET = 3, /* a subnet of one of the tenant's networks: an address
			   * in it with no more specific route has no NIC and
			   * never leaves for the namespace */
};

/* Value of hookd_net_members (key: net_id): the network's NICs on this
 * host, the first MAX_FLOOD of them, to which its broadcast and multicast
 * frames are replicated. */
struct net_members {
	__u32 count;
	__u32 ifindex[MAX_FLOOD];
};

/* Value of hookd_ra (key: ifindex): what the network's router
 * advertisements tell a network NIC with an IPv6 address in one of its
 * subnets. */
struct ra_info {
	__u8 prefix[16];   /* the NIC's /64 subnet */
	__u8 gw_ll[16];    /* the gateway's link-local address (EUI-64 of its MAC) */
	__u8 gw[16];       /* the prefix's gateway: the source of ICMPv6 errors */
	__u8 addr[16];     /* RA_F_DHCP6: the address DHCPv6 gives the NIC */
	__u8 dns[2][16];   /* DHCPv6's DNS servers (the first ndns) */
	__u32 mtu;
	__u8 flags;        /* enum ra_flag */
	__u8 ndns;
	__u8 pad[2];
};

enum ra_flag {
	RA_F_SLAAC = 1 << 0, /* the NIC's address is its EUI-64 in the prefix */
	RA_F_DHCP6 = 1 << 1, /* DHCPv6 gives the NIC addr (and the RA says M) */
};

enum ra_sizes {
	RA_LEN             = 64,   /* header, source link-layer, MTU, prefix */
	RA_ROUTER_LIFETIME = 9000, /* s, RFC 4861's most */
	TE6_QUOTE          = 48,   /* ICMPv6 time exceeded quotes the IPv6 header and 8 bytes */
	DHCP6_LIFETIME     = 86400, /* s: an address's, as DHCPv4's lease */
	DHCP6_T1           = 43200,
	DHCP6_T2           = 69120,
};

/* Value of hookd_uplinks (key: ifindex of the host end of a tenant
 * namespace's veth): whose namespace it is. */
struct uplink {
	__u32 tenant_id;
};

/* Fixed bits of route_key before the address bits. */
enum route_fixed_bits {
	ROUTE_FIXED_BITS = 32, /* route_key: tenant_id */
};

enum net_addr_kind {
	NET_ADDR_GATEWAY = 1, /* the network's gateway: answered at the tap */
	NET_ADDR_NIC     = 2, /* a NIC of the network on this host */
};

/* A NIC's config: in hookd_nics by the tap's ifindex (hookd's record),
 * and as the programs read it, in hookd_nic_cfgs (maps.h). */
struct nic_config {
	__u8 mac[6];
	__u16 flags;      /* enum nic_flag */
	__u8 fw_ingress;  /* enum fw_mode */
	__u8 fw_egress;   /* enum fw_mode */
	__u8 fw_gen;      /* which half (0/1) of the firewall tables is live */
	__u8 fw_kinds;    /* enum fw_kind */
	__u32 slot;       /* hookd_counters[slot], hookd_ct[slot]; 0 none */
	__u64 generation; /* policy generation, for hookctl show */
};

/* LPM key of hookd_fw_classes: remote address -> class (most specific rule
 * prefix containing it). Fixed part: 64 bits, then up to 128 address bits. */
struct fw_class_key {
	__u32 prefixlen;
	__u32 ifindex;
	__u8 half;      /* nic_config.fw_gen this entry belongs to */
	__u8 dir;
	__u8 pad[2];
	__u8 addr[16];
};

/* LPM key of hookd_fw_rules: fixed part 96 bits, then up to 16 port bits
 * (big endian; for ICMP the port is type << 8 | code). */
struct fw_rule_key {
	__u32 prefixlen;
	__u32 ifindex;
	__u8 half;      /* nic_config.fw_gen this entry belongs to */
	__u8 dir;
	__u8 proto;
	__u8 any;        /* 1: the rule's protocol is "any" (proto is 0) */
	__u32 class;
	__u8 port[2];
	__u8 pad[2];
};

struct fw_verdict {
	__u8 deny;
	__u8 log;
	__u16 rule;      /* index of the deciding rule in its direction */
};

/* How the firewall of a direction passed a packet: what the tracing build
 * of the programs (lib/trace.h) notes for hookctl trace --live. */
enum trace_how {
	TRACE_NOT_REACHED    = 0, /* that direction's firewall did not judge it */
	TRACE_FW_OFF         = 1, /* no element for the direction: allowed */
	TRACE_INFRASTRUCTURE = 2, /* ND, MLD, DHCP: not the security groups' */
	TRACE_RELATED        = 3, /* an ICMP error about a tracked connection */
	TRACE_ESTABLISHED    = 4, /* a packet of a tracked connection */
	TRACE_RULE           = 5, /* an allow rule: trace_note.rule */
	TRACE_DEFAULT        = 6, /* no rule matched; the default allows */
	TRACE_FRAGMENT       = 7, /* a later fragment of an allowed datagram */
};

/* The value of the tracing build's hookd_trace. */
struct trace_note {
	__u8 how[2];     /* enum trace_how, per enum direction */
	__u16 rule[2];   /* the deciding rule's index, for TRACE_RULE */
	__u8 dropped;    /* 1: dropped, for the reason below */
	__u8 reason;     /* enum drop_reason */
};

/* Key of hookd_fw_hits: how often each rule decided a packet. */
struct fw_hit_key {
	__u32 ifindex;
	__u8 dir;
	__u8 half;       /* counts restart when a policy is (re)applied */
	__u16 rule;
};

/* A packet decided by a rule with log="true", sent to hookd through the
 * hookd_events ring buffer (rate-limited per NIC). */
struct fw_event {
	__u64 ts;        /* bpf_ktime_get_ns */
	__u32 ifindex;
	__u8 dir;
	__u8 deny;
	__u16 rule;
	__u8 proto;
	__u8 pad[3];
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
};

/* Per-NIC window of the log rate limit. */
struct log_window {
	__u64 start;
	__u32 count;
	__u32 pad;
};

/* Connection tracking, keyed from the VM's point of view. */
/* ct_key.kind */
enum ct_key_kind {
	CT_KEY_CONNECTION = 0, /* a connection: ports (or the echo identifier) */
	CT_KEY_FRAGMENTS  = 1, /* the later fragments of an allowed first one:
				* vm_port, remote_port hold the IP ID's high
				* and low 16 bits (lib/fragment.h) */
};

struct ct_key {
	__u32 ifindex;
	__u8 proto;
	__u8 kind;         /* enum ct_key_kind */
	__u8 pad[2];
	__u8 vm_addr[16];
	__u8 remote_addr[16];
	__u16 vm_port;
	__u16 remote_port;
};

/* ct_entry.state */
enum ct_state {
	CT_NEW         = 1, /* TCP: SYN seen; UDP/ICMP: one direction seen */
	CT_ESTABLISHED = 2, /* TCP: SYN-ACK seen; UDP/ICMP: a reply seen */
	CT_CLOSING     = 3, /* TCP: FIN seen */
};

struct ct_entry {
	__u64 last_seen;   /* CLOCK_MONOTONIC, coarse (ct_now in conntrack.h) */
	__u8 state;        /* enum ct_state */
	__u8 origin;       /* enum direction of the first packet */
	__u8 vm_checked;   /* 1: a packet from the VM passed anti-spoofing with this key,
			    * under nic_config.generation vm_gen (the egress fast path) */
	__u8 pad;
	__u32 vm_gen;      /* low 32 bits of that generation */
};

/* LPM key of nic_addrs: ifindex, then the address. IPv4 is stored as an
 * IPv4-mapped IPv6 address (::ffff:a.b.c.d), so one trie serves both. */
struct addr_key {
	__u32 prefixlen; /* 32 (ifindex) + bits of addr that must match */
	__u32 ifindex;
	__u8 addr[16];
};

/* Value of hookd_nic_nets (key: ifindex): the network a NIC is on. The
 * network's id is its VNI, unique among networks; the tenant id is kept
 * for routing between a tenant's networks. */
struct nic_net {
	__u32 net_id;
	__u32 tenant_id;
	__u8 gw_mac[6];  /* the network's gateway MAC, the same on every host */
	__u8 pad[2];
};

/* Key of hookd_net_addrs: an address on a network (IPv4 as IPv4-mapped
 * IPv6, as in addr_key), so that every lookup is scoped to one network. */
struct net_addr_key {
	__u32 net_id;
	__u8 addr[16];
};

struct net_addr {
	__u8 mac[6];
	__u8 kind;       /* enum net_addr_kind */
	__u8 pad;
	__u32 ifindex;   /* NET_ADDR_NIC: its tap */
};

/* Value of hookd_dhcp (key: ifindex): what the network's DHCP answers
 * give a network NIC. Addresses in network byte order. */
struct dhcp_lease {
	__u8 addr[4];      /* the NIC's IPv4 address (its /32 in the network) */
	__u8 mask[4];
	__u8 router[4];    /* its subnet's gateway, also the server id */
	__u8 dns[MAX_DNS][4];
	__u32 lease_secs;
	__u16 mtu;
	__u8 ndns;
	__u8 pad;
};

/* skb->mark of a frame hookd's data path answered (ARP, echo, DHCP) and
 * sent back to the VM: its to_vm program lets it pass without the ingress
 * rules (as the network's own gateway and DHCP server), and clears it. */
enum answer_mark {
	HOOKD_ANSWER_MARK = 0x686b0a00,
};

/* LPM key of hookd_routes: an address in a tenant's routing domain. */
struct route_key {
	__u32 prefixlen; /* 32 (tenant) + bits of addr that must match */
	__u32 tenant_id;
	__u8 addr[16];
};

/* Where a routed packet goes: the NIC's tap and MAC, and the gateway MAC
 * of its network, which becomes the packet's source. ROUTE_UPLINK: the
 * host end of the tenant namespace's veth, the MAC of its namespace end,
 * and the host end's MAC as the source. ROUTE_SUBNET: net_id only. */
struct route {
	__u8 mac[6];
	__u8 kind;       /* enum route_kind */
	__u8 pad;
	__u32 ifindex;
	__u32 net_id;
	__u8 gw_mac[6];
	__u8 pad2[2];
};

struct nic_stats {
	__u64 to_vm_packets;
	__u64 to_vm_bytes;
	__u64 from_vm_packets;
	__u64 from_vm_bytes;
	__u64 drops[DROP_REASONS];
};

#endif
