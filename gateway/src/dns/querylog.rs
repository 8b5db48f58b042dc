//! Per-client query log and counters, bounded.
//!
//! Each UDP worker (and the slow path) writes to its own shard, so the hot
//! path takes only an uncontended lock; readers merge the shards. A shard keeps
//! at most `MAX_CLIENTS` clients (the one seen longest ago goes first) and the
//! last `PER_CLIENT` queries of each, so memory stays bounded however many
//! addresses a LAN (or a spoofer on it) uses. Ring slots reuse their string
//! buffers, so a full ring logs without allocating.

use serde::Serialize;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};

pub const PER_CLIENT: usize = 256;
pub const MAX_CLIENTS: usize = 64;
/// Shards: the slow path uses the last one, UDP workers share the others.
pub const SHARDS: usize = 4;

/// One query as the UI shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogEntry {
    /// Unix time in milliseconds.
    pub time_ms: u64,
    pub name: String,
    pub qtype: String,
    pub rcode: String,
    /// First A/AAAA address of the answer, if any.
    pub answer: Option<IpAddr>,
    pub blocked: bool,
    pub cached: bool,
}

/// Totals for one client (since it was last evicted from the bounded map).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientSummary {
    pub ip: IpAddr,
    pub queries: u64,
    pub blocked: u64,
    pub cached: u64,
    pub last_seen_ms: u64,
}

/// A query name as the resolver has it at hand.
#[derive(Debug, Clone, Copy)]
pub enum Name<'a> {
    /// Lowercased wire format (the fast path).
    Wire(&'a [u8]),
    /// Presentation form without the trailing dot.
    Text(&'a str),
}

/// What the resolver records per query.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub time_ms: u64,
    pub name: Name<'a>,
    pub qtype: u16,
    pub rcode: u8,
    pub answer: Option<IpAddr>,
    pub blocked: bool,
    pub cached: bool,
}

#[derive(Debug, Default)]
struct Slot {
    time_ms: u64,
    name: String,
    qtype: u16,
    rcode: u8,
    answer: Option<IpAddr>,
    blocked: bool,
    cached: bool,
}

#[derive(Debug, Default)]
struct Client {
    /// Up to `PER_CLIENT` slots; once full, `next` is the oldest.
    ring: Vec<Slot>,
    next: usize,
    queries: u64,
    blocked: u64,
    cached: u64,
    last_seen_ms: u64,
}

#[derive(Debug, Default)]
pub struct Shard {
    clients: HashMap<IpAddr, Client, lru::DefaultHasher>,
}

impl Client {
    /// Oldest first.
    fn iter(&self) -> impl Iterator<Item = &Slot> {
        let (new, old) = self.ring.split_at(self.next.min(self.ring.len()));
        old.iter().chain(new)
    }
}

impl Shard {
    pub fn record(&mut self, ip: IpAddr, r: &Record) {
        if !self.clients.contains_key(&ip) && self.clients.len() >= MAX_CLIENTS {
            if let Some(oldest) = self
                .clients
                .iter()
                .min_by_key(|(_, c)| c.last_seen_ms)
                .map(|(ip, _)| *ip)
            {
                self.clients.remove(&oldest);
            }
        }
        let c = self.clients.entry(ip).or_default();
        c.queries += 1;
        c.blocked += u64::from(r.blocked);
        c.cached += u64::from(r.cached);
        c.last_seen_ms = r.time_ms;
        let slot = if c.ring.len() < PER_CLIENT {
            c.ring.push(Slot::default());
            c.ring.last_mut()
        } else {
            let i = c.next;
            c.next = (c.next + 1) % PER_CLIENT;
            c.ring.get_mut(i)
        };
        let Some(slot) = slot else {
            return;
        };
        slot.time_ms = r.time_ms;
        match r.name {
            Name::Wire(w) => super::wire::write_name(w, &mut slot.name),
            Name::Text(t) => {
                slot.name.clear();
                slot.name.push_str(t);
            }
        }
        slot.qtype = r.qtype;
        slot.rcode = r.rcode;
        slot.answer = r.answer;
        slot.blocked = r.blocked;
        slot.cached = r.cached;
    }
}

#[derive(Debug)]
pub struct QueryLog {
    shards: Vec<Mutex<Shard>>,
}

