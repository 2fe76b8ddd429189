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
	skb->mark = HOOKD_ANSWER_MARK;
	bpf_redirect(ifindex, 0);
	return VERDICT_REDIRECT;
}

/* An ICMP echo request to the gateway becomes its reply, in place: the
 * addresses and MACs swap, the type goes 8 -> 0, and the checksum is
 * adjusted for that one change (RFC 1624). */
static __always_inline int net_echo4(struct __sk_buff *skb, const struct nic_net *net,
				     const struct flow *f, __u32 ifindex)
{
	struct ethhdr *eth = pkt_ptr(skb, 0, ETH_HLEN);
	struct iphdr *ip = pkt_ptr(skb, f->l3, sizeof(*ip));
	struct icmp_head *icmp = pkt_ptr(skb, f->l4, sizeof(*icmp));
	__be32 a;
	__u32 sum;

	if (!eth || !ip || !icmp)
		return DROP_MALFORMED;
	if (ip->protocol != IPPROTO_ICMP || f->later_frag || icmp->type != ICMP_ECHO_REQUEST_TYPE ||
	    !mac_eq(eth->h_dest, net->gw_mac))
		return DROP_NO_ROUTE;
	a = ip->saddr;
	ip->saddr = ip->daddr;
	ip->daddr = a;
	icmp->type = ICMP_ECHO_REPLY_TYPE;
	sum = (__u32)icmp->checksum + bpf_htons(ICMP_ECHO_REQUEST_TYPE << 8);
	icmp->checksum = (__u16)((sum & 0xffff) + (sum >> 16));
	__builtin_memcpy(eth->h_dest, eth->h_source, 6);
	__builtin_memcpy(eth->h_source, net->gw_mac, 6);
	skb->mark = HOOKD_ANSWER_MARK;
	bpf_redirect(ifindex, 0);
	return VERDICT_REDIRECT;
}

/* A packet to the gateway's MAC for an address beyond the network: routed
 * within the sender's tenant, to a NIC on this host on another of its
 * networks. The TTL is checked and decremented (the header checksum
 * adjusted as Linux's ip_decrease_ttl does), the MACs become that network's
 * gateway -> the NIC, and the packet goes to the NIC's tap, whose to_vm
 * program applies its ingress policy. The lookup is keyed by the sender's
 * tenant: another tenant's addresses are not there. */
static __always_inline int net_route4(struct __sk_buff *skb, const struct nic_net *net,
				      struct ethhdr *eth, struct iphdr *ip)
{
	struct route_key k = { .prefixlen = ROUTE_FIXED_BITS + 128, .tenant_id = net->tenant_id };
	struct route *r;
	__u32 check;

	if (!net->tenant_id)
		return DROP_NO_ROUTE;
	k.addr[10] = 0xff;
	k.addr[11] = 0xff;
	__builtin_memcpy(&k.addr[12], &ip->daddr, 4);
	r = bpf_map_lookup_elem(&hookd_routes, &k);
	if (!r || r->kind != ROUTE_NIC || r->net_id == net->net_id)
		return DROP_NO_ROUTE;
	if (ip->ttl <= 1)
		return DROP_TTL;
	ip->ttl--;
	check = ip->check;
	check += bpf_htons(0x0100);
	ip->check = (__u16)(check + (check >= 0xffff));
	__builtin_memcpy(eth->h_dest, r->mac, 6);
	__builtin_memcpy(eth->h_source, r->gw_mac, 6);
	bpf_redirect(r->ifindex, 0);
	return VERDICT_REDIRECT;
}

static __always_inline int net_stage(struct __sk_buff *skb, __u32 ifindex, const struct flow *f)
{
	struct nic_net *net = bpf_map_lookup_elem(&hookd_nic_nets, &ifindex);
	struct ethhdr *eth;
	struct iphdr *ip;
	struct net_addr *a;

	if (!net)
		return DROP_NO_ROUTE; /* flagged but not programmed: fail closed */
	if (f->eth_proto == bpf_htons(ETH_P_ARP))
		return net_arp(skb, net, ifindex);
	if (f->ip != 4)
		return DROP_NOT_FORWARDED;
	eth = pkt_ptr(skb, 0, ETH_HLEN);
	ip = pkt_ptr(skb, f->l3, sizeof(*ip));
	if (!eth || !ip)
		return DROP_MALFORMED;
	if (eth->h_dest[0] & 1)
		return DROP_NOT_FORWARDED;
	a = net_lookup4(net->net_id, (const __u8 *)&ip->daddr);
	if (!a)
		return mac_eq(eth->h_dest, net->gw_mac) ? net_route4(skb, net, eth, ip)
							 : DROP_UNKNOWN_UNICAST;
	if (a->kind == NET_ADDR_GATEWAY)
		return net_echo4(skb, net, f, ifindex);
	if (a->ifindex == ifindex || !mac_eq(eth->h_dest, a->mac))
		return DROP_UNKNOWN_UNICAST;
	bpf_redirect(a->ifindex, 0);
	return VERDICT_REDIRECT;
}

#endif
