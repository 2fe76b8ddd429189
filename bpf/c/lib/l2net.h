/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/* The network stage of from_vm, for NICs on one of hookd's networks
 * (NIC_F_NETWORK): the frame has passed anti-spoofing and the egress
 * firewall. It is answered here (ARP for the gateway or another NIC of the
 * network, ICMP echo to the gateway), redirected to the tap of the NIC it
 * is addressed to (whose to_vm program then applies that NIC's ingress
 * policy), or dropped with a reason: a network NIC's frame never reaches
 * the host. Every lookup is keyed by the sender's network, taken from its
 * own NIC's entry, so nothing a VM writes in a frame reaches another
 * network. One hash lookup per frame. */
#ifndef HOOKD_L2NET_H
#define HOOKD_L2NET_H

#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_endian.h>
#include "types.h"
#include "maps.h"
#include "verdict.h"
#include "flow.h"
#include "antispoof.h"

#define ARP_REQUEST 1
#define ARP_REPLY   2
#define ICMP_ECHO_REPLY_TYPE   0
#define ICMP_ECHO_REQUEST_TYPE 8

/* The part of an ICMP header the echo responder changes (linux/icmp.h
 * pulls in libc headers that the bpf target lacks). */
struct icmp_head {
	__u8 type;
	__u8 code;
	__u16 checksum;
};

/* Counts one frame of the NIC as COUNTER (enum net_counter). */
static __always_inline void net_count(__u32 ifindex, int counter)
{
	struct net_stats *st = bpf_map_lookup_elem(&hookd_net_stats, &ifindex);

	if (HOOKD_WRITES && st && counter >= 0 && counter < NET_COUNTERS)
		st->count[counter]++;
}

/* Is the NIC on IFINDEX on network NET_ID (when not 0) and in tenant
 * TENANT_ID (when not 0)? Checked again before a redirect, so that an
 * entry left behind (a NIC moved, a tap's ifindex reused) sends nothing
 * across networks or tenants. */
static __always_inline int net_member(__u32 ifindex, __u32 net_id, __u32 tenant_id)
{
	struct nic_net *n = bpf_map_lookup_elem(&hookd_nic_nets, &ifindex);

	return n && (!net_id || n->net_id == net_id) && (!tenant_id || n->tenant_id == tenant_id);
}

/* Sends the answer the frame was turned into back to the VM, marked as the
 * network's own (see hookd_to_vm), counted as COUNTER. */
static __always_inline int net_answer(struct __sk_buff *skb, __u32 ifindex, int counter)
{
	skb->mark = HOOKD_ANSWER_MARK;
	net_count(ifindex, counter);
	bpf_redirect(ifindex, 0);
	return VERDICT_REDIRECT;
}

/* A broadcast or multicast frame (other than the ARP, ND and DHCP the
 * network answers) goes to the network's other NICs on this host: cloned
 * to each but the last, which gets the frame itself, each to its tap's
 * egress, where its ingress rules apply. At most MAX_FLOOD NICs (the first
 * of hookd_net_members); a bounded loop, no more. Copies the bound leaves
 * out are counted as DROP_FLOOD_BOUND, in NS (the sender's counters, or
 * NULL). */
