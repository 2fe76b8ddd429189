/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/* Security-group rules: the tables built by hookd's compiler
 * (hookd/src/firewall.rs, which explains why this is exact). At most
 * 1 + 4 LPM lookups per packet, whatever the number of rules; rule lookups
 * that cannot match (the compiler marks them) are skipped. */
#ifndef HOOKD_FW_RULES_H
#define HOOKD_FW_RULES_H

#include "maps.h"
#include "flow.h"
#include "verdict.h"
#include "fw_events.h"

static __always_inline __u16 flow_port(const struct flow *f)
{
	if (f->proto == IPPROTO_ICMP || f->proto == IPPROTO_ICMPV6)
		return (__u16)f->icmp_type << 8 | f->icmp_code;
	return f->dport;
}

/* One rule-table lookup, folded into *best: deny beats allow, then the
 * lower rule index (the same order as hookd's compiler). */
static __always_inline void fw_lookup(struct fw_rule_key *k, __u32 class, __u8 proto, __u8 any,
				      struct fw_verdict *best, int *found)
{
	struct fw_verdict *v;

	k->class = class;
	k->proto = proto;
	k->any = any;
	v = bpf_map_lookup_elem(&hookd_fw_rules, k);
	if (!v)
		return;
	if (!*found || (v->deny && !best->deny) ||
	    (v->deny == best->deny && v->rule < best->rule))
		*best = *v;
	*found = 1;
}

/* Counts a hit of the deciding rule. */
static __always_inline void fw_count_hit(__u32 ifindex, __u8 dir, __u8 half, __u16 rule)
{
	struct fw_hit_key k = { .ifindex = ifindex, .dir = dir, .half = half, .rule = rule };
	__u64 one = 1, *n;

	if (!HOOKD_WRITES)
		return;
	n = bpf_map_lookup_elem(&hookd_fw_hits, &k);
	if (n)
		*n += 1; /* per-CPU value: no atomics needed */
	else
		bpf_map_update_elem(&hookd_fw_hits, &k, &one, BPF_NOEXIST);
}

/* The rules of direction DIR for this flow: VERDICT_PASS or a DROP_* reason. */
static __always_inline int fw_rules(__u32 ifindex, const struct nic_config *cfg, __u8 dir,
				    const struct flow *f)
{
	__u8 mode = dir == DIR_INGRESS ? cfg->fw_ingress : cfg->fw_egress;
	struct fw_class_key ck = { .prefixlen = FW_CLASS_FIXED_BITS + 128, .ifindex = ifindex,
				   .half = cfg->fw_gen, .dir = dir };
	struct fw_rule_key rk = { .prefixlen = FW_RULE_FIXED_BITS + 16, .ifindex = ifindex,
				  .half = cfg->fw_gen, .dir = dir };
	struct fw_verdict best = {};
	int found = 0;
	__u32 class = 0, *c;
	__u8 kinds, kinds0;
	__u16 port = flow_port(f);

	if (mode == FW_OFF) {
		trace_note(dir, TRACE_FW_OFF, 0);
		return VERDICT_PASS;
	}
	__builtin_memcpy(ck.addr, dir == DIR_INGRESS ? f->saddr : f->daddr, 16);
	c = bpf_map_lookup_elem(&hookd_fw_classes, &ck);
	if (c)
		class = *c;
	/* Only the lookups that can find a rule (the compiler marks them):
	 * the deeper the tables, the more a skipped lookup saves. */
	kinds = class & 3;
	kinds0 = (cfg->fw_kinds >> (dir == DIR_INGRESS ? 0 : 2)) & 3;
	rk.port[0] = port >> 8;
	rk.port[1] = port & 0xff;
	if (class) {
		if (kinds & FW_KIND_PROTO)
			fw_lookup(&rk, class, f->proto, 0, &best, &found);
		if (kinds & FW_KIND_ANY)
			fw_lookup(&rk, class, 0, 1, &best, &found);
	}
	if (kinds0 & FW_KIND_PROTO)
		fw_lookup(&rk, 0, f->proto, 0, &best, &found);
	if (kinds0 & FW_KIND_ANY)
		fw_lookup(&rk, 0, 0, 1, &best, &found);
	if (found) {
		fw_count_hit(ifindex, dir, cfg->fw_gen, best.rule);
		if (best.log)
			fw_log(ifindex, dir, &best, f);
		if (best.deny)
			return DROP_FW_RULE;
		trace_note(dir, TRACE_RULE, best.rule);
		return VERDICT_PASS;
	}
	if (mode != FW_ALLOW)
		return DROP_FW_DEFAULT;
	trace_note(dir, TRACE_DEFAULT, 0);
	return VERDICT_PASS;
}

#endif
