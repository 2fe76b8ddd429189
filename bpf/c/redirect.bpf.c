/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/* Test fixture, not part of hookd's data path: redirects every frame to the
 * egress of TARGET_IFINDEX, the way another VM's program (or a future
 * router) would deliver a frame to a tap without the host stack. Tests use
 * it to check that such frames still pass the target VM's ingress policy. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

volatile const __u32 TARGET_IFINDEX = 0;

SEC("classifier")
int redirect_tc(struct __sk_buff *skb)
{
	return bpf_redirect(TARGET_IFINDEX, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