impl Default for QueryLog {
    fn default() -> Self {
        QueryLog {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl QueryLog {
    /// The shard UDP worker `n` writes to.
    pub fn worker_shard(&self, n: usize) -> &Mutex<Shard> {
        &self.shards[n % (SHARDS - 1)]
    }

    /// The shard of the slow path (cache misses, TCP, local names).
    pub fn slow_shard(&self) -> &Mutex<Shard> {
        &self.shards[SHARDS - 1]
    }

    pub fn record(shard: &Mutex<Shard>, ip: IpAddr, r: &Record) {
        lock(shard).record(ip, r);
    }

    /// The last `PER_CLIENT` queries of `ip`, oldest first.
    pub fn entries(&self, ip: IpAddr) -> Vec<LogEntry> {
        let mut all: Vec<LogEntry> = Vec::new();
        for s in &self.shards {
            let s = lock(s);
            if let Some(c) = s.clients.get(&ip) {
                all.extend(c.iter().map(|x| LogEntry {
                    time_ms: x.time_ms,
                    name: x.name.clone(),
                    qtype: super::wire::type_name(x.qtype),
                    rcode: super::wire::rcode_name(x.rcode).to_string(),
                    answer: x.answer,
                    blocked: x.blocked,
                    cached: x.cached,
                }));
            }
        }
        all.sort_by_key(|e| e.time_ms);
        let skip = all.len().saturating_sub(PER_CLIENT);
        all.drain(..skip);
        all
    }

    /// Every client currently tracked, most queries first.
    pub fn clients(&self) -> Vec<ClientSummary> {
        let mut by_ip: std::collections::HashMap<IpAddr, ClientSummary> = Default::default();
        for s in &self.shards {
            for (ip, c) in &lock(s).clients {
                let e = by_ip.entry(*ip).or_insert(ClientSummary {
                    ip: *ip,
                    queries: 0,
                    blocked: 0,
                    cached: 0,
                    last_seen_ms: 0,
                });
                e.queries += c.queries;
                e.blocked += c.blocked;
                e.cached += c.cached;
                e.last_seen_ms = e.last_seen_ms.max(c.last_seen_ms);
            }
        }
        let mut v: Vec<ClientSummary> = by_ip.into_values().collect();
        v.sort_by(|a, b| b.queries.cmp(&a.queries).then(a.ip.cmp(&b.ip)));
        v
    }
}

pub use crate::clock::unix_ms;

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn rec(t: u64, name: &str) -> Record<'_> {
        Record {
            time_ms: t,
            name: Name::Text(name),
            qtype: 1,
            rcode: 0,
            answer: None,
            blocked: t.is_multiple_of(2),
            cached: false,
        }
    }

    #[test]
    fn ring_keeps_last_entries_per_client_across_shards() {
        let log = QueryLog::default();
        let ip = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10));
        for t in 0..600u64 {
            let shard = if t % 3 == 0 {
                log.slow_shard()
            } else {
                log.worker_shard(t as usize)
            };
            QueryLog::record(shard, ip, &rec(t, &format!("n{t}.test")));
        }
        let e = log.entries(ip);
        assert_eq!(e.len(), PER_CLIENT);
        assert_eq!(e.last().unwrap().name, "n599.test");
        assert_eq!(e.first().unwrap().time_ms, 600 - PER_CLIENT as u64);
        assert!(e.windows(2).all(|w| w[0].time_ms < w[1].time_ms));
        assert_eq!(e[0].qtype, "A");
        assert_eq!(e[0].rcode, "NOERROR");
        let c = log.clients();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].queries, 600);
        assert_eq!(c[0].blocked, 300);
        assert!(log
            .entries(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))
            .is_empty());
    }

    #[test]
    fn number_of_clients_is_bounded_oldest_evicted() {
        let log = QueryLog::default();
        let shard = log.worker_shard(0);
        for i in 0..(MAX_CLIENTS as u64 + 10) {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i as u32));
            QueryLog::record(shard, ip, &rec(i, "x.test"));
        }
        let c = log.clients();
        assert_eq!(c.len(), MAX_CLIENTS);
        assert!(!c
            .iter()
            .any(|s| s.ip == IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0))));
        assert!(c
            .iter()
            .any(|s| s.ip == IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + MAX_CLIENTS as u32 + 9))));
    }
}
