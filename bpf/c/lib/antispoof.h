/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/* Anti-spoofing of frames sent by a VM (schema v1, docs/policy.md):
 * source MAC, IPv4/IPv6 source, ARP sender, ND target, and the DHCP-server and
 * router-advertisement guards. A stage (verdict.h) of frames from the VM,
 * on the headers parse_frame() found. */
#ifndef HOOKD_ANTISPOOF_H
#define HOOKD_ANTISPOOF_H

#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <linux/udp.h>
#include <linux/icmpv6.h>
#include <bpf/bpf_endian.h>
#include "maps.h"
#include "parse.h"
#include "flow.h"
#include "verdict.h"
#define ETH_P_8021AD_ 0x88A8

/* ICMPv6 neighbour discovery message types (RFC 4861) */
#define ND_ROUTER_ADVERT   134
#define ND_NEIGHBOR_SOLICIT 135
#define ND_NEIGHBOR_ADVERT 136
#define ND_REDIRECT        137

struct arp_eth_ipv4 {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 oper;
	__u8 sha[6];
	__u8 spa[4];
	__u8 tha[6];
	__u8 tpa[4];
} __attribute__((packed));

static __always_inline int mac_eq(const __u8 *a, const __u8 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] &&
	       a[3] == b[3] && a[4] == b[4] && a[5] == b[5];
}

/* Does ADDR (16 bytes) fall inside one of the NIC's prefixes? */
static __always_inline int addr_allowed(__u32 ifindex, const __u8 *addr)
{
	struct addr_key key = { .prefixlen = ADDR_FIXED_BITS + 128, .ifindex = ifindex };

	__builtin_memcpy(key.addr, addr, 16);
	return bpf_map_lookup_elem(&hookd_addrs, &key) != NULL;
}

static __always_inline int addr4_allowed(__u32 ifindex, __be32 addr)
{
	struct addr_key key = { .prefixlen = ADDR_FIXED_BITS + 128, .ifindex = ifindex };

	key.addr[10] = 0xff;
	key.addr[11] = 0xff;
	__builtin_memcpy(&key.addr[12], &addr, 4);
	return bpf_map_lookup_elem(&hookd_addrs, &key) != NULL;
}

static __always_inline int check_arp(struct __sk_buff *skb, const struct nic_config *cfg)
{
	struct arp_eth_ipv4 *arp = pkt_ptr(skb, ETH_HLEN, sizeof(*arp));
	__be32 spa;

	if (!arp || arp->htype != bpf_htons(1) || arp->ptype != bpf_htons(ETH_P_IP) ||
	    arp->hlen != 6 || arp->plen != 4)
		return DROP_MALFORMED;
	if (!mac_eq(arp->sha, cfg->mac))
		return DROP_ARP_SPOOF;
	if (!(cfg->flags & NIC_F_CHECK_IP))
		return VERDICT_PASS;
	__builtin_memcpy(&spa, arp->spa, 4);
	/* 0.0.0.0 is an ARP probe (RFC 5227) for address conflict detection. */
	if (spa == 0 || addr4_allowed(skb->ifindex, spa))
		return VERDICT_PASS;
	return DROP_ARP_SPOOF;
}

static __always_inline int check_ipv4(struct __sk_buff *skb, const struct nic_config *cfg,
				      struct flow *f)
{
	struct iphdr *ip = pkt_ptr(skb, f->l3, sizeof(*ip));
	struct udphdr *udp = NULL;
	int dhcp_client = 0;

	if (!ip) /* parse_frame checked it */
		return DROP_MALFORMED;
	/* Non-first fragments carry no L4 header; ports are not read from them. */
	if (f->proto == IPPROTO_UDP && !f->later_frag) {
		udp = pkt_ptr(skb, f->l4, sizeof(*udp));
		if (!udp)
			return DROP_MALFORMED;
		flow_set_udp(f, udp);
		dhcp_client = udp->source == bpf_htons(68) && udp->dest == bpf_htons(67);
	}
	/* A DHCP client has no address yet: DISCOVER/REQUEST come from 0.0.0.0. */
	if ((cfg->flags & NIC_F_CHECK_IP) && !addr4_allowed(skb->ifindex, ip->saddr) &&
	    !(ip->saddr == 0 && dhcp_client))
		return DROP_IP_SPOOF;
	if (udp && udp->source == bpf_htons(67) && !(cfg->flags & NIC_F_ALLOW_DHCP_SERVER))
		return DROP_DHCP_SERVER;
	return VERDICT_PASS;
}

static __always_inline int check_ipv6(struct __sk_buff *skb, const struct nic_config *cfg,
				      struct flow *f)
{
	struct ipv6hdr *ip6 = pkt_ptr(skb, f->l3, sizeof(*ip6));
	int unspec_src;

