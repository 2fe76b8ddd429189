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
	r[5] = ra->flags & RA_F_DHCP6 ? 0x80 : 0; /* M: addresses from DHCPv6 */
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

#define DHCP6_SOLICIT     1
#define DHCP6_ADVERTISE   2
#define DHCP6_REQUEST     3
#define DHCP6_RENEW       5
#define DHCP6_REBIND      6
#define DHCP6_REPLY       7
#define DHCP6_OPT_CLIENTID 1
#define DHCP6_OPT_SERVERID 2
#define DHCP6_OPT_IA_NA    3
#define DHCP6_OPT_IAADDR   5
#define DHCP6_OPT_RAPID    14
#define DHCP6_OPT_DNS      23
#define DHCP6_MAX_OPTS     12
#define DHCP6_MAX_DUID     64
#define DHCP6_L4 (ETH_HLEN + 40)
#define DHCP6_MSG (DHCP6_L4 + 8)
/* The reply's fixed part: type and transaction id, server id (DUID-LL of
 * the gateway MAC), IA_NA with one address. */
#define DHCP6_FIXED (4 + 14 + 44)

/* Is F a DHCPv6 client's message (UDP 546 -> 547, no extension headers)? */
static __always_inline int is_dhcp6_client(struct __sk_buff *skb, struct flow *f)
{
	return f->ip == 6 && f->proto == IPPROTO_UDP && !f->later_frag && f->l4 == DHCP6_L4 &&
	       flow_l4(skb, f) == 0 && f->sport == 546 && f->dport == 547;
}

static __always_inline void put16(__u8 *p, __u16 v)
{
	p[0] = v >> 8;
	p[1] = v;
}

/* The network's DHCPv6 server (RFC 8415), for a NIC whose address comes
 * from it (RA_F_DHCP6): a SOLICIT gets an ADVERTISE (a REPLY with rapid
 * commit when the client asked for it), a REQUEST, RENEW or REBIND a
 * REPLY, with the client's id and IA_NA id echoed, the server id (DUID-LL
 * of the gateway MAC), the NIC's one address (lifetimes as DHCPv4's lease)
 * and the network's IPv6 DNS servers, from the gateway's link-local
 * address to the client's, written in place of the request. Nothing else
 * is answered, nor a client id longer than 64 bytes. */
