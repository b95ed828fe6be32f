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

char LICENSE[] SEC("license") = "GPL"; /* bpf_seq_write and probe reads */

struct list_head {
	struct list_head *next;
} __attribute__((preserve_access_index));

struct sk_psock {
	struct list_head ingress_msg;
} __attribute__((preserve_access_index));

struct sock {
	void *sk_user_data;
} __attribute__((preserve_access_index));

struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
} __attribute__((preserve_access_index));

struct bpf_iter__sockmap {
	struct bpf_iter_meta *meta;
	void *key;
	struct sock *sk;
} __attribute__((preserve_access_index));

/* Low bits of sk_user_data are flags (NOCOPY, BPF, PSOCK); pointers are
 * 8-byte aligned, so masking three bits is right on every kernel. */
#define SK_USER_DATA_PTRMASK (~7UL)

SEC("iter/sockmap")
int accel_drain_check(struct bpf_iter__sockmap *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct sock *sk = ctx->sk;
	unsigned long psock, head, next = 0;
	__u64 key = 0;

	if (!sk)
		return 0;
	psock = (unsigned long)BPF_CORE_READ(sk, sk_user_data) & SK_USER_DATA_PTRMASK;
	if (!psock)
		return 0;
	head = psock + bpf_core_field_offset(struct sk_psock, ingress_msg);
	if (bpf_probe_read_kernel(&next, sizeof(next), (void *)head))
		return 0;
	if (next != head) {
		if (ctx->key)
			bpf_probe_read_kernel(&key, sizeof(key), ctx->key);
		bpf_seq_write(seq, &key, sizeof(key)); /* the socket's cookie */
	}
	return 0;
}
