/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/* Security groups: the rule tables built by hookd's compiler
 * (hookd/src/firewall.rs, which explains why this is exact), and
 * connection tracking. At most 1 + 4 LPM lookups and 1 hash lookup per
 * packet, whatever the number of rules; rule lookups that cannot match
 * (the compiler marks them) are skipped. */
#ifndef HOOKD_FIREWALL_H
#define HOOKD_FIREWALL_H

#include "maps.h"
#include "flow.h"

#define FW_PASS (-1)

/* Timeouts, in seconds. */
#define CT_TCP_SYN_TIMEOUT   60
#define CT_TCP_EST_TIMEOUT   7200
#define CT_TCP_CLOSE_TIMEOUT 30
#define CT_UDP_TIMEOUT       60
#define CT_UDP_EST_TIMEOUT   180
#define CT_ICMP_TIMEOUT      30
#define NS 1000000000ULL

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

	n = bpf_map_lookup_elem(&hookd_fw_hits, &k);
	if (n)
		*n += 1; /* per-CPU value: no atomics needed */
	else
		bpf_map_update_elem(&hookd_fw_hits, &k, &one, BPF_NOEXIST);
}

/* At most LOG_PER_SEC logged packets per NIC and second reach hookd. */
#define LOG_PER_SEC 100

static __always_inline void fw_log(__u32 ifindex, __u8 dir, const struct fw_verdict *v,
				   const struct flow *f)
{
	struct log_window *w = bpf_map_lookup_elem(&hookd_log_rate, &ifindex);
	__u64 now = bpf_ktime_get_ns();
	struct fw_event *ev;

	if (!w) {
		struct log_window fresh = { .start = now };

		bpf_map_update_elem(&hookd_log_rate, &ifindex, &fresh, BPF_NOEXIST);
		w = bpf_map_lookup_elem(&hookd_log_rate, &ifindex);
		if (!w)
			return;
	}
	if (now - w->start > NS) {
		w->start = now;
		w->count = 0;
	}
	if (w->count >= LOG_PER_SEC)
		return;
	__sync_fetch_and_add(&w->count, 1);
	ev = bpf_ringbuf_reserve(&hookd_events, sizeof(*ev), 0);
	if (!ev)
		return;
	ev->ts = now;
	ev->ifindex = ifindex;
	ev->dir = dir;
	ev->deny = v->deny;
	ev->rule = v->rule;
	ev->proto = f->proto;
	__builtin_memset(ev->pad, 0, sizeof(ev->pad));
	__builtin_memcpy(ev->saddr, f->saddr, 16);
	__builtin_memcpy(ev->daddr, f->daddr, 16);
	ev->sport = f->sport;
	ev->dport = f->dport;
	bpf_ringbuf_submit(ev, 0);
}

/* The rules of direction DIR for this flow: FW_PASS or a DROP_* reason. */
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
	__u8 kinds = FW_KIND_PROTO | FW_KIND_ANY, kinds0 = FW_KIND_PROTO | FW_KIND_ANY;
	__u16 port = flow_port(f);

	if (mode == FW_OFF)
		return FW_PASS;
	__builtin_memcpy(ck.addr, dir == DIR_INGRESS ? f->saddr : f->daddr, 16);
	c = bpf_map_lookup_elem(&hookd_fw_classes, &ck);
	if (c)
		class = *c;
	/* Only the lookups that can find a rule (the compiler marks them):
	 * the deeper the tables, the more a skipped lookup saves. */
	if (cfg->fw_kinds & FW_KINDS_VALID) {
		kinds = class & 3;
		kinds0 = (cfg->fw_kinds >> (dir == DIR_INGRESS ? 0 : 2)) & 3;
	}
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
		return best.deny ? DROP_FW_RULE : FW_PASS;
	}
	return mode == FW_ALLOW ? FW_PASS : DROP_FW_DEFAULT;
}

static __always_inline int is_icmp_error(const struct flow *f)
{
	if (f->proto == IPPROTO_ICMP)
		return f->icmp_type == 3 || f->icmp_type == 11 || f->icmp_type == 12;
	if (f->proto == IPPROTO_ICMPV6)
		return f->icmp_type >= 1 && f->icmp_type <= 4;
	return 0;
}

static __always_inline int is_icmp_echo(const struct flow *f)
{
	if (f->proto == IPPROTO_ICMP)
		return f->icmp_type == 8 || f->icmp_type == 0;
	if (f->proto == IPPROTO_ICMPV6)
		return f->icmp_type == 128 || f->icmp_type == 129;
	return 0;
}

static __always_inline int is_echo_request(const struct flow *f)
{
	return f->icmp_type == 8 || f->icmp_type == 128;
}

/* Traffic a VM needs to exist on its network, which security groups leave
 * alone (as OpenStack's do): IPv6 neighbour discovery and MLD (anti-spoofing
 * still checks what the VM itself sends), and DHCP/DHCPv6 server replies
 * to the VM's client ports. */
static __always_inline int fw_infrastructure(const struct flow *f, __u8 dir)
{
	if (f->proto == IPPROTO_ICMPV6)
		return (f->icmp_type >= 130 && f->icmp_type <= 137) || f->icmp_type == 143;
	if (f->proto == IPPROTO_UDP && dir == DIR_INGRESS)
		return (f->sport == 67 && f->dport == 68) || (f->sport == 547 && f->dport == 546);
	if (f->proto == IPPROTO_UDP && dir == DIR_EGRESS)
		return (f->sport == 68 && f->dport == 67) || (f->sport == 546 && f->dport == 547);
	return 0;
}