static __always_inline int dhcp6_answer(struct __sk_buff *skb, const struct nic_net *net,
					__u32 ifindex)
{
	struct ra_info *ra = bpf_map_lookup_elem(&hookd_ra, &ifindex);
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&hookd_scratch, &zero);
	__u8 head[4], opt[4], eth[ETH_HLEN], addrs[32];
	__u8 fixed[DHCP6_FIXED] = {};
	__u32 off = DHCP6_MSG + 4, duid_off = 0, duid_len = 0, udp_len, i;
	__u8 iaid[4] = {}, rapid = 0, type, ndns;
	__u32 sum = 0;

	if (!ra || !s || !(ra->flags & RA_F_DHCP6))
		return DROP_NOT_FORWARDED;
	if (bpf_skb_load_bytes(skb, DHCP6_MSG, head, 4) < 0)
		return DROP_MALFORMED;
	if (head[0] != DHCP6_SOLICIT && head[0] != DHCP6_REQUEST && head[0] != DHCP6_RENEW &&
	    head[0] != DHCP6_REBIND)
		return DROP_NOT_FORWARDED;
	for (i = 0; i < DHCP6_MAX_OPTS; i++) {
		__u16 code, len;

		if (off + 4 > skb->len || bpf_skb_load_bytes(skb, off, opt, 4) < 0)
			break;
		code = (__u16)opt[0] << 8 | opt[1];
		len = (__u16)opt[2] << 8 | opt[3];
		if (code == DHCP6_OPT_CLIENTID) {
			duid_off = off + 4;
			duid_len = len;
		} else if (code == DHCP6_OPT_IA_NA && len >= 12) {
			if (bpf_skb_load_bytes(skb, off + 4, iaid, 4) < 0)
				return DROP_MALFORMED;
		} else if (code == DHCP6_OPT_RAPID) {
			rapid = 1;
		}
		off += 4 + len;
	}
	if (!duid_off || duid_len < 1 || duid_len > DHCP6_MAX_DUID)
		return DROP_NOT_FORWARDED;
	/* Bounds the verifier sees (the compiler would fold a plain mask
	 * into the check above). */
	asm volatile("" : "+r"(duid_len));
	duid_len &= DHCP6_MAX_DUID * 2 - 1;
	if (duid_len < 1)
		return DROP_NOT_FORWARDED;
	/* Everything of the request that the reply needs, before it is
	 * overwritten: the client id goes to the scratch room. */
	if (bpf_skb_load_bytes(skb, duid_off, s->buf, duid_len) < 0 ||
	    bpf_skb_load_bytes(skb, 6, eth, 6) < 0 ||
	    bpf_skb_load_bytes(skb, ETH_HLEN + 8, &addrs[16], 16) < 0)
		return DROP_MALFORMED;
	__builtin_memcpy(&eth[6], net->gw_mac, 6);
	eth[12] = 0x86;
	eth[13] = 0xdd;
	__builtin_memcpy(addrs, ra->gw_ll, 16);
	type = head[0] == DHCP6_SOLICIT && !rapid ? DHCP6_ADVERTISE : DHCP6_REPLY;
	fixed[0] = type;
	__builtin_memcpy(&fixed[1], &head[1], 3);
	put16(&fixed[4], DHCP6_OPT_SERVERID);
	put16(&fixed[6], 10);
	put16(&fixed[8], 3); /* DUID-LL */
	put16(&fixed[10], 1); /* Ethernet */
	__builtin_memcpy(&fixed[12], net->gw_mac, 6);
	put16(&fixed[18], DHCP6_OPT_IA_NA);
	put16(&fixed[20], 40);
	__builtin_memcpy(&fixed[22], iaid, 4);
	put32(&fixed[26], DHCP6_T1);
	put32(&fixed[30], DHCP6_T2);
	put16(&fixed[34], DHCP6_OPT_IAADDR);
	put16(&fixed[36], 24);
	__builtin_memcpy(&fixed[38], ra->addr, 16);
	put32(&fixed[54], DHCP6_LIFETIME);
	put32(&fixed[58], DHCP6_LIFETIME);
	ndns = ra->ndns > 2 ? 2 : ra->ndns;
	udp_len = 8 + DHCP6_FIXED + (rapid && type == DHCP6_REPLY ? 4 : 0) + (ndns ? 4 + 16 * ndns : 0) +
		  4 + duid_len;
	if (bpf_skb_change_tail(skb, DHCP6_L4 + udp_len, 0) < 0)
		return DROP_MALFORMED;
	{
		__u8 ip6h[8] = { 0x60, 0, 0, 0, udp_len >> 8, udp_len, IPPROTO_UDP, 255 };
		__u8 udph[8] = { 547 >> 8, 547 & 0xff, 546 >> 8, 546 & 0xff, udp_len >> 8, udp_len };

		if (bpf_skb_store_bytes(skb, 0, eth, ETH_HLEN, 0) < 0 ||
		    bpf_skb_store_bytes(skb, ETH_HLEN, ip6h, 8, 0) < 0 ||
		    bpf_skb_store_bytes(skb, ETH_HLEN + 8, addrs, 32, 0) < 0 ||
		    bpf_skb_store_bytes(skb, DHCP6_L4, udph, 8, 0) < 0 ||
		    bpf_skb_store_bytes(skb, DHCP6_MSG, fixed, DHCP6_FIXED, 0) < 0)
			return DROP_MALFORMED;
	}
	off = DHCP6_MSG + DHCP6_FIXED;
	if (rapid && type == DHCP6_REPLY) {
		__u8 rc[4] = { 0, DHCP6_OPT_RAPID, 0, 0 };

		if (bpf_skb_store_bytes(skb, off, rc, 4, 0) < 0)
			return DROP_MALFORMED;
		off += 4;
	}
	if (ndns) {
		__u8 dh[4] = { 0, DHCP6_OPT_DNS, 0, 16 * ndns };

		if (bpf_skb_store_bytes(skb, off, dh, 4, 0) < 0 ||
		    bpf_skb_store_bytes(skb, off + 4, ra->dns[0], 16, 0) < 0 ||
		    (ndns > 1 && bpf_skb_store_bytes(skb, off + 20, ra->dns[1], 16, 0) < 0))
			return DROP_MALFORMED;
		off += 4 + 16 * ndns;
	}
	{
		__u8 ch[4] = { 0, DHCP6_OPT_CLIENTID, 0, duid_len };

		if (bpf_skb_store_bytes(skb, off, ch, 4, 0) < 0 ||
		    bpf_skb_store_bytes(skb, off + 4, s->buf, duid_len, 0) < 0)
			return DROP_MALFORMED;
	}
	/* The UDP checksum, over the pseudo-header and the segment, read back
	 * into the scratch room. */
	{
		__u32 n = udp_len;

		asm volatile("" : "+r"(n));
		n &= 0xff;
		if (n < 8 || bpf_skb_load_bytes(skb, DHCP6_L4, s->buf, n) < 0)
			return DROP_MALFORMED;
	}
	for (i = 0; i < 32; i += 2)
		sum += (__u32)addrs[i] << 8 | addrs[i + 1];
	sum += udp_len + IPPROTO_UDP;
	for (i = 0; i < 256; i += 2) {
		if (i >= udp_len)
			break;
		sum += (__u32)s->buf[i] << 8 | (i + 1 < udp_len ? s->buf[i + 1] : 0);
	}
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (__u16)~sum;
	if (!sum)
		sum = 0xffff;
	{
		__u8 c[2] = { sum >> 8, sum };

		if (bpf_skb_store_bytes(skb, DHCP6_L4 + 6, c, 2, 0) < 0)
			return DROP_MALFORMED;
	}
	return net_answer(skb, ifindex, NET_ANSWERED_DHCP6);
}

#endif
