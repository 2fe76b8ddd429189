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
#define DROP_FW_RULE       9  /* a deny rule matched */
#define DROP_FW_DEFAULT    10 /* no rule matched and the default is deny */
#define DROP_CT_INVALID    11 /* TCP segment of no tracked connection, not a SYN */
#define DROP_FRAGMENT      12 /* non-first fragment where rules need ports */
#define DROP_REASONS       16

/* nic_config.fw_ingress / fw_egress */
#define FW_OFF   0 /* no <ingress>/<egress> element: that direction is allowed */
#define FW_ALLOW 1 /* rules, default allow */
#define FW_DENY  2 /* rules, default deny */

/* nic_config.fw_kinds: which rule lookups can find a rule, as hookd's
 * compiler knows; the others are skipped. FW_KIND_* of class 0 in bits 0-1
 * (ingress) and 2-3 (egress); class ids carry their own in their two low
 * bits. Only with FW_KINDS_VALID: without it (maps written by a hookd that
 * predates this) every lookup is made. */
#define FW_KINDS_VALID 0x80
#define FW_KIND_PROTO  0x1 /* protocol-specific rules */
#define FW_KIND_ANY    0x2 /* protocol="any" rules */

/* Directions, as in the policy: ingress = to the VM, egress = from it. */
#define DIR_INGRESS 0
#define DIR_EGRESS  1

/* Key of nic_config and nic_stats: the tap's ifindex. */
struct nic_config {
	__u8 mac[6];
	__u16 flags;
	__u8 fw_ingress;  /* FW_* */
	__u8 fw_egress;   /* FW_* */
	__u8 fw_gen;      /* which half (0/1) of the firewall tables is live */
	__u8 fw_kinds;    /* FW_KIND* */
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
struct ct_key {
	__u32 ifindex;
	__u8 proto;
	__u8 pad[3];
	__u8 vm_addr[16];
	__u8 remote_addr[16];
	__u16 vm_port;
	__u16 remote_port;
};

#define CT_NEW         1 /* TCP: SYN seen; UDP/ICMP: one direction seen */
#define CT_ESTABLISHED 2 /* TCP: SYN-ACK seen; UDP/ICMP: a reply seen */
#define CT_CLOSING     3 /* TCP: FIN seen */

struct ct_entry {
	__u64 last_seen;   /* bpf_ktime_get_ns */
	__u8 state;        /* CT_* */
	__u8 origin;       /* DIR_* of the first packet */
	__u8 pad[6];
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

/* ct_key/ct_entry reach BTF only as sizes (see maps.h): check them here,
 * against the Rust mirror's const asserts. */
_Static_assert(sizeof(struct ct_key) == 44, "struct ct_key layout");
_Static_assert(sizeof(struct ct_entry) == 16, "struct ct_entry layout");
_Static_assert(sizeof(struct fw_event) == 56, "struct fw_event layout");

#endif