static __always_inline int net_flood(struct __sk_buff *skb, const struct nic_net *net,
				     __u32 ifindex, struct nic_stats *ns)
{
	__u32 id = net->net_id;
	struct net_members *m = bpf_map_lookup_elem(&hookd_net_members, &id);
	struct net_stats *st;
	__u32 last = 0, sent = 0, self = 0, i;

	if (!m)
		return DROP_NOT_FORWARDED;
	for (i = 0; i < MAX_FLOOD; i++) {
		__u32 to;

		if (i >= m->count)
			break;
		to = m->ifindex[i];
		if (to == ifindex)
			self = 1;
		if (to == ifindex || !net_member(to, id, 0))
			continue;
		if (HOOKD_WRITES && last && bpf_clone_redirect(skb, last, 0) == 0)
			sent++;
		last = to;
	}
	/* m->count is every NIC of the network on this host; only the first
	 * MAX_FLOOD are in m->ifindex. The others' copies are counted. */
	if (HOOKD_WRITES && ns && m->count > MAX_FLOOD)
		__sync_fetch_and_add(&ns->drops[DROP_FLOOD_BOUND], m->count - MAX_FLOOD - !self);
	if (!last)
		return DROP_NOT_FORWARDED;
	st = bpf_map_lookup_elem(&hookd_net_stats, &ifindex);
	if (HOOKD_WRITES && st)
		st->count[NET_FLOODED] += sent + 1;
	bpf_redirect(last, 0);
	return VERDICT_REDIRECT;
}

static __always_inline struct net_addr *net_lookup4(__u32 net_id, const __u8 *a4)
{
	struct net_addr_key k = { .net_id = net_id };

	k.addr[10] = 0xff;
	k.addr[11] = 0xff;
	__builtin_memcpy(&k.addr[12], a4, 4);
	return bpf_map_lookup_elem(&hookd_net_addrs, &k);
}

/* An ARP request for the gateway or another NIC of the network becomes its
 * reply, sent back to the VM. Requests for the NIC's own address (address
 * conflict detection) and for unknown addresses go unanswered: nothing is
 * flooded. */
static __always_inline int net_arp(struct __sk_buff *skb, const struct nic_net *net, __u32 ifindex)
{
	struct ethhdr *eth = pkt_ptr(skb, 0, ETH_HLEN);
	struct arp_eth_ipv4 *arp = pkt_ptr(skb, ETH_HLEN, sizeof(*arp));
	struct net_addr *a;
	__u8 mac[6], ip[4];

	if (!eth || !arp)
		return DROP_MALFORMED;
	if (arp->oper != bpf_htons(ARP_REQUEST))
		return DROP_NOT_FORWARDED;
	a = net_lookup4(net->net_id, arp->tpa);
	if (!a || (a->kind == NET_ADDR_NIC && a->ifindex == ifindex))
		return DROP_NOT_FORWARDED;
	__builtin_memcpy(mac, a->mac, 6);
	__builtin_memcpy(ip, arp->tpa, 4);
	arp->oper = bpf_htons(ARP_REPLY);
	__builtin_memcpy(arp->tha, arp->sha, 6);
	__builtin_memcpy(arp->tpa, arp->spa, 4);
	__builtin_memcpy(arp->sha, mac, 6);
	__builtin_memcpy(arp->spa, ip, 4);
	__builtin_memcpy(eth->h_dest, eth->h_source, 6);
	__builtin_memcpy(eth->h_source, mac, 6);
	return net_answer(skb, ifindex, NET_ANSWERED_ARP);
}

/* RFC 1624 eqn. 3: checksum HC (host order) once the 16-bit word M of
 * what it covers is M_NEW. The echo answers use it for the type byte. */
