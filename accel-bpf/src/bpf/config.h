/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
#ifndef ACCEL_CONFIG_H
#define ACCEL_CONFIG_H

#include "maps.h"

/* Set by the loader from its probes (read-only data, frozen before load), so
 * the verifier prunes calls to helpers this kernel does not have. */
const volatile __u32 accel_have_netns_cookie = 0;

static __always_inline struct accel_config *accel_config_get(void)
{
	__u32 key = 0;

	return bpf_map_lookup_elem(&accel_config, &key);
}

/* Read the slot once per program run and ask these of it. */
static __always_inline int cfg_passthrough(const struct accel_config *cfg)
{
	/* No config slot cannot happen for an array; fail safe to TCP anyway. */
	return !cfg || cfg->mode != ACCEL_MODE_ACCELERATE;
}

static __always_inline int cfg_loopback_meshed_only(const struct accel_config *cfg)
{
	return cfg && (cfg->flags & ACCEL_CFG_LOOPBACK_MESHED_ONLY);
}

/* Endpoint flags of loopback in namespaces nobody listed. */
static __always_inline __u32 cfg_default_ep_flags(const struct accel_config *cfg)
{
	return cfg ? cfg->default_ep_flags : 0;
}

#endif /* ACCEL_CONFIG_H */
