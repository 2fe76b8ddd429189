/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/* The one verdict convention of hookd's data path. Every stage (anti-
 * spoofing, the firewall, and later an L2 responder, a router or an
 * encapsulation stage) takes the frame's parsed headers (struct flow) and
 * returns a verdict: VERDICT_PASS hands the frame to the next stage; any
 * other value is an enum drop_reason (types.h), which ends it there: the
 * program counts it in nic_stats.drops and drops the frame. */
#ifndef HOOKD_VERDICT_H
#define HOOKD_VERDICT_H

#include "types.h"

#define VERDICT_PASS (-1)
/* The stage has sent the frame on itself (bpf_redirect, to another tap or
 * back to the VM as an answer): the program returns TC_ACT_REDIRECT. */
#define VERDICT_REDIRECT (-2)

#define NS_PER_SEC 1000000000ULL

#endif
