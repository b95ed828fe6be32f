/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Which addresses take part: loopback (in any namespace) and the local
 * endpoints the daemon lists. Everything else is never recorded.
 */
#ifndef ACCEL_ENDPOINTS_H
#define ACCEL_ENDPOINTS_H

#include <bpf/bpf_endian.h>
#include "maps.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

/* IPv4 as ::ffff:a.b.c.d; ip4 is in network byte order as the kernel has it. */
static __always_inline void ep_key_v4(struct accel_endpoint_key *k, __u32 ip4)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->addr[10] = 0xff;
	k->addr[11] = 0xff;
	__builtin_memcpy(&k->addr[12], &ip4, 4);
}

static __always_inline void ep_key_v6(struct accel_endpoint_key *k, __u32 w0, __u32 w1,
				      __u32 w2, __u32 w3)
{
	__builtin_memcpy(&k->addr[0], &w0, 4);
	__builtin_memcpy(&k->addr[4], &w1, 4);
	__builtin_memcpy(&k->addr[8], &w2, 4);
	__builtin_memcpy(&k->addr[12], &w3, 4);
}

static __always_inline int ep_is_v4mapped(const struct accel_endpoint_key *k)
{
	__u64 hi;
	__u32 mid;

	__builtin_memcpy(&hi, &k->addr[0], 8);
	__builtin_memcpy(&mid, &k->addr[8], 4);
	return hi == 0 && mid == bpf_htonl(0x0000ffff);
}

/* Addresses that never leave a pod's network namespace: 127.0.0.0/8 (which
 * includes Istio's IPv4 inbound passthrough source 127.0.0.6), ::1, and ::6,
 * the IPv6 passthrough source Istio assigns to every meshed pod's lo. */
static __always_inline int ep_is_loopback(const struct accel_endpoint_key *k)
{
	__u64 hi, lo;

	if (ep_is_v4mapped(k))
		return k->addr[12] == 127;
	__builtin_memcpy(&hi, &k->addr[0], 8);
	__builtin_memcpy(&lo, &k->addr[8], 8);
	return hi == 0 && (lo == bpf_cpu_to_be64(1) || lo == bpf_cpu_to_be64(6));
}

/* 0.0.0.0 or :: (a listener on every address). */
static __always_inline int ep_is_unspecified(const struct accel_endpoint_key *k)
{
	__u64 hi, lo;
	__u32 v4;

	if (ep_is_v4mapped(k)) {
		__builtin_memcpy(&v4, &k->addr[12], 4);
		return v4 == 0;
	}
	__builtin_memcpy(&hi, &k->addr[0], 8);
	__builtin_memcpy(&lo, &k->addr[8], 8);
	return hi == 0 && lo == 0;
}

static __always_inline __u32 ctx_u32(const __u32 *p)
{
	return *(const volatile __u32 *)p;
}

/* Fills the key of the socket's remote end; returns 0 for anything but
 * TCP over IPv4/IPv6 (sock_ops only runs for TCP, but stay defensive). */
static __always_inline int ep_remote_key_of(const struct bpf_sock_ops *skops,
					    struct accel_endpoint_key *remote)
{
	if (skops->family == AF_INET) {
		ep_key_v4(remote, skops->remote_ip4);
		return 1;
	}
	if (skops->family == AF_INET6) {
		/* One 4-byte load per word: the context only allows u32 access
		 * here, and clang would otherwise merge neighbouring loads. */
		ep_key_v6(remote, ctx_u32(&skops->remote_ip6[0]), ctx_u32(&skops->remote_ip6[1]),
			  ctx_u32(&skops->remote_ip6[2]), ctx_u32(&skops->remote_ip6[3]));
		return 1;
	}
	return 0;
}

/* Fills the keys of the socket's two ends; returns 0 as ep_remote_key_of. */
static __always_inline int ep_keys_of(const struct bpf_sock_ops *skops,
				      struct accel_endpoint_key *local,
				      struct accel_endpoint_key *remote)
{
	if (!ep_remote_key_of(skops, remote))
		return 0;
	if (skops->family == AF_INET)
		ep_key_v4(local, skops->local_ip4);
	else
		ep_key_v6(local, ctx_u32(&skops->local_ip6[0]), ctx_u32(&skops->local_ip6[1]),
			  ctx_u32(&skops->local_ip6[2]), ctx_u32(&skops->local_ip6[3]));
	return 1;
}

/* What the maps say about one local end of a socket. */
struct ep_info {
	__u32 flags; /* ACCEL_EP_* (0 for loopback on a standalone host) */
	__u16 pod;   /* the pod owning it (0: not a known pod) */
};

/* Does the end take part, and for which pod? Loopback ends in namespace
 * `netns` take part everywhere on a standalone host (with the node's mode,
 * `default_flags`, where the namespace is not a listed pod's); on a node
 * only inside meshed pods, which needs the socket's namespace (0: the
 * kernel cannot tell, so it does not). Other addresses take part when the
 * daemon listed them. One lookup serves both questions. */
static __always_inline int ep_lookup(const struct accel_endpoint_key *k, __u64 netns,
				     int meshed_only, __u32 default_flags, struct ep_info *info)
{
	struct accel_meshed_netns *ns;
	struct accel_endpoint *ep;

	info->flags = 0;
	info->pod = 0;
	if (ep_is_loopback(k)) {
		ns = netns ? bpf_map_lookup_elem(&accel_meshed_netns, &netns) : 0;
		if (ns) {
			info->flags = ns->flags;
			info->pod = ns->pod;
		} else {
			info->flags = default_flags;
		}
		return ns || !meshed_only;
	}
	ep = bpf_map_lookup_elem(&accel_endpoints, k);
	if (!ep || !(ep->flags & ACCEL_EP_MESHED))
		return 0;
	info->flags = ep->flags;
	info->pod = ep->pod;
	return 1;
}

/* Is the destination of a pod's connect() on this node, and in which pod?
 * A loopback destination is in the pod itself; a listed address in its pod
 * (*peer_pod, 0 for an address without one); anything else is elsewhere.
 * An application's destination says little (iptables sends it to the
 * sidecar afterwards); the proxy's own connections go where they say. */
static __always_inline int ep_dest_on_node(const struct ep_info *local,
					   const struct accel_endpoint_key *remote, __u16 *peer_pod)
{
	struct accel_endpoint *ep;

	*peer_pod = 0;
	if (ep_is_loopback(remote)) {
		*peer_pod = local->pod;
		return 1;
	}
	ep = bpf_map_lookup_elem(&accel_endpoints, remote);
	if (!ep || !(ep->flags & ACCEL_EP_MESHED))
		return 0;
	*peer_pod = ep->pod;
	return 1;
}

static __always_inline int ep_port_excluded(const struct accel_endpoint_key *pod, __u32 port,
					    __u8 direction)
{
	struct accel_excluded_port_key key = { .port = port, .direction = direction };

	__builtin_memcpy(key.addr, pod->addr, sizeof(key.addr));
	return bpf_map_lookup_elem(&accel_excluded_ports, &key) != 0;
}

static __always_inline int ep_cidr_excluded(const struct accel_endpoint_key *pod,
					    const struct accel_endpoint_key *dst)
{
	struct accel_excluded_cidr_key key = { .prefixlen = 256 };

	__builtin_memcpy(key.pod, pod->addr, sizeof(key.pod));
	__builtin_memcpy(key.dst, dst->addr, sizeof(key.dst));
	return bpf_map_lookup_elem(&accel_excluded_cidrs, &key) != 0;
}

#endif /* ACCEL_ENDPOINTS_H */
