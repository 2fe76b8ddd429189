/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/* Packets from a tenant's namespace, at tc ingress of the host end of its
 * veth: the way back from the outside. Each is routed to the tenant's NIC
 * that holds its destination, a hop as the gateway routes one (TTL, MACs
 * from the gateway's to the NIC's), and redirected to the NIC's tap, whose
 * to_vm program applies its ingress policy. Anything else is dropped:
 * nothing from a namespace reaches the host, another tenant or an address
 * with no NIC. One LPM lookup per packet. */
#ifndef HOOKD_TENANT_H
#define HOOKD_TENANT_H

#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>
#include "l2net.h"

/* The tenant's NIC that holds address A, or NULL. */
static __always_inline struct route *tenant_nic(__u32 tenant_id, const __u8 *a)
{
	struct route *r = tenant_route_lookup(tenant_id, a);

	if (!r || r->kind != ROUTE_NIC || !net_member(r->ifindex, r->net_id, tenant_id))
		return NULL;
	return r;
}

static __always_inline int tenant_stage(struct __sk_buff *skb, __u32 tenant_id)
{
	struct ethhdr *eth = pkt_ptr(skb, 0, ETH_HLEN);
	struct route *r;
	__u8 a[16] = {};
	int v;

	if (!eth)
		return DROP_MALFORMED;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = pkt_ptr(skb, ETH_HLEN, sizeof(*ip));

		if (!ip || ip->version != 4)
			return DROP_MALFORMED;
		a[10] = 0xff;
		a[11] = 0xff;
		__builtin_memcpy(&a[12], &ip->daddr, 4);
		r = tenant_nic(tenant_id, a);
		if (!r)
			return DROP_NO_ROUTE;
		v = net_hop4(ip);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = pkt_ptr(skb, ETH_HLEN, sizeof(*ip6));

		if (!ip6 || ip6->version != 6)
			return DROP_MALFORMED;
		if (is_v4_mapped((const __u8 *)&ip6->daddr))
			return DROP_NO_ROUTE;
		r = tenant_nic(tenant_id, (const __u8 *)&ip6->daddr);
		if (!r)
			return DROP_NO_ROUTE;
		v = net_hop6(ip6);
	} else {
		return DROP_NOT_FORWARDED;
	}
	if (v != VERDICT_PASS)
		return v;
	return net_route_send(skb, eth, r, r->ifindex, NET_FROM_TENANT_NS);
}

#endif
