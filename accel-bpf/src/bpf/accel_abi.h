/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The ABI shared between the BPF datapath and userspace.
 *
 * Every struct here is mirrored in accel-bpf/src/abi/mirrors.rs and checked
 * by the layout tests (abi/tests.rs) against the BTF of the built objects
 * (so a struct must be used by a map or a program); constants and counters
 * against this file.
 * Padding is explicit: the kernel copies map values byte for byte, and an
 * implicit hole would be uninitialised stack in BPF and undefined in Rust.
 *
 * Changing anything here is an ABI change: bump ACCEL_ABI_VERSION, which
 * moves the pin directory (…/v<N>) so an old daemon never reads new maps.
 */
#ifndef ACCEL_ABI_H
#define ACCEL_ABI_H

#include <linux/types.h>

/* 2: pod identities (endpoint, meshed netns, pairing, socket state) and
 *    the per pod pair traffic map.
 * 3: proxy-only pods (ACCEL_EP_PROXY_ONLY, accel_meshed_netns.flags,
 *    accel_config.proxy_uid).
 * 4: application guards (ACCEL_EP_APP_*, accel_config.default_ep_flags,
 *    accel_pair_value.ingress, the socket state's cookie and ingress
 *    fields, accel_reader and accel_pod_held).
 * 5: receive-only sockets (accel_rx_sockhash, ACCEL_SF_RX_ONLY,
 *    ACCEL_SF_PEER_RX_ONLY, accel_pair_value.flags, accel_app_listeners).
 * 6: small-message stream writers leave the sockhash (ACCEL_STREAM_*,
 *    the socket state's stream_flags and small_run, ACCEL_READER_* claims,
 *    ACCEL_PAIR_F_PROXY, accel_config.stream_small_bytes, 48 stat slots).
 * 7: a socket nobody answered leaves the sockhash (ACCEL_SF_LEAVING for
 *    any socket, ACCEL_STAT_UNANSWERED_LEFT).
 * 8: short TCP phases (ACCEL_SF_TCP_NOTSENT_SET, ACCEL_SF_TCP_PHASE_TRIED,
 *    ACCEL_STAT_TCP_PHASE_REFUSED).
 * 9: a small-message writer whose reader reads alongside it stays (the
 *    socket state's peer_read_mark, small_looks and small_stalls). */
#define ACCEL_ABI_VERSION 10

/* Pairing token carried in the handshake's final ACK: RFC 6994 shared
 * experimental option (kind 253) with a 16-bit ExID, then the token. */
#define ACCEL_TCPOPT_KIND 253
#define ACCEL_TCPOPT_EXID 0xACCE
#define ACCEL_TCPOPT_LEN 12 /* kind + len + exid(2) + token(8) */

/* struct accel_sock_state.role */
#define ACCEL_ROLE_ACTIVE 1
#define ACCEL_ROLE_PASSIVE 2

/* struct accel_sock_state.decision: made once, at the socket's first send.
 * REDIRECT may later become TCP (order-safe: the receiver drains its ingress
 * queue before its TCP queue); TCP never becomes REDIRECT. */
#define ACCEL_DECISION_UNDECIDED 0
#define ACCEL_DECISION_REDIRECT 1
#define ACCEL_DECISION_TCP 2
/* TCP while the peer's reader is behind (flow control): TCP's window bounds
 * what is queued. Back to REDIRECT only once nothing sent by TCP is in
 * flight or unread, so the peer can never read new bytes before old ones. */
#define ACCEL_DECISION_TCP_FLOW 3

/* struct accel_sock_state.reason: why a socket sends over TCP. */
#define ACCEL_REASON_NONE 0
#define ACCEL_REASON_UNPAIRED 1     /* no exact peer was proven */
#define ACCEL_REASON_PASSTHROUGH 2  /* datapath draining or disabled */
#define ACCEL_REASON_PEER_GONE 3    /* peer left the sockhash */
#define ACCEL_REASON_FLOW 4         /* peer's reader behind (ACCEL_DECISION_TCP_FLOW) */
#define ACCEL_REASON_BLOCKING 5     /* an application socket (this one or the peer) is blocking */
#define ACCEL_REASON_APP_READS_TCP 6 /* the peer is an application that receives by TCP (auto) */
#define ACCEL_REASON_STREAM 7       /* small-message stream to a reader behind: TCP, then leaves */
#define ACCEL_REASON_PEER_LEAVING 8 /* the peer is leaving the sockhash (stream.h) */
#define ACCEL_REASON_CLAIM_FULL 9   /* accel_reader full: no safe redirect (stream.h) */

