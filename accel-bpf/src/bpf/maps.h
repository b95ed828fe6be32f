/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Every map of the datapath. Owner of all of them: accel-daemon, which pins
 * them under its versioned pin directory and sizes them at load time (the
 * max_entries here are defaults). Cleanup paths are stated per map.
 * Each map has its row in accel-bpf/src/map.rs (name, type, key and value
 * types, max_entries, owner, cleanup); a unit test checks this file's
 * maps, as built, against that table.
 */
#ifndef ACCEL_MAPS_H
#define ACCEL_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "accel_abi.h"

/* Recorded sockets, keyed by socket cookie: unique per boot, so keys never
 * collide across network namespaces and NAT cannot make two sockets look
 * alike. Cleanup: the kernel removes a socket when it closes. Only exactly
 * paired sockets (and active sockets awaiting their answer) are here. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u32); /* a socket fd on update from userspace */
} accel_sockhash SEC(".maps");

/* Recorded sockets that only receive redirected bytes: the proxy's end of
 * a connection to an `auto` application, which receives by TCP, so its own
 * sends are never redirected. No sk_msg program is attached here, so those
 * sends take the plain TCP path instead of the sockmap's. Same key, sizing
 * and cleanup as accel_sockhash; a socket is in one of the two, never both. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u32);
} accel_rx_sockhash SEC(".maps");

/* Listening addresses of `auto` applications (listeners.h): a socket
 * connecting to one will only ever be redirected to, so it is recorded in
 * accel_rx_sockhash. Written by sock_ops at listen() and, for listeners
 * older than the datapath, at their first accepted connection. Cleanup:
 * LRU eviction; keys carry the network namespace, whose cookie is never
 * reused, and a stale entry (the port reused by the proxy in the same
 * namespace) only costs that connection its redirect one way. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct accel_app_listener_key);
	__type(value, __u8);
} accel_app_listeners SEC(".maps");

/* Per-socket decision and peer. Cleanup: freed by the kernel with the socket. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct accel_sock_state);
} accel_sock_state SEC(".maps");

/* Handshake rendezvous: OFFER (active, written at ACTIVE_ESTABLISHED) and
 * ANSWER (passive, written when it claims the offer). Cleanup: the passive
 * deletes the OFFER it claims (the delete is the arbiter: one claim wins);
 * the active deletes both at its first send and again when it closes. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct accel_pair_key);
	__type(value, struct accel_pair_value);
} accel_pairing SEC(".maps");

/* Non-loopback addresses that take part (meshed pods on this node). Written
 * only by the daemon's endpoint source, which removes stale entries. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct accel_endpoint_key);
	__type(value, struct accel_endpoint);
} accel_endpoints SEC(".maps");

/* Network namespaces of meshed pods (netns cookie -> pod), for loopback
 * scoping. Written only by the daemon's endpoint source, which removes
 * namespaces of pods that went away. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct accel_meshed_netns);
} accel_meshed_netns SEC(".maps");

/* Redirected traffic per (source pod, destination pod): accelerated bytes
 * no longer cross the stack, so this is where they stay visible. Per-CPU:
 * the redirect path never shares a cache line. Entries are created by
 * sk_msg; the daemon deletes those of a pod that went away before it
 * reuses the pod's id. Full: traffic is still redirected, just not counted
 * per pod pair (ACCEL_STAT_POD_TRAFFIC_FULL). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct accel_pod_pair);
	__type(value, struct accel_pod_traffic);
} accel_pod_traffic SEC(".maps");

/* Application sockets of `app-safe` pods whose file was seen blocking
 * (socket cookie -> ACCEL_READER_BLOCKING): their peers stop redirecting
 * into them. Written by the socket's own programs (guard.h), which delete
 * the entry when it leaves the sockhash or closes. Full: the peer keeps
 * redirecting until the socket has left (then its redirects fail to TCP). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u8);
} accel_reader SEC(".maps");

/* Sockets of each pod kept off the redirect path, by reason (ACCEL_HELD_*):
 * the operator's view of what the guards held back. Written by the
 * programs (one count per socket); the daemon deletes a pod's entries
 * before it reuses the pod's id. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct accel_pod_held_key);
	__type(value, __u64);
} accel_pod_held SEC(".maps");

/* Istio's excludeInboundPorts / excludeOutboundPorts per pod address.
 * Written only by the daemon's endpoint source. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct accel_excluded_port_key);
	__type(value, __u8);
} accel_excluded_ports SEC(".maps");

/* Istio's excludeOutboundIPRanges per pod address. Written only by the
 * daemon's endpoint source. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, struct accel_excluded_cidr_key);
	__type(value, __u8);
} accel_excluded_cidrs SEC(".maps");

/* Destinations of short-lived connections (short_lived.h). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct accel_app_listener_key);
	__type(value, struct accel_short_lived);
} accel_short_lived SEC(".maps");

/* One slot: the daemon flips mode to PASSTHROUGH to drain before unload. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct accel_config);
} accel_config SEC(".maps");

/* Counters; per-CPU so the hot path never bounces a cache line. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ACCEL_STATS_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} accel_stats SEC(".maps");

#endif /* ACCEL_MAPS_H */
