/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The sockmap datapath: sock_ops records exactly paired local TCP sockets,
 * sk_msg hands each sendmsg of a recorded socket to its peer's receive queue.
 *
 * Helpers, and why each is needed:
 *   bpf_get_socket_cookie     stable per-boot socket identity: the sockhash key
 *   bpf_sock_hash_update      record the socket (sock_ops may only add itself)
 *   bpf_sk_storage_get        per-socket decision and peer, freed with the socket
 *   bpf_get_prandom_u32       the pairing token (unguessable, never reused)
 *   bpf_ktime_get_ns          how long a connecting socket lived, and when
 *                             its destination last saw a short one
 *                             (short_lived.h)
 *   bpf_map_{lookup,update,delete}_elem   offers/answers, config, counters
 *   bpf_sock_ops_cb_flags_set ask for header-option and state callbacks on
 *                             our active sockets only, and drop them after use
 *   bpf_reserve_hdr_opt / bpf_store_hdr_opt / bpf_load_hdr_opt
 *                             carry the token in the handshake's final ACK
 *   bpf_get_netns_cookie      (5.15+, optional) loopback pairs in one namespace
 *   bpf_msg_redirect_hash     the redirect itself, BPF_F_INGRESS to the peer
 * (traffic.h: map lookups/updates only, for the per pod pair counters)
 * and in the flow-control variant (flow.h, owner.h):
 *   bpf_probe_read_kernel     the peer's unread redirected bytes, receive
 *                             buffer and read position (CO-RE offsets)
 *   bpf_skc_to_tcp_sock       the sender's own TCP sequence state; the
 *                             owner uid of a proxy-only pod's socket; an
 *                             application socket's file flags (guard.h)
 *   bpf_map_delete_elem       (sockhash) a guarded socket, or a small-message
 *                             stream writer, leaving (guard.h, stream.h)
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "accel_abi.h"
#include "maps.h"
#include "stats.h"
#include "config.h"
#include "endpoints.h"
#include "pairing.h"
#include "traffic.h"
#include "owner.h"
#include "guard.h"
#include "listeners.h"
#include "stream.h"
#include "short_lived.h"
#ifdef ACCEL_FLOW_CONTROL
#include "flow.h"
#endif

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline __u64 netns_cookie_of(struct bpf_sock_ops *skops)
{
	/* Folded away by the verifier when the kernel lacks the helper here. */
	if (accel_have_netns_cookie)
		return bpf_get_netns_cookie(skops);
	return 0;
}