/* struct accel_sock_state.flags */
#define ACCEL_SF_OPT_PENDING (1U << 0) /* token not yet written to the wire */
/* An application socket under the guard (guard.h): its file's blocking
 * mode is checked at its sends and in its own sock_ops callbacks. */
#define ACCEL_SF_APP_GUARDED (1U << 1)
/* Seen non-blocking where the check means something (guard.h). */
#define ACCEL_SF_PROVEN (1U << 2)
/* Blocking, or of no more use in the sockhash (a guarded socket, or one
 * whose offer nobody answered): it sends by TCP and takes itself out of
 * the sockhash at its next callback with nothing queued. */
#define ACCEL_SF_LEAVING (1U << 3)
/* Recorded in accel_rx_sockhash: a redirect target that never redirects
 * (its peer receives by TCP), so no sk_msg program runs on its sends and
 * they take the plain TCP path. */
#define ACCEL_SF_RX_ONLY (1U << 4)
/* Its peer is in accel_rx_sockhash: redirect through that map. */
#define ACCEL_SF_PEER_RX_ONLY (1U << 5)
/* The datapath set its TCP_NOTSENT_LOWAT for short TCP phases
 * (tcp_phase.h); cleared when TCP's own mark is back. TRIED: it has
 * decided whether to, once. */
#define ACCEL_SF_TCP_NOTSENT_SET (1U << 6)
#define ACCEL_SF_TCP_PHASE_TRIED (1U << 7)
/* The TCP_NOTSENT_LOWAT it sets: 64 KiB (applications can read it, I-8). */
#define ACCEL_PHASE_NOTSENT_LOWAT 65536

/* struct accel_sock_state.ingress / peer_ingress and
 * struct accel_pair_value.ingress: may bytes be redirected INTO a socket?
 * Learnt by each side about its peer at pairing. */
#define ACCEL_INGRESS_OPEN 0   /* the proxy's, or an application of an `all` pod */
#define ACCEL_INGRESS_CLOSED 1 /* an application of an `auto` pod: it receives by TCP */
/* An application declared safe (`app-safe`): redirected to unless
 * accel_reader says its file is blocking. */
#define ACCEL_INGRESS_UNLESS_BLOCKING 2

/* Values of accel_reader (socket cookie -> what its reader is, or how far
 * it is in leaving the sockhash: stream.h). */
#define ACCEL_READER_BLOCKING 1
#define ACCEL_READER_REDIRECTED_TO 2 /* the proxy peer's claim: it redirects here */
#define ACCEL_READER_LEAVING 3       /* this socket asks its peer to stop */
#define ACCEL_READER_LEAVE_SEEN 4    /* its peer no longer redirects here */

/* struct accel_sock_state.stream_flags (stream.h) */
#define ACCEL_STREAM_PROXY (1U << 0)      /* this socket is the proxy's: it claims */
#define ACCEL_STREAM_PEER_PROXY (1U << 1) /* the peer is the proxy's: this one may leave */
#define ACCEL_STREAM_LEAVING (1U << 2)    /* asked to leave; sends by TCP */
#define ACCEL_STREAM_LEFT (1U << 3)       /* out of the sockhash */
#define ACCEL_STREAM_COUNTED (1U << 4)    /* its TCP bytes after leaving are counted */

/* struct accel_pod_held_key.reason: why a pod's socket was kept off the
 * redirect path (one count per socket). */
#define ACCEL_HELD_BLOCKING 1      /* application socket with a blocking file */
#define ACCEL_HELD_NO_FILE 2       /* application socket without a file (kernel socket) */
#define ACCEL_HELD_APP_READS_TCP 3 /* bytes to an `auto` application socket go by TCP */

/* Keys of the pairing map: the active side offers, the passive side answers. */
#define ACCEL_PAIR_OFFER 1
#define ACCEL_PAIR_ANSWER 2
/* struct accel_pair_value.flags: that socket is in accel_rx_sockhash. */
#define ACCEL_PAIR_F_RX_ONLY (1U << 0)
/* ... that socket is the sidecar proxy's (owner accel_config.proxy_uid). */
#define ACCEL_PAIR_F_PROXY (1U << 1)