static __always_inline __u16 csum_word_update(__u16 hc, __u16 m, __u16 m_new)
{
	__u32 sum = (__u16)~hc + (__u16)~m + (__u32)m_new;

	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* An ICMP echo request to the gateway becomes its reply, in place: the
 * addresses and MACs swap, the type goes 8 -> 0, and the checksum is
 * adjusted for that one change (RFC 1624). */
static __always_inline int net_echo4(struct __sk_buff *skb, const struct nic_net *net,
				     const struct flow *f, __u32 ifindex)
{
	struct ethhdr *eth = pkt_ptr(skb, 0, ETH_HLEN);
	struct iphdr *ip = pkt_ptr(skb, f->l3, sizeof(*ip));
	struct icmp_head *icmp;
	__be32 a;

	if (!eth || !ip)
		return DROP_MALFORMED;
	/* As for IPv6 and in the model: what is not ICMP is no echo, however
	 * short; a truncated ICMP header is malformed. */
	if (ip->protocol != IPPROTO_ICMP || f->later_frag)
		return DROP_NO_ROUTE;
	icmp = pkt_ptr(skb, f->l4, sizeof(*icmp));
	if (!icmp)
		return DROP_MALFORMED;
	if (icmp->type != ICMP_ECHO_REQUEST_TYPE || !mac_eq(eth->h_dest, net->gw_mac))
		return DROP_NO_ROUTE;
	a = ip->saddr;
	ip->saddr = ip->daddr;
	ip->daddr = a;
	icmp->type = ICMP_ECHO_REPLY_TYPE;
	icmp->checksum = bpf_htons(csum_word_update(bpf_ntohs(icmp->checksum),
						    ICMP_ECHO_REQUEST_TYPE << 8,
						    ICMP_ECHO_REPLY_TYPE << 8));
	__builtin_memcpy(eth->h_dest, eth->h_source, 6);
	__builtin_memcpy(eth->h_source, net->gw_mac, 6);
	return net_answer(skb, ifindex, NET_ANSWERED_ECHO);
}

/* The longest route to address A (16 bytes, IPv4 mapped) in tenant
 * TENANT_ID's routing domain, NULL when the tenant has none. The lookup
 * is keyed by the tenant: another tenant's routes are not there. */
static __always_inline struct route *tenant_route_lookup(__u32 tenant_id, const __u8 *a)
{
	struct route_key k = { .prefixlen = ROUTE_FIXED_BITS + 128, .tenant_id = tenant_id };

	if (!tenant_id)
		return NULL;
	__builtin_memcpy(k.addr, a, 16);
	return bpf_map_lookup_elem(&hookd_routes, &k);
}

/* Is IFINDEX the host end of tenant TENANT_ID's namespace? Checked before
 * each send there, as net_member is before a redirect to a NIC. */
static __always_inline int uplink_of(__u32 ifindex, __u32 tenant_id)
{
	struct uplink *u = bpf_map_lookup_elem(&hookd_uplinks, &ifindex);

	return u && u->tenant_id == tenant_id;
}

/* Where a packet of NET's NIC to address A is routed: a NIC of another of
 * the tenant's networks that is still in that tenant, or the tenant's
 * namespace for an address outside all of its subnets; NULL when neither
 * (an address of the tenant with no NIC here, or a tenant without a
 * namespace). */
static __always_inline int net_route_lookup(const struct nic_net *net, const __u8 *a,
					    struct route **out)
{
	struct route *r = tenant_route_lookup(net->tenant_id, a);

	if (!r)
		return DROP_NO_ROUTE;
	if (r->kind == ROUTE_UPLINK && !uplink_of(r->ifindex, net->tenant_id))
		return DROP_TENANT_MISMATCH;
	if (r->kind != ROUTE_UPLINK && (r->kind != ROUTE_NIC || r->net_id == net->net_id))
		return DROP_NO_ROUTE;
	if (r->kind == ROUTE_NIC && !net_member(r->ifindex, 0, net->tenant_id))
		return DROP_TENANT_MISMATCH;
	*out = r;
	return VERDICT_PASS;
}

/* Sends a routed packet on to R: to a NIC, from its network's gateway MAC
 * to the NIC's, to its tap, whose to_vm program applies its ingress
 * policy; to the tenant's namespace, from the veth's host end to its
 * namespace end. Counted on COUNT_IFINDEX's NIC as COUNTER. */
static __always_inline int net_route_send(struct __sk_buff *skb, struct ethhdr *eth,
					  const struct route *r, __u32 count_ifindex, int counter)
{
	__builtin_memcpy(eth->h_dest, r->mac, 6);
	__builtin_memcpy(eth->h_source, r->gw_mac, 6);
	net_count(count_ifindex, counter);
	bpf_redirect(r->ifindex, 0);
	return VERDICT_REDIRECT;
}

/* The sender's counter for a packet sent to R. */
static __always_inline int route_counter(const struct route *r)
{
	return r->kind == ROUTE_UPLINK ? NET_TO_TENANT_NS : NET_ROUTED;
}

/* One routing hop of an IPv4 packet: the TTL checked and decremented, the
 * header checksum adjusted as Linux's ip_decrease_ttl does. */
static __always_inline int net_hop4(struct iphdr *ip)
{
	__u32 check;

	if (ip->ttl <= 1)
		return DROP_TTL;
	ip->ttl--;
	check = ip->check;
	check += bpf_htons(0x0100);
	ip->check = (__u16)(check + (check >= 0xffff));
	return VERDICT_PASS;
}

#define ICMP_TIME_EXCEEDED 11
#define TE_QUOTE 28 /* the quoted packet: its IPv4 header (no options) and 8 bytes */
#define TE_LEN (20 + 8 + TE_QUOTE)

static __always_inline __u16 csum_of(const void *buf, __u32 len)
{
	__s64 sum = bpf_csum_diff(NULL, 0, (__be32 *)buf, len, 0);
	__u32 c = (__u32)sum;

	c = (c & 0xffff) + (c >> 16);
	c = (c & 0xffff) + (c >> 16);
	return (__u16)~c;
}

/* A routed IPv4 packet of the NIC on IFINDEX whose TTL ran out becomes an
 * ICMP time exceeded (RFC 792) from its subnet's gateway (the router of
 * its DHCP lease) back to the VM, quoting its header and first 8 bytes,
 * so that traceroute sees the gateway as a hop. Not for packets with IP
 * options, later fragments, ICMP errors (RFC 1122 3.2.2) or a NIC with no
 * IPv4 address in its network: those are dropped (ttl). */
static __always_inline int net_time_exceeded4(struct __sk_buff *skb, const struct nic_net *net,
					      __u32 ifindex)
{
	struct dhcp_lease *l = bpf_map_lookup_elem(&hookd_dhcp, &ifindex);
	__u8 eth[ETH_HLEN];
	__u8 buf[TE_LEN] = {};
	__u8 *q = &buf[28];

	if (!l)
		return DROP_TTL;
	if (bpf_skb_load_bytes(skb, 0, eth, ETH_HLEN) < 0 ||
	    bpf_skb_load_bytes(skb, ETH_HLEN, q, TE_QUOTE) < 0)
		return DROP_TTL;
	if (q[0] != 0x45 || (q[6] & 0x1f) || q[7])
		return DROP_TTL;
	if (q[9] == IPPROTO_ICMP && q[20] != ICMP_ECHO_REQUEST_TYPE && q[20] != ICMP_ECHO_REPLY_TYPE)
		return DROP_TTL;
	buf[0] = 0x45;
	buf[3] = TE_LEN;
	buf[8] = 64;
	buf[9] = IPPROTO_ICMP;
	__builtin_memcpy(&buf[12], l->router, 4);
	__builtin_memcpy(&buf[16], &q[12], 4);
	buf[20] = ICMP_TIME_EXCEEDED;
	*(__u16 *)&buf[10] = csum_of(buf, 20);
	*(__u16 *)&buf[22] = csum_of(&buf[20], 8 + TE_QUOTE);
	__builtin_memcpy(eth, &eth[6], 6);
	__builtin_memcpy(&eth[6], net->gw_mac, 6);
	if (bpf_skb_change_tail(skb, ETH_HLEN + TE_QUOTE, 0) < 0 ||
	    bpf_skb_adjust_room(skb, 28, BPF_ADJ_ROOM_MAC, 0) < 0 ||
	    bpf_skb_store_bytes(skb, 0, eth, ETH_HLEN, 0) < 0 ||
	    bpf_skb_store_bytes(skb, ETH_HLEN, buf, TE_LEN, 0) < 0)
		return DROP_TTL;
	return net_answer(skb, ifindex, NET_ICMP_ERRORS);
}

/* One routing hop of an IPv6 packet: the hop limit (no header checksum). */
static __always_inline int net_hop6(struct ipv6hdr *ip6)
{
	if (ip6->hop_limit <= 1)
		return DROP_TTL;
	ip6->hop_limit--;
	return VERDICT_PASS;
}

/* A packet to the gateway's MAC for an address beyond the network: routed
 * within the sender's tenant, or out to its namespace (net_route_lookup). */
static __always_inline int net_route4(struct __sk_buff *skb, const struct nic_net *net,
				      struct ethhdr *eth, struct iphdr *ip)
{
	__u8 a[16] = {};
	struct route *r = NULL;
	int v;

	a[10] = 0xff;
	a[11] = 0xff;
	__builtin_memcpy(&a[12], &ip->daddr, 4);
	v = net_route_lookup(net, a, &r);
	if (v != VERDICT_PASS)
		return v;
	v = net_hop4(ip);
	if (v == DROP_TTL)
		return net_time_exceeded4(skb, net, skb->ifindex);
	if (v != VERDICT_PASS)
		return v;
	return net_route_send(skb, eth, r, skb->ifindex, route_counter(r));
}

static __always_inline struct net_addr *net_lookup6(__u32 net_id, const __u8 *a6)
{
	struct net_addr_key k = { .net_id = net_id };

	__builtin_memcpy(k.addr, a6, 16);
	return bpf_map_lookup_elem(&hookd_net_addrs, &k);
}

/* Writes an ICMPv6 message over the frame, which must already be
 * ETH_HLEN + 40 + LEN bytes long: the Ethernet header ETH, an IPv6 header
 * with hop limit HOP and the addresses at ADDRS (source, then
 * destination), and the LEN bytes of MSG. 0, or -1 on an error. */
static __always_inline int net_store_icmp6(struct __sk_buff *skb, const __u8 *eth,
					   const __u8 *addrs, const __u8 *msg, __u32 len, __u8 hop)
{
	__u8 ip6h[8] = { 0x60, 0, 0, 0, 0, len, IPPROTO_ICMPV6, hop };

	if (bpf_skb_store_bytes(skb, 0, eth, ETH_HLEN, 0) < 0 ||
	    bpf_skb_store_bytes(skb, ETH_HLEN, ip6h, 8, 0) < 0 ||
	    bpf_skb_store_bytes(skb, ETH_HLEN + 8, addrs, 32, 0) < 0 ||
	    bpf_skb_store_bytes(skb, ETH_HLEN + 40, msg, len, 0) < 0)
		return -1;
	return 0;
}

#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY   129
#define ND_OPT_TARGET_LL    2
#define NA_FLAG_ROUTER      0x80
#define NA_FLAG_SOLICITED   0x40
#define NA_FLAG_OVERRIDE    0x20
#define NA_LEN              32 /* ICMPv6 NA with a target link-layer option */

/* A neighbour solicitation for the gateway or another NIC of the network
 * becomes the advertisement, sent back to the VM: from the target address
 * to the asker, hop limit 255, with the target's MAC. Solicitations for
 * duplicate address detection (from ::) and for unknown or the NIC's own
 * addresses go unanswered. The checksum is summed (bpf_csum_diff) over one
 * buffer, the pseudo-header (RFC 8200 8.1) then the NA, which keeps the
 * program's stack small. */
static __always_inline int net_ns(struct __sk_buff *skb, const struct nic_net *net, __u32 ifindex,
			     __u32 l4)
{
	/* 0: source (the target), 16: destination (the asker), 32: length,
	 * 36: next header, 40: the NA. */
	__u8 buf[40 + NA_LEN] = {};
	__u8 eth_hdr[ETH_HLEN];
	struct net_addr *a;
	__u8 is_gw;
	__s64 sum;
	__u32 c;

	if (l4 != ETH_HLEN + sizeof(struct ipv6hdr))
		return DROP_NOT_FORWARDED; /* extension headers: not for ND */
	if (bpf_skb_load_bytes(skb, ETH_HLEN + 8, &buf[16], 16) < 0 ||
	    bpf_skb_load_bytes(skb, l4 + 8, buf, 16) < 0)
		return DROP_MALFORMED;
	if (!(*(__u64 *)&buf[16] | *(__u64 *)&buf[24]))
		return DROP_NOT_FORWARDED; /* DAD, from :: */
	if (is_v4_mapped(buf))
		return DROP_NOT_FORWARDED;
	a = net_lookup6(net->net_id, buf);
	if (!a || (a->kind == NET_ADDR_NIC && a->ifindex == ifindex))
		return DROP_NOT_FORWARDED;
	is_gw = a->kind == NET_ADDR_GATEWAY;
	__builtin_memcpy(&eth_hdr[6], a->mac, 6);
	buf[35] = NA_LEN;
	buf[39] = IPPROTO_ICMPV6;
	buf[40] = ND_NEIGHBOR_ADVERT;
	buf[44] = NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE | (is_gw ? NA_FLAG_ROUTER : 0);
	__builtin_memcpy(&buf[48], buf, 16);
	buf[64] = ND_OPT_TARGET_LL;
	buf[65] = 1;
	__builtin_memcpy(&buf[66], &eth_hdr[6], 6);
	sum = bpf_csum_diff(NULL, 0, (__be32 *)buf, sizeof(buf), 0);
	if (sum < 0)
		return DROP_MALFORMED;
	c = (__u32)sum;
	c = (c & 0xffff) + (c >> 16);
	c = (c & 0xffff) + (c >> 16);
	c = (__u16)~c;
	/* bpf_csum_diff sums host-order words of network-order bytes. */
	*(__u16 *)&buf[42] = (__u16)c;
	if (bpf_skb_load_bytes(skb, 6, eth_hdr, 6) < 0)
		return DROP_MALFORMED;
	eth_hdr[12] = 0x86;
	eth_hdr[13] = 0xdd;
	if (bpf_skb_change_tail(skb, ETH_HLEN + sizeof(struct ipv6hdr) + NA_LEN, 0) < 0 ||
	    net_store_icmp6(skb, eth_hdr, buf, &buf[40], NA_LEN, 255) < 0)
		return DROP_MALFORMED;
	return net_answer(skb, ifindex, NET_ANSWERED_ND);
}

/* An ICMPv6 echo request to the gateway becomes its reply, in place
 * (the checksum adjusted for the type, RFC 1624; swapping the addresses
 * leaves the pseudo-header's sum as it was). */
static __always_inline int net_echo6(struct __sk_buff *skb, const struct nic_net *net, __u32 l3,
				__u32 l4, __u32 ifindex)
{
	__u8 eth[ETH_HLEN], addrs[32], icmp[4];
	__u32 sum;

	/* Copies, not packet pointers: with direct access here the compiler
	 * emitted arithmetic on pkt_end, which the verifier refuses. */
	if (bpf_skb_load_bytes(skb, 0, eth, ETH_HLEN) < 0 ||
	    bpf_skb_load_bytes(skb, l3 + 8, addrs, 32) < 0 ||
	    bpf_skb_load_bytes(skb, l4, icmp, 4) < 0)
		return DROP_MALFORMED;
	if (icmp[0] != ICMPV6_ECHO_REQUEST || !mac_eq(eth, net->gw_mac))
		return DROP_NO_ROUTE;
	icmp[0] = ICMPV6_ECHO_REPLY;
	sum = csum_word_update((__u16)icmp[2] << 8 | icmp[3], ICMPV6_ECHO_REQUEST << 8,
			       ICMPV6_ECHO_REPLY << 8);
	icmp[2] = sum >> 8;
	icmp[3] = sum & 0xff;
	__builtin_memcpy(eth, &eth[6], 6);
	__builtin_memcpy(&eth[6], net->gw_mac, 6);
	if (bpf_skb_store_bytes(skb, 0, eth, ETH_HLEN, 0) < 0 ||
	    bpf_skb_store_bytes(skb, l3 + 8, &addrs[16], 16, 0) < 0 ||
	    bpf_skb_store_bytes(skb, l3 + 24, addrs, 16, 0) < 0 ||
	    bpf_skb_store_bytes(skb, l4, icmp, 4, 0) < 0)
		return DROP_MALFORMED;
	return net_answer(skb, ifindex, NET_ANSWERED_ECHO);
}

#define ICMPV6_TIME_EXCEEDED 3
#define TE6_LEN (8 + TE6_QUOTE)

/* A routed IPv6 packet of the NIC on IFINDEX whose hop limit ran out
 * becomes an ICMPv6 time exceeded (RFC 4443 3.3) from the gateway of the
 * NIC's /64 back to the VM, quoting the IPv6 header and 8 bytes. Not for
 * ICMPv6 errors, later fragments or a NIC with no router advertisement
 * entry: those are dropped (ttl). */
static __always_inline int net_time_exceeded6(struct __sk_buff *skb, const struct nic_net *net,
					      __u32 ifindex, const struct flow *f)
{
	struct ra_info *ra = bpf_map_lookup_elem(&hookd_ra, &ifindex);
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&hookd_scratch, &zero);
	__u8 eth[ETH_HLEN];
	__u8 *buf, *icmp;

	if (!ra || !s || f->later_frag || (f->proto == IPPROTO_ICMPV6 && f->icmp_type < 128))
		return DROP_TTL;
	buf = s->buf;
	icmp = &buf[40];
	__builtin_memset(buf, 0, 40 + 8);
	if (bpf_skb_load_bytes(skb, 0, eth, ETH_HLEN) < 0 ||
	    bpf_skb_load_bytes(skb, ETH_HLEN, &icmp[8], TE6_QUOTE) < 0)
		return DROP_TTL;
	__builtin_memcpy(buf, ra->gw, 16);
	__builtin_memcpy(&buf[16], &icmp[8 + 8], 16); /* to the packet's source */
	buf[35] = TE6_LEN;
	buf[39] = IPPROTO_ICMPV6;
	icmp[0] = ICMPV6_TIME_EXCEEDED;
	*(__u16 *)&icmp[2] = csum_of(buf, 40 + TE6_LEN);
	__builtin_memcpy(eth, &eth[6], 6);
	__builtin_memcpy(&eth[6], net->gw_mac, 6);
	if (bpf_skb_change_tail(skb, ETH_HLEN + TE6_QUOTE, 0) < 0 ||
	    bpf_skb_adjust_room(skb, 40 + 8, BPF_ADJ_ROOM_MAC, 0) < 0 ||
	    net_store_icmp6(skb, eth, buf, icmp, TE6_LEN, 64) < 0)
		return DROP_TTL;
	return net_answer(skb, ifindex, NET_ICMP_ERRORS);
}

