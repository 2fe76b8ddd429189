/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/* The network's IPv6 router, at the tap of a network NIC: a router
 * solicitation gets a router advertisement (RFC 4861), written in place
 * of the solicitation, from the gateway's link-local address and MAC:
 * router lifetime 9000 s (the most RFC 4861 allows), the network's MTU,
 * and the NIC's /64 subnet as an on-link prefix, autonomous (SLAAC) when
 * the NIC's policy address is the EUI-64 address of its MAC in it
 * (hookd_ra). Answered before the egress rules, as DHCP is, and sent back
 * marked as the network's own. Also sent unsolicited by hookd (see
 * hookd/src/datapath/ra.rs), which keeps the router's lifetime fresh. */
#ifndef HOOKD_RA_H
#define HOOKD_RA_H

#include <linux/if_ether.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>
#include "types.h"
#include "maps.h"
#include "verdict.h"
#include "flow.h"
#include "l2net.h"

#define ND_ROUTER_SOLICIT 133

/* Is F a router solicitation with no extension headers? */
static __always_inline int is_router_solicit(struct __sk_buff *skb, struct flow *f)
{
	return f->ip == 6 && f->proto == IPPROTO_ICMPV6 && !f->later_frag &&
	       f->l4 == ETH_HLEN + sizeof(struct ipv6hdr) && flow_l4(skb, f) == 0 &&
	       f->icmp_type == ND_ROUTER_SOLICIT;
}

static __always_inline void put32(__u8 *p, __u32 v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

static __always_inline int ra_answer(struct __sk_buff *skb, const struct nic_net *net,
				     __u32 ifindex)
{
	struct ra_info *ra = bpf_map_lookup_elem(&hookd_ra, &ifindex);
	/* 0: source (the gateway's link-local), 16: destination, 32: length,
	 * 36: next header (the pseudo-header, RFC 8200 8.1), 40: the RA. */
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&hookd_scratch, &zero);
	__u8 eth[ETH_HLEN];
	__u8 *buf, *r;

	if (!ra)
		return DROP_NOT_FORWARDED;
	if (!s)
		return DROP_MALFORMED;
	buf = s->buf;
	r = &buf[40];
	__builtin_memset(buf, 0, 40 + RA_LEN);
	/* The answer goes to the asker: its MAC (the frame's source) and
	 * address. */
	if (bpf_skb_load_bytes(skb, 6, eth, 6) < 0 ||
	    bpf_skb_load_bytes(skb, ETH_HLEN + 8, &buf[16], 16) < 0)
		return DROP_MALFORMED;
	__builtin_memcpy(&eth[6], net->gw_mac, 6);
	if (!(*(__u64 *)&buf[16] | *(__u64 *)&buf[24])) {
		/* From ::, before the VM has an address: to all nodes. */
		__u8 all[16] = { 0xff, 0x02, [15] = 1 };
		__u8 all_mac[6] = { 0x33, 0x33, 0, 0, 0, 1 };

		__builtin_memcpy(&buf[16], all, 16);
		__builtin_memcpy(eth, all_mac, 6);
	}
	eth[12] = 0x86;
	eth[13] = 0xdd;
	__builtin_memcpy(buf, ra->gw_ll, 16);
	buf[35] = RA_LEN;
	buf[39] = IPPROTO_ICMPV6;
	r[0] = ND_ROUTER_ADVERT;
	r[4] = 64; /* the hop limit guests use */
	r[6] = RA_ROUTER_LIFETIME >> 8;
	r[7] = RA_ROUTER_LIFETIME & 0xff;
	r[16] = 1; /* source link-layer address */
	r[17] = 1;
	__builtin_memcpy(&r[18], net->gw_mac, 6);
	r[24] = 5; /* MTU */
	r[25] = 1;
	put32(&r[28], ra->mtu);
	r[32] = 3; /* prefix information */
	r[33] = 4;
	r[34] = 64;
	r[35] = 0x80 | (ra->flags & RA_F_SLAAC ? 0x40 : 0); /* on-link, autonomous */
	put32(&r[36], 0xffffffff); /* valid: as long as the NIC's policy says */
	put32(&r[40], 0xffffffff); /* preferred */
	__builtin_memcpy(&r[48], ra->prefix, 16);
	*(__u16 *)&r[2] = csum_of(buf, 40 + RA_LEN);
	if (bpf_skb_change_tail(skb, ETH_HLEN + sizeof(struct ipv6hdr) + RA_LEN, 0) < 0 ||
	    net_store_icmp6(skb, eth, buf, r, RA_LEN, 255) < 0)
		return DROP_MALFORMED;
	return net_answer(skb, ifindex, NET_ANSWERED_RA);
}

#endif
