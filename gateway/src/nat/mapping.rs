//! Endpoint-independent NAPT mapping table (RFC 4787 / RFC 5382 behaviour), pure logic.
//!
//! Key: (protocol, inside address, inside port or ICMP identifier) -> one outside port on the
//! WAN address, whatever the remote. Filtering (RFC 4787 REQ-8) is configurable: any remote
//! (full cone, the default), or only remotes the inside endpoint has sent to, by address or by
//! address and port; each mapping keeps a bounded set of those remotes. Every mapping expires
//! once idle: only the inside host's own traffic, or answers from remotes it sent to, keep it
//! alive. A released outside port is held back for a while before anyone else gets it. Static
//! forwards reserve outside ports for one inside host: inbound traffic to them creates the
//! mapping. Time is passed in as milliseconds on a monotonic clock so the logic is testable
//! without sleeping.

use super::packet::TcpFlags;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};

pub type Millis = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
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

/// Which remotes may send to a mapping (RFC 4787 section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Filtering {
    /// Any remote (full cone).
    #[default]
    EndpointIndependent,
    /// Remotes at an address the inside endpoint has sent to, from any port.
    AddressDependent,
    /// Only the exact address:port the inside endpoint has sent to.
    AddressAndPortDependent,
}

#[derive(Debug, Clone)]
pub struct Params {
    /// Outside ports never handed out for TCP/UDP: the router's own ephemeral range
    /// (net.ipv4.ip_local_port_range), so replies to its own sockets are never mistaken for ours.
    pub reserved: (u16, u16),
    /// Single UDP ports the router itself listens on at the WAN (its DHCP client).
    pub reserved_udp: Vec<u16>,
    pub timeouts: Timeouts,
    pub filtering: Filtering,
    /// Remotes remembered per mapping; past this the least recently used goes, so a host
    /// spraying many remotes costs bounded memory.
    pub max_remotes: usize,
    /// How long a released outside port stays unused by other inside endpoints, so late
    /// packets for the old owner never reach a new one (RFC 4787 REQ-1 spirit, 120 s like
    /// TCP's 2 MSL).
    pub hold_down: Millis,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            reserved: super::ROUTER_PORTS,
            reserved_udp: vec![68],
            timeouts: Timeouts::default(),
            filtering: Filtering::default(),
            max_remotes: 32,
            hold_down: 120_000,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub proto: Proto,
    pub inside: SocketAddrV4,
    pub outside_port: u16,
    /// The last remote endpoint the inside host sent to (display).
    pub remote: SocketAddrV4,
    /// Remotes the inside endpoint sent to (ICMP: port 0), with when each was last active.
    /// They decide what filtering admits and which inbound packets refresh the mapping.
    pub remotes: Vec<(SocketAddrV4, Millis)>,
    pub created: Millis,
    pub last_seen: Millis,
    pub out: Traffic,
    pub inb: Traffic,
    pub tcp: TcpState,
    /// Bound to a static forward: any remote gets in, and it goes when the forward does.
    pub forwarded: bool,
}

/// A static port forward for one protocol: outside ports `first..=last` go 1:1 to the inside
/// host's ports from `inside_first`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    pub proto: Proto,
    pub first: u16,
    pub last: u16,
    pub inside: Ipv4Addr,
    pub inside_first: u16,
}

impl Forward {
    fn target(&self, outside_port: u16) -> SocketAddrV4 {
        // Config validation keeps this within 65535; wrapping keeps bad input panic-free.
        let off = outside_port.wrapping_sub(self.first);
        SocketAddrV4::new(self.inside, self.inside_first.wrapping_add(off))
    }
}

/// Why an inbound packet found no way in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    NoMapping,
    /// A live mapping exists, but the filtering mode does not admit this remote.
    Filtered,
}

/// (protocol, inside address, inside port or ICMP identifier).
pub type InsideKey = (Proto, Ipv4Addr, u16);
/// (protocol, outside port).
pub type OutsideKey = (Proto, u16);

/// What changed in the table, for the copy kept in the run dir (`super::persist`): a key
/// only, the copy reads the entry's current state when it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Created, gone, or changed in what a restart must not lose: TCP state, a new remote.
    Mapping(InsideKey),
    /// A port's hold began or ended.
    Hold(OutsideKey),
    /// Every mapping and hold went (new WAN address).
    Cleared,
}

pub struct Mappings {
    params: Params,
    by_inside: HashMap<InsideKey, Mapping>,
    by_outside: HashMap<OutsideKey, InsideKey>,
    /// Recently released outside ports: until when they are held, and for whom.
    held: HashMap<OutsideKey, (Millis, InsideKey)>,
    /// Static forwards, sorted by (protocol, first port), never overlapping.
    forwards: Vec<Forward>,
    /// xorshift state: where the search for a replacement port starts, so ports are not
    /// handed out in a guessable sequence.
    rng: u64,
    /// Changes not yet taken by `take_changes`; `None` while nobody keeps a copy, so the
    /// log never grows unread.
    changes: Option<Vec<Change>>,
}

fn note(changes: &mut Option<Vec<Change>>, c: Change) {
    if let Some(v) = changes {
        v.push(c);
    }
}

