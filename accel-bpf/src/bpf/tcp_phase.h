/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Short TCP phases (datapath_flow variant).
 *
 * A redirecting writer never sleeps: each message is uncharged from its
 * send buffer as it lands in the peer's queue. Flow control's only brake is
 * TCP: with the peer's unread backlog over budget the writer sends by TCP,
 * whose window makes it wait, and it redirects again once every TCP byte is
 * acknowledged and read (flow.h). But a TCP writer waits only when its send
 * buffer is full, MiBs after autotuning: on one core it ran through MiBs of
 * the sockmap TCP path (slower than plain TCP) before it slept, and the
 * backlog grew out of cache.
 *
 * So a sender that flow control has sent to TCP once waits from then on
 * once a little is queued unsent (TCP_NOTSENT_LOWAT, as HTTP/2 servers set
 * it; set from sock_ops when its first TCP bytes are acknowledged): in a TCP
 * phase the writer sleeps after about the peer's window plus
 * ACCEL_PHASE_NOTSENT_LOWAT bytes, its reader catches up, and it
 * redirects again. The mark does not touch redirected bytes. It does shrink what a writer
 * can queue unsent over TCP, and a small mark slows small writes, so it is
 * TCP's own again once the socket sends by TCP for good or leaves the
 * sockhash; a mark the application set itself, before or after, is never
 * touched. Setting the option wakes the socket's waiters: guard.h says
 * when that is safe.
 * (TCP_WINDOW_CLAMP on the reader would bound the window too, but
 * autotuning raises the clamp with the receive buffer.)
 */
#ifndef ACCEL_TCP_PHASE_H
#define ACCEL_TCP_PHASE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "accel_abi.h"
#include "config.h"
#include "stats.h"

#ifdef ACCEL_FLOW_CONTROL

#define PHASE_SOL_TCP 6
#define PHASE_TCP_NOTSENT_LOWAT 25

struct tcp_sock___phase {
	__u32 notsent_lowat;
} __attribute__((preserve_access_index));

/* Flow control is on: phases to keep short. */
static __always_inline int phase_wanted(const struct accel_config *cfg)
{
	return cfg && cfg->flow_budget;
}

static __always_inline int phase_set_notsent(struct bpf_sock_ops *skops, int val)
{
	return bpf_setsockopt(skops, PHASE_SOL_TCP, PHASE_TCP_NOTSENT_LOWAT, &val, sizeof(val));
}

static __always_inline struct tcp_sock___phase *phase_tcp_sock(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk;

	return sk ? (void *)bpf_skc_to_tcp_sock(sk) : 0;
}

/* For a sender in its first TCP phase, unless the application chose its
 * own mark. Without the option (refused, or the application's) flow
 * control works as before: long TCP phases, the larger flow limit
 * (flow_limit). */
static __always_inline void phase_shorten(struct bpf_sock_ops *skops, struct accel_sock_state *st,
					  const struct accel_config *cfg)
{
	struct tcp_sock___phase *tp;

	if (!phase_wanted(cfg))
		return;
	tp = phase_tcp_sock(skops);
	if (!tp || tp->notsent_lowat)
		return;
	if (phase_set_notsent(skops, ACCEL_PHASE_NOTSENT_LOWAT)) {
		stat_inc(ACCEL_STAT_TCP_PHASE_REFUSED);
		return;
	}
	st->flags |= ACCEL_SF_TCP_NOTSENT_SET;
}

/* It sends by TCP for good, or left the sockhash: TCP's own unsent mark
 * (the sysctl's), unless the application has set one since. */
static __always_inline void phase_restore(struct bpf_sock_ops *skops, struct accel_sock_state *st)
{
	struct tcp_sock___phase *tp;

	if (!(st->flags & ACCEL_SF_TCP_NOTSENT_SET))
		return;
	st->flags &= ~ACCEL_SF_TCP_NOTSENT_SET;
	tp = phase_tcp_sock(skops);
	if (tp && tp->notsent_lowat == ACCEL_PHASE_NOTSENT_LOWAT)
		phase_set_notsent(skops, 0);
}

#else /* the peer's backlog cannot be read: no flow control, no phases */

static __always_inline int phase_wanted(const struct accel_config *cfg)
{
	return 0;
}

static __always_inline void phase_shorten(struct bpf_sock_ops *skops, struct accel_sock_state *st,
					  const struct accel_config *cfg)
{
}

static __always_inline void phase_restore(struct bpf_sock_ops *skops, struct accel_sock_state *st)
{
}

#endif /* ACCEL_FLOW_CONTROL */

#endif /* ACCEL_TCP_PHASE_H */