static __always_inline struct accel_sock_state *state_create(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk;
	struct accel_sock_state *st;

	if (!sk)
		return 0;
	st = bpf_sk_storage_get(&accel_sock_state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		stat_inc(ACCEL_STAT_STATE_FAILED);
	return st;
}

/* Kernel address of this socket, for the peer's flow-control hints. */
static __always_inline __u64 sk_addr_of(struct bpf_sock_ops *skops)
{
#ifdef ACCEL_FLOW_CONTROL
	return (__u64)(unsigned long)skops->sk;
#else
	return 0;
#endif
}

static __always_inline struct accel_sock_state *state_of(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk;

	if (!sk)
		return 0;
	return bpf_sk_storage_get(&accel_sock_state, sk, 0, 0);
}

/* One more sender whose bytes to an `auto` application of `pod` go by TCP. */
static __always_inline void held_back_for_peer(__u16 pod)
{
	stat_inc(ACCEL_STAT_APP_RECEIVES_BY_TCP);
	held_inc(pod, ACCEL_HELD_APP_READS_TCP);
}

/* Records the socket, keyed by its cookie: in accel_sockhash, or in
 * accel_rx_sockhash when it will only ever be redirected to (`rx_only`).
 * Returns its state, or NULL when the socket stays on plain TCP. */
static __always_inline struct accel_sock_state *record_socket(struct bpf_sock_ops *skops,
							      __u64 *cookie, int rx_only)
{
	struct accel_sock_state *st;
	long err;

	/* Data already sent by TCP (TCP Fast Open data in the SYN, or a
	 * server's TFO reply) could be overtaken by redirected bytes in the
	 * peer's receive queue. */
	if (skops->data_segs_out) {
		stat_inc(ACCEL_STAT_REFUSED_EARLY_DATA);
		return 0;
	}
	st = state_create(skops);
	if (!st)
		return 0;
	*cookie = bpf_get_socket_cookie(skops);
	if (rx_only)
		err = bpf_sock_hash_update(skops, &accel_rx_sockhash, cookie, BPF_NOEXIST);
	else
		err = bpf_sock_hash_update(skops, &accel_sockhash, cookie, BPF_NOEXIST);
	if (err) {
		stat_inc(ACCEL_STAT_RECORD_FAILED);
		return 0;
	}
	st->cookie = *cookie;
	if (rx_only) {
		/* It never redirects: its peer is an `auto` application,
		 * which receives by TCP. */
		st->flags |= ACCEL_SF_RX_ONLY;
		st->decision = ACCEL_DECISION_TCP;
		st->reason = ACCEL_REASON_APP_READS_TCP;
		stat_inc(ACCEL_STAT_RECORDED_RX_ONLY);
	}
	return st;
}

/* connect() completed. Record the socket and offer a token if its local end
 * takes part; where the connection really goes (after NAT) is for the
 * passive side to prove. */
static __always_inline void on_active_established(struct bpf_sock_ops *skops)
{
	struct accel_endpoint_key local, remote;
	struct accel_pair_key pkey = { .stage = ACCEL_PAIR_OFFER };
	struct accel_pair_value offer = {};
	struct accel_sock_state *st;
	struct ep_info info;
	__u64 cookie;
	__u16 peer_pod;
	int dest_here, owner = OWNER_UNKNOWN;
	long err;

	struct accel_config *cfg;
	__u64 netns;
	int guarded, file, rx_only;
	__u32 cb_flags;

	cfg = accel_config_get();
	if (cfg_passthrough(cfg) || !ep_keys_of(skops, &local, &remote))
		return;
	netns = netns_cookie_of(skops);
	if (short_lived_skip(cfg, netns, &remote, bpf_ntohl(skops->remote_port)))
		return;
	if (!ep_lookup(&local, netns, cfg_loopback_meshed_only(cfg), cfg_default_ep_flags(cfg),
		       &info))
		return;
	dest_here = ep_dest_on_node(&info, &remote, &peer_pod);
	if ((info.flags & (ACCEL_EP_PROXY_ONLY | ACCEL_EP_APP_NONBLOCKING_ONLY)) || !dest_here ||
	    stream_enabled(cfg))
		owner = sock_owner(skops, cfg);
	if (!proxy_only_allowed(&info, peer_pod, owner)) {
		stat_inc(ACCEL_STAT_REFUSED_PROXY_ONLY);
		return;
	}
	/* The proxy connecting to another node (or an unlisted address): no
	 * peer here can claim the offer, so the socket would only pay the
	 * sockmap send path. An application's socket is still recorded: its
	 * destination is rewritten to the sidecar after it was chosen. */
	if (!dest_here && owner == OWNER_PROXY) {
		stat_inc(ACCEL_STAT_PROXY_OFF_NODE);
		return;
	}
	/* Istio's opt-outs apply to the pod's own connect(): the socket still
	 * sees the original destination, whatever NAT did to the packets. */
	if (!ep_is_loopback(&local) &&
	    (ep_port_excluded(&local, bpf_ntohl(skops->remote_port), ACCEL_DIR_OUTBOUND) ||
	     ep_cidr_excluded(&local, &remote))) {
		stat_inc(ACCEL_STAT_EXCLUDED);
		return;
	}
	/* A blocking application socket never enters the sockhash (guard.h). */
	guarded = guard_applies(info.flags, owner);
	if (guarded) {
		file = file_mode_of(skops->sk);
		if (file != FILE_NONBLOCKING) {
			stat_inc(ACCEL_STAT_APP_BLOCKING_SKIPPED);
			held_inc(info.pod,
				 file == FILE_BLOCKING ? ACCEL_HELD_BLOCKING : ACCEL_HELD_NO_FILE);
			return;
		}
	}
	/* Connecting to an `auto` application in its own namespace (the
	 * proxy's inbound leg): it receives by TCP, so this socket will
	 * never redirect; it is only a redirect target, and its own sends
	 * skip sk_msg (listeners.h). */
	rx_only = !guarded && (ep_is_loopback(&remote) || (info.pod && peer_pod == info.pod)) &&
		  listener_is_app(netns, &remote, bpf_ntohl(skops->remote_port));
	st = record_socket(skops, &cookie, rx_only);
	if (!st)
		return;
	st->ingress = guard_ingress_of(info.flags, guarded);
	if (guarded)
		st->flags |= ACCEL_SF_APP_GUARDED;
	if (rx_only)
		offer.flags = ACCEL_PAIR_F_RX_ONLY;
	/* Whether the peer is the proxy's is only known at the first send: the
	 * callbacks are asked for below, for every socket. */
	stream_roles(st, cfg, owner, 0);
	if (st->stream_flags & ACCEL_STREAM_PROXY)
		offer.flags |= ACCEL_PAIR_F_PROXY;

	pkey.token = pairing_new_token();
	offer.cookie = cookie;
	offer.netns_cookie = netns;
	offer.sk_addr = sk_addr_of(skops);
	offer.pod = info.pod;
	offer.ingress = st->ingress;
	st->local_pod = info.pod;
	if (bpf_map_update_elem(&accel_pairing, &pkey, &offer, BPF_NOEXIST)) {
		stat_inc(ACCEL_STAT_PAIRING_FULL);
		st->decision = ACCEL_DECISION_TCP;
		st->reason = ACCEL_REASON_UNPAIRED;
		return;
	}

	/* WRITE_HDR_OPT: carry the token in the final ACK. STATE: clean the
	 * offer up if the socket closes before its first send. A guarded
	 * socket keeps them, with its received segments, for the guard. */
	cb_flags = BPF_SOCK_OPS_WRITE_HDR_OPT_CB_FLAG | BPF_SOCK_OPS_STATE_CB_FLAG;
	if (guarded)
		cb_flags |= GUARD_CB_FLAGS;
	/* RTT: the ACK of its first TCP-sent bytes is where a receive-only
	 * socket withdraws an unclaimed offer (it never sends through
	 * sk_msg, where others do), and where a socket nobody answered
	 * leaves the sockhash, and where a sender's TCP phases are kept short
	 * and it gets TCP's unsent mark back once it sends by TCP for good
	 * (on_parse_hdr). */
	if (rx_only || stream_enabled(cfg) || GUARD_CAN_LEAVE || phase_wanted(cfg))
		cb_flags |= BPF_SOCK_OPS_RTT_CB_FLAG;
	err = bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | cb_flags);
	if (err) {
		/* Unpaired, so never redirected to; a guarded socket without
		 * its callbacks must not stay where a blocking read sees it. */
		if (guarded)
			bpf_map_delete_elem(&accel_sockhash, &cookie);
		bpf_map_delete_elem(&accel_pairing, &pkey);
		stat_inc(ACCEL_STAT_HDR_OPT_FAILED);
		st->decision = ACCEL_DECISION_TCP;
		st->reason = ACCEL_REASON_UNPAIRED;
		return;
	}
	st->role = ACCEL_ROLE_ACTIVE;
	st->token = pkey.token;
	st->flags |= ACCEL_SF_OPT_PENDING;
	short_lived_start(cfg, st);
	stat_inc(ACCEL_STAT_ACTIVE_OFFERED);
}

