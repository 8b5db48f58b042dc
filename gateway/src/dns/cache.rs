//! Small positive answer cache. Entries live for the smallest TTL in the reply
//! (capped), the table is bounded, and when full the least recently used entry
//! goes. Time is passed in, so expiry is testable without sleeping.

use super::message::counts_plausible;
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{DNSClass, Record, RecordType};
use std::collections::HashMap;
use std::time::Instant;

pub const CAPACITY: usize = 2048;
/// Upper bound on how long anything is served from cache, whatever upstream says.
pub const MAX_TTL: u32 = 3600;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// Lowercased presentation form: clients randomise case, the answer doesn't care.
    name: String,
    qtype: RecordType,
    qclass: DNSClass,
    /// DO or CD set: such clients want RRSIGs / unvalidated data, a different answer.
    dnssec: bool,
}

impl Key {
    pub fn new(req: &Message) -> Option<Key> {
        let q = req.queries().first()?;
        Some(Key {
            name: q.name().to_lowercase().to_ascii(),
            qtype: q.query_type(),
            qclass: q.query_class(),
            dnssec: req.checking_disabled()
                || req
                    .extensions()
                    .as_ref()
                    .is_some_and(|e| e.flags().dnssec_ok),
        })
    }
}

struct Entry {
    msg: Message,
    stored: Instant,
    ttl: u32,
    last_used: Instant,
}

pub struct Cache {
    entries: HashMap<Key, Entry>,
    capacity: usize,
}

/// Parses an upstream reply and decides whether (and for how long) it may be
/// cached: only complete, positive answers with a non-zero TTL.
pub fn cacheable(reply: &[u8]) -> Option<(Message, u32)> {
    if !counts_plausible(reply) {
        return None;
    }
    let msg = Message::from_vec(reply).ok()?;
    if msg.message_type() != MessageType::Response
        || msg.response_code() != ResponseCode::NoError
        || msg.truncated()
        || msg.answers().is_empty()
        || !msg.signature().is_empty()
    {
        return None;
    }
    let ttl = msg
        .answers()
        .iter()
        .chain(msg.name_servers())
        .chain(msg.additionals())
        .map(|r| r.ttl())
        .min()?
        .min(MAX_TTL);
    (ttl > 0).then_some((msg, ttl))
}