/* Conntrack key of a flow seen in direction DIR. */
static __always_inline void ct_key_of(struct ct_key *k, __u32 ifindex, __u8 dir, const struct flow *f)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->ifindex = ifindex;
	k->proto = f->proto;
	if (dir == DIR_EGRESS) {
		__builtin_memcpy(k->vm_addr, f->saddr, 16);
		__builtin_memcpy(k->remote_addr, f->daddr, 16);
		k->vm_port = f->sport;
		k->remote_port = f->dport;
	} else {
		__builtin_memcpy(k->vm_addr, f->daddr, 16);
		__builtin_memcpy(k->remote_addr, f->saddr, 16);
		k->vm_port = f->dport;
		k->remote_port = f->sport;
	}
	if (f->proto == IPPROTO_ICMP || f->proto == IPPROTO_ICMPV6)
		k->vm_port = k->remote_port = f->sport; /* echo identifier */
}

static __always_inline __u64 ct_timeout(const struct ct_entry *e, __u8 proto)
{
	if (proto == IPPROTO_TCP) {
		if (e->state == CT_ESTABLISHED)
			return CT_TCP_EST_TIMEOUT * NS;
		if (e->state == CT_CLOSING)
			return CT_TCP_CLOSE_TIMEOUT * NS;
		return CT_TCP_SYN_TIMEOUT * NS;
	}
	if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6)
		return CT_ICMP_TIMEOUT * NS;
	return (e->state == CT_ESTABLISHED ? CT_UDP_EST_TIMEOUT : CT_UDP_TIMEOUT) * NS;
}

/* An ICMP error passes when the packet it quotes belongs to a tracked
 * connection: the quoted packet went the other way. */
static __always_inline int ct_icmp_error_tracked(struct __sk_buff *skb, void *ct, __u32 ifindex,
						 __u8 dir, const struct flow *f)
{
	struct flow inner = {};
	struct ct_key k;
	__be16 proto = f->ip == 4 ? bpf_htons(ETH_P_IP) : bpf_htons(ETH_P_IPV6);

	if (parse_flow(skb, f->l4 + 8, proto, &inner) < 0 || !inner.ip)
		return 0;
	ct_key_of(&k, ifindex, dir == DIR_INGRESS ? DIR_EGRESS : DIR_INGRESS, &inner);
	return bpf_map_lookup_elem(ct, &k) != NULL;
}

/* Stateful verdict for an IP flow in direction DIR on a NIC whose firewall
 * is on in at least one direction: FW_PASS or a DROP_* reason. */
static __always_inline int fw_stateful(struct __sk_buff *skb, __u32 ifindex,
				       const struct nic_config *cfg, __u8 dir, const struct flow *f)
{
	__u8 mode = dir == DIR_INGRESS ? cfg->fw_ingress : cfg->fw_egress;
	int tracked = f->proto == IPPROTO_TCP || f->proto == IPPROTO_UDP ||
		      f->proto == IPPROTO_SCTP || is_icmp_echo(f);
	__u64 now = bpf_ktime_get_ns();
	struct ct_entry *e, fresh = {};
	struct ct_key k;
	int verdict;
	void *ct = bpf_map_lookup_elem(&hookd_ct, &ifindex);

	if (!ct)
		/* hookd creates the NIC's table before turning its firewall
		 * on; without one, fail closed. */
		return DROP_CT_INVALID;
	if (fw_infrastructure(f, dir))
		return FW_PASS;
	if (f->later_frag)
		/* No ports in it: a non-first fragment cannot be matched to a
		 * connection or a port rule. */
		return mode == FW_OFF ? FW_PASS : DROP_FRAGMENT;
	if (is_icmp_error(f) && ct_icmp_error_tracked(skb, ct, ifindex, dir, f))
		return FW_PASS;
	if (tracked) {
		ct_key_of(&k, ifindex, dir, f);
		e = bpf_map_lookup_elem(ct, &k);
		if (e && now - e->last_seen <= ct_timeout(e, f->proto)) {
			if (f->proto == IPPROTO_TCP) {
				if (f->tcp_flags & TCP_RST) {
					bpf_map_delete_elem(ct, &k);
					return FW_PASS;
				}
				if (f->tcp_flags & TCP_FIN)
					e->state = CT_CLOSING;
				else if (e->state == CT_NEW && dir != e->origin &&
					 (f->tcp_flags & (TCP_SYN | TCP_ACK)) == (TCP_SYN | TCP_ACK))
					e->state = CT_ESTABLISHED;
			} else if (dir != e->origin) {
				e->state = CT_ESTABLISHED;
			}
			e->last_seen = now;
			return FW_PASS;
		}
	}
	verdict = fw_rules(ifindex, cfg, dir, f);
	if (verdict != FW_PASS)
		return verdict;
	if (!tracked)
		return FW_PASS;
	if (f->proto == IPPROTO_TCP &&
	    (f->tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST)) != TCP_SYN)
		/* Only a SYN opens a connection; anything else must belong to
		 * one, unless this direction has no rules at all. */
		return mode == FW_OFF ? FW_PASS : DROP_CT_INVALID;
	if ((f->proto == IPPROTO_ICMP || f->proto == IPPROTO_ICMPV6) && !is_echo_request(f))
		return FW_PASS; /* a stray echo reply opens nothing */
	fresh.last_seen = now;
	fresh.state = CT_NEW;
	fresh.origin = dir;
	bpf_map_update_elem(ct, &k, &fresh, BPF_ANY);
	return FW_PASS;
}

#endif