/* accept()able child socket. Pair it only if both its ends take part and
 * the handshake carried a token this node offered and nobody claimed. */
static __always_inline void on_passive_established(struct bpf_sock_ops *skops)
{
	struct accel_endpoint_key local, remote;
	struct accel_pair_key pkey = { .stage = ACCEL_PAIR_OFFER };
	struct accel_pair_value offer, answer = {};
	struct accel_pair_value *found;
	struct accel_sock_state *st;
	struct ep_info info, remote_info;
	__u64 token, cookie;

	struct accel_config *cfg;
	__u64 netns;
	int meshed_only, owner = OWNER_UNKNOWN, guarded, rx_only;
	__u32 default_flags;
	__u8 ingress;

	cfg = accel_config_get();
	if (cfg_passthrough(cfg) || !ep_keys_of(skops, &local, &remote))
		return;
	netns = netns_cookie_of(skops);
	meshed_only = cfg_loopback_meshed_only(cfg);
	default_flags = cfg_default_ep_flags(cfg);
	if (!ep_lookup(&local, netns, meshed_only, default_flags, &info) ||
	    !ep_lookup(&remote, netns, meshed_only, default_flags, &remote_info))
		return;
	if (!ep_is_loopback(&local) &&
	    ep_port_excluded(&local, skops->local_port, ACCEL_DIR_INBOUND)) {
		stat_inc(ACCEL_STAT_EXCLUDED);
		return;
	}
	/* The remote end's owner is checked on its own side: without it
	 * there is no token to claim. */
	if ((info.flags & (ACCEL_EP_PROXY_ONLY | ACCEL_EP_APP_NONBLOCKING_ONLY)) ||
	    stream_enabled(cfg))
		owner = sock_owner(skops, cfg);
	if (!proxy_only_allowed(&info, remote_info.pod, owner)) {
		stat_inc(ACCEL_STAT_REFUSED_PROXY_ONLY);
		return;
	}
	if (pairing_read_token(skops, &token)) {
		stat_inc(ACCEL_STAT_REFUSED_NO_TOKEN);
		return;
	}
	pkey.token = token;
	found = bpf_map_lookup_elem(&accel_pairing, &pkey);
	if (!found) {
		stat_inc(ACCEL_STAT_REFUSED_UNKNOWN);
		return;
	}
	offer = *found;
	/* Only one socket may claim an offer: the delete decides who. */
	if (bpf_map_delete_elem(&accel_pairing, &pkey)) {
		stat_inc(ACCEL_STAT_REFUSED_UNKNOWN);
		return;
	}
	answer.netns_cookie = netns;
	/* A connection with a loopback end (127.0.0.1, or Istio's 127.0.0.6
	 * passthrough to the pod IP) never leaves its namespace; a mismatch
	 * means something is wrong, and wrong is never accelerated. */
	if ((ep_is_loopback(&local) || ep_is_loopback(&remote)) &&
	    offer.netns_cookie != answer.netns_cookie) {
		stat_inc(ACCEL_STAT_REFUSED_NETNS);
		return;
	}
	/* No file until accept(): a guarded socket is recorded, and its own
	 * callbacks check its file afterwards (guard.h). Two `auto`
	 * applications could redirect to neither: not recorded at all. */
	guarded = guard_applies(info.flags, owner);
	ingress = guard_ingress_of(info.flags, guarded);
	if (ingress == ACCEL_INGRESS_CLOSED && offer.ingress == ACCEL_INGRESS_CLOSED) {
		stat_inc(ACCEL_STAT_APP_PAIR_SKIPPED);
		return;
	}
	if (guarded && bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags |
								GUARD_CB_FLAGS)) {
		stat_inc(ACCEL_STAT_HDR_OPT_FAILED);
		return;
	}
	/* An `auto` application accepted it: its listener is one to know
	 * (it may be older than the datapath, see on_listen). */
	if (ingress == ACCEL_INGRESS_CLOSED)
		listener_learn(netns, &local, skops->local_port);
	/* Its peer is an `auto` application, which receives by TCP: this
	 * socket never redirects, so it is only a redirect target. */
	rx_only = !guarded && offer.ingress == ACCEL_INGRESS_CLOSED;
	st = record_socket(skops, &cookie, rx_only);
	if (!st)
		return;
	st->ingress = ingress;
	st->peer_ingress = offer.ingress;
	if (guarded)
		st->flags |= ACCEL_SF_APP_GUARDED;
	if (offer.flags & ACCEL_PAIR_F_RX_ONLY)
		st->flags |= ACCEL_SF_PEER_RX_ONLY;
	/* A receive-only socket never sends through sk_msg: no stream role.
	 * Without its callbacks, none either. */
	if (!rx_only && stream_roles(st, cfg, owner, offer.flags & ACCEL_PAIR_F_PROXY) &&
	    bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | STREAM_CB_FLAGS))
		st->stream_flags = 0;
	/* A sender's TCP phases are kept short from its RTT callback
	 * (on_parse_hdr); a guarded one asks for it once proven. */
	if (!rx_only && !guarded && phase_wanted(cfg))
		bpf_sock_ops_cb_flags_set(skops,
					  skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_RTT_CB_FLAG);
	st->role = ACCEL_ROLE_PASSIVE;
	st->peer_cookie = offer.cookie;
	st->peer_sk = offer.sk_addr;
	st->local_pod = info.pod;
	st->peer_pod = offer.pod;
	if (rx_only)
		held_back_for_peer(offer.pod);
	stat_inc(ACCEL_STAT_PASSIVE_PAIRED);

	/* A receive-only active side never sends by redirect, so it never
	 * looks for an answer; the application end held back is this one. */
	if (offer.flags & ACCEL_PAIR_F_RX_ONLY) {
		if (ingress == ACCEL_INGRESS_CLOSED)
			held_back_for_peer(info.pod);
		return;
	}

	/* Tell the active side who its peer is. If this fails the active side
	 * sends over TCP and only this direction is redirected: still in order. */
	pkey.stage = ACCEL_PAIR_ANSWER;
	answer.cookie = cookie;
	answer.sk_addr = sk_addr_of(skops);
	answer.pod = st->local_pod;
	answer.ingress = st->ingress;
	answer.flags = rx_only ? ACCEL_PAIR_F_RX_ONLY : 0;
	if (st->stream_flags & ACCEL_STREAM_PROXY)
		answer.flags |= ACCEL_PAIR_F_PROXY;
	if (bpf_map_update_elem(&accel_pairing, &pkey, &answer, BPF_NOEXIST))
		stat_inc(ACCEL_STAT_PAIRING_FULL);
}

