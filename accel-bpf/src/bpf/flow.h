/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Flow control for redirected streams (compiled in the datapath_flow
 * variant, which needs kernel BTF for CO-RE).
 *
 * sk_msg charges redirected bytes to the receiver with no receive-buffer
 * bound. So before each redirect the sender looks at its peer: once the
 * peer's unread redirected bytes exceed the flow limit (flow_limit), the
 * sender uses TCP, whose window bounds the queue and blocks the writer as
 * plain TCP would (kept short: tcp_phase.h).
 * It returns to redirecting only when its own TCP bytes are all
 * acknowledged, the peer has read every TCP byte, and the redirected
 * backlog is under half the budget: then nothing sent by TCP can still be
 * behind, and order is kept.
 *
 * The kernel structs are not UAPI: fields are found by CO-RE relocation
 * against the running kernel's BTF. Newer kernels keep the unread total in
 * psock->msg_tot_len; older ones (5.10, 6.1) are measured by walking the
 * psock's ingress list, bounded: a list longer than the walk counts as far
 * behind. Reads race with the reader, so a result is a hint; order safety
 * never depends on it (see flow_can_resume).
 */
#ifndef ACCEL_FLOW_H
#define ACCEL_FLOW_H

#include <bpf/bpf_core_read.h>

#include "accel_abi.h"
#include "psock.h"
#include "tcp_phase.h"

struct list_head___accel {
	struct list_head___accel *next;
} __attribute__((preserve_access_index));

struct sk_msg_sg___accel {
	__u32 size;
} __attribute__((preserve_access_index));

struct sk_msg___accel {
	struct sk_msg_sg___accel sg;
	struct list_head___accel list;
} __attribute__((preserve_access_index));

struct sk_psock___accel {
	__u32 msg_tot_len;
	struct list_head___accel ingress_msg;
} __attribute__((preserve_access_index));

/* Queued messages walked at most, on kernels without msg_tot_len; a
 * longer queue reads as FLOW_UNREAD_FAR unread bytes. */
#define FLOW_WALK_MAX 64
#define FLOW_UNREAD_FAR 0xffffffffU

struct sock___accel {
	int sk_rcvbuf;
} __attribute__((preserve_access_index));

struct tcp_sock___accel {
	__u32 rcv_nxt;
	__u32 copied_seq;
	__u32 snd_una;
	__u32 snd_nxt;
	__u32 write_seq;
	__u64 bytes_sent;    /* payload sent by TCP, retransmissions included */
	__u64 bytes_retrans; /* payload retransmitted */
} __attribute__((preserve_access_index));

/* The peer is looked at once per budget/FLOW_CHECK_DIVISOR redirected bytes,
 * not on every message: the backlog can overshoot the budget by that much,
 * and small request/response exchanges never pay for the reads. */
#define FLOW_CHECK_DIVISOR 8

struct flow_peer {
	__u32 unread;   /* redirected bytes queued, not yet read */
	__u32 rcvbuf;
	__u32 rcv_nxt;
	__u32 copied_seq;
};

/* Unread redirected bytes queued on `psock`. */
static __always_inline int flow_unread(unsigned long psock, __u32 *unread)
{
	unsigned long head, node = 0, msg;
	__u64 total = 0;
	__u32 size;
	int i;

	if (bpf_core_field_exists(struct sk_psock___accel, msg_tot_len))
		return bpf_probe_read_kernel(unread, sizeof(*unread),
					     (void *)(psock + bpf_core_field_offset(struct sk_psock___accel,
										    msg_tot_len)));
	head = psock + bpf_core_field_offset(struct sk_psock___accel, ingress_msg);
	if (bpf_probe_read_kernel(&node, sizeof(node), (void *)head))
		return -1;
	for (i = 0; i < FLOW_WALK_MAX; i++) {
		if (!node || node == head) {
			*unread = total > 0xffffffffULL ? 0xffffffffU : (__u32)total;
			return 0;
		}
		msg = node - bpf_core_field_offset(struct sk_msg___accel, list);
		size = 0;
		if (bpf_probe_read_kernel(&size, sizeof(size),
					  (void *)(msg + bpf_core_field_offset(struct sk_msg___accel, sg) +
						   bpf_core_field_offset(struct sk_msg_sg___accel, size))) ||
		    bpf_probe_read_kernel(&node, sizeof(node), (void *)node))
			return -1;
		total += size;
	}
	*unread = FLOW_UNREAD_FAR; /* longer than we walk: far behind */
	return 0;
}