impl Mappings {
    pub fn new(params: Params, seed: u64) -> Self {
        Self {
            params,
            by_inside: HashMap::new(),
            by_outside: HashMap::new(),
            held: HashMap::new(),
            forwards: Vec::new(),
            rng: seed | 1,
            changes: None,
        }
    }

    /// Starts (or stops) logging changes for `take_changes`.
    pub fn track_changes(&mut self, on: bool) {
        self.changes = on.then(Vec::new);
    }

    pub fn has_changes(&self) -> bool {
        self.changes.as_ref().is_some_and(|v| !v.is_empty())
    }

    /// The changes since the last call, oldest first.
    pub fn take_changes(&mut self) -> Vec<Change> {
        self.changes
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    pub fn get(&self, key: &InsideKey) -> Option<&Mapping> {
        self.by_inside.get(key)
    }

    /// Until when `port` is held, and for whom.
    pub fn hold(&self, port: &OutsideKey) -> Option<(Millis, InsideKey)> {
        self.held.get(port).copied()
    }

    pub fn holds(&self) -> impl Iterator<Item = (OutsideKey, Millis, InsideKey)> + '_ {
        self.held
            .iter()
            .map(|(p, (until, owner))| (*p, *until, *owner))
    }

    /// Puts back a mapping an earlier run saved. Refused when it has expired by `now`, or its
    /// inside endpoint or outside port is already taken (a damaged or inconsistent copy).
    /// Forwards are not checked here: re-apply them afterwards (`set_forwards`).
    pub fn restore(&mut self, m: Mapping, now: Millis) -> bool {
        let key = (m.proto, *m.inside.ip(), m.inside.port());
        let port = (m.proto, m.outside_port);
        if self.expired(&m, now)
            || self.by_inside.contains_key(&key)
            || self.by_outside.contains_key(&port)
            || (m.proto != Proto::Icmp && m.outside_port == 0)
        {
            return false;
        }
        if self.held.remove(&port).is_some() {
            note(&mut self.changes, Change::Hold(port));
        }
        self.by_outside.insert(port, key);
        self.by_inside.insert(key, m);
        note(&mut self.changes, Change::Mapping(key));
        true
    }

    /// Puts back a hold an earlier run saved, unless it has run out or the port is in use.
    pub fn restore_hold(
        &mut self,
        port: OutsideKey,
        until: Millis,
        owner: InsideKey,
        now: Millis,
    ) -> bool {
        if now >= until || self.by_outside.contains_key(&port) || self.held.contains_key(&port) {
            return false;
        }
        self.held.insert(port, (until, owner));
        note(&mut self.changes, Change::Hold(port));
        true
    }

    pub fn filtering(&self) -> Filtering {
        self.params.filtering
    }

    /// Changes what inbound packets are admitted from now on. Mappings keep their remotes,
    /// so a stricter mode applies to them at once.
    pub fn set_filtering(&mut self, f: Filtering) {
        self.params.filtering = f;
    }

    pub fn len(&self) -> usize {
        self.by_inside.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_inside.is_empty()
    }