/* listen() of an `auto` application (listeners.h). */
static __always_inline void on_listen(struct bpf_sock_ops *skops)
{
	struct accel_endpoint_key local, remote, scope;
	struct accel_config *cfg = accel_config_get();
	struct ep_info info;
	__u64 netns;

	if (cfg_passthrough(cfg) || !ep_keys_of(skops, &local, &remote))
		return;
	netns = netns_cookie_of(skops);
	/* On every address: the network namespace decides. */
	scope = local;
	if (ep_is_unspecified(&local))
		ep_key_v4(&scope, bpf_htonl(0x7f000001));
	if (!ep_lookup(&scope, netns, cfg_loopback_meshed_only(cfg), cfg_default_ep_flags(cfg),
		       &info))
		return;
	if ((info.flags & ACCEL_EP_APP_SEND_ONLY) && sock_owner(skops, cfg) == OWNER_OTHER)
		listener_learn(netns, &local, skops->local_port);
}

static __always_inline void on_hdr_opt_len(struct bpf_sock_ops *skops)
{
	struct accel_sock_state *st = state_of(skops);

	if (!st)
		return; /* another program asked for header-option callbacks */
	guard_on_callback(skops, st);
	if (!(st->flags & ACCEL_SF_OPT_PENDING))
		return;
	if (bpf_reserve_hdr_opt(skops, ACCEL_TCPOPT_LEN, 0))
		stat_inc(ACCEL_STAT_HDR_OPT_FAILED);
}

