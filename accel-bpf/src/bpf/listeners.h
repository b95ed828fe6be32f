/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Which listening sockets belong to `auto` applications.
 *
 * An `auto` application receives by TCP, so the proxy's socket connected
 * to it never redirects: it only receives the application's redirected
 * sends. Recorded in accel_sockhash it would still pay the sk_msg send
 * path on every send; recorded in accel_rx_sockhash, which has no program,
 * it sends by plain TCP. sock_hash_update works only in the socket's own
 * ESTABLISHED callback, so the connecting side must know then, before its
 * peer exists: it looks the destination up here.
 */
#ifndef ACCEL_LISTENERS_H
#define ACCEL_LISTENERS_H

#include "maps.h"
#include "endpoints.h"

static __always_inline void listener_key(struct accel_app_listener_key *k, __u64 netns,
					 const struct accel_endpoint_key *addr, __u16 port)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->netns_cookie = netns;
	if (!ep_is_unspecified(addr))
		__builtin_memcpy(k->addr, addr->addr, sizeof(k->addr));
	k->port = port;
}

/* An `auto` application listens (or accepted) on `addr`:`port`. */
static __always_inline void listener_learn(__u64 netns, const struct accel_endpoint_key *addr,
					   __u16 port)
{
	struct accel_app_listener_key k;
	__u8 one = 1;

	listener_key(&k, netns, addr, port);
	if (!bpf_map_lookup_elem(&accel_app_listeners, &k))
		bpf_map_update_elem(&accel_app_listeners, &k, &one, BPF_ANY);
}

/* Is an `auto` application listening on `addr`:`port`, on that very
 * address or on every address? */
static __always_inline int listener_is_app(__u64 netns, const struct accel_endpoint_key *addr,
					   __u16 port)
{
	struct accel_app_listener_key k;

	listener_key(&k, netns, addr, port);
	if (bpf_map_lookup_elem(&accel_app_listeners, &k))
		return 1;
	__builtin_memset(k.addr, 0, sizeof(k.addr));
	return bpf_map_lookup_elem(&accel_app_listeners, &k) != 0;
}

#endif /* ACCEL_LISTENERS_H */