/* IPv6 as net_route4 routes IPv4. */
static __always_inline int net_route6(struct __sk_buff *skb, const struct nic_net *net,
				      struct ethhdr *eth, struct ipv6hdr *ip6, const struct flow *f)
{
	struct route *r = NULL;
	int v = net_route_lookup(net, (const __u8 *)&ip6->daddr, &r);

	if (v != VERDICT_PASS)
		return v;
	v = net_hop6(ip6);
	if (v == DROP_TTL)
		return net_time_exceeded6(skb, net, skb->ifindex, f);
	if (v != VERDICT_PASS)
		return v;
	return net_route_send(skb, eth, r, skb->ifindex, route_counter(r));
}

static __always_inline int net_stage6(struct __sk_buff *skb, const struct nic_net *net,
				      __u32 ifindex, struct flow *f, struct nic_stats *ns)
{
	struct ethhdr *eth;
	struct ipv6hdr *ip6;
	struct net_addr *a;

	if (f->status != FLOW_OK)
		return DROP_NOT_FORWARDED;
	if (f->proto == IPPROTO_ICMPV6 && flow_l4(skb, f) == 0 &&
	    f->icmp_type == ND_NEIGHBOR_SOLICIT)
		return net_ns(skb, net, ifindex, f->l4);
	eth = pkt_ptr(skb, 0, ETH_HLEN);
	ip6 = pkt_ptr(skb, f->l3, sizeof(*ip6));
	if (!eth || !ip6)
		return DROP_MALFORMED;
	if (eth->h_dest[0] & 1)
		return net_flood(skb, net, ifindex, ns);
	if (is_v4_mapped((const __u8 *)&ip6->daddr))
		return DROP_NOT_FORWARDED;
	a = net_lookup6(net->net_id, (const __u8 *)&ip6->daddr);
	if (!a)
		return mac_eq(eth->h_dest, net->gw_mac) ? net_route6(skb, net, eth, ip6, f)
							 : DROP_UNKNOWN_UNICAST;
	if (a->kind == NET_ADDR_GATEWAY)
		return f->proto == IPPROTO_ICMPV6 && !f->later_frag
			       ? net_echo6(skb, net, f->l3, f->l4, ifindex)
						  : DROP_NO_ROUTE;
	if (a->ifindex == ifindex || !mac_eq(eth->h_dest, a->mac))
		return DROP_UNKNOWN_UNICAST;
	if (!net_member(a->ifindex, net->net_id, 0))
		return DROP_TENANT_MISMATCH;
	net_count(ifindex, NET_SWITCHED);
	bpf_redirect(a->ifindex, 0);
	return VERDICT_REDIRECT;
}