static __always_inline void on_write_hdr_opt(struct bpf_sock_ops *skops)
{
	struct accel_sock_state *st = state_of(skops);
	struct accel_tcpopt opt;

	if (!st || !(st->flags & ACCEL_SF_OPT_PENDING))
		return;
	pairing_fill_opt(&opt, st->token);
	if (bpf_store_hdr_opt(skops, &opt, sizeof(opt), 0))
		stat_inc(ACCEL_STAT_HDR_OPT_FAILED); /* the passive side will refuse: TCP */
	/* One packet carries the token; later segments stay untouched (a
	 * guarded socket keeps the callback for the guard). */
	st->flags &= ~ACCEL_SF_OPT_PENDING;
	if (!(st->flags & ACCEL_SF_APP_GUARDED))
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags &
							 ~BPF_SOCK_OPS_WRITE_HDR_OPT_CB_FLAG);
}

/* A guarded socket's segment arrived, or (proven sockets) its TCP-sent
 * data was acknowledged. */
static __always_inline void on_parse_hdr(struct bpf_sock_ops *skops)
{
	struct accel_sock_state *st = state_of(skops);

	if (!st)
		return;
	if ((st->flags & ACCEL_SF_RX_ONLY) && st->role == ACCEL_ROLE_ACTIVE) {
		/* Its first bytes were acknowledged: the handshake's final ACK,
		 * with the token, reached the peer before them, so a claim
		 * would have happened. Withdraw what is left; once. */
		pairing_forget(st->token);
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags &
							 ~BPF_SOCK_OPS_RTT_CB_FLAG);
		return;
	}
	if (st->stream_flags & ACCEL_STREAM_LEAVING) {
		stream_try_leave(skops, st);
		return;
	}
	/* Nobody answered it (decide); a guarded socket leaves by its guard. */
	if ((st->flags & (ACCEL_SF_LEAVING | ACCEL_SF_APP_GUARDED)) == ACCEL_SF_LEAVING) {
		if (sock_leave_sockhash(skops, st)) {
			st->flags &= ~ACCEL_SF_LEAVING;
			stat_inc(ACCEL_STAT_UNANSWERED_LEFT);
		}
		return;
	}
	/* Its TCP bytes were acknowledged. In a flow-control TCP phase: keep
	 * its phases short from now on (tcp_phase.h). */
	if (skops->op == BPF_SOCK_OPS_RTT_CB && st->decision == ACCEL_DECISION_TCP_FLOW)
		guard_phase_shorten(skops, st);
	/* Sends by TCP for good: TCP's own unsent mark; it will never leave
	 * (stream.h), and the guard, where there is one, asks for its own
	 * callbacks. */
	if (skops->op == BPF_SOCK_OPS_RTT_CB && st->decision == ACCEL_DECISION_TCP) {
		guard_phase_restore(skops, st);
		if (!(st->flags & ACCEL_SF_APP_GUARDED) && !(st->stream_flags & ACCEL_STREAM_LEFT))
			bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags &
								 ~BPF_SOCK_OPS_RTT_CB_FLAG);
	}
	guard_on_callback(skops, st);
}

