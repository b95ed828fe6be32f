/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Drain check for kernels that refuse tracing programs, where the
 * iter/sockmap walker of drain.bpf.c cannot load (seen on a 6.18 build
 * whose bpf(2) answers EPERM to every BPF_PROG_TYPE_TRACING load).
 *
 * The daemon lists the sockhash's keys from user space and runs this
 * program once per key with BPF_PROG_TEST_RUN, the key carried in the test
 * packet after an Ethernet header's worth of bytes (the minimum a
 * classifier test run accepts). It answers whether that socket's ingress
 * queue still holds redirected messages: the same question, asked per
 * socket instead of by a walker. Only sched_cls helpers every kernel the
 * datapath runs on allows are used: a sockhash lookup (which takes a
 * reference, released below), bpf_skc_to_tcp_sock for a typed pointer, and
 * bpf_probe_read_kernel for the psock, which is not UAPI (CO-RE offsets).
 *
 * The map is the datapath's pinned sockhash: the loader points this
 * definition at the pin, so size and flags here do not matter.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "drain_probe.h"
#include "psock.h"

char LICENSE[] SEC("license") = "GPL"; /* bpf_probe_read_kernel */

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 1);
	__type(key, __u64);
	__type(value, __u32);
} accel_sockhash SEC(".maps");

static __always_inline int verdict_of(unsigned long sk)
{
	switch (psock_ingress_pending(sk)) {
	case PSOCK_EMPTY:
		return DRAIN_PROBE_EMPTY;
	case PSOCK_PENDING:
		return DRAIN_PROBE_PENDING;
	default:
		return DRAIN_PROBE_UNREADABLE;
	}
}

SEC("classifier")
int accel_drain_probe(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct bpf_sock *sk;
	struct tcp_sock *tp;
	__u64 key;
	int verdict;

	if (data + DRAIN_PROBE_KEY_OFFSET + sizeof(key) > end)
		return DRAIN_PROBE_BAD_INPUT;
	__builtin_memcpy(&key, data + DRAIN_PROBE_KEY_OFFSET, sizeof(key));
	sk = bpf_map_lookup_elem(&accel_sockhash, &key);
	if (!sk)
		return DRAIN_PROBE_GONE;
	/* A typed pointer: struct sock sits at offset 0 of tcp_sock. */
	tp = bpf_skc_to_tcp_sock(sk);
	verdict = tp ? verdict_of((unsigned long)tp) : DRAIN_PROBE_UNREADABLE;
	bpf_sk_release(sk);
	return verdict;
}