impl Cache {
    pub fn new(capacity: usize) -> Self {
        Cache {
            entries: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The cached reply with every TTL reduced by the time it has spent here.
    pub fn get(&mut self, key: &Key, now: Instant) -> Option<Message> {
        let entry = self.entries.get_mut(key)?;
        let age = now.saturating_duration_since(entry.stored).as_secs();
        let age = u32::try_from(age).unwrap_or(u32::MAX);
        if age >= entry.ttl {
            self.entries.remove(key);
            return None;
        }
        entry.last_used = now;
        let mut msg = entry.msg.clone();
        let age_records = |records: &mut Vec<Record>| {
            for r in records {
                r.set_ttl(r.ttl().saturating_sub(age));
            }
        };
        age_records(msg.answers_mut());
        age_records(msg.name_servers_mut());
        age_records(msg.additionals_mut());
        Some(msg)
    }

    pub fn insert(&mut self, key: Key, msg: Message, ttl: u32, now: Instant) {
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            self.evict(now);
        }
        let entry = Entry {
            msg,
            stored: now,
            ttl,
            last_used: now,
        };
        self.entries.insert(key, entry);
    }

    /// Drops everything expired; if that frees nothing, the least recently used entry.
    fn evict(&mut self, now: Instant) {
        self.entries
            .retain(|_, e| (now.saturating_duration_since(e.stored).as_secs()) < u64::from(e.ttl));
        if self.entries.len() < self.capacity {
            return;
        }
        let lru = self
            .entries
            .iter()
            .min_by_key(|(_, e)| e.last_used)
            .map(|(k, _)| k.clone());
        if let Some(k) = lru {
            self.entries.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::message::tests::query_msg;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData};
    use std::net::Ipv4Addr;
    use std::time::Duration;

    fn reply(name: &str, ttls: &[u32]) -> (Message, Vec<u8>) {
        let q = query_msg(name, RecordType::A, 5);
        let mut m = q.clone();
        m.set_message_type(MessageType::Response);
        for (i, ttl) in ttls.iter().enumerate() {
            m.add_answer(Record::from_rdata(
                Name::from_ascii(name).unwrap(),
                *ttl,
                RData::A(A(Ipv4Addr::new(192, 0, 2, i as u8 + 1))),
            ));
        }
        let bytes = m.to_vec().unwrap();
        (q, bytes)
    }

    #[test]
    fn ttl_is_minimum_and_capped() {
        assert_eq!(cacheable(&reply("a.test.", &[300, 60]).1).unwrap().1, 60);
        assert_eq!(cacheable(&reply("a.test.", &[86400]).1).unwrap().1, MAX_TTL);
        assert!(cacheable(&reply("a.test.", &[0, 300]).1).is_none());
        assert!(cacheable(&reply("a.test.", &[]).1).is_none(), "NODATA");
        let mut nx = Message::from_vec(&reply("a.test.", &[300]).1).unwrap();
        nx.set_response_code(ResponseCode::NXDomain);
        assert!(cacheable(&nx.to_vec().unwrap()).is_none());
        assert!(cacheable(b"short").is_none());
    }

    #[test]
    fn ttl_decrements_then_expires() {
        let (q, bytes) = reply("a.test.", &[100, 30]);
        let (msg, ttl) = cacheable(&bytes).unwrap();
        let mut c = Cache::new(8);
        let t0 = Instant::now();
        let key = Key::new(&q).unwrap();
        c.insert(key.clone(), msg, ttl, t0);

        let hit = c.get(&key, t0 + Duration::from_millis(10_500)).unwrap();
        let ttls: Vec<u32> = hit.answers().iter().map(|r| r.ttl()).collect();
        assert_eq!(ttls, vec![90, 20]);

        assert!(c.get(&key, t0 + Duration::from_secs(29)).is_some());
        assert!(c.get(&key, t0 + Duration::from_secs(30)).is_none());
        assert_eq!(c.len(), 0, "expired entry removed");
    }

    #[test]
    fn key_ignores_case_but_not_type_or_do() {
        let a = Key::new(&query_msg("WWW.Example.test.", RecordType::A, 1)).unwrap();
        let b = Key::new(&query_msg("www.example.TEST.", RecordType::A, 2)).unwrap();
        assert_eq!(a, b);
        let aaaa = Key::new(&query_msg("www.example.test.", RecordType::AAAA, 1)).unwrap();
        assert_ne!(a, aaaa);
        let mut with_do = query_msg("www.example.test.", RecordType::A, 1);
        let mut e = hickory_proto::op::Edns::new();
        e.set_dnssec_ok(true);
        with_do.set_edns(e);
        assert_ne!(a, Key::new(&with_do).unwrap());
    }

    #[test]
    fn bounded_with_lru_eviction() {
        let mut c = Cache::new(2);
        let t0 = Instant::now();
        let mut keys = Vec::new();
        for (i, n) in ["a.test.", "b.test.", "c.test."].iter().enumerate() {
            let (q, bytes) = reply(n, &[300]);
            let (msg, ttl) = cacheable(&bytes).unwrap();
            let key = Key::new(&q).unwrap();
            c.insert(key.clone(), msg, ttl, t0 + Duration::from_secs(i as u64));
            keys.push(key);
            if i == 1 {
                // Touch a.test so b.test is the least recently used.
                assert!(c.get(&keys[0], t0 + Duration::from_secs(2)).is_some());
            }
        }
        assert_eq!(c.len(), 2);
        let now = t0 + Duration::from_secs(3);
        assert!(c.get(&keys[0], now).is_some());
        assert!(c.get(&keys[1], now).is_none());
        assert!(c.get(&keys[2], now).is_some());
    }
}
