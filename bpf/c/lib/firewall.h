/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/* The firewall stage: security groups (fw_rules.h), stateful through
 * connection tracking (conntrack.h): at most 1 + 4 LPM lookups and 1 hash
 * lookup per packet, whatever the number of rules. */
#ifndef HOOKD_FIREWALL_H
#define HOOKD_FIREWALL_H

#include "maps.h"
#include "flow.h"
#include "verdict.h"
#include "fw_rules.h"
#include "conntrack.h"
#include "fragment.h"

/* Traffic a VM needs to exist on its network, which security groups leave
 * alone (as OpenStack's do): IPv6 neighbour discovery and MLD (anti-spoofing
 * still checks what the VM itself sends), and DHCP/DHCPv6 server replies
 * to the VM's client ports. */
static __always_inline int fw_infrastructure(const struct flow *f, __u8 dir)
{
	if (f->proto == IPPROTO_ICMPV6)
		return (f->icmp_type >= 130 && f->icmp_type <= 137) || f->icmp_type == 143;
	if (f->proto == IPPROTO_UDP && dir == DIR_INGRESS)
		return (f->sport == 67 && f->dport == 68) || (f->sport == 547 && f->dport == 546);
	if (f->proto == IPPROTO_UDP && dir == DIR_EGRESS)
		return (f->sport == 68 && f->dport == 67) || (f->sport == 546 && f->dport == 547);
	return 0;
}

/* Stateful verdict for an IP flow in direction DIR (rules MODE) on a NIC
 * whose firewall is on in at least one direction, a whole packet or a
 * first fragment: VERDICT_PASS or a DROP_* reason. */
static __always_inline int fw_connection(struct __sk_buff *skb, void *ct, struct ct_key *kp,
					 __u32 ifindex, const struct nic_config *cfg, __u8 dir,
					 __u8 mode, const struct flow *f, __u64 now)
{
	int tracked = f->proto == IPPROTO_TCP || f->proto == IPPROTO_UDP ||
		      f->proto == IPPROTO_SCTP || is_icmp_echo(f);
	int verdict;

	if (fw_infrastructure(f, dir)) {
		trace_note(dir, TRACE_INFRASTRUCTURE, 0);
		return VERDICT_PASS;
	}
	if (is_icmp_error(f) && ct_icmp_error_tracked(skb, ct, ifindex, dir, f)) {
		trace_note(dir, TRACE_RELATED, 0);
		return VERDICT_PASS;
	}
	if (tracked) {
		struct ct_entry *e;

		ct_key_of(kp, ifindex, dir, f);
		e = bpf_map_lookup_elem(ct, kp);
		if (e && ct_continue_entry(ct, kp, e, dir, f, now)) {
			/* egress: from_vm's anti-spoofing has passed it */
			if (dir == DIR_EGRESS)
				ct_vm_checked(e, cfg->generation);
			trace_note(dir, TRACE_ESTABLISHED, 0);
			return VERDICT_PASS;
		}
	}
	verdict = fw_rules(ifindex, cfg, dir, f);
	if (verdict != VERDICT_PASS)
		return verdict;
	if (!tracked)
		return VERDICT_PASS;
	if (f->proto == IPPROTO_TCP &&
	    (f->tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST)) != TCP_SYN)
		/* Only a SYN opens a connection; anything else must belong to
		 * one, unless this direction has no rules at all. */
		return mode == FW_OFF ? VERDICT_PASS : DROP_CT_INVALID;
	if ((f->proto == IPPROTO_ICMP || f->proto == IPPROTO_ICMPV6) && !is_echo_request(f))
		return VERDICT_PASS; /* a stray echo reply opens nothing */
	ct_open(ct, kp, dir, now, cfg->generation);
	return VERDICT_PASS;
}

/* Stateful verdict for an IP flow in direction DIR on a NIC whose firewall
 * is on in at least one direction, fragments included. */
static __always_inline int fw_stateful(struct __sk_buff *skb, __u32 ifindex,
				       const struct nic_config *cfg, __u8 dir, const struct flow *f)
{
	__u8 mode = dir == DIR_INGRESS ? cfg->fw_ingress : cfg->fw_egress;
	__u64 now = ct_now();
	struct ct_key k;
	__u32 id = 0;
	int verdict;
	void *ct = nic_ct(cfg);

	if (!ct)
		/* hookd creates the NIC's table before turning its firewall
		 * on, or queues it (attach = "staged", datapath/ct_queue.rs);
		 * without one, fail closed. */
		return DROP_CT_INVALID;
	if (mode == FW_OFF && f->later_frag) {
		trace_note(dir, TRACE_FW_OFF, 0);
		return VERDICT_PASS;
	}
	if (mode != FW_OFF && (f->frag_hdr || f->later_frag)) {
		/* lib/fragment.h: later fragments take their first's verdict. */
		if (!frag_check(skb, ct, &k, ifindex, dir, f, now, &id))
			return DROP_FRAGMENT;
		if (f->later_frag) {
			trace_note(dir, TRACE_FRAGMENT, 0);
			return VERDICT_PASS;
		}
		verdict = fw_connection(skb, ct, &k, ifindex, cfg, dir, mode, f, now);
		if (verdict == VERDICT_PASS)
			frag_remember(ct, &k, ifindex, dir, f, id, now);
		return verdict;
	}
	return fw_connection(skb, ct, &k, ifindex, cfg, dir, mode, f, now);
}

