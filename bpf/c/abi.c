/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/* Not a program: compiled by bpf/build.rs only for its BTF, which carries
 * every enum and struct of lib/types.h (clang emits BTF only for types that
 * something uses, and hookd.bpf.c uses some of them only through sizeof).
 * build.rs generates the Rust side of the kernel interface from it, and
 * fails when types.h defines a type that is not anchored here. */
#include "lib/types.h"

#define ANCHOR(type, name) type *abi_##name

ANCHOR(enum nic_flag, nic_flag);
ANCHOR(enum drop_reason, drop_reason);
ANCHOR(enum stats_size, stats_size);
ANCHOR(enum fw_mode, fw_mode);
ANCHOR(enum fw_kind, fw_kind);
ANCHOR(enum direction, direction);
ANCHOR(enum lpm_fixed_bits, lpm_fixed_bits);
ANCHOR(enum map_size, map_size);
ANCHOR(enum ct_state, ct_state);
ANCHOR(enum ct_timeout_s, ct_timeout_s);
ANCHOR(enum ct_key_kind, ct_key_kind);
ANCHOR(enum net_addr_kind, net_addr_kind);
ANCHOR(enum route_kind, route_kind);
ANCHOR(enum route_fixed_bits, route_fixed_bits);

ANCHOR(struct nic_config, nic_config);
ANCHOR(struct fw_class_key, fw_class_key);
ANCHOR(struct fw_rule_key, fw_rule_key);
ANCHOR(struct fw_verdict, fw_verdict);
ANCHOR(struct fw_hit_key, fw_hit_key);
ANCHOR(struct trace_note, trace_note);
ANCHOR(enum trace_how, trace_how);
ANCHOR(struct fw_event, fw_event);
ANCHOR(struct log_window, log_window);
ANCHOR(struct ct_key, ct_key);
ANCHOR(struct ct_entry, ct_entry);
ANCHOR(struct addr_key, addr_key);
ANCHOR(struct nic_stats, nic_stats);
ANCHOR(struct nic_net, nic_net);
ANCHOR(struct net_addr_key, net_addr_key);
ANCHOR(struct net_addr, net_addr);
ANCHOR(struct route_key, route_key);
ANCHOR(struct route, route);
ANCHOR(struct dhcp_lease, dhcp_lease);
ANCHOR(struct net_stats, net_stats);
ANCHOR(struct uplink, uplink);
ANCHOR(struct net_members, net_members);
ANCHOR(struct ra_info, ra_info);
ANCHOR(enum ra_flag, ra_flag);
ANCHOR(enum ra_sizes, ra_sizes);
ANCHOR(enum net_counter, net_counter);
ANCHOR(enum answer_mark, answer_mark);