/* struct accel_config.mode */
#define ACCEL_MODE_ACCELERATE 0
#define ACCEL_MODE_PASSTHROUGH 1 /* record nothing new, redirect nothing */

/* struct accel_config.flags */
/* Loopback takes part only in network namespaces listed in
 * accel_meshed_netns (a cluster node: meshed pods only). Unset, loopback
 * takes part in every namespace (a standalone host). */
#define ACCEL_CFG_LOOPBACK_MESHED_ONLY (1U << 0)

/* struct accel_excluded_port_key.direction (Istio's per-pod opt-outs) */
#define ACCEL_DIR_INBOUND 1  /* local port of a socket accepted by the pod */
#define ACCEL_DIR_OUTBOUND 2 /* original destination port of a pod's connect() */

/* Endpoint flags (struct accel_endpoint.flags, and the same bits in
 * struct accel_meshed_netns.flags for the pod's loopback). */
#define ACCEL_EP_MESHED (1U << 0)
/* Only the sidecar proxy's own sockets (owner uid accel_config.proxy_uid)
 * take part: the pod's application sockets never enter the sockhash, so no
 * kernel behaviour of sockmap sockets (receive-side splice, blocking reads
 * woken without data, FIONREAD) can reach the application. */
#define ACCEL_EP_PROXY_ONLY (1U << 1)
/* Application sockets (not the proxy's) take part only while their file is
 * non-blocking: a blocking reader of a sockhash socket can get EAGAIN
 * (tcp_bpf_recvmsg after a wake-up without data). `auto` and `app-safe`. */
#define ACCEL_EP_APP_NONBLOCKING_ONLY (1U << 2)
/* Nothing is redirected INTO application sockets: they receive by TCP, so
 * receive-side splice and FIONREAD see every byte. `auto`. */
#define ACCEL_EP_APP_SEND_ONLY (1U << 3)

/* Per-CPU counters (accel_stats). Slots are reserved up to ACCEL_STATS_SLOTS
 * so new counters do not change the map size (an ABI change). */
enum accel_stat {
	ACCEL_STAT_ACTIVE_OFFERED = 0,  /* active sockets recorded with a token */
	ACCEL_STAT_PASSIVE_PAIRED,      /* passive sockets paired exactly */
	ACCEL_STAT_ACTIVE_PAIRED,       /* active sockets that found their answer */
	ACCEL_STAT_RECORD_FAILED,       /* sockhash insert failed (full?) */
	ACCEL_STAT_PAIRING_FULL,        /* pairing map insert failed */
	ACCEL_STAT_STATE_FAILED,        /* socket storage allocation failed */
	ACCEL_STAT_REFUSED_NO_TOKEN,    /* eligible passive, no token in the ACK */
	ACCEL_STAT_REFUSED_UNKNOWN,     /* token not offered on this node / already claimed */
	ACCEL_STAT_REFUSED_NETNS,       /* loopback pair across network namespaces */
	ACCEL_STAT_REFUSED_EARLY_DATA,  /* data crossed TCP before establishment (TFO) */
	ACCEL_STAT_ACTIVE_UNANSWERED,   /* active socket sent first, no peer proven */
	ACCEL_STAT_REDIRECT_MSGS,
	ACCEL_STAT_REDIRECT_BYTES,
	ACCEL_STAT_REDIRECT_FAILED,     /* peer left the map: fell back to TCP */
	ACCEL_STAT_PASS_MSGS,           /* messages sent over TCP by recorded sockets */
	ACCEL_STAT_PASS_BYTES,
	ACCEL_STAT_PASSTHROUGH_SWITCH,  /* sockets switched to TCP by passthrough */
	ACCEL_STAT_HDR_OPT_FAILED,      /* could not reserve/store the option */
	ACCEL_STAT_CLOSED,              /* recorded sockets closed (cleanup ran) */
	ACCEL_STAT_EXCLUDED,            /* a pod's excluded port or CIDR: left on TCP */
	ACCEL_STAT_FLOW_TO_TCP,         /* reader behind: sender switched to TCP */
	ACCEL_STAT_FLOW_RESUMED,        /* TCP path drained: sender redirects again */
	ACCEL_STAT_POD_TRAFFIC_FULL,    /* pod pair not counted: accel_pod_traffic full */
	ACCEL_STAT_REFUSED_PROXY_ONLY,  /* proxy-only pod: an app socket, or inside the pod */
	ACCEL_STAT_PROXY_OFF_NODE,      /* the proxy's connection to no pod here: not recorded */
	ACCEL_STAT_APP_BLOCKING_SKIPPED, /* application socket blocking (or no file) at connect: not recorded */
	ACCEL_STAT_APP_BLOCKING_LEFT,   /* application socket seen blocking later: sends by TCP, leaves */
	ACCEL_STAT_APP_LEFT,            /* guarded sockets that took themselves out of the sockhash */
	ACCEL_STAT_APP_RECEIVES_BY_TCP, /* senders to an `auto` application socket: TCP by policy */
	ACCEL_STAT_APP_PAIR_SKIPPED,    /* both ends `auto` applications: nothing to gain, not recorded */
	ACCEL_STAT_RECORDED_RX_ONLY,    /* recorded as redirect targets only: their sends skip sk_msg */
	ACCEL_STAT_STREAM_WRITER_LEAVING, /* small-message writers to a reader behind: TCP from then on */
	ACCEL_STAT_STREAM_WRITER_LEFT,  /* of those, sockets that took themselves out of the sockhash */
	ACCEL_STAT_STREAM_WRITER_LEFT_BYTES, /* bytes they wrote by TCP once out (counted at close) */
	ACCEL_STAT_STREAM_PEER_LEAVING, /* senders that switched to TCP: their peer is leaving */
	ACCEL_STAT_STREAM_CLAIM_FULL,   /* senders that switched to TCP: accel_reader full */
	ACCEL_STAT_UNANSWERED_LEFT,     /* active sockets nobody answered, out of the sockhash */
	ACCEL_STAT_TCP_PHASE_REFUSED,   /* the kernel refused the short-TCP-phase options */
	ACCEL_STAT_SHORT_LIVED_LEFT_ON_TCP, /* connecting, to short-lived destinations: TCP */
	ACCEL_STAT_COUNT,
};
#define ACCEL_STATS_SLOTS 48

