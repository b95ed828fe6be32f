/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
#ifndef ACCEL_STATS_H
#define ACCEL_STATS_H

#include "maps.h"

static __always_inline void stat_add(enum accel_stat idx, __u64 n)
{
	__u32 key = idx;
	__u64 *v = bpf_map_lookup_elem(&accel_stats, &key);

	/* Atomic although the slot is this CPU's: BPF programs run with
	 * migration disabled, not preemption (preempt=full, PREEMPT_RT), and
	 * sock_ops in softirq can interrupt a process-context program (sk_msg,
	 * or sock_ops on connect) on the same CPU. A plain += could lose
	 * increments that tests and the benchmark's proof of acceleration
	 * count on. Uncontended, it costs a few ns. */
	if (v)
		__sync_fetch_and_add(v, n);
}

static __always_inline void stat_inc(enum accel_stat idx)
{
	stat_add(idx, 1);
}

#endif /* ACCEL_STATS_H */