    /// Outside ports currently held back after release.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Mapping> {
        self.by_inside.values()
    }

    /// Forgets every mapping, holds included: used when the WAN address changes, after which
    /// nothing sent to the old address can reach us. Forwards are configuration and stay.
    pub fn clear(&mut self) {
        self.by_inside.clear();
        self.by_outside.clear();
        self.held.clear();
        note(&mut self.changes, Change::Cleared);
    }

    pub fn forwards(&self) -> &[Forward] {
        &self.forwards
    }

    /// Replaces the forward set (the caller validated it: no overlaps). Mappings that no
    /// longer match go at once: those made by a removed or changed forward, and other
    /// inside endpoints' mappings on newly forwarded ports. Returns how many went.
    pub fn set_forwards(&mut self, mut fwds: Vec<Forward>, now: Millis) -> usize {
        fwds.sort_by_key(|f| (f.proto, f.first));
        self.forwards = fwds;
        let mut stale = Vec::new();
        for (key, m) in self.by_inside.iter_mut() {
            match forward_for(&self.forwards, m.proto, m.outside_port) {
                Some(f) if f.target(m.outside_port) == m.inside && !m.forwarded => {
                    m.forwarded = true;
                    note(&mut self.changes, Change::Mapping(*key));
                }
                Some(f) if f.target(m.outside_port) == m.inside => {}
                Some(_) => stale.push(*key),
                None if m.forwarded => stale.push(*key),
                None => {}
            }
        }
        for key in &stale {
            self.remove(*key, now);
        }
        stale.len()
    }

    fn forwards_lookup(&self, proto: Proto, port: u16) -> Option<&Forward> {
        forward_for(&self.forwards, proto, port)
    }

    /// The forwarded outside port for an inside endpoint, if a forward targets it.
    fn forwarded_port(&self, proto: Proto, inside: SocketAddrV4) -> Option<u16> {
        self.forwards.iter().find_map(|f| {
            let off = inside.port().checked_sub(f.inside_first)?;
            (f.proto == proto && *inside.ip() == f.inside && off <= f.last - f.first)
                .then(|| f.first + off)
        })
    }

    fn insert(&mut self, key: InsideKey, port: u16, remote: SocketAddrV4, fwd: bool, now: Millis) {
        let (proto, ip, inside_port) = key;
        if self.held.remove(&(proto, port)).is_some() {
            note(&mut self.changes, Change::Hold((proto, port)));
        }
        note(&mut self.changes, Change::Mapping(key));
        self.by_outside.insert((proto, port), key);
        self.by_inside.insert(
            key,
            Mapping {
                proto,
                inside: SocketAddrV4::new(ip, inside_port),
                outside_port: port,
                remote,
                remotes: Vec::new(),
                created: now,
                last_seen: now,
                out: Traffic::default(),
                inb: Traffic::default(),
                tcp: TcpState::Transitory,
                forwarded: fwd,
            },
        );
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
                self.remove(key, now);
            }
        }
        if !self.by_inside.contains_key(&key) {
            // A forward's target talks from its forwarded port, so both directions agree.
            let fwd = self
                .forwarded_port(proto, inside)
                .filter(|p| !self.by_outside.contains_key(&(proto, *p)));
            let port = match fwd {
                Some(p) => p,
                None => self.allocate(key, now)?,
            };
            self.insert(key, port, remote, fwd.is_some(), now);
        }
        let max = self.params.max_remotes.max(1);
        let m = self.by_inside.get_mut(&key)?;
        m.remote = remote;
        let new_remote = remember(&mut m.remotes, normalize(proto, remote), max, now);
        count(m, Dir::Out, bytes);
        let state = m.tcp;
        refresh(m, flags, now);
        if new_remote || m.tcp != state {
            note(&mut self.changes, Change::Mapping(key));
        }
        Some(m.outside_port)
    }

    /// An inbound packet from `remote` to `outside_port`: returns the inside endpoint, or why
    /// not (the packet must then be dropped). Only packets from remotes the inside endpoint
    /// sent to refresh the mapping; under endpoint-independent filtering strangers get in but
    /// cannot keep the mapping alive.
    pub fn inbound(
        &mut self,
        proto: Proto,
        outside_port: u16,
        remote: SocketAddrV4,
        flags: TcpFlags,
        bytes: u64,
        now: Millis,
    ) -> Result<SocketAddrV4, Miss> {
        if let Some(key) = self.by_outside.get(&(proto, outside_port)).copied() {
            let m = self.by_inside.get(&key).ok_or(Miss::NoMapping)?;
            if self.expired(m, now) {
                self.remove(key, now);
            }
        }
        let key = match self.by_outside.get(&(proto, outside_port)) {
            Some(k) => *k,
            None => {
                // A forwarded port: the first packet creates the target's mapping. Should the
                // target hold another port (it talked out before the forward existed), that
                // mapping gives way.
                let target = self
                    .forwards_lookup(proto, outside_port)
                    .ok_or(Miss::NoMapping)?
                    .target(outside_port);
                let key = (proto, *target.ip(), target.port());
                self.remove(key, now);
                self.insert(key, outside_port, remote, true, now);
                key
            }
        };
        let m = self.by_inside.get(&key).ok_or(Miss::NoMapping)?;
        let (known, admitted) = self.check_remote(m, proto, remote, now);
        if !admitted {
            return Err(Miss::Filtered);
        }
        let m = self.by_inside.get_mut(&key).ok_or(Miss::NoMapping)?;
        count(m, Dir::In, bytes);
        if let Some(i) = known {
            // Traffic from a remote the host sent to keeps its permission and the mapping
            // alive (a stream the host started with one request must not be cut mid-way).
            m.remotes[i].1 = now;
        }
        // A forward is the owner's standing permission: its traffic keeps the mapping alive
        // too (it still expires once the traffic stops).
        if known.is_some() || m.forwarded {
            let state = m.tcp;
            refresh(m, flags, now);
            if m.tcp != state {
                note(&mut self.changes, Change::Mapping(key));
            }
        }
        Ok(m.inside)
    }

    /// Filtering for a packet from `remote`: which remembered remote it matches at the mode's
    /// granularity (exact under endpoint-independent filtering, which remembers for
    /// refreshing only), and whether it gets in. A permission lasts one mapping timeout from
    /// its last use; a forward's mapping lets anyone in.
    fn check_remote(
        &self,
        m: &Mapping,
        proto: Proto,
        remote: SocketAddrV4,
        now: Millis,
    ) -> (Option<usize>, bool) {
        let idle = self.timeout(m);
        let r = normalize(proto, remote);
        let live = |e: &(SocketAddrV4, Millis)| now < e.1.saturating_add(idle);
        let exact = m.remotes.iter().position(|e| e.0 == r && live(e));
        let known = match self.params.filtering {
            Filtering::AddressDependent => {
                exact.or_else(|| m.remotes.iter().position(|e| e.0.ip() == r.ip() && live(e)))
            }
            _ => exact,
        };
        let admitted = known.is_some()
            || m.forwarded
            || self.params.filtering == Filtering::EndpointIndependent;
        (known, admitted)
    }

    /// For an ICMP error from outside about a packet sent through `outside_port` to `remote`:
    /// the inside endpoint, if the mapping is live and a packet from `remote` would be
    /// admitted. Refreshes and changes nothing (RFC 5508 REQ-6).
    pub fn inbound_error(
        &self,
        proto: Proto,
        outside_port: u16,
        remote: SocketAddrV4,
        now: Millis,
    ) -> Result<SocketAddrV4, Miss> {
        let key = self
            .by_outside
            .get(&(proto, outside_port))
            .ok_or(Miss::NoMapping)?;
        let m = self.by_inside.get(key).ok_or(Miss::NoMapping)?;
        if self.expired(m, now) {
            return Err(Miss::NoMapping);
        }
        match self.check_remote(m, proto, remote, now) {
            (_, true) => Ok(m.inside),
            (_, false) => Err(Miss::Filtered),
        }
    }

    /// The outside port of `inside`'s live mapping, looked up without refreshing or changing
    /// anything: for ICMP errors from inside (RFC 5508 REQ-6) and the second half of a
    /// hairpin.
    pub fn outside_port(&self, proto: Proto, inside: SocketAddrV4, now: Millis) -> Option<u16> {
        let m = self.by_inside.get(&(proto, *inside.ip(), inside.port()))?;
        (!self.expired(m, now)).then_some(m.outside_port)
    }

    /// Drops every mapping idle past its timeout, and holds that have run out. Returns how
    /// many mappings went.
    pub fn sweep(&mut self, now: Millis) -> usize {
        let dead: Vec<InsideKey> = self
            .by_inside
            .iter()
            .filter(|(_, m)| self.expired(m, now))
            .map(|(k, _)| *k)
            .collect();
        for k in &dead {
            self.remove(*k, now);
        }
        let changes = &mut self.changes;
        self.held.retain(|port, (until, _)| {
            let keep = now < *until;
            if !keep {
                note(changes, Change::Hold(*port));
            }
            keep
        });
        dead.len()
    }

    /// Removes a mapping; its outside port is held for `hold_down` from `now`.
    fn remove(&mut self, key: InsideKey, now: Millis) {
        if let Some(m) = self.by_inside.remove(&key) {
            let port = (m.proto, m.outside_port);
            self.by_outside.remove(&port);
            let until = now.saturating_add(self.params.hold_down);
            self.held.insert(port, (until, key));
            note(&mut self.changes, Change::Mapping(key));
            note(&mut self.changes, Change::Hold(port));
        }
    }

    /// Whether `port` may be given to `key`. A held port goes only back to its old owner.
    fn usable(&self, key: InsideKey, port: u16, now: Millis) -> bool {
        let proto = key.0;
        if self.by_outside.contains_key(&(proto, port)) {
            return false;
        }
        if let Some((until, owner)) = self.held.get(&(proto, port)) {
            if now < *until && *owner != key {
                return false;
            }
        }
        if self.forwards_lookup(proto, port).is_some() {
            return false; // reserved for its forward's target, which gets it without asking
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
    /// back to the other parity only when one parity is exhausted. Never overloads a port,
    /// and never hands out one still held for someone else.
    fn allocate(&mut self, key: InsideKey, now: Millis) -> Option<u16> {
        let (proto, _, preferred) = key;
        if self.usable(key, preferred, now) {
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
                if self.usable(key, p, now) {
                    return Some(p);
                }
            }
        }
        None
    }
}

