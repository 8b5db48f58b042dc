//! Network bring-up: picks the WAN port, bridges the rest into `br-lan`.
//!
//! Rule (shown on the console at boot): ethernet ports are ordered by kernel
//! ifindex, i.e. by bus order; the first becomes `wan`, all others join
//! `br-lan`. A board with a single port gets only a WAN.
//! Links are configured with busybox `ip` for now; moving to rtnetlink is
//! tracked with the init work.

use crate::log;
use crate::settings::Settings;
use std::process::Command;

pub const WAN: &str = "wan";
pub const BRIDGE: &str = "br-lan";

#[derive(Debug, Clone, PartialEq)]
pub struct Port {
    pub name: String,
    pub ifindex: u32,
}

/// Physical ethernet ports: type 1 (ARPHRD_ETHER) with a backing device.
pub fn ethernet_ports() -> Vec<Port> {
    let mut ports = Vec::new();
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return ports;
    };
    for e in dir.flatten() {
        let p = e.path();
        let read = |f: &str| std::fs::read_to_string(p.join(f)).unwrap_or_default();
        if read("type").trim() != "1" || !p.join("device").exists() || p.join("phy80211").exists() {
            continue;
        }
        if let Ok(ifindex) = read("ifindex").trim().parse() {
            ports.push(Port {
                name: e.file_name().to_string_lossy().into_owned(),
                ifindex,
            });
        }
    }
    ports
}

/// Splits ports into (wan, lan) by the documented rule.
pub fn assign(mut ports: Vec<Port>) -> (Option<Port>, Vec<Port>) {
    ports.sort_by_key(|p| p.ifindex);
    let mut it = ports.into_iter();
    let wan = it.next();
    (wan, it.collect())
}

fn ip(args: &[&str]) -> bool {
    match Command::new("/bin/ip").args(args).output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            log!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr).trim()
            );
            false
        }
        Err(e) => {
            log!("ip: {e}");
            false
        }
    }
}

pub fn bring_up(s: &Settings) {
    ip(&["link", "set", "lo", "up"]);
    let (wan, lan) = assign(ethernet_ports());
    match &wan {
        Some(p) => {
            log!(
                "net: WAN is {} (first ethernet port), renamed to {WAN}",
                p.name
            );
            if p.name != WAN {
                ip(&["link", "set", "dev", &p.name, "name", WAN]);
            }
            ip(&["link", "set", "dev", WAN, "up"]);
        }
        None => log!("net: no ethernet port found for the WAN"),
    }
    ip(&["link", "add", "name", BRIDGE, "type", "bridge"]);
    for p in &lan {
        log!("net: LAN port {} joins {BRIDGE}", p.name);
        ip(&["link", "set", "dev", &p.name, "master", BRIDGE]);
        ip(&["link", "set", "dev", &p.name, "up"]);
    }
    let cidr = format!("{}/{}", s.lan_address, s.lan_prefix);
    ip(&["addr", "add", &cidr, "dev", BRIDGE]);
    ip(&["link", "set", "dev", BRIDGE, "up"]);
    log!("net: {BRIDGE} {cidr} up with {} port(s)", lan.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(name: &str, ifindex: u32) -> Port {
        Port {
            name: name.into(),
            ifindex,
        }
    }

    #[test]
    fn first_port_by_ifindex_is_wan() {
        let (wan, lan) = assign(vec![port("eth1", 3), port("eth0", 2), port("eth2", 4)]);
        assert_eq!(wan, Some(port("eth0", 2)));
        assert_eq!(lan, vec![port("eth1", 3), port("eth2", 4)]);
        let (wan, lan) = assign(vec![]);
        assert!(wan.is_none() && lan.is_empty());
    }
}
