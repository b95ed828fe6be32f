/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Exact pairing of the two sockets of one connection.
 *
 * The active side draws a random 64-bit token, offers it in accel_pairing
 * and writes it as an RFC 6994 experimental TCP option into the handshake's
 * final ACK. The passive side reads the option at PASSIVE_ESTABLISHED and
 * claims the offer. NAT rewrites addresses and ports, never options, so the
 * pair is exact under REDIRECT and port remapping; an offer lives only in
 * this node's map, so a token seen by a remote peer pairs with nothing
 * unless that peer's connection comes from a local address and races the
 * claim, which the delete-as-arbiter below rules out for all but one socket.
 */
#ifndef ACCEL_PAIRING_H
#define ACCEL_PAIRING_H

#include "maps.h"

struct accel_tcpopt {
	__u8 kind;
	__u8 len;
	__u8 exid[2];
	__u8 token[8];
};

_Static_assert(sizeof(struct accel_tcpopt) == ACCEL_TCPOPT_LEN, "option size");

static __always_inline __u64 pairing_new_token(void)
{
	__u64 t = ((__u64)bpf_get_prandom_u32() << 32) | bpf_get_prandom_u32();

	return t ? t : 1; /* 0 means "no token" in accel_sock_state */
}

static __always_inline void pairing_fill_opt(struct accel_tcpopt *opt, __u64 token)
{
	opt->kind = ACCEL_TCPOPT_KIND;
	opt->len = ACCEL_TCPOPT_LEN;
	opt->exid[0] = ACCEL_TCPOPT_EXID >> 8;
	opt->exid[1] = ACCEL_TCPOPT_EXID & 0xff;
	__builtin_memcpy(opt->token, &token, sizeof(token));
}

/* Reads our option from the packet that completed the handshake. Returns 0
 * and the token, or a negative value when the option is absent. */
static __always_inline int pairing_read_token(struct bpf_sock_ops *skops, __u64 *token)
{
	struct accel_tcpopt opt = {};
	long ret;

	/* Search by kind 253 and our 2-byte ExID: kind-length 4 selects that. */
	opt.kind = ACCEL_TCPOPT_KIND;
	opt.len = 4;
	opt.exid[0] = ACCEL_TCPOPT_EXID >> 8;
	opt.exid[1] = ACCEL_TCPOPT_EXID & 0xff;
	ret = bpf_load_hdr_opt(skops, &opt, sizeof(opt), 0);
	if (ret != ACCEL_TCPOPT_LEN)
		return -1;
	__builtin_memcpy(token, opt.token, sizeof(*token));
	return 0;
}

static __always_inline void pairing_forget(__u64 token)
{
	struct accel_pair_key key = { .token = token, .stage = ACCEL_PAIR_OFFER };

	bpf_map_delete_elem(&accel_pairing, &key);
	key.stage = ACCEL_PAIR_ANSWER;
	bpf_map_delete_elem(&accel_pairing, &key);
}

#endif /* ACCEL_PAIRING_H */