	if (!ip6) /* parse_frame checked it */
		return DROP_MALFORMED;
	if (is_v4_mapped((const __u8 *)&ip6->saddr))
		return DROP_IP_SPOOF;
	unspec_src = !(ip6->saddr.in6_u.u6_addr32[0] | ip6->saddr.in6_u.u6_addr32[1] |
		       ip6->saddr.in6_u.u6_addr32[2] | ip6->saddr.in6_u.u6_addr32[3]);
	if ((cfg->flags & NIC_F_CHECK_IP) && !unspec_src &&
	    !addr_allowed(skb->ifindex, (const __u8 *)&ip6->saddr))
		return DROP_IP_SPOOF;

	/* The guards below cannot be dodged by hiding ICMPv6/UDP behind an
	 * extension-header chain: parse_frame walked it, and overlong ones
	 * are malformed. */
	if (f->status == FLOW_BAD_EXT)
		return DROP_MALFORMED;

	/* DAD and MLD come from :: (RFC 4862, RFC 3810) before an address is
	 * valid; anything else from :: is a spoof. */
	if (unspec_src && f->proto != IPPROTO_ICMPV6 && (cfg->flags & NIC_F_CHECK_IP))
		return DROP_IP_SPOOF;
	if (f->later_frag)
		return VERDICT_PASS;

	if (f->proto == IPPROTO_ICMPV6) {
		__u8 *icmp = pkt_ptr(skb, f->l4, 4);
		__u8 *target;

		if (!icmp)
			return DROP_MALFORMED;
		if ((icmp[0] == ND_ROUTER_ADVERT || icmp[0] == ND_REDIRECT) &&
		    !(cfg->flags & NIC_F_ALLOW_RA))
			return DROP_ROUTER_ADVERT;
		if (!(cfg->flags & NIC_F_CHECK_IP))
			return VERDICT_PASS;
		/* A VM may only advertise its own addresses; a neighbour
		 * solicitation from :: (DAD) names the address it claims. */
		if (icmp[0] == ND_NEIGHBOR_ADVERT ||
		    (icmp[0] == ND_NEIGHBOR_SOLICIT && unspec_src)) {
			target = pkt_ptr(skb, f->l4 + 8, 16);
			if (!target)
				return DROP_MALFORMED;
			if (is_v4_mapped(target) || !addr_allowed(skb->ifindex, target))
				return DROP_ND_SPOOF;
		}
		return VERDICT_PASS;
	}
	if (f->proto == IPPROTO_UDP) {
		struct udphdr *udp = pkt_ptr(skb, f->l4, sizeof(*udp));

		if (!udp)
			return DROP_MALFORMED;
		flow_set_udp(f, udp);
		if (udp->source == bpf_htons(547) && !(cfg->flags & NIC_F_ALLOW_DHCP_SERVER))
			return DROP_DHCP_SERVER;
	}
	return VERDICT_PASS;
}

/* The first stage of a frame the VM sent on a managed NIC, before it is
 * parsed: Ethernet header, no VLAN tag, the NIC's source MAC. */
static __always_inline int antispoof_l2(struct __sk_buff *skb, const struct nic_config *cfg)
{
	struct ethhdr *eth = pkt_ptr(skb, 0, ETH_HLEN);

	if (!eth)
		return DROP_MALFORMED;
	/* The kernel strips an outer 802.1Q/802.1ad tag into skb metadata
	 * before tc ingress: a tagged frame shows up here as vlan_present. */
	if (skb->vlan_present)
		return DROP_VLAN;
	if (!mac_eq(eth->h_source, cfg->mac))
		return DROP_MAC_SPOOF;
	return VERDICT_PASS;
}

/* Then, on the parsed frame (not FLOW_BAD_L3): what the VM may send, by
 * ethertype. */
static __always_inline int antispoof(struct __sk_buff *skb, const struct nic_config *cfg,
				     struct flow *f)
{
	switch (bpf_ntohs(f->eth_proto)) {
	case ETH_P_ARP:
		return check_arp(skb, cfg);
	case ETH_P_IP:
		return check_ipv4(skb, cfg, f);
	case ETH_P_IPV6:
		return check_ipv6(skb, cfg, f);
	case ETH_P_RARP:
		/* QEMU's announce of a migrated guest, from the NIC's own MAC
		 * (antispoof_l2 checked it), so that switches learn where it
		 * is now. */
		return VERDICT_PASS;
	case ETH_P_8021Q:
	case ETH_P_8021AD_:
		return DROP_VLAN;
	default:
		return DROP_ETHERTYPE;
	}
}

#endif