/* Returns 0 and fills *p, or -1 when anything could not be read. */
static __always_inline int flow_read_peer(__u64 peer_sk, struct flow_peer *p)
{
	unsigned long psock;
	int rcvbuf = 0;

	if (!peer_sk || psock_of(peer_sk, &psock) || !psock)
		return -1;
	if (flow_unread(psock, &p->unread) ||
	    bpf_probe_read_kernel(&rcvbuf, sizeof(rcvbuf),
				  (void *)(peer_sk + bpf_core_field_offset(struct sock___accel,
									   sk_rcvbuf))) ||
	    bpf_probe_read_kernel(&p->rcv_nxt, sizeof(p->rcv_nxt),
				  (void *)(peer_sk + bpf_core_field_offset(struct tcp_sock___accel,
									   rcv_nxt))) ||
	    bpf_probe_read_kernel(&p->copied_seq, sizeof(p->copied_seq),
				  (void *)(peer_sk + bpf_core_field_offset(struct tcp_sock___accel,
									   copied_seq))))
		return -1;
	p->rcvbuf = rcvbuf > 0 ? rcvbuf : 0;
	return 0;
}

/* Its TCP phases are short (tcp_phase.h). */
static __always_inline int flow_phases_short(const struct accel_sock_state *st)
{
	return st->flags & ACCEL_SF_TCP_NOTSENT_SET;
}

/* Writers whose redirected messages average less keep the larger limit
 * even with short phases: each TCP phase costs them more per byte (one
 * core, 16 KiB messages: 0.94x plain TCP at the budget, 1.20x at the
 * receive buffer; 64 KiB: 1.74x and 1.11x; bench/RESULTS.md). */
#define FLOW_SHORT_PHASE_MIN_MSG (32 << 10)

/* Unread redirected bytes the peer may hold. With short TCP phases (the
 * sender waits after a little unsent, tcp_phase.h) a writer of large
 * messages sleeps near the budget and its backlog stays in cache: the
 * budget.
 * Otherwise a TCP phase runs until the peer's receive buffer is full, so
 * a limit below that buffer would only send more bytes by TCP: the larger
 * of the two, which mirrors what plain TCP buffers for a slow reader. */
static __always_inline __u32 flow_limit(const struct flow_peer *p, __u32 budget,
					const struct accel_sock_state *st)
{
	if (flow_phases_short(st) &&
	    st->redirected_bytes >= FLOW_SHORT_PHASE_MIN_MSG * st->redirected_msgs)
		return budget;
	return p->rcvbuf > budget ? p->rcvbuf : budget;
}

/* The peer's reader is behind: its unread backlog is over the limit. */
static __always_inline int flow_peer_behind(const struct accel_sock_state *st, __u32 budget)
{
	struct flow_peer p;

	if (!budget || flow_read_peer(st->peer_sk, &p))
		return 0; /* flow control off, or no information: as before */
	return p.unread > flow_limit(&p, budget, st);
}

/* Safe and worthwhile to redirect again (see the header comment). */
static __always_inline int flow_can_resume(struct sk_msg_md *msg,
					   const struct accel_sock_state *st, __u32 budget)
{
	struct tcp_sock___accel *own = (void *)bpf_skc_to_tcp_sock(msg->sk);
	struct flow_peer p;

	if (!own || flow_read_peer(st->peer_sk, &p))
		return 0;
	return own->write_seq == own->snd_una && p.rcv_nxt == p.copied_seq &&
	       p.unread <= flow_limit(&p, budget, st) / 2;
}

#endif /* ACCEL_FLOW_H */
