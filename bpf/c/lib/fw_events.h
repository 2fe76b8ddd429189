/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/* Logged packets: a rule with log="true" sends the packets it decides to
 * hookd through the hookd_events ring buffer, rate-limited per NIC. */
#ifndef HOOKD_FW_EVENTS_H
#define HOOKD_FW_EVENTS_H

#include "maps.h"
#include "flow.h"
#include "verdict.h"

/* At most LOG_PER_SEC logged packets per NIC and second reach hookd. */
#define LOG_PER_SEC 100

static __always_inline void fw_log(__u32 ifindex, __u8 dir, const struct fw_verdict *v,
				   const struct flow *f)
{
	struct log_window *w = bpf_map_lookup_elem(&hookd_log_rate, &ifindex);
	__u64 now = bpf_ktime_get_ns();
	struct fw_event *ev;

	if (!HOOKD_WRITES)
		return;
	if (!w) {
		struct log_window fresh = { .start = now };

		bpf_map_update_elem(&hookd_log_rate, &ifindex, &fresh, BPF_NOEXIST);
		w = bpf_map_lookup_elem(&hookd_log_rate, &ifindex);
		if (!w)
			return;
	}
	if (now - w->start > NS_PER_SEC) {
		w->start = now;
		w->count = 0;
	}
	if (w->count >= LOG_PER_SEC)
		return;
	__sync_fetch_and_add(&w->count, 1);
	ev = bpf_ringbuf_reserve(&hookd_events, sizeof(*ev), 0);
	if (!ev)
		return;
	ev->ts = now;
	ev->ifindex = ifindex;
	ev->dir = dir;
	ev->deny = v->deny;
	ev->rule = v->rule;
	ev->proto = f->proto;
	__builtin_memset(ev->pad, 0, sizeof(ev->pad));
	__builtin_memcpy(ev->saddr, f->saddr, 16);
	__builtin_memcpy(ev->daddr, f->daddr, 16);
	ev->sport = f->sport;
	ev->dport = f->dport;
	bpf_ringbuf_submit(ev, 0);
}

#endif
