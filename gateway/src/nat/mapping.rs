//! Endpoint-independent NAPT mapping table (RFC 4787 / RFC 5382 behaviour), pure logic.
//!
//! Key: (protocol, inside address, inside port or ICMP identifier) -> one outside port on the
//! WAN address, whatever the remote. Filtering is endpoint-independent too (full cone): any
//! remote may reach a live mapping. Time is passed in as milliseconds on a monotonic clock so
//! the logic is testable without sleeping.

use super::packet::TcpFlags;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};

pub type Millis = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// LAN -> WAN.
    Out,
    /// WAN -> LAN.
    In,
}

/// Idle timeouts. Defaults follow RFC 4787 REQ-5 (UDP >= 2 min, 5 min recommended),
/// RFC 5382 REQ-5 (TCP established >= 2 h 4 min, transitory >= 4 min) and RFC 5508 (ICMP 60 s).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub udp: Millis,
    pub tcp_established: Millis,
    pub tcp_transitory: Millis,
    pub icmp: Millis,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            udp: 300_000,
            tcp_established: 7_440_000,
            tcp_transitory: 240_000,
            icmp: 60_000,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Params {
    /// Outside ports never handed out for TCP/UDP: the router's own ephemeral range
    /// (net.ipv4.ip_local_port_range), so replies to its own sockets are never mistaken for ours.
    pub reserved: (u16, u16),
    /// Single UDP ports the router itself listens on at the WAN (its DHCP client).
    pub reserved_udp: Vec<u16>,
    pub timeouts: Timeouts,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            reserved: super::ROUTER_PORTS,
            reserved_udp: vec![68],
            timeouts: Timeouts::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    /// Opening or closing (SYN seen, FIN or RST seen): short timeout.
    Transitory,
    Established,
    /// FIN/RST seen: stays transitory until a new SYN reuses the mapping.
    Closing,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone)]
pub struct Mapping {
    pub proto: Proto,
    pub inside: SocketAddrV4,
    pub outside_port: u16,
    /// The last remote endpoint the inside host sent to (display only: filtering is full cone).
    pub remote: SocketAddrV4,
    pub created: Millis,
    pub last_seen: Millis,
    pub out: Traffic,
    pub inb: Traffic,
    pub tcp: TcpState,
}

type InsideKey = (Proto, Ipv4Addr, u16);
type OutsideKey = (Proto, u16);

pub struct Mappings {
    params: Params,
    by_inside: HashMap<InsideKey, Mapping>,
    by_outside: HashMap<OutsideKey, InsideKey>,
    /// xorshift state: where the search for a replacement port starts, so ports are not
    /// handed out in a guessable sequence.
    rng: u64,
}

impl Mappings {
    pub fn new(params: Params, seed: u64) -> Self {
        Self {
            params,
            by_inside: HashMap::new(),
            by_outside: HashMap::new(),
            rng: seed | 1,
        }
    }

