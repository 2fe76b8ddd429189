/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/* A program that does nothing: the baseline that benchmarks compare hookd's
 * programs against in the same run. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

SEC("classifier")
int empty_tc(struct __sk_buff *skb)
{
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
