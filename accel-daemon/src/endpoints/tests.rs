//! Unit tests of the endpoints file and pods file parsers, and of the
//! modes' endpoint flags.

use std::path::Path;

use super::{
    static_source::{parse_lines, parse_pods},
    *,
};

#[test]
fn parses_file_with_comments() {
    let set = parse_lines(
        Path::new("f"),
        "# pods\n10.0.0.5\n  fd00::5  # v6 pod\n\n10.0.0.5\n",
    )
    .unwrap();
    assert_eq!(set.len(), 2);
}

#[test]
fn rejects_bad_lines_with_position() {
    let err = parse_lines(Path::new("f"), "10.0.0.1\nnot-an-ip\n").unwrap_err();
    assert!(err.to_string().contains("f:2"), "{err}");
    assert!(parse_lines(Path::new("f"), "127.0.0.1\n").is_err());
}

#[test]
fn parses_a_hand_written_pods_file() {
    let pods = parse_pods(
        Path::new("pods.toml"),
        r#"
# reviews-v1 on this node
[[pod]]
name = "default/reviews-v1"
ips = ["10.244.0.7", "fd00:244::7"]
netns = "/var/run/netns/cni-1234"
exclude_inbound_ports = [15090]
exclude_outbound_ports = [3306]
exclude_outbound_ip_ranges = ["10.96.0.0/12", "fd00:96::/64"]

[[pod]]
name = "default/ratings"
ips = ["10.244.0.8"]
pid = 4242
"#,
    )
    .unwrap();
    assert_eq!(pods.len(), 2);
    assert_eq!(
        pods[0].netns_ref(),
        Some(NetnsRef::Path {
            netns: "/var/run/netns/cni-1234".into()
        })
    );
    assert_eq!(
        pods[0].exclude_outbound_ip_ranges[0].to_string(),
        "10.96.0.0/12"
    );
    assert_eq!(pods[1].netns_ref(), Some(NetnsRef::Pid { pid: 4242 }));
    assert!(pods[1].exclude_inbound_ports.is_empty());
}

#[test]
fn pods_file_errors_name_the_problem() {
    let bad = |text: &str| {
        parse_pods(Path::new("p.toml"), text)
            .unwrap_err()
            .to_string()
    };
    assert!(bad("[[pod]]\nips = []\n").contains("at least one address"));
    assert!(bad("[[pod]]\nips = [\"127.0.0.1\"]\n").contains("not a pod address"));
    assert!(
        bad("[[pod]]\nips = [\"10.0.0.1\"]\nexclude_outbound_ip_ranges = [\"10.0.0.0/40\"]\n")
            .contains("prefix length")
    );
    assert!(bad("[[pod]]\nips = [\"10.0.0.1\"]\ncolour = 1\n").contains("colour"));
    assert!(bad("[[pod]]\nips = [\"10.0.0.300\"]\n").contains("p.toml"));
    assert!(bad("[[pod]]\nips = [\"10.0.0.1\"]\nnetns = \"/x\"\npid = 1\n").contains("not both"));
}

/// `auto` records application sockets only where the kernel's FIONREAD
/// counts TCP bytes (or the operator accepted the gap); elsewhere it takes
/// proxy-only's flags. No other mode depends on the probe.
#[test]
fn auto_takes_proxy_only_flags_where_applications_cannot_be_recorded() {
    use accel_bpf::abi::{EP_APP_NONBLOCKING_ONLY, EP_APP_SEND_ONLY, EP_PROXY_ONLY};
    assert_eq!(
        mode_flags(Acceleration::Auto, true),
        EP_APP_NONBLOCKING_ONLY | EP_APP_SEND_ONLY
    );
    assert_eq!(mode_flags(Acceleration::Auto, false), EP_PROXY_ONLY);
    for mode in [
        Acceleration::AppSafe,
        Acceleration::All,
        Acceleration::ProxyOnly,
    ] {
        assert_eq!(mode_flags(mode, true), mode_flags(mode, false), "{mode:?}");
    }
}
