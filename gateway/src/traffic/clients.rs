//! Which LAN device an inside address belongs to. The NAT sees IP packets without link
//! headers, so the MAC comes from the DHCP leases, else the router's neighbour table (for
//! devices with a static address). Refreshed at most once a second, on a miss.

use crate::dhcp::lease_store::SharedStore;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

pub type Mac = [u8; 6];

const REFRESH_EVERY: Duration = Duration::from_secs(1);

type Map = HashMap<Ipv4Addr, Mac, foldhash::fast::RandomState>;

pub struct ClientMap {
    leases: Option<SharedStore>,
    arp_path: std::path::PathBuf,
    map: Map,
    refreshed: Option<Instant>,
    /// The last hit: packets come in runs from one device.
    last: Option<(Ipv4Addr, Mac)>,
}

impl ClientMap {
    pub fn new(leases: Option<SharedStore>) -> Self {
        Self {
            leases,
            arp_path: "/proc/net/arp".into(),
            map: Map::default(),
            refreshed: None,
            last: None,
        }
    }

    /// Pins an address to a device (tests and benchmarks; the daemon learns from leases and
    /// neighbours). A later refresh replaces it.
    pub fn insert(&mut self, ip: Ipv4Addr, mac: Mac) {
        self.last = None;
        self.map.insert(ip, mac);
        self.refreshed.get_or_insert_with(Instant::now);
    }

    /// The MAC of `ip`, if any source knows it.
    pub fn lookup(&mut self, ip: Ipv4Addr) -> Option<Mac> {
        if let Some((i, m)) = self.last {
            if i == ip {
                return Some(m);
            }
        }
        if let Some(m) = self.map.get(&ip) {
            self.last = Some((ip, *m));
            return Some(*m);
        }
        if self.refreshed.is_none_or(|t| t.elapsed() >= REFRESH_EVERY) {
            self.refresh();
            return self.map.get(&ip).copied();
        }
        None
    }

    /// Rebuilds the map: neighbours first, leases over them (a lease is the better source
    /// while the neighbour entry may be stale).
    pub fn refresh(&mut self) {
        self.refreshed = Some(Instant::now());
        self.last = None;
        let mut map: Map = std::fs::read_to_string(&self.arp_path)
            .map(|t| parse_arp(&t).into_iter().collect())
            .unwrap_or_default();
        if let Some(store) = &self.leases {
            if let Ok(s) = store.lock() {
                for l in s.leases() {
                    map.insert(l.ip, l.mac);
                }
            }
        }
        self.map = map;
    }
}

/// Parses /proc/net/arp: complete entries only (flags 0x2), no incomplete 00:00:.. ones.
pub fn parse_arp(text: &str) -> HashMap<Ipv4Addr, Mac> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let ip = f.first()?.parse().ok()?;
            let flags = u32::from_str_radix(f.get(2)?.trim_start_matches("0x"), 16).ok()?;
            let mac = crate::config::parse_mac(f.get(3)?)?;
            (flags & 0x2 != 0 && mac != [0; 6]).then_some((ip, mac))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_table_complete_entries_only() {
        let t = "IP address       HW type     Flags       HW address            Mask     Device\n\
                 192.168.1.10     0x1         0x2         52:54:00:12:34:56     *        br-lan\n\
                 192.168.1.11     0x1         0x0         00:00:00:00:00:00     *        br-lan\n\
                 garbage line\n";
        let m = parse_arp(t);
        assert_eq!(m.len(), 1);
        assert_eq!(
            m[&"192.168.1.10".parse().unwrap()],
            [0x52, 0x54, 0, 0x12, 0x34, 0x56]
        );
    }

    #[test]
    fn misses_refresh_at_most_once_a_second() {
        let dir = std::env::temp_dir().join(format!("gh-arp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let arp = dir.join("arp");
        std::fs::write(&arp, "h\n").unwrap();
        let mut c = ClientMap::new(None);
        c.arp_path = arp.clone();
        let ip: Ipv4Addr = "192.168.1.20".parse().unwrap();
        assert_eq!(c.lookup(ip), None);
        std::fs::write(&arp, "h\n192.168.1.20 0x1 0x2 02:00:00:00:00:20 * br-lan\n").unwrap();
        // Within the second: no re-read.
        assert_eq!(c.lookup(ip), None);
        c.refreshed = Some(Instant::now() - REFRESH_EVERY);
        assert_eq!(c.lookup(ip), Some([2, 0, 0, 0, 0, 0x20]));
        std::fs::remove_dir_all(&dir).ok();
    }
}
