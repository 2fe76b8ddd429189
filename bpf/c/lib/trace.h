/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/* The tracing build. `hookctl trace --live` runs a second build of these
 * programs, compiled with HOOKD_TRACE, through BPF_PROG_TEST_RUN on the
 * live maps. That build must leave no trace of its own: it writes no map
 * that another program reads (no conntrack entry or state, fragment entry,
 * counter, rule hit, log window or logged packet) and sends no frame (no
 * flood copies). Each write site is guarded by HOOKD_WRITES, which the
 * compiler folds away. Instead it notes, in its own unpinned map, why a
 * packet was dropped, or how each direction's firewall passed it. */
#ifndef HOOKD_TRACE_H
#define HOOKD_TRACE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "types.h"

#ifdef HOOKD_TRACE
#define HOOKD_WRITES 0

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct trace_note);
} hookd_trace SEC(".maps");

/* The firewall of direction DIR passed the packet as HOW (enum
 * trace_how), by rule RULE where a rule decided. */
static __always_inline void trace_note(__u8 dir, __u8 how, __u16 rule)
{
	__u32 zero = 0;
	struct trace_note *n = bpf_map_lookup_elem(&hookd_trace, &zero);

	if (n) {
		n->how[dir & 1] = how;
		n->rule[dir & 1] = rule;
	}
}

/* The program drops the packet for REASON (enum drop_reason). */
static __always_inline void trace_drop(int reason)
{
	__u32 zero = 0;
	struct trace_note *n = bpf_map_lookup_elem(&hookd_trace, &zero);

	if (n) {
		n->dropped = 1;
		n->reason = reason;
	}
}
#else
#define HOOKD_WRITES 1
static __always_inline void trace_note(__u8 dir, __u8 how, __u16 rule)
{
}

static __always_inline void trace_drop(int reason)
{
}
#endif

#endif
