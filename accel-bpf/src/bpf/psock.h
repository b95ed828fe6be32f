/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * A socket's psock: found from the socket (flow control and both drain
 * checks), and whether it still holds redirected messages (the two drain
 * checks: drain.bpf.c walks the sockhash, drain_probe.bpf.c is asked per
 * socket). The psock is not UAPI: fields are found by CO-RE relocation
 * against the running kernel's BTF, so no layout is hard-coded here.
 */
#ifndef ACCEL_PSOCK_H
#define ACCEL_PSOCK_H

#include <bpf/bpf_core_read.h>

struct list_head___psock {
	struct list_head___psock *next;
} __attribute__((preserve_access_index));

struct sk_psock___psock {
	struct list_head___psock ingress_msg;
} __attribute__((preserve_access_index));

struct sock___psock {
	void *sk_user_data;
} __attribute__((preserve_access_index));

/* Low bits of sk_user_data are flags (NOCOPY, BPF, PSOCK); pointers are
 * 8-byte aligned, so masking three bits is right on every kernel. */
#define SK_USER_DATA_PTRMASK (~7UL)

#define PSOCK_EMPTY 0
#define PSOCK_PENDING 1
#define PSOCK_UNREADABLE -1

/* The psock of the socket at kernel address `sk` into *psock (0: none).
 * Returns 0, or -1 when sk_user_data could not be read. */
static __always_inline int psock_of(unsigned long sk, unsigned long *psock)
{
	*psock = 0;
	if (bpf_probe_read_kernel(psock, sizeof(*psock),
				  (void *)(sk + bpf_core_field_offset(struct sock___psock, sk_user_data))))
		return -1;
	*psock &= SK_USER_DATA_PTRMASK;
	return 0;
}

/* Whether the socket at kernel address `sk` has redirected messages on its
 * psock's ingress list. A socket without a psock has nothing queued. */
static __always_inline int psock_ingress_pending(unsigned long sk)
{
	unsigned long psock, head, next = 0;

	if (psock_of(sk, &psock))
		return PSOCK_UNREADABLE;
	if (!psock)
		return PSOCK_EMPTY;
	head = psock + bpf_core_field_offset(struct sk_psock___psock, ingress_msg);
	if (bpf_probe_read_kernel(&next, sizeof(next), (void *)head))
		return PSOCK_UNREADABLE;
	return next != head ? PSOCK_PENDING : PSOCK_EMPTY;
}

#endif /* ACCEL_PSOCK_H */
