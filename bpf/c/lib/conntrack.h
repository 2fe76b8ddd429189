/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/* Connection tracking: one LRU table per NIC (hookd_ct), keyed from the
 * VM's point of view, with fixed timeouts. */
#ifndef HOOKD_CONNTRACK_H
#define HOOKD_CONNTRACK_H

#include "maps.h"
#include "flow.h"
#include "verdict.h"

/* Timeouts: enum ct_timeout_s in types.h. */

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
			return CT_TCP_EST_TIMEOUT * NS_PER_SEC;
		if (e->state == CT_CLOSING)
			return CT_TCP_CLOSE_TIMEOUT * NS_PER_SEC;
		return CT_TCP_SYN_TIMEOUT * NS_PER_SEC;
	}
	if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6)
		return CT_ICMP_TIMEOUT * NS_PER_SEC;
	return (e->state == CT_ESTABLISHED ? CT_UDP_EST_TIMEOUT : CT_UDP_TIMEOUT) * NS_PER_SEC;
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

/* The clock of conntrack entries: CLOCK_MONOTONIC at the kernel tick's
 * resolution (a few ms), which timeouts in seconds do not notice, where
 * bpf_ktime_get_ns reads the clock source (about 23 ns a packet on this
 * project's machines). The coarse clock only moves once a tick, so each
 * CPU keeps what it read and reads again when jiffies have moved: the
 * helper call cost about 0.3 of an empty program a packet where calls
 * are dear (SRSO, retpolines), jiffies and the per-CPU array are read
 * inline. A CPU that sees the tick's jiffies before its clock update
 * keeps the clock a tick behind, for that tick. */
static __always_inline __u64 ct_now(void)
{
	__u32 zero = 0;
	struct ct_clock *c = bpf_map_lookup_elem(&hookd_clock, &zero);
	__u64 j = bpf_jiffies64();

	if (!HOOKD_WRITES || !c)
		return bpf_ktime_get_coarse_ns();
	if (c->jiffies != j || !c->ns) {
		c->ns = bpf_ktime_get_coarse_ns();
		c->jiffies = j;
	}
	return c->ns;
}

/* Has an entry last seen at LAST been idle for longer than TIMEOUT at NOW?
 * A LAST after NOW (written from the precise clock by an earlier build of
 * hookd, up to a tick ahead) is fresh, never expired. */
static __always_inline int ct_expired(__u64 now, __u64 last, __u64 timeout)
{
	return now > last && now - last > timeout;
}

/* A packet of a tracked, unexpired connection, whose key is K: updates the
 * connection (an RST ends it) and returns 1. 0 when there is none. */
static __always_inline int ct_continue_entry(void *ct, struct ct_key *k, struct ct_entry *e,
					     __u8 dir, const struct flow *f, __u64 now)
{
	if (ct_expired(now, e->last_seen, ct_timeout(e, f->proto)))
		return 0;
	if (!HOOKD_WRITES)
		return 1;
	if (f->proto == IPPROTO_TCP) {
		if (f->tcp_flags & TCP_RST) {
			bpf_map_delete_elem(ct, k);
			return 1;
		}
		if (f->tcp_flags & TCP_FIN)
			e->state = CT_CLOSING;
		else if (e->state == CT_NEW && dir != e->origin &&
			 (f->tcp_flags & (TCP_SYN | TCP_ACK)) == (TCP_SYN | TCP_ACK))
			e->state = CT_ESTABLISHED;
	} else if (dir != e->origin) {
		e->state = CT_ESTABLISHED;
	}
	if (e->last_seen != now) /* the coarse clock moves once a tick */
		e->last_seen = now;
	return 1;
}

/* A packet from the VM passed anti-spoofing with E's key under policy
 * GENERATION: later ones with that key may skip it (fw_fast_egress). */
static __always_inline void ct_vm_checked(struct ct_entry *e, __u64 generation)
{
	if (HOOKD_WRITES && (!e->vm_checked || e->vm_gen != (__u32)generation)) {
		e->vm_gen = (__u32)generation;
		e->vm_checked = 1;
	}
}

/* Starts tracking the connection K, opened in direction DIR. */
static __always_inline void ct_open(void *ct, struct ct_key *k, __u8 dir, __u64 now,
				    __u64 generation)
{
	/* From the VM (egress), it has just passed anti-spoofing. */
	struct ct_entry fresh = { .last_seen = now, .state = CT_NEW, .origin = dir,
				  .vm_checked = dir == DIR_EGRESS, .vm_gen = (__u32)generation };

	if (HOOKD_WRITES)
		bpf_map_update_elem(ct, k, &fresh, BPF_ANY);
}

#endif
