/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/* hookd's programs for a VM's tap. On a tap, tc ingress sees the frames the
 * VM sends (from_vm) and tc egress the frames delivered to it (to_vm). */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "lib/types.h"
#include "lib/maps.h"
#include "lib/verdict.h"
#include "lib/flow.h"
#include "lib/antispoof.h"
#include "lib/firewall.h"
#include "lib/l2net.h"
#include "lib/dhcp.h"
#include "lib/tenant.h"
#include "lib/ra.h"

/* Headers we may read: Ethernet + IPv6 + 4 extension headers + ND message. */
#define PULL_LEN 256

static __always_inline void count_drop(struct nic_stats *st, int reason)
{
	trace_drop(reason);
	if (HOOKD_WRITES && st && reason >= 0 && reason < DROP_REASONS)
		__sync_fetch_and_add(&st->drops[reason], 1);
}

/* Each program parses the frame once (parse_frame, into struct flow), then
 * runs its stages in order, each a small header under lib/ returning a
 * verdict (lib/verdict.h); the first that is not VERDICT_PASS decides.
 *
 *   from_vm: antispoof_l2 (MAC, VLAN; before parsing) -> antispoof ->
 *            firewall (egress; on a NIC of no network, for an established
 *            connection whose packets passed antispoof under this policy,
 *            fw_fast_egress instead of both) -> net_stage (network NICs: ARP and echo
 *            answered, same-network frames redirected, routed to the
 *            tenant's other networks or out to its namespace; lib/l2net.h)
 *            -> [later: encapsulation]
 *   from_tenant (the host end of a tenant namespace's veth): tenant_stage
 *            (lib/tenant.h), to the tenant's NICs
 *   to_vm:   [later: decapsulation] -> firewall (ingress)
 *
 * A stage that sends the frame on itself returns VERDICT_REDIRECT. */

/* A packet passed: on to the tap's next tc program (libvirt's bandwidth
 * filters), unless the NIC is moving to tcx (NIC_F_PASS_FINAL). */
static __always_inline int pass_verdict(const struct nic_config *cfg)
{
	return (cfg->flags & NIC_F_PASS_FINAL) ? TC_ACT_OK : TC_ACT_UNSPEC;
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
	struct nic_config *cfg = nic_config_of(ifindex);
	struct nic_stats *st;
	struct flow f = {};
	int verdict;

	if (!cfg)
		return TC_ACT_UNSPEC; /* not a NIC hookd knows: not ours to judge */
	st = nic_counters(cfg);
	if (cfg->flags & NIC_F_MANAGED) {
		linearize(skb);
		verdict = antispoof_l2(skb, cfg);
		if (verdict == VERDICT_PASS) {
			if (parse_frame(skb, &f) == FLOW_BAD_L3)
				verdict = DROP_MALFORMED;
			else if (!(cfg->flags & NIC_F_NETWORK) && fw_fast_egress(skb, cfg, &f)) {
				trace_note(DIR_EGRESS, TRACE_ESTABLISHED, 0);
				goto pass; /* an established connection: lib/firewall.h */
			}
			else
				verdict = antispoof(skb, cfg, &f);
		}
		/* The network's own DHCP server: before the egress rules, as a
		 * guest must get its address whatever they say. */
		if (verdict == VERDICT_PASS && (cfg->flags & NIC_F_NETWORK) &&
		    is_dhcp_client(skb, &f)) {
			struct nic_net *net = bpf_map_lookup_elem(&hookd_nic_nets, &ifindex);

			verdict = net ? dhcp_answer(skb, cfg, net, ifindex) : DROP_NO_ROUTE;
		}
		if (verdict == VERDICT_PASS && (cfg->flags & NIC_F_NETWORK) &&
		    is_dhcp6_client(skb, &f)) {
			struct nic_net *net = bpf_map_lookup_elem(&hookd_nic_nets, &ifindex);

			verdict = net ? dhcp6_answer(skb, net, ifindex) : DROP_NO_ROUTE;
		}
		if (verdict == VERDICT_PASS && (cfg->flags & NIC_F_NETWORK) &&
		    is_router_solicit(skb, &f)) {
			struct nic_net *net = bpf_map_lookup_elem(&hookd_nic_nets, &ifindex);

			verdict = net ? ra_answer(skb, net, ifindex) : DROP_NO_ROUTE;
		}
		if (verdict == VERDICT_PASS && fw_enabled(cfg))
			verdict = firewall(skb, cfg, DIR_EGRESS, &f);
		if (verdict == VERDICT_PASS && (cfg->flags & NIC_F_NETWORK))
			verdict = net_stage(skb, ifindex, &f, st);
		if (verdict == VERDICT_REDIRECT) {
			if (HOOKD_WRITES && st) {
				st->from_vm_packets++;
				st->from_vm_bytes += skb->len;
			}
			return TC_ACT_REDIRECT;
		}
		if (verdict != VERDICT_PASS) {
			count_drop(st, verdict);
			return TC_ACT_SHOT;
		}
	}
pass:
	if (HOOKD_WRITES && st) {
		st->from_vm_packets++;
		st->from_vm_bytes += skb->len;
	}
	return pass_verdict(cfg);
}

SEC("classifier")
int hookd_to_vm(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	struct nic_config *cfg = nic_config_of(ifindex);
	struct nic_stats *st = cfg ? nic_counters(cfg) : NULL;
	struct flow f = {};
	int verdict;

	if (skb->mark == HOOKD_ANSWER_MARK && skb->ingress_ifindex == ifindex && cfg &&
	    (cfg->flags & NIC_F_NETWORK)) {
		/* An answer of the network's own: from_vm made it from this
		 * very tap's frame (a mark set anywhere else, by the host or
		 * other software, does not come in through this tap). Not
		 * the VM's ingress rules' to judge. */
		skb->mark = 0;
	} else if (cfg && (cfg->flags & NIC_F_MANAGED)) {
		linearize(skb);
		if (fw_enabled(cfg)) {
			verdict = parse_frame(skb, &f) == FLOW_BAD_L3
					  ? DROP_MALFORMED
					  : firewall(skb, cfg, DIR_INGRESS, &f);
			if (verdict != VERDICT_PASS) {
				count_drop(st, verdict);
				return TC_ACT_SHOT;
			}
		}
	}
	if (HOOKD_WRITES && st) {
		st->to_vm_packets++;
		st->to_vm_bytes += skb->len;
	}
	return cfg ? pass_verdict(cfg) : TC_ACT_UNSPEC;
}

/* At tc ingress of the host end of a tenant namespace's veth: packets
 * from the namespace, routed to the tenant's NICs (lib/tenant.h). Counted
 * in hookd_stats under the veth's ifindex: from_vm_* for what came in,
 * drops by reason. */
SEC("classifier")
int hookd_from_tenant(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	struct uplink *u = bpf_map_lookup_elem(&hookd_uplinks, &ifindex);
	struct nic_stats *st = bpf_map_lookup_elem(&hookd_stats, &ifindex);
	int verdict;

	if (!u)
		return TC_ACT_SHOT; /* no tenant's any more: nothing of it reaches the host */
	linearize(skb);
	if (st) {
		st->from_vm_packets++;
		st->from_vm_bytes += skb->len;
	}
	verdict = tenant_stage(skb, u->tenant_id);
	if (verdict == VERDICT_REDIRECT)
		return TC_ACT_REDIRECT;
	count_drop(st, verdict);
	return TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