    pub fn len(&self) -> usize {
        self.by_inside.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_inside.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Mapping> {
        self.by_inside.values()
    }

    pub fn clear(&mut self) {
        self.by_inside.clear();
        self.by_outside.clear();
    }

    pub fn timeout(&self, m: &Mapping) -> Millis {
        let t = &self.params.timeouts;
        match (m.proto, m.tcp) {
            (Proto::Udp, _) => t.udp,
            (Proto::Icmp, _) => t.icmp,
            (Proto::Tcp, TcpState::Established) => t.tcp_established,
            (Proto::Tcp, _) => t.tcp_transitory,
        }
    }

    fn expired(&self, m: &Mapping, now: Millis) -> bool {
        now >= m.last_seen.saturating_add(self.timeout(m))
    }

    /// An outbound packet from `inside` to `remote`: returns the outside port to use, creating
    /// the mapping if needed. `None` when no port is left (the packet must be dropped).
    pub fn outbound(
        &mut self,
        proto: Proto,
        inside: SocketAddrV4,
        remote: SocketAddrV4,
        flags: TcpFlags,
        bytes: u64,
        now: Millis,
    ) -> Option<u16> {
        let key = (proto, *inside.ip(), inside.port());
        if let Some(m) = self.by_inside.get(&key) {
            if self.expired(m, now) {
                self.remove(key);
            }
        }
        if !self.by_inside.contains_key(&key) {
            let port = self.allocate(proto, inside.port())?;
            self.by_outside.insert((proto, port), key);
            self.by_inside.insert(
                key,
                Mapping {
                    proto,
                    inside,
                    outside_port: port,
                    remote,
                    created: now,
                    last_seen: now,
                    out: Traffic::default(),
                    inb: Traffic::default(),
                    tcp: TcpState::Transitory,
                },
            );
        }
        let m = self.by_inside.get_mut(&key)?;
        m.remote = remote;
        touch(m, Dir::Out, flags, bytes, now);
        Some(m.outside_port)
    }

    /// An inbound packet to `outside_port`: returns the inside endpoint, or `None` when there is
    /// no live mapping (the packet must be dropped).
    pub fn inbound(
        &mut self,
        proto: Proto,
        outside_port: u16,
        flags: TcpFlags,
        bytes: u64,
        now: Millis,
    ) -> Option<SocketAddrV4> {
        let key = *self.by_outside.get(&(proto, outside_port))?;
        let m = self.by_inside.get(&key)?;
        if self.expired(m, now) {
            self.remove(key);
            return None;
        }
        let m = self.by_inside.get_mut(&key)?;
        touch(m, Dir::In, flags, bytes, now);
        Some(m.inside)
    }

    /// Drops every mapping idle past its timeout. Returns how many went.
    pub fn sweep(&mut self, now: Millis) -> usize {
        let dead: Vec<InsideKey> = self
            .by_inside
            .iter()
            .filter(|(_, m)| self.expired(m, now))
            .map(|(k, _)| *k)
            .collect();
        for k in &dead {
            self.remove(*k);
        }
        dead.len()
    }

    fn remove(&mut self, key: InsideKey) {
        if let Some(m) = self.by_inside.remove(&key) {
            self.by_outside.remove(&(m.proto, m.outside_port));
        }
    }

    fn usable(&self, proto: Proto, port: u16) -> bool {
        if self.by_outside.contains_key(&(proto, port)) {
            return false;
        }
        if proto == Proto::Icmp {
            return true; // identifiers have no reserved values
        }
        let (lo, hi) = self.params.reserved;
        port != 0
            && !(lo..=hi).contains(&port)
            && !(proto == Proto::Udp && self.params.reserved_udp.contains(&port))
    }

    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Port preservation first; else a free port in the same range (well-known 1-1023 or
    /// 1024-65535, RFC 4787 REQ-3) with the same parity (REQ-4, for RTP/RTCP pairs), falling
    /// back to the other parity only when one parity is exhausted. Never overloads a port.
    fn allocate(&mut self, proto: Proto, preferred: u16) -> Option<u16> {
        if self.usable(proto, preferred) {
            return Some(preferred);
        }
        let (lo, hi): (u32, u32) = match (proto, preferred) {
            (Proto::Icmp, _) => (0, 65535),
            (_, p) if p < 1024 => (1, 1023),
            _ => (1024, 65535),
        };
        let parity = u32::from(preferred & 1);
        for par in [parity, parity ^ 1] {
            // Candidates: lo' , lo'+2, ... <= hi, where lo' is the first value with this parity.
            let first = lo + ((lo & 1) ^ par);
            if first > hi {
                continue;
            }
            let count = (hi - first) / 2 + 1;
            let start = (self.random() % u64::from(count)) as u32;
            for i in 0..count {
                let p = (first + 2 * ((start + i) % count)) as u16;
                if self.usable(proto, p) {
                    return Some(p);
                }
            }
        }
        None
    }
}

/// Updates counters, last_seen and the TCP state for one packet.
fn touch(m: &mut Mapping, dir: Dir, flags: TcpFlags, bytes: u64, now: Millis) {
    m.last_seen = now;
    let t = match dir {
        Dir::Out => &mut m.out,
        Dir::In => &mut m.inb,
    };
    t.packets += 1;
    t.bytes += bytes;
    if m.proto != Proto::Tcp {
        return;
    }
    m.tcp = if flags.rst() || flags.fin() {
        TcpState::Closing
    } else if flags.syn() {
        // A new connection (possibly reusing a closed one's port) starts transitory.
        TcpState::Transitory
    } else if m.tcp == TcpState::Transitory && flags.ack() && m.out.packets > 0 && m.inb.packets > 0
    {
        // Plain ACKs after traffic both ways: the handshake completed (or we joined mid-flow
        // after a restart, which is equally alive).
        TcpState::Established
    } else {
        m.tcp
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYN: TcpFlags = TcpFlags(TcpFlags::SYN);
    const SYNACK: TcpFlags = TcpFlags(TcpFlags::SYN | TcpFlags::ACK);
    const ACK: TcpFlags = TcpFlags(TcpFlags::ACK);
    const FIN: TcpFlags = TcpFlags(TcpFlags::FIN | TcpFlags::ACK);
    const NONE: TcpFlags = TcpFlags(0);

    fn ep(last: u8, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, last), port)
    }
    fn remote(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), port)
    }
    fn table() -> Mappings {
        Mappings::new(Params::default(), 12345)
    }

    #[test]
    fn preserves_free_port_and_is_endpoint_independent() {
        let mut t = table();
        let p = t.outbound(Proto::Udp, ep(10, 5000), remote(53), NONE, 60, 0);
        assert_eq!(p, Some(5000));
        // Same inside endpoint, other remote: same mapping.
        let p2 = t.outbound(Proto::Udp, ep(10, 5000), remote(123), NONE, 60, 1);
        assert_eq!(p2, Some(5000));
        assert_eq!(t.len(), 1);
        // Any remote can reach it (full cone).
        assert_eq!(t.inbound(Proto::Udp, 5000, NONE, 60, 2), Some(ep(10, 5000)));
        assert_eq!(t.inbound(Proto::Udp, 5001, NONE, 60, 2), None);
        // Protocols are separate port spaces.
        assert_eq!(t.inbound(Proto::Tcp, 5000, NONE, 60, 2), None);
        let m = t.iter().next().unwrap();
        assert_eq!((m.out.packets, m.out.bytes, m.inb.packets), (2, 120, 1));
        assert_eq!(m.remote, remote(123));
    }

    #[test]
    fn conflict_keeps_range_and_parity_and_never_overloads() {
        let mut t = table();
        let mut seen = std::collections::HashSet::new();
        for host in 1..=200u8 {
            let p = t
                .outbound(Proto::Udp, ep(host, 5000), remote(1), NONE, 1, 0)
                .unwrap();
            assert!(p >= 1024 && p.is_multiple_of(2), "{p}");
            assert!(seen.insert(p), "port {p} handed out twice");
        }
        for host in 1..=50u8 {
            let p = t
                .outbound(Proto::Tcp, ep(host, 443), remote(1), SYN, 1, 0)
                .unwrap();
            assert!((1..1024).contains(&p) && p % 2 == 1, "{p}");
        }
    }

    #[test]
    fn never_uses_router_range_or_dhcp_port() {
        let mut t = table();
        // An inside port in the router's range must be moved out of it, same parity.
        let p = t
            .outbound(Proto::Tcp, ep(10, 62001), remote(80), SYN, 1, 0)
            .unwrap();
        assert!((1024..61000).contains(&p) && p % 2 == 1, "{p}");
        let p = t
            .outbound(Proto::Udp, ep(10, 68), remote(67), NONE, 1, 0)
            .unwrap();
        assert!(p != 68 && p < 1024 && p.is_multiple_of(2), "{p}");
        // TCP 68 is not reserved.
        assert_eq!(
            t.outbound(Proto::Tcp, ep(10, 68), remote(1), SYN, 1, 0),
            Some(68)
        );
        // Port 0 is never an outside port.
        let p = t
            .outbound(Proto::Udp, ep(10, 0), remote(1), NONE, 1, 0)
            .unwrap();
        assert!(p != 0 && p < 1024);
    }

    #[test]
    fn exhaustion_falls_back_to_other_parity_then_fails() {
        let params = Params {
            reserved: (1024, 65535), // leave only 1..=1023
            ..Params::default()
        };
        let mut t = Mappings::new(params, 1);
        let mut ports = std::collections::HashSet::new();
        for i in 0..1023u32 {
            let inside = SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + i), 100);
            let p = t
                .outbound(Proto::Tcp, inside, remote(1), SYN, 1, 0)
                .expect("port");
            assert!(ports.insert(p));
            // Even parity first: the first 511 (2..=1022) are all even.
            if i < 511 {
                assert_eq!(p % 2, 0, "{i}");
            }
        }
        let inside = SocketAddrV4::new(Ipv4Addr::new(10, 9, 9, 9), 100);
        assert_eq!(t.outbound(Proto::Tcp, inside, remote(1), SYN, 1, 0), None);
        // ICMP identifiers are unaffected by the TCP/UDP reservation.
        assert_eq!(
            t.outbound(Proto::Icmp, inside, remote(0), NONE, 1, 0),
            Some(100)
        );
    }

    #[test]
    fn timers_per_protocol_and_tcp_state() {
        let mut t = table();
        let s = 1000; // ms per second
        t.outbound(Proto::Udp, ep(10, 1000), remote(1), NONE, 1, 0);
        t.outbound(Proto::Icmp, ep(10, 7), remote(0), NONE, 1, 0);
        // TCP handshake: SYN out, SYN-ACK in, ACK out -> established.
        t.outbound(Proto::Tcp, ep(10, 2000), remote(80), SYN, 1, 0);
        t.inbound(Proto::Tcp, 2000, SYNACK, 1, 0);
        t.outbound(Proto::Tcp, ep(10, 2000), remote(80), ACK, 1, 0);
        // Half-open: SYN only.
        t.outbound(Proto::Tcp, ep(10, 3000), remote(80), SYN, 1, 0);
        let state = |t: &Mappings, port: u16| {
            t.iter()
                .find(|m| m.proto == Proto::Tcp && m.outside_port == port)
                .map(|m| m.tcp)
        };
        assert_eq!(state(&t, 2000), Some(TcpState::Established));
        assert_eq!(state(&t, 3000), Some(TcpState::Transitory));

        assert_eq!(t.sweep(59 * s), 0);
        assert_eq!(t.sweep(60 * s), 1, "ICMP after 60 s");
        assert_eq!(t.sweep(240 * s), 1, "half-open TCP after 240 s");
        assert_eq!(t.sweep(300 * s), 1, "UDP after 300 s");
        assert_eq!(t.sweep(7439 * s), 0);
        // Traffic refreshes; FIN makes it transitory, and the final ACK does not undo that.
        assert!(t.inbound(Proto::Tcp, 2000, ACK, 1, 7439 * s).is_some());
        t.outbound(Proto::Tcp, ep(10, 2000), remote(80), FIN, 1, 7440 * s);
        t.inbound(Proto::Tcp, 2000, ACK, 1, 7440 * s);
        assert_eq!(state(&t, 2000), Some(TcpState::Closing));
        assert_eq!(t.sweep(7440 * s + 239 * s), 0);
        assert_eq!(t.sweep(7440 * s + 240 * s), 1);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn expired_mapping_is_not_used_before_the_sweep() {
        let mut t = table();
        t.outbound(Proto::Udp, ep(10, 4000), remote(1), NONE, 1, 0);
        assert_eq!(t.inbound(Proto::Udp, 4000, NONE, 1, 300_000), None);
        assert_eq!(t.len(), 0);
        // Outbound after expiry recreates it (same port, it is free again) with fresh counters.
        t.outbound(Proto::Udp, ep(10, 4000), remote(1), NONE, 1, 0);
        let p = t.outbound(Proto::Udp, ep(10, 4000), remote(1), NONE, 1, 400_000);
        assert_eq!(p, Some(4000));
        let m = t.iter().next().unwrap();
        assert_eq!((m.created, m.out.packets), (400_000, 1));
    }

    #[test]
    fn released_port_is_reusable() {
        let mut t = table();
        t.outbound(Proto::Udp, ep(10, 4000), remote(1), NONE, 1, 0);
        let other = t
            .outbound(Proto::Udp, ep(11, 4000), remote(1), NONE, 1, 0)
            .unwrap();
        assert_ne!(other, 4000);
        assert_eq!(t.sweep(1_000_000), 2);
        assert_eq!(
            t.outbound(Proto::Udp, ep(11, 4000), remote(1), NONE, 1, 1_000_000),
            Some(4000)
        );
    }
}
