/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Small-message streams leave the sockhash (datapath_flow variant).
 *
 * A writer of many small messages to a reader that is behind, and that
 * only reads once the writer stops (both on one CPU), is slower redirected
 * than over TCP: each sendmsg pays the sk_msg path and queues one message
 * on the peer, where TCP coalesces them into few segments and the reader
 * takes many per wake-up. (A reader reading alongside on another CPU is
 * faster redirected: that writer stays.) Sending by TCP from a sockhash socket
 * is not enough (tcp_bpf_sendmsg still runs); the writer must leave the
 * sockhash to get the plain TCP proto back.
 *
 * Leaving frees whatever was redirected INTO the writer and not yet read,
 * so its peer must first stop redirecting into it, and be known to have
 * stopped. That handshake runs in accel_reader, keyed by the writer:
 *
 *  - the peer claims the writer (ACCEL_READER_REDIRECTED_TO) before its
 *    first redirect into it, and looks at the entry before each one;
 *  - the writer asks (LEAVING over a claim; with no claim it inserts
 *    LEAVE_SEEN, and the peer's claim can then never be made);
 *  - the peer, at its next send, sees LEAVING, sends by TCP from then on
 *    (order-safe: the writer reads its ingress queue first) and writes
 *    LEAVE_SEEN;
 *  - the writer, in its RTT callback (its own TCP-sent bytes acknowledged)
 *    with LEAVE_SEEN and its ingress queue empty, deletes itself from the
 *    sockhash. The entry stays until it closes, so the peer never claims
 *    again.
 *
 * Only a writer whose peer is the sidecar proxy's socket leaves: once it
 * has left, the peer socket stays in the sockhash and reads TCP bytes
 * through tcp_bpf_recvmsg, where FIONREAD and receive-side splice do not
 * see them (DESIGN I-1, I-4). The proxy never uses either; an application
 * reader never meets this. The writer itself ends up a plain TCP socket.
 */
#ifndef ACCEL_STREAM_H
#define ACCEL_STREAM_H

#include "accel_abi.h"
#include "maps.h"
#include "stats.h"
#include "guard.h"
#include "owner.h"

/* sock_ops callbacks a recorded socket needs for this: an RTT sample when
 * its TCP-sent bytes are acknowledged (where a leaving writer leaves), and
 * state changes (where it is counted and its entry deleted). */
#define STREAM_CB_FLAGS (BPF_SOCK_OPS_RTT_CB_FLAG | BPF_SOCK_OPS_STATE_CB_FLAG)

/* accel_config says writers may leave. */
static __always_inline int stream_enabled(const struct accel_config *cfg)
{
#ifdef ACCEL_FLOW_CONTROL
	return cfg && cfg->stream_small_bytes;
#else
	return 0; /* the backlog of the peer cannot be read */
#endif
}

/* Roles, decided at establishment: a proxy socket claims its peer before
 * redirecting into it; a socket whose peer is the proxy's may leave.
 * Returns whether it has one (then it needs STREAM_CB_FLAGS). */
static __always_inline int stream_roles(struct accel_sock_state *st,
					const struct accel_config *cfg, int owner, int peer_proxy)
{
	if (!stream_enabled(cfg))
		return 0;
	if (owner == OWNER_PROXY)
		st->stream_flags |= ACCEL_STREAM_PROXY;
	if (peer_proxy)
		st->stream_flags |= ACCEL_STREAM_PEER_PROXY;
	return st->stream_flags != 0;
}

#ifdef ACCEL_FLOW_CONTROL
#include "flow.h"

/* Small sends in a row before the peer's backlog is looked at. A reader of
 * request/response traffic has read the last request when the next one is
 * written, so it is never found behind. */
#define STREAM_SMALL_RUN 16
/* Looks of a small-message writer at its reader are judged in windows of
 * this many (4,096 messages): the writer leaves when at least 3 in 4 found
 * bytes unread and none read since the look before. A reader that runs
 * only after the writer (one core) reads nothing during the writer's
 * turn on the CPU, so most looks stall (not all: the scheduler may switch
 * to a woken reader every few messages; at 7 in 8, one-core 64 B writers
 * stayed for 6-36 windows at 0.69x-0.89x); a reader on another CPU reads
 * between most looks and stalls only while it waits for a wake-up or the
 * CPU, a millisecond or two now and then, which a window of 64 looks was
 * short enough to be filled by (two cores: half the runs left;
 * bench/RESULTS.md). */
#define STREAM_SMALL_WINDOW 256
/* ... or at once when a look finds this much unread: a reader that far
 * behind does not keep up, wherever it runs (a reader alongside holds a
 * few KiB of small messages). */
#define STREAM_SMALL_BEHIND_BYTES (256 << 10)

/* A writer whose messages average at least this many bytes, and that flow
 * control has sent to TCP this many times, leaves too: on one core it overruns any budget within
 * a scheduler slice, and each TCP phase starts cold and goes through
 * tcp_bpf_sendmsg, slower than plain TCP (bench/RESULTS.md, "Where the time
 * goes"). 64 KiB writers switch as often and still gain: they stay. */
#define STREAM_LARGE_BYTES (128 << 10)
#define STREAM_LARGE_FLOW_TRIPS 4
/* ... or whose TCP phase has carried this many budgets without ending: a
 * writer that never pauses never has all its TCP bytes acknowledged, which
 * flow control waits for before it redirects again. */
#define STREAM_LONG_PHASE_BUDGETS 2
/* With short TCP phases (tcp_phase.h) a large writer sleeps in each phase
 * and redirects again hundreds of times a second, its phases a few MiB
 * long: it stays, unless a phase carries this many budgets, a reader that
 * never catches up (a writer woken on its reader's core can refill the
 * window before the reader has read everything, again and again). */
#define STREAM_SHORT_PHASE_MAX_BUDGETS 16
/* ... or, whatever its message size, that sent at least STREAM_TCP_SHARE_RATIO
 * times as many bytes by TCP as it redirected over a window of this many
 * budgets written, the first window (autotuning, the first long TCP phase)
 * aside: TCP phases through tcp_bpf_sendmsg are slower than plain TCP, and
 * a writer that spends most of its bytes in them loses to a plain TCP
 * socket. A stream whose reader keeps up enough for most bytes to stay
 * redirected stays (bench/RESULTS.md, "Where the time goes: one core and
 * the TCP share"). */
#define STREAM_TCP_SHARE_WINDOW_BUDGETS 64
#define STREAM_TCP_SHARE_RATIO 3

/* The sender is about to redirect into its peer: returns 1 if it may, 0 if
 * it sends by TCP from now on (its decision changed). Proxy sockets only:
 * only their peers ever leave. */
static __always_inline int stream_claim_peer(struct accel_sock_state *st)
{
	__u8 claim = ACCEL_READER_REDIRECTED_TO, *v;

	if (!(st->stream_flags & ACCEL_STREAM_PROXY))
		return 1;
	v = bpf_map_lookup_elem(&accel_reader, &st->peer_cookie);
	if (!v) {
		if (!bpf_map_update_elem(&accel_reader, &st->peer_cookie, &claim, BPF_NOEXIST))
			return 1;
		v = bpf_map_lookup_elem(&accel_reader, &st->peer_cookie); /* raced, or full */
		if (!v) {
			/* Unclaimed, the peer could leave under this redirect. */
			st->decision = ACCEL_DECISION_TCP;
			st->reason = ACCEL_REASON_CLAIM_FULL;
			stat_inc(ACCEL_STAT_STREAM_CLAIM_FULL);
			return 0;
		}
	}
	if (*v == ACCEL_READER_REDIRECTED_TO)
		return 1;
	st->decision = ACCEL_DECISION_TCP;
	if (*v == ACCEL_READER_BLOCKING) {
		st->reason = ACCEL_REASON_BLOCKING;
		return 0;
	}
	if (*v == ACCEL_READER_LEAVING)
		*v = ACCEL_READER_LEAVE_SEEN;
	st->reason = ACCEL_REASON_PEER_LEAVING;
	stat_inc(ACCEL_STAT_STREAM_PEER_LEAVING);
	return 0;
}

/* A redirect into the peer failed (it closed, or left for a blocking
 * reader): withdraw this socket's claim, which nobody else would delete. */
static __always_inline void stream_unclaim_peer(struct accel_sock_state *st)
{
	__u8 *v;

	if (!(st->stream_flags & ACCEL_STREAM_PROXY))
		return;
	v = bpf_map_lookup_elem(&accel_reader, &st->peer_cookie);
	if (v && *v == ACCEL_READER_REDIRECTED_TO)
		bpf_map_delete_elem(&accel_reader, &st->peer_cookie);
}

/* Ask to leave: returns 1, and the socket sends by TCP from now on; 0 if
 * it cannot (accel_reader full, or its reader is blocking: the guard takes
 * it out). */
static __always_inline int stream_ask_to_leave(struct accel_sock_state *st)
{
	__u8 seen = ACCEL_READER_LEAVE_SEEN, *v;

	v = bpf_map_lookup_elem(&accel_reader, &st->cookie);
	if (!v) {
		/* Unclaimed: the peer never redirected here, and now never will. */
		if (bpf_map_update_elem(&accel_reader, &st->cookie, &seen, BPF_NOEXIST)) {
			v = bpf_map_lookup_elem(&accel_reader, &st->cookie);
			if (!v)
				return 0; /* full: stay */
		}
	}
	if (v) {
		if (*v != ACCEL_READER_REDIRECTED_TO)
			return 0;
		*v = ACCEL_READER_LEAVING;
	}
	st->decision = ACCEL_DECISION_TCP;
	st->reason = ACCEL_REASON_STREAM;
	st->stream_flags |= ACCEL_STREAM_LEAVING;
	stat_inc(ACCEL_STAT_STREAM_WRITER_LEAVING);
	return 1;
}

/* Before a redirect of `size` bytes: is this a small-message stream to a
 * proxy whose reader is far behind, or not reading alongside? Then it asks
 * to leave. A reader that reads between the writer's looks runs on another
 * CPU while the writer writes: there redirected small messages keep pace
 * with TCP or beat it (two cores, bench/RESULTS.md), so the writer stays.
 * One that does not, with bytes waiting, runs after the writer (one core),
 * where TCP's coalescing wins (0.61x-0.65x redirected). */
static __always_inline void stream_small_writer_leaves(struct accel_sock_state *st, __u32 size,
						       __u32 small_bytes)
{
	struct flow_peer p;
	__u32 read;
	int stalled;

	if (!small_bytes || !(st->stream_flags & ACCEL_STREAM_PEER_PROXY))
		return;
	if (size >= small_bytes) {
		st->small_run = 0;
		return;
	}
	if (++st->small_run < STREAM_SMALL_RUN)
		return;
	st->small_run = 0;
	if (flow_read_peer(st->peer_sk, &p))
		return; /* cannot tell: stay */
	/* Also a queue too long to measure (kernels without msg_tot_len). */
	if (p.unread >= STREAM_SMALL_BEHIND_BYTES) {
		stream_ask_to_leave(st);
		return;
	}
	read = (__u32)st->redirected_bytes - p.unread;
	stalled = p.unread && read == st->peer_read_mark;
	st->peer_read_mark = read;
	st->small_stalls += stalled;
	if (++st->small_looks < STREAM_SMALL_WINDOW)
		return;
	if (st->small_stalls >= STREAM_SMALL_WINDOW / 4 * 3)
		stream_ask_to_leave(st);
	st->small_looks = 0;
	st->small_stalls = 0;
}

/* At the end of each window of STREAM_TCP_SHARE_WINDOW_BUDGETS written:
 * did this writer send most of the window's bytes by TCP? The first window
 * only starts the count. */
static __always_inline int stream_mostly_tcp(struct accel_sock_state *st, __u32 budget)
{
	__u64 written = st->redirected_bytes + st->passed_bytes, passed, redirected;
	int first = !st->share_mark;

	if (written - st->share_mark < STREAM_TCP_SHARE_WINDOW_BUDGETS * (__u64)budget)
		return 0;
	passed = st->passed_bytes - st->share_passed_mark;
	redirected = written - st->share_mark - passed;
	st->share_mark = written;
	st->share_passed_mark = st->passed_bytes;
	return !first && passed > STREAM_TCP_SHARE_RATIO * redirected;
}

/* Flow control has this writer on TCP: does it send most of its bytes by
 * TCP, or are its messages small (under small_bytes on average), or is it
 * a writer of large messages (its redirected messages average
 * STREAM_LARGE_BYTES or more) that flow control keeps sending to TCP, or
 * whose TCP phase does not end? Then it asks to leave. flow_unchecked
 * counts the phase's TCP bytes. */
static __always_inline void stream_flow_writer_leaves(struct accel_sock_state *st,
						      __u32 small_bytes, __u32 budget)
{
	if (!small_bytes || !(st->stream_flags & ACCEL_STREAM_PEER_PROXY))
		return;
	if (stream_mostly_tcp(st, budget)) {
		stream_ask_to_leave(st);
		return;
	}
	/* Small messages into a reader a whole limit behind, though it may
	 * read alongside (stream_small_writer_leaves): TCP coalesces them. */
	if (st->redirected_bytes < (__u64)small_bytes * st->redirected_msgs) {
		stream_ask_to_leave(st);
		return;
	}
	if (st->redirected_bytes < STREAM_LARGE_BYTES * st->redirected_msgs)
		return;
	if (flow_phases_short(st)) {
		if (st->flow_unchecked > STREAM_SHORT_PHASE_MAX_BUDGETS * (__u64)budget)
			stream_ask_to_leave(st);
		return;
	}
	if (st->flow_switches >= 2 * STREAM_LARGE_FLOW_TRIPS - 1 ||
	    st->flow_unchecked > STREAM_LONG_PHASE_BUDGETS * (__u64)budget)
		stream_ask_to_leave(st);
}

/* sock_ops, the RTT callback of a writer that asked to leave: leave once
 * the peer has stopped and nothing redirected here is unread. Otherwise the
 * next ACK tries again. Its entry stays until it closes, where its bytes
 * are counted. */
static __always_inline void stream_try_leave(struct bpf_sock_ops *skops,
					     struct accel_sock_state *st)
{
	__u8 *v = bpf_map_lookup_elem(&accel_reader, &st->cookie);

	if (!v || *v != ACCEL_READER_LEAVE_SEEN || !sock_leave_sockhash(skops, st))
		return;
	st->stream_flags = (st->stream_flags & ~ACCEL_STREAM_LEAVING) | ACCEL_STREAM_LEFT;
	stat_inc(ACCEL_STAT_STREAM_WRITER_LEFT);
}

/* sock_ops, a state change of a socket that left: its bytes sent by TCP
 * since, once, when it stops sending (FIN or reset), so that redirected +
 * passed + these are every byte its application wrote. TCP sent each byte
 * once plus its retransmissions, or holds it unsent; sk_msg passed the
 * rest. */
static __always_inline void stream_count_left_bytes(struct bpf_sock_ops *skops,
						    struct accel_sock_state *st)
{
	__u32 old = skops->args[0], new = skops->args[1];
	struct bpf_sock *sk = skops->sk;
	struct tcp_sock___accel *tp;
	__u64 written;

	if ((st->stream_flags & (ACCEL_STREAM_LEFT | ACCEL_STREAM_COUNTED)) != ACCEL_STREAM_LEFT ||
	    (old != BPF_TCP_ESTABLISHED && old != BPF_TCP_CLOSE_WAIT) ||
	    new == BPF_TCP_CLOSE_WAIT || !sk)
		return;
	st->stream_flags |= ACCEL_STREAM_COUNTED;
	tp = (void *)bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return;
	written = tp->bytes_sent - tp->bytes_retrans + (__u32)(tp->write_seq - tp->snd_nxt);
	if (written > st->passed_bytes)
		stat_add(ACCEL_STAT_STREAM_WRITER_LEFT_BYTES, written - st->passed_bytes);
}

#else
static __always_inline int stream_claim_peer(struct accel_sock_state *st)
{
	return 1;
}

static __always_inline void stream_unclaim_peer(struct accel_sock_state *st)
{
}

static __always_inline void stream_try_leave(struct bpf_sock_ops *skops,
					     struct accel_sock_state *st)
{
}

static __always_inline void stream_count_left_bytes(struct bpf_sock_ops *skops,
						    struct accel_sock_state *st)
{
}
#endif /* ACCEL_FLOW_CONTROL */

#endif /* ACCEL_STREAM_H */
