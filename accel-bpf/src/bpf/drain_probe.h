/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The drain probe's contract with the daemon (mirrored in
 * accel-bpf/src/lib.rs, `drain_probe`): where the key sits in the test
 * packet, and what the return value means.
 */
#ifndef ACCEL_DRAIN_PROBE_H
#define ACCEL_DRAIN_PROBE_H

/* After an Ethernet header's worth of bytes: a classifier test run
 * refuses shorter packets. */
#define DRAIN_PROBE_KEY_OFFSET 14

#define DRAIN_PROBE_EMPTY 0      /* the socket's ingress queue is empty */
#define DRAIN_PROBE_PENDING 1    /* redirected messages are still queued */
#define DRAIN_PROBE_GONE 2       /* the key left the sockhash (socket closed) */
#define DRAIN_PROBE_UNREADABLE 3 /* the socket or its psock could not be read */
#define DRAIN_PROBE_BAD_INPUT 4  /* the test packet was too short */

#endif /* ACCEL_DRAIN_PROBE_H */
