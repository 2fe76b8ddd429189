/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/* Bounds-checked header access for tc programs. */
#ifndef HOOKD_PARSE_H
#define HOOKD_PARSE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Pointer to LEN bytes at OFF of the linear packet data, or NULL. */
static __always_inline void *pkt_ptr(struct __sk_buff *skb, __u32 off, __u32 len)
{
	void *end = (void *)(long)skb->data_end;
	void *data = (void *)(long)skb->data;
	void *p;

	/* skb->data is a __u32 field: without this, clang may copy it in a
	 * 32-bit subregister (-mcpu=v3), which the verifier sees as a scalar,
	 * no longer a packet pointer. */
	asm volatile("" : "+r"(data));
	/* Headers lie at the frame's start. The bound also lets the verifier
	 * track offsets it knows nothing of (read from memory in a global
	 * function, such as fw_fast_egress). */
	if (off > 0x3fff || len > 0x3fff)
		return NULL;
	p = data + off;

	/* Check and return the same pointer, so the verifier sees the bound
	 * on the register the caller dereferences. */
	if (p + len > end)
		return NULL;
	return p;
}

#endif
