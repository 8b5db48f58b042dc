//! Kernel settings a router needs.

use crate::log;

pub const ROUTER: &[(&str, &str)] = &[
    // Off until gatewayd's firewall is in: gatewayd turns forwarding on itself once its
    // ruleset is installed, so no packet is ever routed between WAN and LAN unfiltered.
    ("net/ipv4/ip_forward", "0"),
    ("net/ipv4/conf/all/rp_filter", "1"),
    ("net/ipv4/conf/default/rp_filter", "1"),
    // The router's own sockets use 61000-65535; gatewayd's NAT never maps into
    // this range, so local connections and NAT mappings cannot collide.
    ("net/ipv4/ip_local_port_range", "61000 65535"),
    ("net/ipv4/tcp_syncookies", "1"),
    ("net/ipv4/icmp_echo_ignore_broadcasts", "1"),
    ("net/ipv6/conf/all/forwarding", "1"),
    ("kernel/panic", "10"),
];

/// Settings that exist only once nf_conntrack is loaded (the image's module
/// list, which loads while the network comes up).
pub const CONNTRACK: &[(&str, &str)] = &[("net/netfilter/nf_conntrack_max", "65536")];

pub fn apply(settings: &[(&str, &str)]) {
    let mut failed = 0;
    for (key, value) in settings {
        if let Err(e) = std::fs::write(format!("/proc/sys/{key}"), value) {
            failed += 1;
            log!("sysctl {key}={value}: {e}");
        }
    }
    log!(
        "sysctl: {} applied, {failed} failed",
        settings.len() - failed
    );
}