/* The longest streak of short closes the datapath counts
 * (struct accel_short_lived), so the largest accel_config.short_lived_after. */
#define ACCEL_SHORT_LIVED_STREAK_MAX 65535

struct accel_config {
	__u32 mode;
	__u32 flags;       /* ACCEL_CFG_* */
	/* Flow control: redirected bytes a reader may leave unread before its
	 * sender falls back to TCP (at least the reader's receive buffer). */
	__u32 flow_budget;
	/* Owner of the sidecar proxy's sockets (Istio: 1337), for proxy-only pods. */
	__u32 proxy_uid;
	/* ACCEL_EP_* for loopback in namespaces the daemon was not told about
	 * (a host without ACCEL_CFG_LOOPBACK_MESHED_ONLY): the node's mode. */
	__u32 default_ep_flags;
	/* A writer whose messages are all under this many bytes, with its
	 * proxy peer's reader behind, leaves for TCP (stream.h); 0: never. */
	__u32 stream_small_bytes;
	/* Short closes in a row to one destination after which its new
	 * connections stay on TCP, all but probes (short_lived.h); 0: never. */
	__u32 short_lived_after;
};

/* Per-socket state, in BPF socket storage: freed by the kernel with the
 * socket, so it needs no cleanup path of its own. */
struct accel_sock_state {
	__u64 token;        /* active side: the offer's token; 0 on the passive side */
	__u64 peer_cookie;  /* socket cookie of the exact peer; 0 until paired */
	__u8 role;          /* ACCEL_ROLE_* */
	__u8 decision;      /* ACCEL_DECISION_* */
	__u8 reason;        /* ACCEL_REASON_* */
	__u8 flags;         /* ACCEL_SF_* */
	/* Pods of this socket's end and of its peer's (0: not a known pod),
	 * for the per pod pair traffic counters; never used to route. */
	__u16 local_pod;
	__u16 peer_pod;
	__u64 redirected_msgs;
	__u64 redirected_bytes;
	__u64 passed_msgs;
	__u64 passed_bytes;
	/* Kernel address of the peer's struct sock, learnt at pairing, read
	 * only through bpf_probe_read_kernel for flow-control hints. It never
	 * selects where bytes go (the cookie does), so a stale value can only
	 * make a hint wrong, never misdeliver. */
	__u64 peer_sk;
	__u64 flow_switches; /* redirect <-> TCP_FLOW transitions */
	__u64 flow_unchecked; /* bytes redirected since the peer was last looked at;
			       * in TCP_FLOW, bytes sent by TCP since the switch */
	__u64 cookie;        /* this socket's own cookie (its sockhash key) */
	__u8 ingress;        /* ACCEL_INGRESS_*: may bytes be redirected into this socket */
	__u8 peer_ingress;   /* ACCEL_INGRESS_*: may this socket redirect into its peer */
	__u8 stream_flags;   /* ACCEL_STREAM_* */
	__u8 small_run;      /* small sends in a row (stream.h) */
	/* What the peer had read of this socket's redirected bytes (those
	 * bytes less the peer's unread ones, mod 2^32) at the last look of a
	 * small-message writer, and of the current window's looks, how many
	 * found bytes unread and none read since the last (stream.h) */
	__u32 peer_read_mark;
	__u16 small_looks;
	__u16 small_stalls;
	/* A recorded connecting socket's establishment, in units of 1024 ns
	 * (mod 2^32); 0 when the short-lived rule was off (short_lived.h). */
	__u32 established_units;
	/* redirected + passed bytes, and passed bytes, when the current window
	 * of a flow-controlled writer's TCP share began (stream.h) */
	__u64 share_mark;
	__u64 share_passed_mark;
};

