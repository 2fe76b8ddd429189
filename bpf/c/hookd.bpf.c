/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/* hookd's programs for a VM's tap. On a tap, tc ingress sees the frames the
 * VM sends (from_vm) and tc egress the frames delivered to it (to_vm). */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "lib/types.h"
#include "lib/maps.h"
#include "lib/antispoof.h"
#include "lib/firewall.h"

/* Headers we may read: Ethernet + IPv6 + 4 extension headers + ND message. */
#define PULL_LEN 256

static __always_inline void count_drop(struct nic_stats *st, int reason)
{
	if (st && reason >= 0 && reason < DROP_REASONS)
		__sync_fetch_and_add(&st->drops[reason], 1);
}

/* The firewall's verdict for a frame of a NIC with rules in either
 * direction: FW_PASS or a DROP_* reason. */
static __always_inline int firewall(struct __sk_buff *skb, const struct nic_config *cfg, __u8 dir)
{
	struct ethhdr *eth = pkt_ptr(skb, 0, ETH_HLEN);
	struct flow f = {};

	if (cfg->fw_ingress == FW_OFF && cfg->fw_egress == FW_OFF)
		return FW_PASS;
	if (!eth || parse_flow(skb, ETH_HLEN, eth->h_proto, &f) < 0)
		return DROP_MALFORMED;
	if (!f.ip)
		return FW_PASS; /* ARP and the like: anti-spoofing's business */
	return fw_stateful(skb, skb->ifindex, cfg, dir, &f);
}

static __always_inline void linearize(struct __sk_buff *skb)
{
	__u32 want = skb->len < PULL_LEN ? skb->len : PULL_LEN;

	if ((long)skb->data_end - (long)skb->data < want)
		bpf_skb_pull_data(skb, want);
}

SEC("classifier")
int hookd_from_vm(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	struct nic_config *cfg = bpf_map_lookup_elem(&hookd_nics, &ifindex);
	struct nic_stats *st = bpf_map_lookup_elem(&hookd_stats, &ifindex);
	int reason;

	if (!cfg)
		return TC_ACT_UNSPEC; /* not a NIC hookd knows: not ours to judge */
	if (cfg->flags & NIC_F_MANAGED) {
		linearize(skb);
		reason = antispoof(skb, cfg);
		if (reason == PASS)
			reason = firewall(skb, cfg, DIR_EGRESS);
		if (reason != PASS) {
			count_drop(st, reason);
			return TC_ACT_SHOT;
		}
	}
	if (st) {
		st->from_vm_packets++;
		st->from_vm_bytes += skb->len;
	}
	return TC_ACT_UNSPEC;
}

SEC("classifier")
int hookd_to_vm(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	struct nic_config *cfg = bpf_map_lookup_elem(&hookd_nics, &ifindex);
	struct nic_stats *st = bpf_map_lookup_elem(&hookd_stats, &ifindex);
	int reason;

	if (cfg && (cfg->flags & NIC_F_MANAGED)) {
		linearize(skb);
		reason = firewall(skb, cfg, DIR_INGRESS);
		if (reason != FW_PASS) {
			count_drop(st, reason);
			return TC_ACT_SHOT;
		}
	}
	if (st) {
		st->to_vm_packets++;
		st->to_vm_bytes += skb->len;
	}
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