/* Is the firewall on in either direction? Without, nothing is parsed for
 * it or tracked. */
static __always_inline int fw_enabled(const struct nic_config *cfg)
{
	return cfg->fw_ingress != FW_OFF || cfg->fw_egress != FW_OFF;
}

/* The established fast path of frames from the VM. The verdict of anti-
 * spoofing on an IP packet that conntrack tracks depends only on the NIC's
 * policy and on fields of the connection's key (source address, protocol,
 * ports), so once a packet from the VM with that key has passed it under
 * the NIC's current policy generation (ct_entry.vm_checked, vm_gen), the
 * next ones skip it and the rules, as a tracked connection skips the rules
 * anyway. The MAC and VLAN checks (antispoof_l2) still run first.
 * 1: passed, the connection updated; 0: take the full path.
 *
 * A global function, which the verifier checks once on its own: inlined,
 * its early returns would multiply the states of the rest of from_vm past
 * the verifier's limit. */
__attribute__((noinline)) int fw_fast_egress(struct __sk_buff *skb, const struct nic_config *cfg,
					     struct flow *f)
{
	__u32 ifindex;
	struct ct_entry *e;
	struct ct_key k;
	void *ct;

	if (!skb || !cfg || !f)
		return 0;
	ifindex = skb->ifindex;
	if (!fw_enabled(cfg) || f->status != FLOW_OK || !f->ip || f->later_frag || f->frag_hdr)
		return 0;
	if (flow_addrs(skb, f) < 0 || flow_l4(skb, f) < 0)
		return 0;
	/* An IPv4-mapped IPv6 source has the key of an IPv4 connection, but
	 * anti-spoofing drops it (ip_spoof): the key does not decide that. */
	if (f->ip == 6 && is_v4_mapped(f->saddr))
		return 0;
	/* parse_l4 reads the 4 bytes of ports; anti-spoofing needs the whole
	 * 8-byte UDP header (else malformed), in the linear data as it reads it. */
	if (f->proto == IPPROTO_UDP && !pkt_ptr(skb, f->l4, sizeof(struct udphdr)))
		return 0;
	if (!(f->proto == IPPROTO_TCP || f->proto == IPPROTO_UDP || f->proto == IPPROTO_SCTP ||
	      is_icmp_echo(f)) ||
	    fw_infrastructure(f, DIR_EGRESS))
		return 0;
	ct = nic_ct(cfg);
	if (!ct)
		return 0;
	ct_key_of(&k, ifindex, DIR_EGRESS, f);
	e = bpf_map_lookup_elem(ct, &k);
	if (!e || !e->vm_checked || e->vm_gen != (__u32)cfg->generation)
		return 0;
	return ct_continue_entry(ct, &k, e, DIR_EGRESS, f, ct_now());
}

/* The stage: the verdict for a frame parse_frame() parsed into F (not
 * FLOW_BAD_L3), of a NIC with the firewall on, in direction DIR. */
static __always_inline int firewall(struct __sk_buff *skb, const struct nic_config *cfg, __u8 dir,
				    struct flow *f)
{
	if (f->status != FLOW_OK) /* FLOW_BAD_EXT */
		return DROP_MALFORMED;
	if (!f->ip)
		return VERDICT_PASS; /* ARP and the like: anti-spoofing's business */
	if (flow_addrs(skb, f) < 0 || flow_l4(skb, f) < 0)
		return DROP_MALFORMED;
	/* The rules and conntrack keep IPv4 addresses IPv4-mapped: an IPv6
	 * packet from or to ::ffff:a.b.c.d would be judged by IPv4 rules and
	 * connections. Such addresses never belong on a link (RFC 4291 2.5.5.2). */
	if (f->ip == 6 && (is_v4_mapped(f->saddr) || is_v4_mapped(f->daddr)))
		return DROP_MALFORMED;
	return fw_stateful(skb, skb->ifindex, cfg, dir, f);
}

#endif
