/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Feature probes: each program uses exactly one capability of the datapath,
 * so the loader can tell the operator precisely what a kernel lacks (kernels
 * are patched and backported; the release number alone does not say).
 * Loaded one by one, never attached.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 1);
	__type(key, __u64);
	__type(value, __u64);
} probe_sockhash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} probe_sk_storage SEC(".maps");

SEC("sockops")
int probe_sockops_sockhash_update(struct bpf_sock_ops *skops)
{
	__u64 key = bpf_get_socket_cookie(skops);

	bpf_sock_hash_update(skops, &probe_sockhash, &key, BPF_NOEXIST);
	return 1;
}

SEC("sockops")
int probe_sockops_sk_storage(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk;

	if (sk)
		bpf_sk_storage_get(&probe_sk_storage, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	return 1;
}

SEC("sockops")
int probe_sockops_hdr_opt(struct bpf_sock_ops *skops)
{
	__u8 opt[12] = { 253, 4, 0xAC, 0xCE };

	if (skops->op == BPF_SOCK_OPS_HDR_OPT_LEN_CB)
		bpf_reserve_hdr_opt(skops, sizeof(opt), 0);
	else if (skops->op == BPF_SOCK_OPS_WRITE_HDR_OPT_CB)
		bpf_store_hdr_opt(skops, opt, sizeof(opt), 0);
	else
		bpf_load_hdr_opt(skops, opt, sizeof(opt), 0);
	return 1;
}

SEC("sockops")
int probe_sockops_netns_cookie(struct bpf_sock_ops *skops)
{
	return bpf_get_netns_cookie(skops) ? 1 : 1;
}

SEC("sk_msg")
int probe_sk_msg_redirect_hash(struct sk_msg_md *msg)
{
	__u64 key = 0;

	return bpf_msg_redirect_hash(msg, &probe_sockhash, &key, BPF_F_INGRESS);
}

SEC("sk_msg")
int probe_sk_msg_sk_storage(struct sk_msg_md *msg)
{
	bpf_sk_storage_get(&probe_sk_storage, msg->sk, 0, 0);
	return SK_PASS;
}

SEC("sk_msg")
int probe_sk_msg_netns_cookie(struct sk_msg_md *msg)
{
	return bpf_get_netns_cookie(msg) ? SK_PASS : SK_PASS;
}
