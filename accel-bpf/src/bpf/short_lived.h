/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Short-lived connections stay on plain TCP.
 *
 * Recording a connection (socket storage, the sockhash insert with its
 * psock, the pairing token, the handshake option, the teardown at close)
 * costs more than a connection that sends one request and closes within a
 * millisecond gains from the redirect: connection churn ran at 0.87x-0.95x
 * of plain TCP with every connection recorded. So a connecting socket
 * whose destination (its network namespace, and the remote address and
 * port as the socket sees them) is in a fast run of short connections is
 * left unrecorded: plain TCP from its first byte, so nothing can reorder
 * and nothing needs cleaning up.
 *
 *   short   a recorded connecting socket that closes within
 *           SHORT_LIVED_LIFE_NS of its establishment having sent at most
 *           SHORT_LIVED_SENDS messages (by redirect or by TCP); its close
 *           is its own first FIN (or a reset), so the closing handshake,
 *           which waits for the peer, is not part of its life;
 *   streak  short closes to the destination, each within
 *           SHORT_LIVED_GAP_NS of the one before (the probes' gap once
 *           skipping, below); a long close ends it, a slow one restarts it;
 *   skip    while the streak is at least accel_config.short_lived_after
 *           and the last short close is recent, new connections stay
 *           unrecorded but for probes. A probe is recorded: its close
 *           keeps the streak or ends it. It is the 16th connection since
 *           the last probe, or a later one once the last short close is
 *           SHORT_LIVED_GAP_NS old: one in 16 at most, and about 100 a
 *           second at most, so a destination opened to 12,000 times a
 *           second records under 1 % of its connections, not 6 %.
 *
 * So a destination skips only while short connections to it close at
 * about 100/s or faster (the probes at one in SHORT_LIVED_PROBE_EVERY
 * then), and the rule lapses SHORT_LIVED_PROBE_EVERY * SHORT_LIVED_GAP_NS
 * (160 ms) after they stop. Health checks every few seconds never start a
 * streak. A connection left on TCP by mistake (a long-lived one opened to
 * the destination during such a run) runs at plain TCP's speed for its
 * life: it loses the speed-up, nothing else.
 *
 * The history is updated without atomics from any CPU: a lost update makes
 * a hint one step wrong, never a connection wrong.
 */
#ifndef ACCEL_SHORT_LIVED_H
#define ACCEL_SHORT_LIVED_H

#include "maps.h"
#include "stats.h"
#include "endpoints.h"
#include "listeners.h"

#define SHORT_LIVED_SENDS 2
#define SHORT_LIVED_LIFE_NS 1000000ULL	/* 1 ms */
#define SHORT_LIVED_GAP_NS 10000000ULL	/* 10 ms: 100 short closes a second */
#define SHORT_LIVED_PROBE_EVERY 16
/* Socket lifetimes are kept in units of 1024 ns, in 32 bits (73 minutes). */
#define SHORT_LIVED_UNIT_SHIFT 10

static __always_inline int short_lived_enabled(const struct accel_config *cfg)
{
	return cfg && cfg->short_lived_after;
}

/* Leave this connection on TCP? Counts it when so. Called first on connect,
 * ahead of every other lookup: a destination without history costs one
 * failed lookup. */
static __always_inline int short_lived_skip(const struct accel_config *cfg, __u64 netns,
					    const struct accel_endpoint_key *remote, __u16 port)
{
	struct accel_app_listener_key k;
	struct accel_short_lived *h;
	__u64 since_short;

	if (!short_lived_enabled(cfg))
		return 0;
	listener_key(&k, netns, remote, port);
	h = bpf_map_lookup_elem(&accel_short_lived, &k);
	if (!h || h->streak < cfg->short_lived_after)
		return 0;
	since_short = bpf_ktime_get_ns() - h->last_short_ns;
	if (since_short > SHORT_LIVED_PROBE_EVERY * SHORT_LIVED_GAP_NS)
		return 0;
	/* The probe's own short close restarts the gap. */
	if (++h->attempts >= SHORT_LIVED_PROBE_EVERY && since_short >= SHORT_LIVED_GAP_NS) {
		h->attempts = 0;
		return 0;
	}
	stat_inc(ACCEL_STAT_SHORT_LIVED_LEFT_ON_TCP);
	return 1;
}

/* A connecting socket was recorded: start its clock. */
static __always_inline void short_lived_start(const struct accel_config *cfg,
					      struct accel_sock_state *st)
{
	if (short_lived_enabled(cfg))
		st->established_units = (__u32)(bpf_ktime_get_ns() >> SHORT_LIVED_UNIT_SHIFT) | 1;
}

/* The socket's own close, once: the first FIN it sends (FIN_WAIT1, or
 * LAST_ACK after its peer's), or a reset that ends it without one. Its
 * sends are final from there. */
static __always_inline int short_lived_own_close(const struct bpf_sock_ops *skops)
{
	__u32 from = skops->args[0], to = skops->args[1];

	if (to == BPF_TCP_FIN_WAIT1 || to == BPF_TCP_LAST_ACK)
		return 1;
	return to == BPF_TCP_CLOSE && (from == BPF_TCP_ESTABLISHED || from == BPF_TCP_CLOSE_WAIT);
}

/* A recorded connecting socket closes: was it short, and what does that
 * make of its destination's streak? */
static __always_inline void short_lived_learn(struct bpf_sock_ops *skops,
					      const struct accel_config *cfg, __u64 netns,
					      const struct accel_sock_state *st)
{
	struct accel_endpoint_key remote;
	struct accel_app_listener_key k;
	struct accel_short_lived *h, fresh = {};
	__u64 now, gap_limit;
	__u32 lived;
	int is_short;

	if (!short_lived_enabled(cfg) || !st->established_units ||
	    !ep_remote_key_of(skops, &remote))
		return;
	now = bpf_ktime_get_ns();
	lived = (__u32)(now >> SHORT_LIVED_UNIT_SHIFT) - st->established_units;
	is_short = st->redirected_msgs + st->passed_msgs <= SHORT_LIVED_SENDS &&
		   lived < (SHORT_LIVED_LIFE_NS >> SHORT_LIVED_UNIT_SHIFT);
	listener_key(&k, netns, &remote, bpf_ntohl(skops->remote_port));
	h = bpf_map_lookup_elem(&accel_short_lived, &k);
	if (!h) {
		if (!is_short)
			return;
		fresh.streak = 1;
		fresh.last_short_ns = now;
		bpf_map_update_elem(&accel_short_lived, &k, &fresh, BPF_NOEXIST);
		return;
	}
	if (!is_short) {
		h->streak = 0;
		return;
	}
	/* Once skipping, only the probes report: they come 16 times slower. */
	gap_limit = SHORT_LIVED_GAP_NS;
	if (h->streak >= cfg->short_lived_after)
		gap_limit *= SHORT_LIVED_PROBE_EVERY;
	if (now - h->last_short_ns > gap_limit)
		h->streak = 1;
	else if (h->streak < ACCEL_SHORT_LIVED_STREAK_MAX)
		h->streak++;
	h->last_short_ns = now;
}

#endif /* ACCEL_SHORT_LIVED_H */
