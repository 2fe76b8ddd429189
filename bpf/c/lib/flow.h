/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/* Parsing a frame, once, into the headers every stage reads (struct flow).
 * The addresses and the L4 fields are copied out on demand, at most once,
 * by flow_addrs() and flow_l4(): a stage that only looks at them (anti-
 * spoofing) reads them in place, at f->l3 and f->l4, so that a frame no
 * later stage needs them for does not pay for the copies. */
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
 * longer chain. Clears *first_frag for a non-first fragment, whose chain
 * ends at its Fragment header; sets *frag_hdr
 * to the fragment header's offset from l3 when the packet is a fragment
 * (not an atomic one: offset 0 without more fragments is whole). */
static __always_inline int ipv6_walk_ext(struct __sk_buff *skb, __u32 l3, __u32 *off, __u8 *nh,
					 int *first_frag, __u8 *frag_hdr)
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
			if ((ext[2] << 5 | ext[3] >> 3) != 0 || (ext[3] & 1))
				*frag_hdr = *off - l3 < 256 ? *off - l3 : 0;
			*off += 8;
			if ((ext[2] << 5 | ext[3] >> 3) != 0) {
				/* offset field != 0: a later fragment. What follows
				 * is the middle of its datagram, not headers: the
				 * chain ends here, at the next header it names. */
				*first_frag = 0;
				*nh = ext[0];
				return 0;
			}
		} else if (*nh == IPPROTO_AH) {
			*off += (ext[1] + 2) * 4; /* RFC 4302: 4-octet units, minus 2 */
		} else {
			*off += (ext[1] + 1) * 8;
		}
		*nh = ext[0];
	}
	return is_ipv6_ext(*nh) ? -1 : 0;
}

/* How far parsing got. */
enum flow_status {
	FLOW_OK = 0,
	FLOW_BAD_L3,  /* no Ethernet header, or a truncated or invalid IP header */
	FLOW_BAD_EXT, /* IPv6: extension-header chain truncated or too long;
		       * the addresses are filled in, proto and l4 are not */
};

struct flow {
	__u8 ip;          /* 4 or 6; 0 when the frame is not IP */
	__u8 proto;
	__u8 later_frag;  /* a non-first fragment: no L4 header */
	__u8 tcp_flags;   /* FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10 */
	__u8 saddr[16];   /* IPv4 as IPv4-mapped IPv6; see flow_addrs() */
	__u8 daddr[16];
	__u16 sport;      /* host order; ICMP echo: the identifier */
	__u16 dport;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 status;      /* enum flow_status */
	__u8 l4_read;     /* sport .. icmp_code are filled in */
	__u8 addrs_read;  /* saddr, daddr are filled in */
	__u8 frag_hdr;    /* a fragment: IPv4 1, IPv6 the fragment header's
			   * offset from l3 (lib/fragment.h); 0 when whole */
	__be16 eth_proto; /* ethertype */
	__u32 l3;         /* offset of the IP header */
	__u32 l4;         /* offset of the L4 header */
};

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

/* IPv4-mapped IPv6 (::ffff:0:0/96): the maps' form of IPv4 addresses, never
 * an address on the wire (RFC 4291 2.5.5.2). An IPv6 source, ND target or
 * destination of that form would match IPv4 entries: the stages refuse it. */
static __always_inline int is_v4_mapped(const __u8 *a)
{
	__u32 w0, w1, w2;

	__builtin_memcpy(&w0, a, 4);
	__builtin_memcpy(&w1, a + 4, 4);
	__builtin_memcpy(&w2, a + 8, 4);
	return w0 == 0 && w1 == 0 && w2 == bpf_htonl(0xffff);
}

static __always_inline void map4(__u8 *dst, __be32 a)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, &a, 4);
}

/* Copies LEN bytes at OFF into BUF: from the linear data (which
 * linearize() makes hold the headers of nearly every frame), else by
 * bpf_skb_load_bytes. -1 when the frame is shorter. A helper call costs
 * more than the rest of an established flow's parsing on this project's
 * machines (about 28 ns a packet, with the CPU's return mitigations), so
 * it is only the fallback. Copied either way, so that the caller reads
 * one kind of pointer (its stack) whichever way the bytes came; parse_l4
 * is a global function so that these two ways are verified once. LEN is a
 * constant at each call site. */
static __always_inline int l4_bytes(struct __sk_buff *skb, __u32 off, __u8 *buf, __u32 len)
{
	const __u8 *p = pkt_ptr(skb, off, len);

	if (p) {
		__builtin_memcpy(buf, p, len);
		return 0;
	}
	return bpf_skb_load_bytes(skb, off, buf, len) < 0 ? -1 : 0;
}

/* Reads the L4 ports / ICMP fields at f->l4. Returns -1 when truncated,
 * leaving l4_read clear: a later stage that reads again finds the header
 * truncated too (fw_fast_egress reads first, and a truncated header must
 * still be malformed for the firewall after it).
 *
 * A global function, which the verifier checks once on its own: inlined,
 * the two ways l4_bytes reads took hookd_to_vm past 1M instructions. */