struct accel_pair_key {
	__u64 token;
	__u32 stage; /* ACCEL_PAIR_OFFER or ACCEL_PAIR_ANSWER */
	__u32 _pad0;
};

struct accel_pair_value {
	__u64 cookie;       /* OFFER: the active socket; ANSWER: the passive socket */
	__u64 netns_cookie; /* 0 where the kernel cannot tell */
	__u64 sk_addr;      /* kernel address of that socket (flow-control hints) */
	/* Pod of that socket's local end: only the passive side sees both
	 * true ends (the active socket still names the pre-NAT destination),
	 * so each side learns its peer's pod from the other. */
	__u16 pod;
	__u16 ingress;      /* ACCEL_INGRESS_* of that socket */
	__u32 flags;        /* ACCEL_PAIR_F_* */
};

/* A local endpoint address: IPv4 is stored as ::ffff:a.b.c.d so one key
 * serves both families (dual-stack sockets report v4 peers that way). */
struct accel_endpoint_key {
	__u8 addr[16];
};

struct accel_endpoint {
	__u32 flags; /* ACCEL_EP_* */
	__u16 pod;   /* the daemon's id of the pod owning the address (0: none) */
	__u16 _pad0;
};

/* Value of accel_meshed_netns: the pod whose network namespace it is. */
struct accel_meshed_netns {
	__u16 pod;
	__u16 flags; /* ACCEL_EP_* of the pod, for its loopback sockets */
};

/* Key of accel_pod_traffic: redirected traffic from one pod to another
 * (the same pod for app <-> sidecar over loopback). */
struct accel_pod_pair {
	__u16 src;
	__u16 dst;
};

/* Key of accel_app_listeners: a listening address of an `auto` application
 * (addr all-zero: every address) in one network namespace. */
struct accel_app_listener_key {
	__u64 netns_cookie; /* 0 where the kernel cannot tell */
	__u8 addr[16];      /* as accel_endpoint_key */
	__u16 port;         /* host byte order */
	__u16 _pad0;
	__u32 _pad1;
};

/* Value of accel_short_lived, keyed by accel_app_listener_key: what a
 * connecting socket sees as its destination (short_lived.h). */
struct accel_short_lived {
	__u32 streak;        /* short closes in a row, each soon after the last */
	__u32 attempts;      /* connections left on TCP since the last probe */
	__u64 last_short_ns; /* bpf_ktime_get_ns() of the last short close */
};

/* Key of accel_pod_held: sockets of a pod kept off the redirect path. */
struct accel_pod_held_key {
	__u16 pod;
	__u16 reason; /* ACCEL_HELD_* */
};

struct accel_pod_traffic {
	__u64 msgs;
	__u64 bytes;
};

struct accel_excluded_port_key {
	__u8 addr[16];     /* the pod's address, as accel_endpoint_key */
	__u16 port;        /* host byte order */
	__u8 direction;    /* ACCEL_DIR_* */
	__u8 _pad0;
};

/* LPM key: the pod's address matched in full (128 bits), then a prefix of
 * the destination, so one trie holds every pod's excluded CIDRs. */
struct accel_excluded_cidr_key {
	__u32 prefixlen;   /* 128 + destination prefix length */
	__u8 pod[16];
	__u8 dst[16];
};

#endif /* ACCEL_ABI_H */
