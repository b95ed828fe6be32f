/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Proxy-only pods: which sockets belong to the sidecar proxy.
 *
 * The owner is the socket's sk_uid: the user that created it, and for an
 * accepted socket the user that created the listener (the child is a copy
 * of the listener). sock_ops often runs in softirq, so the current task
 * says nothing about the socket. sk_uid is not in struct bpf_sock; it is
 * read through bpf_skc_to_tcp_sock with a CO-RE relocated field, so the
 * check needs kernel BTF (the datapath_flow variant). Without it a proxy-only pod's sockets all stay on
 * TCP: we cannot tell the proxy's sockets from the application's, and the
 * application's must never enter the sockhash.
 */
#ifndef ACCEL_OWNER_H
#define ACCEL_OWNER_H

#include "accel_abi.h"
#include "endpoints.h"

#ifdef ACCEL_FLOW_CONTROL /* the variant built with CO-RE relocations */
#include <bpf/bpf_core_read.h>

struct kuid___accel {
	__u32 val;
};

/* Relocated against struct sock; read through the tcp_sock pointer, whose
 * first member (inet_conn.icsk_inet.sk) is that struct sock. */
struct sock___owner {
	struct kuid___accel sk_uid;
} __attribute__((preserve_access_index));
#endif

#define OWNER_OTHER 0
#define OWNER_PROXY 1
#define OWNER_UNKNOWN 2 /* no BTF: the owner cannot be read */

/* Is the socket owned by the sidecar proxy's user? */
static __always_inline int sock_owner(struct bpf_sock_ops *skops, const struct accel_config *cfg)
{
#ifdef ACCEL_FLOW_CONTROL
	/* A BTF pointer: constant offsets from it are allowed, unlike from the
	 * sock_ops context's sock pointer. */
	struct sock___owner *tp;
	struct bpf_sock *sk = skops->sk;
	struct kuid___accel uid;

	if (!sk || !cfg)
		return OWNER_UNKNOWN;
	tp = (void *)bpf_skc_to_tcp_sock(sk);
	/* One relocation (the member), the 4-byte kuid_t read whole. */
	if (!tp || bpf_core_read(&uid, sizeof(uid), &tp->sk_uid))
		return OWNER_UNKNOWN;
	return uid.val == cfg->proxy_uid ? OWNER_PROXY : OWNER_OTHER;
#else
	return OWNER_UNKNOWN;
#endif
}

/* May this socket of a pod take part? Always, unless the pod is proxy-only:
 * then only a proxy-owned socket of a connection to another pod. Inside the
 * pod (`peer_pod` == the pod's own) the other end is the application, or
 * the proxy talking to itself: nothing to gain, and a socket recorded only
 * to send over TCP would pay the sockmap send path for nothing. An owner
 * that cannot be read is not the proxy. */
static __always_inline int proxy_only_allowed(const struct ep_info *info, __u16 peer_pod,
					      int owner)
{
	if (!(info->flags & ACCEL_EP_PROXY_ONLY))
		return 1;
	if (info->pod && peer_pod == info->pod)
		return 0;
	return owner == OWNER_PROXY;
}

#endif /* ACCEL_OWNER_H */
