/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Who talks to whom: redirected traffic per pod pair (the pods come from
 * ep_lookup). Bookkeeping only: nothing here decides where bytes go.
 */
#ifndef ACCEL_TRAFFIC_H
#define ACCEL_TRAFFIC_H

#include "maps.h"
#include "stats.h"

static __always_inline void pod_traffic_add(__u16 src, __u16 dst, __u32 size)
{
	struct accel_pod_pair key = { .src = src, .dst = dst };
	struct accel_pod_traffic first = { .msgs = 1, .bytes = size };
	struct accel_pod_traffic *t;

	if (!src || !dst)
		return;
	t = bpf_map_lookup_elem(&accel_pod_traffic, &key);
	if (!t) {
		if (!bpf_map_update_elem(&accel_pod_traffic, &key, &first, BPF_NOEXIST))
			return;
		/* Created meanwhile on another CPU, or the map is full. */
		t = bpf_map_lookup_elem(&accel_pod_traffic, &key);
		if (!t) {
			stat_inc(ACCEL_STAT_POD_TRAFFIC_FULL);
			return;
		}
	}
	/* This CPU's slot, but a preempted writer on this CPU may be mid-update
	 * (see stat_add). */
	__sync_fetch_and_add(&t->msgs, 1);
	__sync_fetch_and_add(&t->bytes, size);
}

#endif /* ACCEL_TRAFFIC_H */
