//! The router's ruleset: generated as text by pure functions, applied atomically.
//!
//! Forwarded LAN traffic and inbound WAN traffic to non-router ports are taken out of conntrack
//! (`notrack`) so the kernel's NAT never fights the userspace NAT; the untracked packets that
//! cross the WAN are queued to gatewayd, which translates them or drops them. Queues have no
//! bypass: with gatewayd down, WAN traffic stops instead of leaking untranslated.
//!
//! ICMP errors stay tracked: conntrack finds the router's own flows in their quotes (state
//! related, handled by the kernel), and marks errors about untracked packets, ours, invalid.
//! Those are queued too, in both directions: coming in they go back to the LAN host, going
//! out (the router's own errors about packets it forwarded in) they must not quote a LAN
//! address.
//!
//! Hairpinning: LAN packets for the router's own non-LAN address (the WAN address) are queued
//! in prerouting, where gatewayd sends those for a mapped port back into the LAN (destination
//! rewritten; the rest go on untouched to the router). Routed back out to the LAN they are
//! queued again in postrouting, where the source is rewritten: doing both in prerouting would
//! make the packet a martian (a local source arriving from outside). A LAN host's ICMP errors
//! about hairpinned packets (addressed to the WAN address too) take the same two steps back
//! to the sender.

use anyhow::{bail, Context as _};
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// What the ruleset is built from.
#[derive(Debug, Clone)]
pub struct Spec {
    pub lan_if: String,
    pub lan_addr: Ipv4Addr,
    pub lan_prefix: u8,
    pub wan_if: String,
    pub queue_num: u16,
    /// The router's own ephemeral ports: WAN traffic to them stays tracked and goes to input.
    pub router_ports: (u16, u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// nft `queue` statements in our own table.
    Nft,
    /// The kernel lacks nft `queue` (CONFIG_NFT_QUEUE): the two queue rules go in via
    /// iptables-nft's NFQUEUE target, the rest stays in nft.
    IptablesNfqueue,
}

/// The ICMP errors that quote a packet and are translated (RFC 5508).
const ICMP_ERRORS: [&str; 3] = [
    "destination-unreachable",
    "time-exceeded",
    "parameter-problem",
];

const PRE_CHAIN: &str = "GATEHOUSE-PRE";
const POST_CHAIN: &str = "GATEHOUSE-POST";

/// Interface names are pasted into rule text: allow only what Linux allows in practice, minus
/// anything that could break out of a quoted string.
fn check_ifname(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() < 16
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@:".contains(&b));
    if !ok {
        bail!("interface name {name:?} is not usable in a ruleset");
    }
    Ok(())
}

/// The nft transaction: recreate `inet gatehouse` from scratch (add+delete makes a restart
/// replace rather than duplicate it). Queue chains only when `with_queue`.
pub fn nft_ruleset(s: &Spec, with_queue: bool) -> String {
    let (lan, wan, q) = (&s.lan_if, &s.wan_if, s.queue_num);
    let (lo, hi) = s.router_ports;
    // Every invalid ICMP error from the WAN is queued first, so the forward rule for them
    // only ever sees errors gatewayd has translated.
    let errors = ICMP_ERRORS.join(", ");
    let lan_net = lan_network(s);
    let mut r = format!(
        r#"add table inet gatehouse
delete table inet gatehouse
table inet gatehouse {{
	chain raw_pre {{
		type filter hook prerouting priority raw; policy accept;
		iifname "{lan}" ip daddr != {lan_addr} notrack
		iifname "{wan}" tcp dport != {lo}-{hi} notrack
		iifname "{wan}" udp dport != {lo}-{hi} udp dport != 68 notrack
		iifname "{wan}" icmp type echo-reply notrack
	}}
	chain input {{
		type filter hook input priority filter; policy drop;
		iif "lo" accept
		ct state established,related accept
		iifname "{lan}" accept
		iifname "{wan}" udp dport 68 accept
	}}
	chain forward {{
		type filter hook forward priority filter; policy drop;
		iifname "{lan}" oifname "{wan}" meta nfproto ipv4 accept
		iifname "{wan}" oifname "{lan}" ct state untracked accept
		iifname "{wan}" oifname "{lan}" icmp type {{ {errors} }} ct state invalid accept
		iifname "{lan}" oifname "{lan}" ct state untracked accept
		ct state established,related accept
	}}
"#,
        lan_addr = s.lan_addr,
    );
    if with_queue {
        r.push_str(&format!(
            r#"	chain nat_in {{
		type filter hook prerouting priority mangle; policy accept;
		iifname "{wan}" meta nfproto ipv4 ct state untracked queue num {q}
		iifname "{wan}" icmp type {{ {errors} }} ct state invalid queue num {q}
		iifname "{lan}" meta l4proto {{ tcp, udp }} ip daddr != {lan_addr} fib daddr type local ct state untracked queue num {q}
		iifname "{lan}" icmp type {{ {errors} }} ip daddr != {lan_addr} fib daddr type local ct state untracked queue num {q}
	}}
	chain nat_out {{
		type filter hook postrouting priority srcnat; policy accept;
		oifname "{wan}" meta nfproto ipv4 ct state untracked queue num {q}
		oifname "{wan}" icmp type {{ {errors} }} ct state invalid queue num {q}
		oifname "{lan}" meta l4proto {{ tcp, udp }} ip saddr {lan_net} ct state untracked queue num {q}
		oifname "{lan}" icmp type {{ {errors} }} ip saddr {lan_net} ct state untracked queue num {q}
	}}
"#,
            lan_addr = s.lan_addr,
        ));
    }
    r.push_str("}\n");
    r
}

/// iptables-nft-restore --noflush input: our two chains in mangle, emptied and refilled in one
/// commit. The jumps from PREROUTING/POSTROUTING are added separately, once (see `apply`).
pub fn iptables_queue_rules(s: &Spec) -> String {
    let (wan, q) = (&s.wan_if, s.queue_num);
    let mut r = format!(
        "*mangle\n\
         :{PRE_CHAIN} - [0:0]\n\
         :{POST_CHAIN} - [0:0]\n\
         -F {PRE_CHAIN}\n\
         -F {POST_CHAIN}\n\
         -A {PRE_CHAIN} -i {wan} -m conntrack --ctstate UNTRACKED -j NFQUEUE --queue-num {q}\n\
         -A {POST_CHAIN} -o {wan} -m conntrack --ctstate UNTRACKED -j NFQUEUE --queue-num {q}\n"
    );
    // The same ICMP error and hairpin rules as the native ruleset.
    for (chain, dir) in [(PRE_CHAIN, "-i"), (POST_CHAIN, "-o")] {
        for t in ICMP_ERRORS {
            r.push_str(&format!(
                "-A {chain} {dir} {wan} -p icmp --icmp-type {t} -m conntrack --ctstate INVALID \
                 -j NFQUEUE --queue-num {q}\n"
            ));
        }
    }
    let (lan, lan_addr, lan_net) = (&s.lan_if, s.lan_addr, lan_network(s));
    for p in ["tcp", "udp"] {
        r.push_str(&format!(
            "-A {PRE_CHAIN} -i {lan} -p {p} ! -d {lan_addr} -m addrtype --dst-type LOCAL \
             -m conntrack --ctstate UNTRACKED -j NFQUEUE --queue-num {q}\n\
             -A {POST_CHAIN} -o {lan} -p {p} -s {lan_net} -m conntrack --ctstate UNTRACKED \
             -j NFQUEUE --queue-num {q}\n"
        ));
    }
    for t in ICMP_ERRORS {
        r.push_str(&format!(
            "-A {PRE_CHAIN} -i {lan} -p icmp --icmp-type {t} ! -d {lan_addr} \
             -m addrtype --dst-type LOCAL -m conntrack --ctstate UNTRACKED \
             -j NFQUEUE --queue-num {q}\n\
             -A {POST_CHAIN} -o {lan} -p icmp --icmp-type {t} -s {lan_net} \
             -m conntrack --ctstate UNTRACKED -j NFQUEUE --queue-num {q}\n"
        ));
    }
    r.push_str("COMMIT\n");
    r
}

/// "192.168.1.0/24": the LAN subnet, for rules that match LAN sources.
fn lan_network(s: &Spec) -> String {
    let mask = crate::config::prefix_mask(s.lan_prefix);
    let net = Ipv4Addr::from(u32::from(s.lan_addr) & mask);
    format!("{net}/{}", s.lan_prefix)
}

fn run_with_stdin(cmd: &str, args: &[&str], input: &str) -> anyhow::Result<()> {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {cmd}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn iptables(args: &[&str]) -> anyhow::Result<bool> {
    let st = Command::new("iptables-nft")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running iptables-nft")?;
    Ok(st.success())
}

/// Installs the ruleset. Native nft first; if the kernel refuses `queue`, falls back to
/// iptables-nft NFQUEUE for the two queue rules. Call only once the queue listener is bound.
pub fn apply(s: &Spec) -> anyhow::Result<Backend> {
    check_ifname(&s.lan_if)?;
    check_ifname(&s.wan_if)?;
    let native_err = match run_with_stdin("nft", &["-f", "-"], &nft_ruleset(s, true)) {
        Ok(()) => return Ok(Backend::Nft),
        Err(e) => e,
    };
    run_with_stdin("nft", &["-f", "-"], &nft_ruleset(s, false)).with_context(|| {
        format!("nft ruleset (native queue attempt failed too: {native_err:#})")
    })?;
    run_with_stdin(
        "iptables-nft-restore",
        &["--noflush"],
        &iptables_queue_rules(s),
    )?;
    for (hook, chain) in [("PREROUTING", PRE_CHAIN), ("POSTROUTING", POST_CHAIN)] {
        // -C first so a restart does not stack a second jump.
        if !iptables(&["-t", "mangle", "-C", hook, "-j", chain])?
            && !iptables(&["-t", "mangle", "-I", hook, "1", "-j", chain])?
        {
            bail!("iptables-nft: cannot hook {chain} into mangle {hook}");
        }
    }
    Ok(Backend::IptablesNfqueue)
}

/// The sysctls the datapath relies on. Written directly; a failure is a warning, because a
/// read-only /proc/sys (tests, containers) must not stop the rest of the router. Redirects
/// are off: a hairpinned packet leaves by the interface it came in on, which would otherwise
/// earn its sender an ICMP redirect (the router has no better gateway to point at anyway).
pub fn set_sysctls(router_ports: (u16, u16), lan_if: &str) {
    let range = format!("{} {}", router_ports.0, router_ports.1);
    let lan_redirects = format!("/proc/sys/net/ipv4/conf/{lan_if}/send_redirects");
    for (path, val) in [
        ("/proc/sys/net/ipv4/ip_local_port_range", range.as_str()),
        ("/proc/sys/net/ipv4/conf/all/send_redirects", "0"),
        (lan_redirects.as_str(), "0"),
        ("/proc/sys/net/ipv4/ip_forward", "1"),
    ] {
        if let Err(e) = std::fs::write(path, val) {
            eprintln!("gatewayd: nat: warning: cannot set {path} = {val}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec {
            lan_if: "lan0".into(),
            lan_addr: Ipv4Addr::new(192, 168, 1, 1),
            lan_prefix: 24,
            wan_if: "wan0".into(),
            queue_num: 3,
            router_ports: (61000, 65535),
        }
    }

    #[test]
    fn nft_text_native() {
        let r = nft_ruleset(&spec(), true);
        assert!(r.starts_with("add table inet gatehouse\ndelete table inet gatehouse\n"));
        for line in [
            r#"iifname "lan0" ip daddr != 192.168.1.1 notrack"#,
            r#"iifname "wan0" tcp dport != 61000-65535 notrack"#,
            r#"iifname "wan0" udp dport != 61000-65535 udp dport != 68 notrack"#,
            r#"iifname "wan0" icmp type echo-reply notrack"#,
            "type filter hook input priority filter; policy drop;",
            r#"iifname "wan0" udp dport 68 accept"#,
            "type filter hook forward priority filter; policy drop;",
            r#"iifname "wan0" oifname "lan0" ct state untracked accept"#,
            r#"iifname "wan0" meta nfproto ipv4 ct state untracked queue num 3"#,
            r#"oifname "wan0" meta nfproto ipv4 ct state untracked queue num 3"#,
            r#"iifname "wan0" icmp type { destination-unreachable, time-exceeded, parameter-problem } ct state invalid queue num 3"#,
            r#"oifname "wan0" icmp type { destination-unreachable, time-exceeded, parameter-problem } ct state invalid queue num 3"#,
            r#"iifname "wan0" oifname "lan0" icmp type { destination-unreachable, time-exceeded, parameter-problem } ct state invalid accept"#,
            r#"iifname "lan0" oifname "lan0" ct state untracked accept"#,
            r#"iifname "lan0" meta l4proto { tcp, udp } ip daddr != 192.168.1.1 fib daddr type local ct state untracked queue num 3"#,
            r#"oifname "lan0" meta l4proto { tcp, udp } ip saddr 192.168.1.0/24 ct state untracked queue num 3"#,
            r#"iifname "lan0" icmp type { destination-unreachable, time-exceeded, parameter-problem } ip daddr != 192.168.1.1 fib daddr type local ct state untracked queue num 3"#,
            r#"oifname "lan0" icmp type { destination-unreachable, time-exceeded, parameter-problem } ip saddr 192.168.1.0/24 ct state untracked queue num 3"#,
        ] {
            assert!(r.contains(line), "missing {line:?} in\n{r}");
        }
        assert!(!r.contains("bypass"), "queues must fail closed");
        // Braces balance (nft rejects the whole transaction otherwise).
        assert_eq!(r.matches('{').count(), r.matches('}').count());
    }

    #[test]
    fn nft_text_without_queue() {
        let r = nft_ruleset(&spec(), false);
        assert!(!r.contains("queue"));
        assert!(r.contains("chain forward"));
        assert_eq!(r.matches('{').count(), r.matches('}').count());
    }

    #[test]
    fn iptables_text() {
        let r = iptables_queue_rules(&spec());
        assert_eq!(
            r,
            "*mangle\n:GATEHOUSE-PRE - [0:0]\n:GATEHOUSE-POST - [0:0]\n-F GATEHOUSE-PRE\n\
             -F GATEHOUSE-POST\n\
             -A GATEHOUSE-PRE -i wan0 -m conntrack --ctstate UNTRACKED -j NFQUEUE --queue-num 3\n\
             -A GATEHOUSE-POST -o wan0 -m conntrack --ctstate UNTRACKED -j NFQUEUE --queue-num 3\n\
             -A GATEHOUSE-PRE -i wan0 -p icmp --icmp-type destination-unreachable -m conntrack --ctstate INVALID -j NFQUEUE --queue-num 3\n\
             -A GATEHOUSE-PRE -i wan0 -p icmp --icmp-type time-exceeded -m conntrack --ctstate INVALID -j NFQUEUE --queue-num 3\n\
             -A GATEHOUSE-PRE -i wan0 -p icmp --icmp-type parameter-problem -m conntrack --ctstate INVALID -j NFQUEUE --queue-num 3\n\
             -A GATEHOUSE-POST -o wan0 -p icmp --icmp-type destination-unreachable -m conntrack --ctstate INVALID -j NFQUEUE --queue-num 3\n\
             -A GATEHOUSE-POST -o wan0 -p icmp --icmp-type time-exceeded -m conntrack --ctstate INVALID -j NFQUEUE --queue-num 3\n\
             -A GATEHOUSE-POST -o wan0 -p icmp --icmp-type parameter-problem -m conntrack --ctstate INVALID -j NFQUEUE --queue-num 3\n\
             -A GATEHOUSE-PRE -i lan0 -p tcp ! -d 192.168.1.1 -m addrtype --dst-type LOCAL -m conntrack --ctstate UNTRACKED -j NFQUEUE --queue-num 3\n\
             -A GATEHOUSE-POST -o lan0 -p tcp -s 192.168.1.0/24 -m conntrack --ctstate UNTRACKED -j NFQUEUE --queue-num 3\n\
             -A GATEHOUSE-PRE -i lan0 -p udp ! -d 192.168.1.1 -m addrtype --dst-type LOCAL -m conntrack --ctstate UNTRACKED -j NFQUEUE --queue-num 3\n\
             -A GATEHOUSE-POST -o lan0 -p udp -s 192.168.1.0/24 -m conntrack --ctstate UNTRACKED -j NFQUEUE --queue-num 3\n\
             -A GATEHOUSE-PRE -i lan0 -p icmp --icmp-type destination-unreachable ! -d 192.168.1.1 -m addrtype --dst-type LOCAL -m conntrack --ctstate UNTRACKED -j NFQUEUE --queue-num 3\n\
             -A GATEHOUSE-POST -o lan0 -p icmp --icmp-type destination-unreachable -s 192.168.1.0/24 -m conntrack --ctstate UNTRACKED -j NFQUEUE --queue-num 3\n\
             -A GATEHOUSE-PRE -i lan0 -p icmp --icmp-type time-exceeded ! -d 192.168.1.1 -m addrtype --dst-type LOCAL -m conntrack --ctstate UNTRACKED -j NFQUEUE --queue-num 3\n\
             -A GATEHOUSE-POST -o lan0 -p icmp --icmp-type time-exceeded -s 192.168.1.0/24 -m conntrack --ctstate UNTRACKED -j NFQUEUE --queue-num 3\n\
             -A GATEHOUSE-PRE -i lan0 -p icmp --icmp-type parameter-problem ! -d 192.168.1.1 -m addrtype --dst-type LOCAL -m conntrack --ctstate UNTRACKED -j NFQUEUE --queue-num 3\n\
             -A GATEHOUSE-POST -o lan0 -p icmp --icmp-type parameter-problem -s 192.168.1.0/24 -m conntrack --ctstate UNTRACKED -j NFQUEUE --queue-num 3\n\
             COMMIT\n"
        );
        assert!(!r.contains("bypass"));
    }

    #[test]
    fn hostile_interface_names_rejected() {
        assert!(check_ifname("wan0").is_ok());
        assert!(check_ifname("br-lan").is_ok());
        for bad in ["", "a\"; flush ruleset", "x y", "averyveryverylongname"] {
            assert!(check_ifname(bad).is_err(), "{bad:?}");
        }
    }
}
