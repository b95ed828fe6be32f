/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The application guard: keeps the kernel's sockmap receive behaviours away
 * from applications that would see them (pods in `auto` and `app-safe`).
 *
 * A socket in a sockhash reads through tcp_bpf_recvmsg, even when every
 * byte comes by TCP. A BLOCKING reader there gets EAGAIN after any wake-up
 * without data (its own FIN acknowledged, a peer's RST, send space), and no
 * BPF hook can make it wait again. So an application socket whose file is
 * blocking must not be in the sockhash while it can be read:
 *
 *  - connect(): the file is there at ACTIVE_ESTABLISHED; a blocking one is
 *    never recorded. A non-blocking one may still be a "connect with a
 *    timeout" that turns blocking before its first send: it is checked
 *    again at every send (sk_msg) and in its own sock_ops callbacks.
 *  - accept(): the child has no file at PASSIVE_ESTABLISHED. It is
 *    recorded, and its callbacks on every segment it sends or receives
 *    (header-option callbacks, asked for here) look at its file once
 *    accept() has given it one.
 *  - A socket seen blocking sends by TCP (redirect -> TCP is order-safe)
 *    and, at its next callback with nothing redirected to it unread, takes
 *    itself out of the sockhash, which gives it back the plain TCP proto.
 *    Its own blocking send runs such a callback before it returns.
 *
 * What may be redirected INTO an application socket is the pod's choice:
 * in `auto` nothing (it receives by TCP, so receive-side splice and
 * FIONREAD see every byte); in `app-safe` everything unless its file was
 * seen blocking (accel_reader, looked up by its peer before each redirect).
 * The proxy's sockets (owner --proxy-uid) are not guarded.
 *
 * File flags are read by CO-RE (kernel BTF): without it no application
 * socket of a guarded pod is recorded.
 */
#ifndef ACCEL_GUARD_H
#define ACCEL_GUARD_H

#include "accel_abi.h"
#include "maps.h"
#include "stats.h"
#include "endpoints.h"
#include "owner.h"
#include "tcp_phase.h"

#define FILE_NONBLOCKING 0
#define FILE_BLOCKING 1
#define FILE_NONE 2 /* not accepted yet, closed, or a kernel socket */

/* O_NONBLOCK on x86, arm64, riscv and every generic-ABI architecture. */
#define ACCEL_O_NONBLOCK 04000

/* Callbacks a guarded socket needs until it is proven non-blocking: one per
 * segment it sends (header-option length, run inside its own send) and per
 * segment it receives. Both run for every segment, acknowledgements
 * included, so a proven socket drops them for GUARD_CB_PROVEN: state
 * changes, and an RTT sample when its own TCP-sent data is acknowledged,
 * which costs nothing while it sends by redirect and still takes it out
 * soon after a late switch to blocking sent a message by TCP. */
#define GUARD_CB_FLAGS                                                                       \
	(BPF_SOCK_OPS_WRITE_HDR_OPT_CB_FLAG | BPF_SOCK_OPS_PARSE_ALL_HDR_OPT_CB_FLAG |        \
	 BPF_SOCK_OPS_STATE_CB_FLAG)
#define GUARD_CB_PROVEN (BPF_SOCK_OPS_STATE_CB_FLAG | BPF_SOCK_OPS_RTT_CB_FLAG)

#ifdef ACCEL_FLOW_CONTROL /* the variant built with CO-RE relocations */
#include "psock.h"

struct file___guard {
	unsigned int f_flags;
} __attribute__((preserve_access_index));

struct socket___guard {
	struct file___guard *file;
} __attribute__((preserve_access_index));

/* Relocated against struct sock, read through the tcp_sock pointer (see
 * owner.h). */
struct sock___guard {
	struct socket___guard *sk_socket;
} __attribute__((preserve_access_index));

static __always_inline int file_mode_of(struct bpf_sock *sk)
{
	struct socket___guard *sock = 0;
	struct file___guard *file = 0;
	struct sock___guard *s;
	unsigned int f_flags = 0;

	if (!sk)
		return FILE_NONE;
	s = (void *)bpf_skc_to_tcp_sock(sk);
	if (!s || bpf_core_read(&sock, sizeof(sock), &s->sk_socket) || !sock ||
	    bpf_core_read(&file, sizeof(file), &sock->file) || !file ||
	    bpf_core_read(&f_flags, sizeof(f_flags), &file->f_flags))
		return FILE_NONE;
	return (f_flags & ACCEL_O_NONBLOCK) ? FILE_NONBLOCKING : FILE_BLOCKING;
}

/* Redirected bytes still unread on this socket (leaving would free them).
 * Through the typed pointer: the context's socket pointer allows no
 * arithmetic. Unreadable counts as pending: never free what we cannot see. */
static __always_inline int guard_ingress_pending(struct bpf_sock *sk)
{
	struct tcp_sock *tp;

	if (!sk)
		return 1;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return 1;
	return psock_ingress_pending((unsigned long)tp) != PSOCK_EMPTY;
}

/* A socket can prove its ingress queue empty, so it may leave the sockhash. */
#define GUARD_CAN_LEAVE 1
#else
/* No BTF: a guarded pod's application sockets are never recorded. */
static __always_inline int file_mode_of(struct bpf_sock *sk)
{
	return FILE_NONE;
}

static __always_inline int guard_ingress_pending(struct bpf_sock *sk)
{
	return 1;
}

/* Nothing can prove an ingress queue empty: no socket leaves. */
#define GUARD_CAN_LEAVE 0
#endif

/* Is this socket of an end with `flags` an application socket under the
 * guard? `owner` is sock_owner()'s answer (OWNER_UNKNOWN counts as not the
 * proxy). */
static __always_inline int guard_applies(__u32 flags, int owner)
{
	return (flags & ACCEL_EP_APP_NONBLOCKING_ONLY) && owner != OWNER_PROXY;
}

/* What may be redirected into a socket of an end with `flags`. */
static __always_inline __u8 guard_ingress_of(__u32 flags, int guarded)
{
	if (!guarded)
		return ACCEL_INGRESS_OPEN;
	return (flags & ACCEL_EP_APP_SEND_ONLY) ? ACCEL_INGRESS_CLOSED :
						  ACCEL_INGRESS_UNLESS_BLOCKING;
}

/* One more socket of `pod` held back for `reason`. */
static __always_inline void held_inc(__u16 pod, __u16 reason)
{
	struct accel_pod_held_key key = { .pod = pod, .reason = reason };
	__u64 one = 1, *n;

	n = bpf_map_lookup_elem(&accel_pod_held, &key);
	if (!n) {
		if (!bpf_map_update_elem(&accel_pod_held, &key, &one, BPF_NOEXIST))
			return;
		n = bpf_map_lookup_elem(&accel_pod_held, &key); /* raced, or full */
		if (!n)
			return;
	}
	__sync_fetch_and_add(n, 1);
}

/* The socket is blocking (or has no more use in the sockhash): it sends by
 * TCP from now on and leaves at its next callback. Its peer stops
 * redirecting into it. Counted once. */
static __always_inline void guard_mark_leaving(struct accel_sock_state *st, int blocking)
{
	__u8 blocked = ACCEL_READER_BLOCKING;

	if (st->decision != ACCEL_DECISION_TCP) {
		st->decision = ACCEL_DECISION_TCP;
		if (blocking || st->reason == ACCEL_REASON_NONE)
			st->reason = ACCEL_REASON_BLOCKING;
	}
	if (st->flags & ACCEL_SF_LEAVING)
		return;
	st->flags |= ACCEL_SF_LEAVING;
	if (blocking) {
		stat_inc(ACCEL_STAT_APP_BLOCKING_LEFT);
		held_inc(st->local_pod, ACCEL_HELD_BLOCKING);
		if (st->ingress == ACCEL_INGRESS_UNLESS_BLOCKING)
			bpf_map_update_elem(&accel_reader, &st->cookie, &blocked, BPF_ANY);
	}
}

/* Setting TCP_NOTSENT_LOWAT wakes the socket's waiters, and a blocking
 * reader woken in tcp_bpf_recvmsg with nothing to read returns EAGAIN
 * (I-5), in any mode. So only a socket whose file is non-blocking, where
 * no read sleeps, is touched. */
static __always_inline int guard_may_wake(struct bpf_sock_ops *skops)
{
	return file_mode_of(skops->sk) == FILE_NONBLOCKING;
}

/* Short TCP phases (tcp_phase.h), once per socket. */
static __always_inline void guard_phase_shorten(struct bpf_sock_ops *skops,
						struct accel_sock_state *st)
{
	if (!(st->flags & ACCEL_SF_TCP_PHASE_TRIED) && guard_may_wake(skops)) {
		st->flags |= ACCEL_SF_TCP_PHASE_TRIED;
		phase_shorten(skops, st, accel_config_get());
	}
}

/* TCP's own unsent mark back; a socket that turned blocking keeps the
 * datapath's (known issue I-8). The flag first: most sockets never had
 * the mark, and this runs on every RTT callback of a TCP socket. */
static __always_inline void guard_phase_restore(struct bpf_sock_ops *skops,
						struct accel_sock_state *st)
{
	if ((st->flags & ACCEL_SF_TCP_NOTSENT_SET) && guard_may_wake(skops))
		phase_restore(skops, st);
}

/* sock_ops, the socket's own callback: out of the sockhash, back to the
 * plain TCP proto, its guard done; state changes stay asked for (its close
 * still cleans up). Returns 1, or 0 while redirected bytes wait to be read
 * (removal would free them: the next callback tries again). The caller has
 * made sure nothing more will be redirected to it. */
static __always_inline int sock_leave_sockhash(struct bpf_sock_ops *skops,
					       struct accel_sock_state *st)
{
	if (guard_ingress_pending(skops->sk))
		return 0;
	bpf_map_delete_elem(&accel_sockhash, &st->cookie);
	guard_phase_restore(skops, st);
	st->flags &= ~(ACCEL_SF_APP_GUARDED | ACCEL_SF_PROVEN);
	bpf_sock_ops_cb_flags_set(skops, (skops->bpf_sock_ops_cb_flags & ~GUARD_CB_FLAGS &
					  ~BPF_SOCK_OPS_RTT_CB_FLAG) |
						 BPF_SOCK_OPS_STATE_CB_FLAG);
	return 1;
}

/* sk_msg, before each send of a guarded socket: a connect-with-timeout
 * socket that has turned blocking is caught at its first send. */
static __always_inline void guard_on_send(struct sk_msg_md *msg, struct accel_sock_state *st)
{
	if (file_mode_of(msg->sk) != FILE_NONBLOCKING)
		guard_mark_leaving(st, 1);
	else
		st->flags |= ACCEL_SF_PROVEN;
}

/* sock_ops, in the socket's own callbacks (any segment it sends or
 * receives, state changes). */
static __always_inline void guard_on_callback(struct bpf_sock_ops *skops,
					      struct accel_sock_state *st)
{
	__u32 want;
	int mode;

	/* Not before the pairing token is on the wire. */
	if (!(st->flags & ACCEL_SF_APP_GUARDED) || (st->flags & ACCEL_SF_OPT_PENDING))
		return;
	if (!(st->flags & ACCEL_SF_LEAVING)) {
		mode = file_mode_of(skops->sk);
		if (mode == FILE_NONE)
			return; /* not accepted yet: nobody can read it */
		if (mode == FILE_BLOCKING) {
			guard_mark_leaving(st, 1);
		} else if (st->decision == ACCEL_DECISION_TCP &&
			   st->ingress == ACCEL_INGRESS_CLOSED) {
			/* Never redirects, never redirected to: nothing to
			 * keep it here for (it would only pay the sockmap send
			 * path). */
			guard_mark_leaving(st, 0);
		} else {
			/* Accepted sockets get their file, with its final
			 * flags, from accept4(); a connecting one may still
			 * turn blocking before its first send (sk_msg proves
			 * it there). */
			if (st->role == ACCEL_ROLE_PASSIVE)
				st->flags |= ACCEL_SF_PROVEN;
			want = (skops->bpf_sock_ops_cb_flags & ~GUARD_CB_FLAGS) | GUARD_CB_PROVEN;
			if ((st->flags & ACCEL_SF_PROVEN) && want != skops->bpf_sock_ops_cb_flags)
				bpf_sock_ops_cb_flags_set(skops, want);
			return;
		}
	}
	/* Leaving: the next segment or send tries again while redirected
	 * bytes wait to be read. */
	if (!sock_leave_sockhash(skops, st))
		return;
	/* Only now: a peer that finds no entry claims and redirects again,
	 * which must fail (the socket is gone), not land here. */
	bpf_map_delete_elem(&accel_reader, &st->cookie);
	stat_inc(ACCEL_STAT_APP_LEFT);
}

#endif /* ACCEL_GUARD_H */