static __always_inline void on_state_change(struct bpf_sock_ops *skops)
{
	struct accel_sock_state *st;

	st = state_of(skops);
	if (!st)
		return;
	stream_count_left_bytes(skops, st);
	if (st->role == ACCEL_ROLE_ACTIVE && short_lived_own_close(skops))
		short_lived_learn(skops, accel_config_get(), netns_cookie_of(skops), st);
	if (skops->args[1] != BPF_TCP_CLOSE) {
		/* e.g. shutdown(SHUT_WR), in the caller's own context: a
		 * blocking reader leaves before it reads. */
		guard_on_callback(skops, st);
		return;
	}
	if (st->token)
		pairing_forget(st->token);
	/* Its own entry (blocking, or a stream claim on it), and a claim it
	 * made on its peer. */
	if (st->ingress == ACCEL_INGRESS_UNLESS_BLOCKING ||
	    (st->stream_flags & ACCEL_STREAM_PEER_PROXY))
		bpf_map_delete_elem(&accel_reader, &st->cookie);
	stream_unclaim_peer(st);
	stat_inc(ACCEL_STAT_CLOSED);
}

SEC("sockops")
int accel_sockops(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		on_active_established(skops);
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		on_passive_established(skops);
		break;
	case BPF_SOCK_OPS_TCP_LISTEN_CB:
		on_listen(skops);
		break;
	case BPF_SOCK_OPS_HDR_OPT_LEN_CB:
		on_hdr_opt_len(skops);
		break;
	case BPF_SOCK_OPS_WRITE_HDR_OPT_CB:
		on_write_hdr_opt(skops);
		break;
	case BPF_SOCK_OPS_PARSE_HDR_OPT_CB:
	case BPF_SOCK_OPS_RTT_CB:
		on_parse_hdr(skops);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		on_state_change(skops);
		break;
	}
	return 1;
}

