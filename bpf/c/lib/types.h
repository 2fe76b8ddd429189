/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/* Map keys and values shared by hookd's eBPF programs and the daemon.
 * This header is the one definition; bpf/src/layout.rs mirrors it in Rust and
 * a test compares both with the BTF of the compiled object. */
#ifndef HOOKD_TYPES_H
#define HOOKD_TYPES_H

#include <linux/types.h>

/* nic_config.flags */
#define NIC_F_MANAGED           (1 << 0) /* policy present: anti-spoofing on */
#define NIC_F_CHECK_IP          (1 << 1) /* address prefixes given: check IP sources */
#define NIC_F_ALLOW_DHCP_SERVER (1 << 2) /* may send DHCPv4/DHCPv6 server replies */
#define NIC_F_ALLOW_RA          (1 << 3) /* may send IPv6 router advertisements */

/* Drop reasons: index into nic_stats.drops. Keep in sync with DropReason in Rust. */
#define DROP_MAC_SPOOF     0
#define DROP_IP_SPOOF      1
#define DROP_ARP_SPOOF     2
#define DROP_ND_SPOOF      3
#define DROP_DHCP_SERVER   4
#define DROP_ROUTER_ADVERT 5
#define DROP_VLAN          6
#define DROP_ETHERTYPE     7
#define DROP_MALFORMED     8
#define DROP_REASONS       16 /* room for the firewall's reasons */

/* Key of nic_config and nic_stats: the tap's ifindex. */
struct nic_config {
	__u8 mac[6];
	__u16 flags;
	__u32 reserved;
	__u64 generation; /* policy generation, for hookctl show */
};

/* LPM key of nic_addrs: ifindex, then the address. IPv4 is stored as an
 * IPv4-mapped IPv6 address (::ffff:a.b.c.d), so one trie serves both. */
struct addr_key {
	__u32 prefixlen; /* 32 (ifindex) + bits of addr that must match */
	__u32 ifindex;
	__u8 addr[16];
};

struct nic_stats {
	__u64 to_vm_packets;
	__u64 to_vm_bytes;
	__u64 from_vm_packets;
	__u64 from_vm_bytes;
	__u64 drops[DROP_REASONS];
};

#endif
