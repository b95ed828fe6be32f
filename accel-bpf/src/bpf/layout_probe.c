/* Host program run by build.rs: prints the C side of the ABI (sizes, field
 * offsets, constants) as Rust constants, so the layout tests compare the
 * Rust mirror against what the compiler really laid out. */
#include <stddef.h>
#include <stdio.h>
#include "accel_abi.h"

#define SIZE(t) printf("pub const SIZEOF_%s: usize = %zu;\n", #t, sizeof(struct t))
#define OFF(t, f) printf("pub const OFFSETOF_%s_%s: usize = %zu;\n", #t, #f, offsetof(struct t, f))
#define CONST(c) printf("pub const %s: u64 = %llu;\n", #c, (unsigned long long)(c))

int main(void)
{
	SIZE(accel_config);
	OFF(accel_config, mode);
	SIZE(accel_sock_state);
	OFF(accel_sock_state, token);
	OFF(accel_sock_state, peer_cookie);
	OFF(accel_sock_state, role);
	OFF(accel_sock_state, decision);
	OFF(accel_sock_state, reason);
	OFF(accel_sock_state, flags);
	OFF(accel_sock_state, redirected_msgs);
	OFF(accel_sock_state, redirected_bytes);
	OFF(accel_sock_state, passed_msgs);
	OFF(accel_sock_state, passed_bytes);
	OFF(accel_sock_state, peer_sk);
	OFF(accel_sock_state, flow_switches);
	OFF(accel_sock_state, flow_unchecked);
	OFF(accel_sock_state, local_pod);
	OFF(accel_sock_state, peer_pod);
	OFF(accel_pair_value, pod);
	OFF(accel_endpoint, pod);
	SIZE(accel_meshed_netns);
	OFF(accel_meshed_netns, pod);
	SIZE(accel_pod_pair);
	OFF(accel_pod_pair, src);
	OFF(accel_pod_pair, dst);
	SIZE(accel_pod_traffic);
	OFF(accel_pod_traffic, msgs);
	OFF(accel_pod_traffic, bytes);
	SIZE(accel_pair_key);
	OFF(accel_pair_key, token);
	OFF(accel_pair_key, stage);
	SIZE(accel_pair_value);
	OFF(accel_pair_value, cookie);
	OFF(accel_pair_value, netns_cookie);
	OFF(accel_pair_value, sk_addr);
	OFF(accel_config, flags);
	OFF(accel_config, flow_budget);
	SIZE(accel_excluded_port_key);
	OFF(accel_excluded_port_key, addr);
	OFF(accel_excluded_port_key, port);
	OFF(accel_excluded_port_key, direction);
	SIZE(accel_excluded_cidr_key);
	OFF(accel_excluded_cidr_key, prefixlen);
	OFF(accel_excluded_cidr_key, pod);
	OFF(accel_excluded_cidr_key, dst);
	CONST(ACCEL_CFG_LOOPBACK_MESHED_ONLY);
	CONST(ACCEL_DIR_INBOUND);
	CONST(ACCEL_DIR_OUTBOUND);
	SIZE(accel_endpoint_key);
	SIZE(accel_endpoint);
	OFF(accel_endpoint, flags);
	CONST(ACCEL_ABI_VERSION);
	CONST(ACCEL_TCPOPT_KIND);
	CONST(ACCEL_TCPOPT_EXID);
	CONST(ACCEL_TCPOPT_LEN);
	CONST(ACCEL_ROLE_ACTIVE);
	CONST(ACCEL_ROLE_PASSIVE);
	CONST(ACCEL_DECISION_UNDECIDED);
	CONST(ACCEL_DECISION_REDIRECT);
	CONST(ACCEL_DECISION_TCP);
	CONST(ACCEL_DECISION_TCP_FLOW);
	CONST(ACCEL_REASON_FLOW);
	CONST(ACCEL_REASON_NONE);
	CONST(ACCEL_REASON_UNPAIRED);
	CONST(ACCEL_REASON_PASSTHROUGH);
	CONST(ACCEL_REASON_PEER_GONE);
	CONST(ACCEL_SF_OPT_PENDING);
	CONST(ACCEL_SF_APP_GUARDED);
	CONST(ACCEL_SF_PROVEN);
	CONST(ACCEL_SF_LEAVING);
	CONST(ACCEL_SF_RX_ONLY);
	CONST(ACCEL_SF_PEER_RX_ONLY);
	CONST(ACCEL_PAIR_F_RX_ONLY);
	CONST(ACCEL_REASON_BLOCKING);
	CONST(ACCEL_REASON_APP_READS_TCP);
	CONST(ACCEL_INGRESS_OPEN);
	CONST(ACCEL_INGRESS_CLOSED);
	CONST(ACCEL_INGRESS_UNLESS_BLOCKING);
	CONST(ACCEL_READER_BLOCKING);
	CONST(ACCEL_HELD_BLOCKING);
	CONST(ACCEL_HELD_NO_FILE);
	CONST(ACCEL_HELD_APP_READS_TCP);
	CONST(ACCEL_EP_APP_NONBLOCKING_ONLY);
	CONST(ACCEL_EP_APP_SEND_ONLY);
	OFF(accel_config, default_ep_flags);
	OFF(accel_sock_state, cookie);
	OFF(accel_sock_state, ingress);
	OFF(accel_sock_state, peer_ingress);
	OFF(accel_pair_value, ingress);
	OFF(accel_pair_value, flags);
	SIZE(accel_pod_held_key);
	SIZE(accel_app_listener_key);
	OFF(accel_app_listener_key, addr);
	OFF(accel_app_listener_key, port);
	OFF(accel_pod_held_key, reason);
	CONST(ACCEL_PAIR_OFFER);
	CONST(ACCEL_PAIR_ANSWER);
	CONST(ACCEL_MODE_ACCELERATE);
	CONST(ACCEL_MODE_PASSTHROUGH);
	CONST(ACCEL_EP_MESHED);
	CONST(ACCEL_EP_PROXY_ONLY);
	OFF(accel_meshed_netns, flags);
	OFF(accel_config, proxy_uid);
	CONST(ACCEL_STATS_SLOTS);
	CONST(ACCEL_STAT_COUNT);
	/* Every counter in slot order; the test checks both the order and the
	 * enum's values, so a counter left out here fails it. */
#define STAT_LIST \
	X(ACCEL_STAT_ACTIVE_OFFERED)\
	X(ACCEL_STAT_PASSIVE_PAIRED)\
	X(ACCEL_STAT_ACTIVE_PAIRED)\
	X(ACCEL_STAT_RECORD_FAILED)\
	X(ACCEL_STAT_PAIRING_FULL)\
	X(ACCEL_STAT_STATE_FAILED)\
	X(ACCEL_STAT_REFUSED_NO_TOKEN)\
	X(ACCEL_STAT_REFUSED_UNKNOWN)\
	X(ACCEL_STAT_REFUSED_NETNS)\
	X(ACCEL_STAT_REFUSED_EARLY_DATA)\
	X(ACCEL_STAT_ACTIVE_UNANSWERED)\
	X(ACCEL_STAT_REDIRECT_MSGS)\
	X(ACCEL_STAT_REDIRECT_BYTES)\
	X(ACCEL_STAT_REDIRECT_FAILED)\
	X(ACCEL_STAT_PASS_MSGS)\
	X(ACCEL_STAT_PASS_BYTES)\
	X(ACCEL_STAT_PASSTHROUGH_SWITCH)\
	X(ACCEL_STAT_HDR_OPT_FAILED)\
	X(ACCEL_STAT_CLOSED)\
	X(ACCEL_STAT_EXCLUDED)\
	X(ACCEL_STAT_FLOW_TO_TCP)\
	X(ACCEL_STAT_FLOW_RESUMED)\
	X(ACCEL_STAT_POD_TRAFFIC_FULL)\
	X(ACCEL_STAT_REFUSED_PROXY_ONLY)\
	X(ACCEL_STAT_PROXY_OFF_NODE)\
	X(ACCEL_STAT_APP_BLOCKING_SKIPPED)\
	X(ACCEL_STAT_APP_BLOCKING_LEFT)\
	X(ACCEL_STAT_APP_LEFT)\
	X(ACCEL_STAT_APP_RECEIVES_BY_TCP)\
	X(ACCEL_STAT_APP_PAIR_SKIPPED)\
	X(ACCEL_STAT_RECORDED_RX_ONLY)
	printf("pub const STAT_NAMES_C: [&str; %d] = [\n", ACCEL_STAT_COUNT);
#define X(s) printf("    \"%s\",\n", #s);
	STAT_LIST
#undef X
	printf("];\n");
	printf("pub const STAT_VALUES_C: [u32; %d] = [", ACCEL_STAT_COUNT);
#define X(s) printf("%d, ", s);
	STAT_LIST
#undef X
	printf("];\n");
	return 0;
}
