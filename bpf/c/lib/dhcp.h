/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/* The network's DHCPv4 server, at the tap of a network NIC: a DISCOVER
 * gets an OFFER and a REQUEST an ACK, written in place of the request, for
 * the one address the NIC's policy gives it (hookd_dhcp), with the subnet
 * mask, the gateway as router and server id, the network's MTU and DNS
 * servers and the lease time. Nothing else is answered: a request whose
 * client hardware address is not the NIC's MAC, or that asks for another
 * address, gets nothing. The answer goes back to the VM marked as the
 * network's own (HOOKD_ANSWER_MARK), so that the VM's ingress rules,
 * which no connection of its own matches here, do not drop it. */
#ifndef HOOKD_DHCP_H
#define HOOKD_DHCP_H

#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include "types.h"
#include "maps.h"
#include "verdict.h"
#include "flow.h"
#include "antispoof.h"
#include "l2net.h"

#define DHCP_BOOTP_OFF  (ETH_HLEN + 20 + 8)   /* IPv4 without options */
#define DHCP_MAGIC_OFF  (DHCP_BOOTP_OFF + 236)
#define DHCP_OPTS_OFF   (DHCP_MAGIC_OFF + 4)
#define DHCP_OPTS_LEN   64                    /* the options of an answer */
#define DHCP_ANSWER_LEN (DHCP_OPTS_OFF + DHCP_OPTS_LEN)
#define DHCP_MAX_OPTS   16                    /* request options walked */

#define DHCP_DISCOVER 1
#define DHCP_OFFER    2
#define DHCP_REQUEST  3
#define DHCP_ACK      5

/* Is F a DHCPv4 client's message (UDP 68 -> 67)? */
static __always_inline int is_dhcp_client(struct __sk_buff *skb, struct flow *f)
{
	return f->ip == 4 && f->proto == IPPROTO_UDP && !f->later_frag && flow_l4(skb, f) == 0 &&
	       f->sport == 68 && f->dport == 67;
}

/* One's-complement sum of the 20-byte IPv4 header at H, checksum included. */
static __always_inline __u16 ip4_checksum(const __u8 *h)
{
	__u32 sum = 0;

#pragma unroll
	for (int i = 0; i < 20; i += 2)
		sum += (__u32)h[i] << 8 | h[i + 1];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* The request's message type and requested address (option 50; 0 when
 * absent), walking at most DHCP_MAX_OPTS options. */
static __always_inline int dhcp_request_opts(struct __sk_buff *skb, __u8 *type, __u8 *requested)
{
	__u32 off = DHCP_OPTS_OFF;
	__u8 magic[4], tl[2];

	if (bpf_skb_load_bytes(skb, DHCP_MAGIC_OFF, magic, 4) < 0 || magic[0] != 99 ||
	    magic[1] != 130 || magic[2] != 83 || magic[3] != 99)
		return -1;
#pragma unroll
	for (int i = 0; i < DHCP_MAX_OPTS; i++) {
		if (bpf_skb_load_bytes(skb, off, tl, 1) < 0)
			return -1;
		if (tl[0] == 255)
			break;
		if (tl[0] == 0) {
			off++;
			continue;
		}
		if (bpf_skb_load_bytes(skb, off, tl, 2) < 0)
			return -1;
		if (tl[0] == 53 && tl[1] == 1 && bpf_skb_load_bytes(skb, off + 2, type, 1) < 0)
			return -1;
		if (tl[0] == 50 && tl[1] == 4 && bpf_skb_load_bytes(skb, off + 2, requested, 4) < 0)
			return -1;
		off += 2 + tl[1];
	}
	return 0;
}