__attribute__((noinline)) int parse_l4(struct __sk_buff *skb, struct flow *f)
{
	__u8 l4[14];

	if (!skb || !f)
		return -1;
	f->l4_read = 1;
	if (f->later_frag)
		return 0;
	switch (f->proto) {
	case IPPROTO_TCP:
		if (l4_bytes(skb, f->l4, l4, 14) < 0)
			goto truncated;
		f->tcp_flags = l4[13];
		break;
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		if (l4_bytes(skb, f->l4, l4, 4) < 0)
			goto truncated;
		break;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		if (l4_bytes(skb, f->l4, l4, 8) < 0)
			goto truncated;
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
truncated:
	f->l4_read = 0;
	return -1;
}

/* The L4 fields of an IP flow, read once: -1 when truncated. */
static __always_inline int flow_l4(struct __sk_buff *skb, struct flow *f)
{
	return f->l4_read ? 0 : parse_l4(skb, f);
}

/* For a stage that has read a UDP header (8 bytes) itself: the same ports
 * parse_l4 would read, so that flow_l4 does not read them again. */
static __always_inline void flow_set_udp(struct flow *f, const struct udphdr *udp)
{
	f->sport = bpf_ntohs(udp->source);
	f->dport = bpf_ntohs(udp->dest);
	f->l4_read = 1;
}

/* Parses the IP header at OFF, of ethertype PROTO, and walks IPv6
 * extension headers. Returns an enum flow_status; leaves f->ip == 0 for
 * frames that are not IP. F is written only on success (FLOW_OK), so that
 * the failures, which callers take straight to a verdict, carry no state. */
static __always_inline int parse_ip(struct __sk_buff *skb, __u32 off, __be16 proto, struct flow *f)
{
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = pkt_ptr(skb, off, sizeof(*ip));

		if (!ip || ip->version != 4 || ip->ihl < 5)
			return FLOW_BAD_L3;
		f->ip = 4;
		f->proto = ip->protocol;
		f->later_frag = (ip->frag_off & bpf_htons(0x1fff)) != 0;
		f->frag_hdr = (ip->frag_off & bpf_htons(0x3fff)) != 0; /* MF or an offset */
		f->l3 = off;
		f->l4 = off + ip->ihl * 4;
		return FLOW_OK;
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = pkt_ptr(skb, off, sizeof(*ip6));
		__u32 l4 = off + sizeof(*ip6);
		int first_frag = 1;
		__u8 nh, frag_hdr = 0;

		if (!ip6 || ip6->version != 6)
			return FLOW_BAD_L3;
		nh = ip6->nexthdr;
		f->l3 = off;
		if (ipv6_walk_ext(skb, off, &l4, &nh, &first_frag, &frag_hdr) < 0)
			return FLOW_BAD_EXT;
		f->frag_hdr = frag_hdr;
		f->ip = 6;
		f->proto = nh;
		f->later_frag = !first_frag;
		f->l4 = l4;
	}
	return FLOW_OK;
}

/* The addresses of an IP flow parse_ip() accepted, copied once: -1 when
 * they cannot be read (which parse_ip has ruled out). */
static __always_inline int flow_addrs(struct __sk_buff *skb, struct flow *f)
{
	if (f->addrs_read)
		return 0;
	if (f->ip == 4) {
		struct iphdr *ip = pkt_ptr(skb, f->l3, sizeof(*ip));

		if (!ip)
			return -1;
		map4(f->saddr, ip->saddr);
		map4(f->daddr, ip->daddr);
	} else {
		struct ipv6hdr *ip6 = pkt_ptr(skb, f->l3, sizeof(*ip6));

		if (!ip6)
			return -1;
		__builtin_memcpy(f->saddr, &ip6->saddr, 16);
		__builtin_memcpy(f->daddr, &ip6->daddr, 16);
	}
	f->addrs_read = 1;
	return 0;
}

/* Parses an Ethernet frame into F (zeroed by the caller) and returns
 * f->status. FLOW_BAD_L3 is malformed for every stage: the program drops
 * it (DROP_MALFORMED) right away, before any stage. */
static __always_inline int parse_frame(struct __sk_buff *skb, struct flow *f)
{
	struct ethhdr *eth = pkt_ptr(skb, 0, ETH_HLEN);

	if (!eth)
		return f->status = FLOW_BAD_L3;
	f->eth_proto = eth->h_proto;
	return f->status = parse_ip(skb, ETH_HLEN, eth->h_proto, f);
}

/* Parses a whole IP packet at OFF (an ICMP error's quote): -1 when
 * malformed. */
static __always_inline int parse_flow(struct __sk_buff *skb, __u32 off, __be16 proto, struct flow *f)
{
	if (parse_ip(skb, off, proto, f) != FLOW_OK)
		return -1;
	if (!f->ip)
		return 0;
	return flow_addrs(skb, f) < 0 ? -1 : parse_l4(skb, f);
}

#endif
