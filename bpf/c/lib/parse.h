/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/* Bounds-checked header access for tc programs. */
#ifndef HOOKD_PARSE_H
#define HOOKD_PARSE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Pointer to LEN bytes at OFF of the linear packet data, or NULL. */
static __always_inline void *pkt_ptr(struct __sk_buff *skb, __u32 off, __u32 len)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;

	if (data + off + len > end)
		return NULL;
	return data + off;
}

#endif