static __always_inline int dhcp_answer(struct __sk_buff *skb, const struct nic_config *cfg,
				       const struct nic_net *net, __u32 ifindex)
{
	struct dhcp_lease *l = bpf_map_lookup_elem(&hookd_dhcp, &ifindex);
	__u8 type = 0, requested[4] = {}, chaddr[6], ciaddr[4], ihl;
	__u8 hdr[DHCP_BOOTP_OFF] = {};
	__u8 opts[DHCP_OPTS_LEN] = {};
	__u8 bootp[12];
	__u32 o = 0;
	__u16 c;

	if (!l)
		return DROP_NOT_FORWARDED; /* no IPv4 address on the network */
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ihl, 1) < 0 || (ihl & 0xf) != 5)
		return DROP_NOT_FORWARDED;
	if (bpf_skb_load_bytes(skb, DHCP_BOOTP_OFF, bootp, 12) < 0 || bootp[0] != 1 ||
	    bpf_skb_load_bytes(skb, DHCP_BOOTP_OFF + 12, ciaddr, 4) < 0 ||
	    bpf_skb_load_bytes(skb, DHCP_BOOTP_OFF + 28, chaddr, 6) < 0 ||
	    dhcp_request_opts(skb, &type, requested) < 0)
		return DROP_MALFORMED;
	if (!mac_eq(chaddr, cfg->mac))
		return DROP_NOT_FORWARDED;
	if (type == DHCP_REQUEST) {
		__u32 req = *(__u32 *)requested, ci = *(__u32 *)ciaddr, mine = *(__u32 *)l->addr;

		if ((req && req != mine) || (ci && ci != mine))
			return DROP_NOT_FORWARDED;
	} else if (type != DHCP_DISCOVER) {
		return DROP_NOT_FORWARDED;
	}

	/* Options of the answer. */
	opts[o++] = 53; opts[o++] = 1; opts[o++] = type == DHCP_DISCOVER ? DHCP_OFFER : DHCP_ACK;
	opts[o++] = 54; opts[o++] = 4; __builtin_memcpy(&opts[o], l->router, 4); o += 4;
	opts[o++] = 51; opts[o++] = 4;
	*(__u32 *)&opts[o] = bpf_htonl(l->lease_secs); o += 4;
	opts[o++] = 1; opts[o++] = 4; __builtin_memcpy(&opts[o], l->mask, 4); o += 4;
	opts[o++] = 3; opts[o++] = 4; __builtin_memcpy(&opts[o], l->router, 4); o += 4;
	opts[o++] = 26; opts[o++] = 2;
	*(__u16 *)&opts[o] = bpf_htons(l->mtu); o += 2;
	if (l->ndns) {
		opts[o++] = 6;
		opts[o++] = 4 * (l->ndns > MAX_DNS ? MAX_DNS : l->ndns);
#pragma unroll
		for (int i = 0; i < MAX_DNS; i++) {
			if (i < l->ndns) {
				__builtin_memcpy(&opts[o], l->dns[i], 4);
				o += 4;
			}
		}
	}
	if (o < DHCP_OPTS_LEN)
		opts[o] = 255;

	/* The answer is exactly DHCP_ANSWER_LEN bytes. */
	if (bpf_skb_change_tail(skb, DHCP_ANSWER_LEN, 0) < 0)
		return DROP_MALFORMED;
	/* Ethernet: to the client, from the gateway. */
	__builtin_memcpy(hdr, cfg->mac, 6);
	__builtin_memcpy(hdr + 6, net->gw_mac, 6);
	hdr[12] = 0x08;
	/* IPv4: gateway -> broadcast (the client has no address yet). */
	hdr[14] = 0x45;
	hdr[16] = (DHCP_ANSWER_LEN - ETH_HLEN) >> 8;
	hdr[17] = (DHCP_ANSWER_LEN - ETH_HLEN) & 0xff;
	hdr[22] = 64;
	hdr[23] = IPPROTO_UDP;
	__builtin_memcpy(hdr + 26, l->router, 4);
	hdr[30] = hdr[31] = hdr[32] = hdr[33] = 0xff;
	c = ip4_checksum(hdr + 14);
	hdr[24] = c >> 8;
	hdr[25] = c & 0xff;
	/* UDP 67 -> 68, no checksum (allowed for IPv4). */
	hdr[35] = 67;
	hdr[37] = 68;
	hdr[38] = (DHCP_ANSWER_LEN - 34) >> 8;
	hdr[39] = (DHCP_ANSWER_LEN - 34) & 0xff;
	if (bpf_skb_store_bytes(skb, 0, hdr, sizeof(hdr), 0) < 0)
		return DROP_MALFORMED;
	/* BOOTP: a reply (op 2), hops and secs 0, yiaddr the NIC's address,
	 * siaddr 0; xid, flags, ciaddr, giaddr, chaddr as the client sent. */
	bootp[0] = 2;
	bootp[3] = 0;
	bootp[8] = bootp[9] = 0;
	if (bpf_skb_store_bytes(skb, DHCP_BOOTP_OFF, bootp, 12, 0) < 0 ||
	    bpf_skb_store_bytes(skb, DHCP_BOOTP_OFF + 16, l->addr, 4, 0) < 0 ||
	    bpf_skb_store_bytes(skb, DHCP_BOOTP_OFF + 20, &(__u32){0}, 4, 0) < 0 ||
	    bpf_skb_store_bytes(skb, DHCP_OPTS_OFF, opts, sizeof(opts), 0) < 0)
		return DROP_MALFORMED;
	return net_answer(skb, ifindex, NET_ANSWERED_DHCP);
}

#endif
