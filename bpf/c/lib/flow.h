/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/* Parsing a frame into the flow the firewall and conntrack judge. */
#ifndef HOOKD_FLOW_H
#define HOOKD_FLOW_H

#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include "parse.h"

#define IPV6_MAX_EXT_HDRS 4

static __always_inline int is_ipv6_ext(__u8 nh)
{
	return nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING ||
	       nh == IPPROTO_DSTOPTS || nh == IPPROTO_FRAGMENT || nh == IPPROTO_AH;
}

/* Walks up to IPV6_MAX_EXT_HDRS extension headers from off and nh; leaves the
 * upper-layer offset and protocol there. Returns -1 for a truncated or
 * longer chain. Clears *first_frag for a non-first fragment. */
static __always_inline int ipv6_walk_ext(struct __sk_buff *skb, __u32 *off, __u8 *nh, int *first_frag)
{
#pragma unroll
	for (int i = 0; i < IPV6_MAX_EXT_HDRS; i++) {
		__u8 *ext;

		if (!is_ipv6_ext(*nh))
			break;
		ext = pkt_ptr(skb, *off, 8);
		if (!ext)
			return -1;
		if (*nh == IPPROTO_FRAGMENT) {
			/* offset field != 0: a later fragment, no L4 header in it */
			if ((ext[2] << 5 | ext[3] >> 3) != 0)
				*first_frag = 0;
			*off += 8;
		} else if (*nh == IPPROTO_AH) {
			*off += (ext[1] + 2) * 4; /* RFC 4302: 4-octet units, minus 2 */
		} else {
			*off += (ext[1] + 1) * 8;
		}
		*nh = ext[0];
	}
	return is_ipv6_ext(*nh) ? -1 : 0;
}

struct flow {
	__u8 ip;          /* 4 or 6; 0 when the frame is not IP */
	__u8 proto;
	__u8 later_frag;  /* a non-first fragment: no L4 header */
	__u8 tcp_flags;   /* FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10 */
	__u8 saddr[16];   /* IPv4 as IPv4-mapped IPv6 */
	__u8 daddr[16];
	__u16 sport;      /* host order; ICMP echo: the identifier */
	__u16 dport;
	__u8 icmp_type;
	__u8 icmp_code;
	__u16 pad;
	__u32 l4;         /* offset of the L4 header */
};

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

static __always_inline void map4(__u8 *dst, __be32 a)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, &a, 4);
}

/* Reads the L4 ports / ICMP fields at f->l4. Returns -1 when truncated.
 * bpf_skb_load_bytes copies into the stack, which keeps the verifier's
 * packet-bounds tracking out of it. */
static __always_inline int parse_l4(struct __sk_buff *skb, struct flow *f)
{
	__u8 l4[14];

	if (f->later_frag)
		return 0;
	switch (f->proto) {
	case IPPROTO_TCP:
		if (bpf_skb_load_bytes(skb, f->l4, l4, 14) < 0)
			return -1;
		f->tcp_flags = l4[13];
		break;
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		if (bpf_skb_load_bytes(skb, f->l4, l4, 4) < 0)
			return -1;
		break;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		if (bpf_skb_load_bytes(skb, f->l4, l4, 8) < 0)
			return -1;
		f->icmp_type = l4[0];
		f->icmp_code = l4[1];
		/* echo request/reply: the identifier pairs them */
		f->sport = f->dport = (__u16)l4[4] << 8 | l4[5];
		return 0;
	default:
		return 0;
	}
	f->sport = (__u16)l4[0] << 8 | l4[1];
	f->dport = (__u16)l4[2] << 8 | l4[3];
	return 0;
}

/* Parses the IP header at OFF (after Ethernet). Returns -1 when malformed;
 * leaves f->ip == 0 for frames that are not IP. */
static __always_inline int parse_flow(struct __sk_buff *skb, __u32 off, __be16 proto, struct flow *f)
{
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = pkt_ptr(skb, off, sizeof(*ip));

		if (!ip || ip->version != 4 || ip->ihl < 5)
			return -1;
		f->ip = 4;
		f->proto = ip->protocol;
		f->later_frag = (ip->frag_off & bpf_htons(0x1fff)) != 0;
		map4(f->saddr, ip->saddr);
		map4(f->daddr, ip->daddr);
		f->l4 = off + ip->ihl * 4;
		return parse_l4(skb, f);
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = pkt_ptr(skb, off, sizeof(*ip6));
		int first_frag = 1;
		__u8 nh;

		if (!ip6 || ip6->version != 6)
			return -1;
		nh = ip6->nexthdr;
		f->l4 = off + sizeof(*ip6);
		if (ipv6_walk_ext(skb, &f->l4, &nh, &first_frag) < 0)
			return -1;
		f->ip = 6;
		f->proto = nh;
		f->later_frag = !first_frag;
		__builtin_memcpy(f->saddr, &ip6->saddr, 16);
		__builtin_memcpy(f->daddr, &ip6->daddr, 16);
		return parse_l4(skb, f);
	}
	return 0;
}

#endif
