/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Who talks to whom: the pod of each socket end, and redirected traffic
 * per pod pair. Bookkeeping only: nothing here decides where bytes go.
 */
#ifndef ACCEL_TRAFFIC_H
#define ACCEL_TRAFFIC_H

#include "maps.h"
#include "stats.h"
#include "endpoints.h"

/* The pod owning a local socket end: by address, or for a loopback
 * address by the socket's network namespace (0: unknown). */
static __always_inline __u16 pod_of(const struct accel_endpoint_key *k, __u64 netns)
{
	struct accel_meshed_netns *ns;
	struct accel_endpoint *ep;

	if (ep_is_loopback(k)) {
		if (!netns)
			return 0;
		ns = bpf_map_lookup_elem(&accel_meshed_netns, &netns);
		return ns ? ns->pod : 0;
	}
	ep = bpf_map_lookup_elem(&accel_endpoints, k);
	return ep ? ep->pod : 0;
}

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
	/* This CPU's slot of a per-CPU value: no other writer. */
	t->msgs++;
	t->bytes += size;
}

#endif /* ACCEL_TRAFFIC_H */