/* An `auto` application receives by TCP: its senders never redirect. */
static __always_inline void decide_for_peer(struct accel_sock_state *st)
{
	if (st->peer_ingress != ACCEL_INGRESS_CLOSED)
		return;
	st->decision = ACCEL_DECISION_TCP;
	st->reason = ACCEL_REASON_APP_READS_TCP;
	held_back_for_peer(st->peer_pod);
}

/* First send of a recorded socket: decide, once, how it sends. */
static __always_inline void decide(struct accel_sock_state *st, int passthrough)
{
	struct accel_pair_key pkey = { .token = st->token, .stage = ACCEL_PAIR_ANSWER };
	struct accel_pair_value *answer;
	int withdrawn;

	if (passthrough) {
		st->decision = ACCEL_DECISION_TCP;
		st->reason = ACCEL_REASON_PASSTHROUGH;
		return;
	}
	if (st->role == ACCEL_ROLE_PASSIVE) {
		st->decision = ACCEL_DECISION_REDIRECT;
		decide_for_peer(st);
		return;
	}
	if (st->role != ACCEL_ROLE_ACTIVE) {
		st->decision = ACCEL_DECISION_TCP;
		st->reason = ACCEL_REASON_UNPAIRED;
		return;
	}
	answer = bpf_map_lookup_elem(&accel_pairing, &pkey);
	if (answer) {
		st->peer_cookie = answer->cookie;
		st->peer_sk = answer->sk_addr;
		st->peer_pod = answer->pod;
		st->peer_ingress = answer->ingress;
		if (answer->flags & ACCEL_PAIR_F_RX_ONLY)
			st->flags |= ACCEL_SF_PEER_RX_ONLY;
		/* Its callbacks were asked for at connect (stream_enabled). */
		if (answer->flags & ACCEL_PAIR_F_PROXY)
			st->stream_flags |= ACCEL_STREAM_PEER_PROXY;
		st->decision = ACCEL_DECISION_REDIRECT;
		bpf_map_delete_elem(&accel_pairing, &pkey);
		stat_inc(ACCEL_STAT_ACTIVE_PAIRED);
		decide_for_peer(st);
		return;
	}
	/* Withdraw the offer so no later claim can pair with a TCP sender. */
	pkey.stage = ACCEL_PAIR_OFFER;
	withdrawn = !bpf_map_delete_elem(&accel_pairing, &pkey);
	st->decision = ACCEL_DECISION_TCP;
	st->reason = ACCEL_REASON_UNPAIRED;
	stat_inc(ACCEL_STAT_ACTIVE_UNANSWERED);
	/* The delete is the arbiter: nobody claimed the offer, and nobody
	 * can now, so nothing is or will be redirected here. In the
	 * sockhash the socket would only pay the sockmap send path (about a
	 * third slower than plain TCP for bulk sends): out at its next
	 * callback. A claimer that won keeps it: it may redirect here. */
	if (withdrawn && GUARD_CAN_LEAVE)
		st->flags |= ACCEL_SF_LEAVING;
}