/// The forward covering `port`, by binary search over the sorted, disjoint set.
fn forward_for(fwds: &[Forward], proto: Proto, port: u16) -> Option<&Forward> {
    let i = fwds.partition_point(|f| (f.proto, f.first) <= (proto, port));
    let f = fwds.get(i.checked_sub(1)?)?;
    (f.proto == proto && port <= f.last).then_some(f)
}

/// The remote as remembered: ICMP has no ports, so only its address counts.
fn normalize(proto: Proto, remote: SocketAddrV4) -> SocketAddrV4 {
    match proto {
        Proto::Icmp => SocketAddrV4::new(*remote.ip(), 0),
        _ => remote,
    }
}

/// Notes that the inside endpoint sent to `r`, evicting the least recently used remote when
/// the set is full. True when `r` is new to the set.
fn remember(
    set: &mut Vec<(SocketAddrV4, Millis)>,
    r: SocketAddrV4,
    max: usize,
    now: Millis,
) -> bool {
    if let Some(e) = set.iter_mut().find(|(a, _)| *a == r) {
        e.1 = now;
        return false;
    }
    if set.len() < max {
        set.push((r, now));
    } else if let Some(e) = set.iter_mut().min_by_key(|(_, last)| *last) {
        *e = (r, now);
    }
    true
}

fn count(m: &mut Mapping, dir: Dir, bytes: u64) {
    let t = match dir {
        Dir::Out => &mut m.out,
        Dir::In => &mut m.inb,
    };
    t.packets += 1;
    t.bytes += bytes;
}

