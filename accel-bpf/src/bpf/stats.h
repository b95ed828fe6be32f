/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
#ifndef ACCEL_STATS_H
#define ACCEL_STATS_H

#include "maps.h"

static __always_inline void stat_add(enum accel_stat idx, __u64 n)
{
	__u32 key = idx;
	__u64 *v = bpf_map_lookup_elem(&accel_stats, &key);

	if (v)
		*v += n; /* per-CPU slot, preemption disabled: no atomic needed */
}

static __always_inline void stat_inc(enum accel_stat idx)
{
	stat_add(idx, 1);
}

#endif /* ACCEL_STATS_H */
