/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/* hookd's maps. Pinned by name under /sys/fs/bpf/hookd/maps so that a
 * restarted daemon, and programs still attached, share them. */
#ifndef HOOKD_MAPS_H
#define HOOKD_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "types.h"
#include "trace.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_NICS);
	__type(key, __u32);
	__type(value, struct nic_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hookd_nics SEC(".maps");

/* The configs as the programs read them: two per slot, at 2 * slot + half
 * in hookd_nic_cfgs, the live one named by the NIC's entry (1 + its
 * position; 0 is none) in hookd_nic_index (an array by ifindex, for
 * ifindexes below NIC_INDEX_DIRECT) or hookd_nic_far (a hash, for the
 * rest); hookd/src/datapath/configs.rs writes them.
 * Array lookups the verifier inlines, where the hash lookup of hookd_nics
 * by ifindex cost about 0.8 of an empty program a packet (a fifth of an
 * established flow's cost). A policy switch writes the idle half, then the
 * index: a packet reads the one config or the other, never a mix. (As
 * with a preallocated hash, whose freed element the next update may
 * reuse, two switches of one NIC within one packet's run could overlap;
 * hookd's switches are milliseconds apart.) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NIC_INDEX_DIRECT);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hookd_nic_index SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_NICS);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hookd_nic_far SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * (MAX_NICS + 1));
	__type(key, __u32);
	__type(value, struct nic_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hookd_nic_cfgs SEC(".maps");

/* The config of the NIC at IFINDEX, or NULL (not a NIC hookd knows). */
static __always_inline struct nic_config *nic_config_of(__u32 ifindex)
{
	/* The array refuses an ifindex past its end. No test of the ifindex
	 * here: a branch on it would give the verifier two ranges of it, and
	 * every state after it would be checked twice. */
	__u32 *at = bpf_map_lookup_elem(&hookd_nic_index, &ifindex), i;

	if (!at)
		at = bpf_map_lookup_elem(&hookd_nic_far, &ifindex);
	if (!at || !*at)
		return NULL;
	i = *at - 1;
	return bpf_map_lookup_elem(&hookd_nic_cfgs, &i);
}

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_ADDRS);
	__type(key, struct addr_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hookd_addrs SEC(".maps");

/* Each NIC's counters, at the slot its nic_config names (hookd hands the
 * slots out): an array lookup, which the verifier inlines. By ifindex in
 * a per-CPU hash, the lookup and its writes were about 45 ns of an
 * established flow's 250 under BPF_PROG_TEST_RUN. Slot 0 is no NIC's. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_NICS + 1);
	__type(key, __u32);
	__type(value, struct nic_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hookd_counters SEC(".maps");

/* The NIC's counters (hookd_counters, at its config's slot), or NULL. No
 * test of the slot here: the lookup refuses one past the array, and slot
 * 0 is an entry no one reads. A branch would split every verifier state
 * after it in two (NULL, or a map value yet to be checked), and the
 * programs took 70% longer to load. */
static __always_inline struct nic_stats *nic_counters(const struct nic_config *cfg)
{
	__u32 slot = cfg->slot;

	return bpf_map_lookup_elem(&hookd_counters, &slot);
}

/* The counters of the tenant namespaces' veths (hookd_from_tenant), by
 * ifindex; and those NICs' counts from a hookd before slots, which
 * readers add to the slot's. Allocated per entry: most hosts have few. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MAX_NICS);
	__type(key, __u32);
	__type(value, struct nic_stats);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hookd_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_FW_CLASSES);
	__type(key, struct fw_class_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hookd_fw_classes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_FW_RULES);
	__type(key, struct fw_rule_key);
	__type(value, struct fw_verdict);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hookd_fw_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, MAX_FW_HITS);
	__type(key, struct fw_hit_key);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hookd_fw_hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, EVENTS_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hookd_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_NICS);
	__type(key, __u32);
	__type(value, struct log_window);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hookd_log_rate SEC(".maps");

/* Networks: the network of each network NIC, and the addresses on each
 * network this host answers for (gateways) or switches to (local NICs). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_NICS);
	__type(key, __u32);
	__type(value, struct nic_net);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hookd_nic_nets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_NET_ADDRS);
	__type(key, struct net_addr_key);
	__type(value, struct net_addr);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hookd_net_addrs SEC(".maps");

/* Each tenant's routing domain: where an address of one of its networks
 * is on this host. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_ROUTES);
	__type(key, struct route_key);
	__type(value, struct route);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hookd_routes SEC(".maps");

/* Per-CPU room for answers too large for from_vm's stack (the router
 * advertisement and its pseudo-header). Nothing lasts in it beyond one
 * frame. */
struct scratch {
	__u8 buf[256];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
	/* Pinned as the others: a program's identity includes its maps. */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hookd_scratch SEC(".maps");

/* Each CPU's conntrack clock (conntrack.h, ct_now): the coarse clock as
 * last read, and the jiffies it was read at. */
struct ct_clock {
	__u64 jiffies;
	__u64 ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ct_clock);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hookd_clock SEC(".maps");

/* What router advertisements tell each network NIC with IPv6. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_NICS);
	__type(key, __u32);
	__type(value, struct ra_info);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hookd_ra SEC(".maps");

/* Each network's NICs on this host, for broadcast and multicast. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_NICS);
	__type(key, __u32);
	__type(value, struct net_members);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hookd_net_members SEC(".maps");

/* The host ends of the tenant namespaces' veths, and whose they are. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_UPLINKS);
	__type(key, __u32);
	__type(value, struct uplink);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hookd_uplinks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_NICS);
	__type(key, __u32);
	__type(value, struct dhcp_lease);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hookd_dhcp SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MAX_NICS);
	__type(key, __u32);
	__type(value, struct net_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hookd_net_stats SEC(".maps");

/* Connection tracking: one LRU table per NIC, created by hookd when it
 * programs the NIC, so a VM that opens connections without end evicts only
 * its own entries (its share: the inner table's size). */
struct ct_table {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CT_PER_NIC);
	/* Sizes, not __type: the inner template's key/value types would only
	 * be forward declarations in BTF, which the loader cannot size. */
	__uint(key_size, sizeof(struct ct_key));
	__uint(value_size, sizeof(struct ct_entry));
};

/* The tables, at the slot of the NIC's config (as hookd_counters): an
 * array lookup, which the verifier inlines, where a hash of maps by
 * ifindex cost about 45 ns a packet. Slot 0 holds none. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, MAX_NICS + 1);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct ct_table);
} hookd_ct SEC(".maps");

/* The NIC's conntrack table, or NULL (none yet: the caller fails closed).
 * No test of the slot, for the reason nic_counters gives. */
static __always_inline void *nic_ct(const struct nic_config *cfg)
{
	__u32 slot = cfg->slot;

	return bpf_map_lookup_elem(&hookd_ct, &slot);
}

#endif
