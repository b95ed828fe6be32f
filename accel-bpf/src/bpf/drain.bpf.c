/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Drain check for unload: walks the sockhash (iter/sockmap, 5.10+) and
 * emits one record per socket whose ingress queue still holds redirected
 * messages. Removing such a socket from the map would free those bytes, so
 * the daemon unpins only when this iterator emits nothing.
 *
 * The kernel's psock is not UAPI: field offsets come from the running
 * kernel's BTF through CO-RE relocations, so no layout is hard-coded here.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "psock.h"

char LICENSE[] SEC("license") = "GPL"; /* bpf_seq_write and probe reads */

struct sock;
struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
} __attribute__((preserve_access_index));

struct bpf_iter__sockmap {
	struct bpf_iter_meta *meta;
	void *key;
	struct sock *sk;
} __attribute__((preserve_access_index));

SEC("iter/sockmap")
int accel_drain_check(struct bpf_iter__sockmap *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct sock *sk = ctx->sk;
	__u64 key = 0;

	if (!sk || psock_ingress_pending((unsigned long)sk) != PSOCK_PENDING)
		return 0;
	if (ctx->key)
		bpf_probe_read_kernel(&key, sizeof(key), ctx->key);
	bpf_seq_write(seq, &key, sizeof(key)); /* the socket's cookie */
	return 0;
}
