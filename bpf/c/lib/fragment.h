/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/* IP fragments through the firewall. A datagram's later fragments carry no
 * ports, so they take the verdict of its first fragment: a first fragment
 * that passes leaves an entry in the NIC's conntrack table, keyed by the
 * addresses, protocol and IP ID (kind CT_KEY_FRAGMENTS), and a later
 * fragment passes only while that entry lives. Entries share the NIC's own
 * table, so a VM that floods fragments evicts only its own entries.
 *
 * Never passed: later fragments whose first fragment was denied, never came
 * or comes after them; a first fragment that does not hold its whole L4
 * header (tiny fragments, RFC 1858); a later fragment that would overlap
 * that header. */
#ifndef HOOKD_FRAGMENT_H
#define HOOKD_FRAGMENT_H

#include "maps.h"
#include "flow.h"
#include "conntrack.h"

/* FRAG_TIMEOUT (types.h): seconds a datagram's fragments may take after
 * the last one seen, as the kernel's own reassembly (net.ipv4.ipfrag_time). */

/* The smallest L4 header hookd reads for PROTO: what a first fragment must
 * hold entirely, and what no later fragment may overlap. */
static __always_inline __u32 frag_l4_min(__u8 proto)
{
	switch (proto) {
	case IPPROTO_TCP:
		return 20;
	case IPPROTO_SCTP:
		return 12;
	case IPPROTO_UDP:
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		return 8;
	default:
		return 0;
	}
}

/* The fragment's IP ID, its offset in bytes and the end of its IP payload
 * (from the start of the frame): -1 when they cannot be read. */
static __always_inline int frag_fields(struct __sk_buff *skb, const struct flow *f, __u32 *id,
				       __u32 *offset, __u32 *end)
{
	if (f->ip == 4) {
		struct iphdr *ip = pkt_ptr(skb, f->l3, sizeof(*ip));

		if (!ip)
			return -1;
		*id = bpf_ntohs(ip->id);
		*offset = (bpf_ntohs(ip->frag_off) & 0x1fff) * 8;
		*end = f->l3 + bpf_ntohs(ip->tot_len);
		return 0;
	}
	if (f->ip == 6 && f->frag_hdr >= sizeof(struct ipv6hdr)) {
		struct ipv6hdr *ip6 = pkt_ptr(skb, f->l3, sizeof(*ip6));
		__u8 *fh = pkt_ptr(skb, f->l3 + f->frag_hdr, 8);

		if (!ip6 || !fh)
			return -1;
		*id = (__u32)fh[4] << 24 | (__u32)fh[5] << 16 | (__u32)fh[6] << 8 | fh[7];
		*offset = ((__u32)fh[2] << 5 | fh[3] >> 3) * 8;
		*end = f->l3 + sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
		return 0;
	}
	return -1;
}

/* K for the fragments of F's datagram seen in direction DIR. */
static __always_inline void frag_key(struct ct_key *k, __u32 ifindex, __u8 dir,
				     const struct flow *f, __u32 id)
{
	ct_key_of(k, ifindex, dir, f);
	k->kind = CT_KEY_FRAGMENTS;
	k->vm_port = id >> 16;
	k->remote_port = id & 0xffff;
}

/* A fragment (f->frag_hdr set) in a direction with rules. For a later
 * fragment: 1 when its datagram's first fragment passed (the entry is
 * refreshed), else 0. For a first fragment: 0 when its L4 header is not
 * all in it, else 1 and *id set, for frag_remember once it has passed. */
static __always_inline int frag_check(struct __sk_buff *skb, void *ct, struct ct_key *k,
				      __u32 ifindex, __u8 dir, const struct flow *f, __u64 now,
				      __u32 *id)
{
	__u32 offset, end;
	struct ct_entry *e;

	if (frag_fields(skb, f, id, &offset, &end) < 0)
		return 0;
	if (!f->later_frag)
		return f->l4 + frag_l4_min(f->proto) <= end;
	if (offset < frag_l4_min(f->proto))
		return 0;
	frag_key(k, ifindex, dir, f, *id);
	e = bpf_map_lookup_elem(ct, k);
	if (!e || ct_expired(now, e->last_seen, FRAG_TIMEOUT * NS_PER_SEC))
		return 0;
	if (HOOKD_WRITES)
		e->last_seen = now;
	return 1;
}

/* The first fragment of datagram ID passed: its later fragments may. */
static __always_inline void frag_remember(void *ct, struct ct_key *k, __u32 ifindex, __u8 dir,
					  const struct flow *f, __u32 id, __u64 now)
{
	struct ct_entry fresh = { .last_seen = now, .state = CT_NEW, .origin = dir };

	frag_key(k, ifindex, dir, f, id);
	if (HOOKD_WRITES)
		bpf_map_update_elem(ct, k, &fresh, BPF_ANY);
}

#endif