/* The stage, for the frame F from the NIC at IFINDEX, whose counters are NS
 * (or NULL). */
static __always_inline int net_stage(struct __sk_buff *skb, __u32 ifindex, struct flow *f,
				     struct nic_stats *ns)
{
	struct nic_net *net = bpf_map_lookup_elem(&hookd_nic_nets, &ifindex);
	struct ethhdr *eth;
	struct iphdr *ip;
	struct net_addr *a;

	if (!net)
		return DROP_NO_ROUTE; /* flagged but not programmed: fail closed */
	if (f->eth_proto == bpf_htons(ETH_P_ARP))
		return net_arp(skb, net, ifindex);
	if (f->ip == 6)
		return net_stage6(skb, net, ifindex, f, ns);
	if (f->ip != 4)
		return DROP_NOT_FORWARDED;
	eth = pkt_ptr(skb, 0, ETH_HLEN);
	ip = pkt_ptr(skb, f->l3, sizeof(*ip));
	if (!eth || !ip)
		return DROP_MALFORMED;
	if (eth->h_dest[0] & 1)
		return net_flood(skb, net, ifindex, ns);
	a = net_lookup4(net->net_id, (const __u8 *)&ip->daddr);
	if (!a)
		return mac_eq(eth->h_dest, net->gw_mac) ? net_route4(skb, net, eth, ip)
							 : DROP_UNKNOWN_UNICAST;
	if (a->kind == NET_ADDR_GATEWAY)
		return net_echo4(skb, net, f, ifindex);
	if (a->ifindex == ifindex || !mac_eq(eth->h_dest, a->mac))
		return DROP_UNKNOWN_UNICAST;
	if (!net_member(a->ifindex, net->net_id, 0))
		return DROP_TENANT_MISMATCH;
	net_count(ifindex, NET_SWITCHED);
	bpf_redirect(a->ifindex, 0);
	return VERDICT_REDIRECT;
}


#endif