/// Marks the mapping alive at `now` and follows the TCP state for one counted packet.
fn refresh(m: &mut Mapping, flags: TcpFlags, now: Millis) {
    m.last_seen = now;
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
        assert_eq!(
            t.inbound(Proto::Udp, 5000, remote(9), NONE, 60, 2),
            Ok(ep(10, 5000))
        );
        assert_eq!(
            t.inbound(Proto::Udp, 5001, remote(1), NONE, 60, 2),
            Err(Miss::NoMapping)
        );
        // Protocols are separate port spaces.
        assert_eq!(
            t.inbound(Proto::Tcp, 5000, remote(1), NONE, 60, 2),
            Err(Miss::NoMapping)
        );
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
        t.inbound(Proto::Tcp, 2000, remote(80), SYNACK, 1, 0)
            .unwrap();
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
        assert!(t
            .inbound(Proto::Tcp, 2000, remote(80), ACK, 1, 7439 * s)
            .is_ok());
        t.outbound(Proto::Tcp, ep(10, 2000), remote(80), FIN, 1, 7440 * s);
        t.inbound(Proto::Tcp, 2000, remote(80), ACK, 1, 7440 * s)
            .unwrap();
        assert_eq!(state(&t, 2000), Some(TcpState::Closing));
        assert_eq!(t.sweep(7440 * s + 239 * s), 0);
        assert_eq!(t.sweep(7440 * s + 240 * s), 1);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn expired_mapping_is_not_used_before_the_sweep() {
        let mut t = table();
        t.outbound(Proto::Udp, ep(10, 4000), remote(1), NONE, 1, 0);
        assert_eq!(
            t.inbound(Proto::Udp, 4000, remote(1), NONE, 1, 300_000),
            Err(Miss::NoMapping)
        );
        assert_eq!(t.len(), 0);
        // Outbound after expiry recreates it (same port: a held port goes back to its old owner)
        // with fresh counters.
        t.outbound(Proto::Udp, ep(10, 4000), remote(1), NONE, 1, 0);
        let p = t.outbound(Proto::Udp, ep(10, 4000), remote(1), NONE, 1, 400_000);
        assert_eq!(p, Some(4000));
        let m = t.iter().next().unwrap();
        assert_eq!((m.created, m.out.packets), (400_000, 1));
    }

    fn filtered(f: Filtering) -> Mappings {
        Mappings::new(
            Params {
                filtering: f,
                ..Params::default()
            },
            1,
        )
    }
    fn at(addr: [u8; 4], port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(addr), port)
    }

    /// What each mode admits after the inside endpoint sent to 203.0.113.1:3478 only
    /// (the STUN test matrix: same, other port, other address, both changed).
    #[test]
    fn filtering_modes_admit_what_rfc4787_says() {
        let a1 = [203, 0, 113, 1];
        let a3 = [203, 0, 113, 3];
        let probes = [at(a1, 3478), at(a1, 3479), at(a3, 3478), at(a3, 3479)];
        for (mode, want) in [
            (Filtering::EndpointIndependent, [true, true, true, true]),
            (Filtering::AddressDependent, [true, true, false, false]),
            (
                Filtering::AddressAndPortDependent,
                [true, false, false, false],
            ),
        ] {
            let mut t = filtered(mode);
            let p = t
                .outbound(Proto::Udp, ep(10, 5000), at(a1, 3478), NONE, 1, 0)
                .unwrap();
            for (r, ok) in probes.iter().zip(want) {
                let got = t.inbound(Proto::Udp, p, *r, NONE, 1, 1);
                let exp = if ok {
                    Ok(ep(10, 5000))
                } else {
                    Err(Miss::Filtered)
                };
                assert_eq!(got, exp, "{mode:?} from {r}");
            }
            // Mapping is endpoint-independent in every mode: same port towards the other address.
            assert_eq!(
                t.outbound(Proto::Udp, ep(10, 5000), at(a3, 3478), NONE, 1, 2),
                Some(p)
            );
            // Having sent to a3:3478, a3 is admitted by address; by port only from 3478.
            let from_a3_other_port = t.inbound(Proto::Udp, p, at(a3, 3479), NONE, 1, 3);
            assert_eq!(
                from_a3_other_port.is_ok(),
                mode != Filtering::AddressAndPortDependent,
                "{mode:?}"
            );
            assert!(t.inbound(Proto::Udp, p, at(a3, 3478), NONE, 1, 3).is_ok());
        }
    }

    #[test]
    fn a_filtering_change_applies_to_existing_mappings() {
        let mut t = filtered(Filtering::EndpointIndependent);
        let a1 = [203, 0, 113, 1];
        let p = t
            .outbound(Proto::Udp, ep(10, 5000), at(a1, 3478), NONE, 1, 0)
            .unwrap();
        let stranger = at([198, 51, 100, 9], 53);
        assert!(t.inbound(Proto::Udp, p, stranger, NONE, 1, 1).is_ok());
        t.set_filtering(Filtering::AddressAndPortDependent);
        assert_eq!(t.filtering(), Filtering::AddressAndPortDependent);
        assert_eq!(
            t.inbound(Proto::Udp, p, stranger, NONE, 1, 2),
            Err(Miss::Filtered)
        );
        // The remote it sent to still gets in: the mapping kept it.
        assert_eq!(
            t.inbound(Proto::Udp, p, at(a1, 3478), NONE, 1, 3),
            Ok(ep(10, 5000))
        );
    }

    #[test]
    fn filtered_packets_refresh_nothing() {
        let mut t = filtered(Filtering::AddressAndPortDependent);
        t.outbound(Proto::Udp, ep(10, 5000), remote(1), NONE, 1, 0);
        for i in 1..100 {
            assert_eq!(
                t.inbound(Proto::Udp, 5000, remote(2), NONE, 1, i * 1000),
                Err(Miss::Filtered)
            );
        }
        let m = t.iter().next().unwrap();
        assert_eq!((m.last_seen, m.inb.packets), (0, 0));
        assert_eq!(
            t.sweep(300_000),
            1,
            "a stranger cannot keep a mapping alive"
        );
    }

    #[test]
    fn remote_set_is_bounded_and_least_recently_used_goes() {
        let mut t = Mappings::new(
            Params {
                filtering: Filtering::AddressAndPortDependent,
                max_remotes: 4,
                ..Params::default()
            },
            1,
        );
        for port in 1..=4 {
            t.outbound(Proto::Udp, ep(10, 5000), remote(port), NONE, 1, port.into());
        }
        // Refresh remote 1, then a fifth remote pushes out the stalest: remote 2.
        t.outbound(Proto::Udp, ep(10, 5000), remote(1), NONE, 1, 10);
        t.outbound(Proto::Udp, ep(10, 5000), remote(5), NONE, 1, 11);
        assert_eq!(t.iter().next().unwrap().remotes.len(), 4);
        for (port, ok) in [(1, true), (2, false), (3, true), (4, true), (5, true)] {
            let got = t.inbound(Proto::Udp, 5000, remote(port), NONE, 1, 12);
            assert_eq!(got.is_ok(), ok, "remote port {port}");
        }
        for port in 6..1000 {
            t.outbound(Proto::Udp, ep(10, 5000), remote(port), NONE, 1, 20);
        }
        assert_eq!(t.iter().next().unwrap().remotes.len(), 4);
    }

    #[test]
    fn permission_expires_even_while_the_mapping_lives() {
        let mut t = filtered(Filtering::AddressDependent);
        let a = at([198, 51, 100, 1], 53);
        let b = at([198, 51, 100, 2], 53);
        t.outbound(Proto::Udp, ep(10, 5000), a, NONE, 1, 0);
        // Traffic to b keeps the mapping alive well past a's last use...
        for i in 1..=4 {
            t.outbound(Proto::Udp, ep(10, 5000), b, NONE, 1, i * 100_000);
        }
        // ...but a's permission ran out 300 s after the inside host last sent to it.
        assert_eq!(
            t.inbound(Proto::Udp, 5000, a, NONE, 1, 400_000),
            Err(Miss::Filtered)
        );
        assert!(t.inbound(Proto::Udp, 5000, b, NONE, 1, 400_000).is_ok());
        // An admitted remote that keeps sending keeps its permission.
        for i in 5..=12 {
            assert!(t.inbound(Proto::Udp, 5000, b, NONE, 1, i * 100_000).is_ok());
        }
    }

    #[test]
    fn icmp_filtering_ignores_identifiers() {
        let mut t = filtered(Filtering::AddressAndPortDependent);
        let far = at([198, 51, 100, 1], 0);
        let id = t
            .outbound(Proto::Icmp, ep(10, 77), far, NONE, 1, 0)
            .unwrap();
        // The reply carries the identifier where a port would be.
        assert!(t
            .inbound(Proto::Icmp, id, at([198, 51, 100, 1], id), NONE, 1, 1)
            .is_ok());
        assert_eq!(
            t.inbound(Proto::Icmp, id, at([198, 51, 100, 9], id), NONE, 1, 1),
            Err(Miss::Filtered)
        );
    }

    #[test]
    fn released_port_is_held_for_others_for_120_s() {
        let mut t = table();
        t.outbound(Proto::Udp, ep(10, 4000), remote(1), NONE, 1, 0);
        assert_eq!(t.sweep(300_000), 1);
        assert_eq!(t.held(), 1);
        // Another inside endpoint asking for 4000 gets another port while it is held...
        for (host, at) in [(11, 300_000), (12, 419_999)] {
            let p = t
                .outbound(Proto::Udp, ep(host, 4000), remote(1), NONE, 1, at)
                .unwrap();
            assert_ne!(p, 4000, "held port handed to host {host} at {at}");
            assert!(p >= 1024 && p.is_multiple_of(2), "{p}");
        }
        // ...and gets it once the 120 s are over.
        assert_eq!(
            t.outbound(Proto::Udp, ep(13, 4000), remote(1), NONE, 1, 420_000),
            Some(4000)
        );
        assert_eq!(t.held(), 0, "a port in use is no longer held");
        // A held port is no use to inbound traffic: it is not mapped.
        let mut t = table();
        t.outbound(Proto::Udp, ep(10, 4000), remote(1), NONE, 1, 0);
        t.sweep(300_000);
        assert_eq!(
            t.inbound(Proto::Udp, 4000, remote(1), NONE, 1, 300_001),
            Err(Miss::NoMapping)
        );
    }

    #[test]
    fn held_port_goes_back_to_its_old_owner() {
        let mut t = table();
        t.outbound(Proto::Tcp, ep(10, 5000), remote(80), SYN, 1, 0);
        t.sweep(240_000);
        assert_eq!(
            t.outbound(Proto::Tcp, ep(10, 5000), remote(80), SYN, 1, 250_000),
            Some(5000)
        );
        // Holds are per protocol: UDP 5000 was never in use.
        assert_eq!(
            t.outbound(Proto::Udp, ep(11, 5000), remote(1), NONE, 1, 250_000),
            Some(5000)
        );
    }

    #[test]
    fn holds_are_swept_and_cleared() {
        let mut t = table();
        for host in 1..=50 {
            t.outbound(Proto::Udp, ep(host, 4000), remote(1), NONE, 1, 0);
        }
        assert_eq!(t.sweep(300_000), 50);
        assert_eq!(t.held(), 50);
        assert_eq!(t.sweep(419_999), 0);
        assert_eq!(t.held(), 50);
        t.sweep(420_000);
        assert_eq!(t.held(), 0, "expired holds are forgotten");
        t.outbound(Proto::Udp, ep(1, 4000), remote(1), NONE, 1, 500_000);
        t.sweep(800_000);
        assert_eq!(t.held(), 1);
        t.clear();
        assert_eq!(t.held(), 0, "a new WAN address needs no holds");
    }

    #[test]
    fn exhaustion_never_breaks_a_hold() {
        let params = Params {
            reserved: (1024, 65535), // leave only 1..=1023
            ..Params::default()
        };
        let mut t = Mappings::new(params, 3);
        let host = |i: u32| SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + i), 100);
        for i in 0..1023 {
            assert!(t
                .outbound(Proto::Tcp, host(i), remote(1), SYN, 1, 0)
                .is_some());
        }
        assert_eq!(t.sweep(240_000), 1023);
        // Every port is held for its old owner: newcomers are refused, not overloaded.
        assert_eq!(
            t.outbound(Proto::Tcp, host(5000), remote(1), SYN, 1, 240_000),
            None
        );
        assert!(t
            .outbound(Proto::Tcp, host(7), remote(1), SYN, 1, 240_000)
            .is_some());
        assert!(t
            .outbound(Proto::Tcp, host(5000), remote(1), SYN, 1, 360_000)
            .is_some());
    }

    /// Nothing lives forever: whatever the protocol or TCP state, a mapping nobody inside uses
    /// goes, even while strangers keep sending to it.
    #[test]
    fn every_mapping_expires_and_strangers_cannot_keep_one_alive() {
        let mut t = table();
        let stranger = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 66), 6666);
        t.outbound(Proto::Udp, ep(10, 1000), remote(1), NONE, 1, 0);
        t.outbound(Proto::Icmp, ep(10, 7), remote(0), NONE, 1, 0);
        t.outbound(Proto::Tcp, ep(10, 2000), remote(80), SYN, 1, 0);
        t.inbound(Proto::Tcp, 2000, remote(80), SYNACK, 1, 0)
            .unwrap();
        t.outbound(Proto::Tcp, ep(10, 2000), remote(80), ACK, 1, 0);
        t.outbound(Proto::Tcp, ep(10, 3000), remote(80), FIN, 1, 0);
        let ports = [(Proto::Udp, 1000), (Proto::Icmp, 7), (Proto::Tcp, 2000)];
        let mut now = 0;
        while !t.is_empty() {
            now += 10_000;
            assert!(now <= 7_440_000, "a mapping outlived every timeout");
            for (proto, port) in ports {
                // Full cone admits the stranger, but that must not refresh anything.
                let _ = t.inbound(proto, port, stranger, SYN, 1, now);
            }
            t.sweep(now);
        }
        assert_eq!(now, 7_440_000);
        // Answers from the remote the host talks to do keep it alive.
        t.outbound(Proto::Udp, ep(10, 1000), remote(1), NONE, 1, now);
        for i in 1..=100 {
            let at = now + i * 60_000;
            assert!(t.inbound(Proto::Udp, 1000, remote(1), NONE, 1, at).is_ok());
            assert_eq!(t.sweep(at), 0);
        }
    }

    fn fwd(proto: Proto, first: u16, last: u16, host: u8, inside_first: u16) -> Forward {
        Forward {
            proto,
            first,
            last,
            inside: Ipv4Addr::new(192, 168, 1, host),
            inside_first,
        }
    }

    #[test]
    fn forwards_admit_anyone_and_map_ranges_one_to_one() {
        let mut t = filtered(Filtering::AddressAndPortDependent);
        t.set_forwards(
            vec![
                fwd(Proto::Udp, 7000, 7009, 21, 9000),
                fwd(Proto::Tcp, 8080, 8080, 20, 80),
            ],
            0,
        );
        let a = at([198, 51, 100, 1], 40000);
        let b = at([198, 51, 100, 2], 50000);
        assert_eq!(t.inbound(Proto::Tcp, 8080, a, SYN, 1, 1), Ok(ep(20, 80)));
        // The server answers from its forwarded port.
        assert_eq!(
            t.outbound(Proto::Tcp, ep(20, 80), a, SYNACK, 1, 2),
            Some(8080)
        );
        // Other remotes get in too, whatever the filtering mode.
        assert_eq!(t.inbound(Proto::Tcp, 8080, b, SYN, 1, 3), Ok(ep(20, 80)));
        assert_eq!(t.inbound(Proto::Udp, 7003, a, NONE, 1, 3), Ok(ep(21, 9003)));
        assert_eq!(t.inbound(Proto::Udp, 7009, b, NONE, 1, 3), Ok(ep(21, 9009)));
        assert_eq!(
            t.inbound(Proto::Udp, 7010, a, NONE, 1, 3),
            Err(Miss::NoMapping)
        );
        assert_eq!(
            t.inbound(Proto::Udp, 8080, a, NONE, 1, 3),
            Err(Miss::NoMapping),
            "protocols are separate"
        );
        assert!(t.iter().all(|m| m.forwarded));
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn forwarded_ports_are_never_handed_out_and_targets_use_them() {
        let mut t = table();
        t.set_forwards(vec![fwd(Proto::Tcp, 8080, 8081, 20, 8080)], 0);
        // Another host's port 8080 is not preserved: it is forwarded.
        let p = t
            .outbound(Proto::Tcp, ep(30, 8080), remote(1), SYN, 1, 0)
            .unwrap();
        assert!(p != 8080 && p != 8081 && p.is_multiple_of(2), "{p}");
        // The target talking first (server-initiated) gets its forwarded port.
        assert_eq!(
            t.outbound(Proto::Tcp, ep(20, 8081), remote(1), SYN, 1, 0),
            Some(8081)
        );
        assert!(t.iter().any(|m| m.outside_port == 8081 && m.forwarded));
        // Random allocation under pressure never lands on them either.
        for host in 1..=200u8 {
            let p = t
                .outbound(Proto::Tcp, ep(host, 8080), remote(2), SYN, 1, 0)
                .unwrap();
            assert!(p != 8080 || host == 20, "host {host} got 8080");
        }
    }

    #[test]
    fn changing_forwards_applies_at_once() {
        let mut t = table();
        let a = remote(40000);
        // A dynamic mapping of host .30 on 8080, and host .20 talking from port 80.
        t.outbound(Proto::Tcp, ep(30, 8080), a, SYN, 1, 0);
        t.outbound(Proto::Tcp, ep(20, 80), a, SYN, 1, 0);
        assert_eq!(t.len(), 2);
        // Forwarding 8080 to .20:80 evicts .30's mapping on it; .20's own mapping on port 80
        // gives way when the first packet comes in.
        assert_eq!(
            t.set_forwards(vec![fwd(Proto::Tcp, 8080, 8080, 20, 80)], 1),
            1
        );
        assert_eq!(t.inbound(Proto::Tcp, 8080, a, SYN, 1, 2), Ok(ep(20, 80)));
        assert_eq!(t.len(), 1);
        assert_eq!(t.iter().next().unwrap().outside_port, 8080);
        // .30 asks again: 8080 is forwarded, it gets another port.
        assert_ne!(
            t.outbound(Proto::Tcp, ep(30, 8080), a, SYN, 1, 3),
            Some(8080)
        );
        // Retargeting drops the old target's mapping; the new target gets the next packet,
        // the port's hold notwithstanding.
        assert_eq!(
            t.set_forwards(vec![fwd(Proto::Tcp, 8080, 8080, 21, 80)], 4),
            1
        );
        assert_eq!(t.inbound(Proto::Tcp, 8080, a, SYN, 1, 5), Ok(ep(21, 80)));
        // Removal: the forward's mapping goes and nothing gets in any more.
        assert_eq!(t.set_forwards(Vec::new(), 6), 1);
        assert_eq!(
            t.inbound(Proto::Tcp, 8080, a, ACK, 1, 7),
            Err(Miss::NoMapping)
        );
        // A forward matching an existing mapping exactly just adopts it.
        let p = t
            .outbound(Proto::Udp, ep(22, 5000), remote(1), NONE, 1, 8)
            .unwrap();
        assert_eq!(t.set_forwards(vec![fwd(Proto::Udp, p, p, 22, 5000)], 9), 0);
        assert!(t.iter().any(|m| m.outside_port == p && m.forwarded));
    }

    #[test]
    fn forwarded_mappings_expire_and_forwards_outlive_a_flush() {
        let mut t = table();
        t.set_forwards(vec![fwd(Proto::Udp, 5353, 5353, 20, 53)], 0);
        let a = remote(1);
        assert!(t.inbound(Proto::Udp, 5353, a, NONE, 1, 0).is_ok());
        // Inbound traffic through a forward keeps its mapping alive...
        assert!(t.inbound(Proto::Udp, 5353, a, NONE, 1, 200_000).is_ok());
        assert_eq!(t.sweep(300_000), 0);
        // ...but once it stops, the mapping goes like any other.
        assert_eq!(t.sweep(500_000), 1);
        assert!(t.inbound(Proto::Udp, 5353, a, NONE, 1, 500_001).is_ok());
        t.clear();
        assert_eq!(t.forwards().len(), 1);
        assert!(t.inbound(Proto::Udp, 5353, a, NONE, 1, 500_002).is_ok());
    }
}