SEC("sk_msg")
int accel_sk_msg(struct sk_msg_md *msg)
{
	struct accel_config *cfg = accel_config_get(); /* once per message */
	int passthrough = cfg_passthrough(cfg);
	struct accel_sock_state *st;
	__u32 size = msg->size;
	__u64 peer;
	long verdict;

	st = bpf_sk_storage_get(&accel_sock_state, msg->sk, 0, 0);
	if (!st)
		return SK_PASS; /* not recorded by us: never touch it */

	if (st->decision == ACCEL_DECISION_UNDECIDED) {
		decide(st, passthrough);
	} else if ((st->decision == ACCEL_DECISION_REDIRECT ||
		    st->decision == ACCEL_DECISION_TCP_FLOW) && passthrough) {
		/* redirect -> TCP is order-safe: the peer reads its ingress queue
		 * (our earlier bytes) before its TCP receive queue. */
		st->decision = ACCEL_DECISION_TCP;
		st->reason = ACCEL_REASON_PASSTHROUGH;
		stat_inc(ACCEL_STAT_PASSTHROUGH_SWITCH);
	}
	if (st->flags & ACCEL_SF_APP_GUARDED)
		guard_on_send(msg, st);
	/* An `app-safe` application seen blocking: redirect -> TCP, order-safe.
	 * (A proxy socket finds it in its claim, stream_claim_peer.) */
	if (st->decision != ACCEL_DECISION_TCP &&
	    st->peer_ingress == ACCEL_INGRESS_UNLESS_BLOCKING &&
	    !(st->stream_flags & ACCEL_STREAM_PROXY)) {
		__u8 *reader = bpf_map_lookup_elem(&accel_reader, &st->peer_cookie);

		if (reader && *reader == ACCEL_READER_BLOCKING) {
			st->decision = ACCEL_DECISION_TCP;
			st->reason = ACCEL_REASON_BLOCKING;
		}
	}
#ifdef ACCEL_FLOW_CONTROL
	if (cfg && cfg->flow_budget) {
		__u32 budget = cfg->flow_budget;

		if (st->decision == ACCEL_DECISION_REDIRECT &&
		    st->flow_unchecked >= budget / FLOW_CHECK_DIVISOR) {
			st->flow_unchecked = 0;
			if (flow_peer_behind(st, budget)) {
				st->decision = ACCEL_DECISION_TCP_FLOW;
				st->reason = ACCEL_REASON_FLOW;
				st->flow_switches++;
				stat_inc(ACCEL_STAT_FLOW_TO_TCP);
				stream_flow_writer_leaves(st, cfg->stream_small_bytes, budget);
			}
		} else if (st->decision == ACCEL_DECISION_TCP_FLOW) {
			if (flow_can_resume(msg, st, budget)) {
				st->decision = ACCEL_DECISION_REDIRECT;
				st->reason = ACCEL_REASON_NONE;
				st->flow_switches++;
				st->flow_unchecked = 0;
				stat_inc(ACCEL_STAT_FLOW_RESUMED);
			} else {
				st->flow_unchecked += size; /* this TCP phase's bytes */
				stream_flow_writer_leaves(st, cfg->stream_small_bytes, budget);
			}
		}
	}
	if (st->decision == ACCEL_DECISION_REDIRECT && cfg)
		stream_small_writer_leaves(st, size, cfg->stream_small_bytes);
#endif

	if (st->decision == ACCEL_DECISION_REDIRECT && stream_claim_peer(st)) {
		peer = st->peer_cookie;
		if (st->flags & ACCEL_SF_PEER_RX_ONLY)
			verdict = bpf_msg_redirect_hash(msg, &accel_rx_sockhash, &peer, BPF_F_INGRESS);
		else
			verdict = bpf_msg_redirect_hash(msg, &accel_sockhash, &peer, BPF_F_INGRESS);
		if (verdict == SK_PASS) {
			st->redirected_msgs++;
			st->redirected_bytes += size;
			st->flow_unchecked += size;
			stat_inc(ACCEL_STAT_REDIRECT_MSGS);
			stat_add(ACCEL_STAT_REDIRECT_BYTES, size);
			pod_traffic_add(st->local_pod, st->peer_pod, size);
			return SK_PASS;
		}
		/* The peer left the map (it closed): TCP carries the rest, which
		 * is what the application would have seen without us. */
		stream_unclaim_peer(st);
		st->decision = ACCEL_DECISION_TCP;
		st->reason = ACCEL_REASON_PEER_GONE;
		stat_inc(ACCEL_STAT_REDIRECT_FAILED);
	}
	st->passed_msgs++;
	st->passed_bytes += size;
	stat_inc(ACCEL_STAT_PASS_MSGS);
	stat_add(ACCEL_STAT_PASS_BYTES, size);
	return SK_PASS;
}
