//! The answer cache. Entries are upstream replies kept as wire bytes, keyed by
//! the raw question (lowercased name, type, class, DNSSEC flag), so a hit is a
//! copy plus a few patched bytes: the client's ID, flags and question spelling,
//! and each TTL lowered by the time spent here. Nothing is parsed on a hit.
//!
//! - Positive answers live for their smallest TTL, raised to `min_ttl` and
//!   capped at `max_ttl`; a TTL of 0 is never cached.
//! - Negative answers (NXDOMAIN, or NODATA) are cached per RFC 2308 only when
//!   the authority section has the zone's SOA: for min(SOA TTL, SOA MINIMUM),
//!   capped at `max_ttl`. Without SOA they are not cached at all.
//! - Memory is bounded: every entry costs its stored bytes plus a fixed
//!   overhead, and the least recently used entries go when the budget is
//!   exceeded. The table is split in shards (each with an equal share of the
//!   budget and its own LRU order) so the UDP workers rarely meet on a lock.
//! - Time is passed in, so expiry is testable without sleeping.

use super::wire::{self, Question, Reply, Section};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

/// Bookkeeping per entry on top of its blob (key, message, TTL table): the
/// LRU node with its links, the map slot and the allocator's headers come to
/// ~160 bytes; with allocator slack under churn, a small entry was measured
/// at ~420 bytes of RSS in all (blob ~90). So `cache_bytes` approximates
/// the RSS the cache may take.
pub const ENTRY_OVERHEAD: usize = 320;
pub const SHARDS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlPolicy {
    pub min_ttl: u32,
    pub max_ttl: u32,
}

/// What a cached answer says, for the query log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub rcode: u8,
    pub first_address: Option<IpAddr>,
}

/// A reply prepared for storage.
#[derive(Debug, PartialEq, Eq)]
pub struct Stored {
    /// The reply without its OPT record, TTLs already clamped.
    bytes: Box<[u8]>,
    /// Offset of every TTL field, and the TTL stored there.
    ttls: Box<[(u16, u32)]>,
    /// Seconds the entry may be served.
    lifetime: u32,
    pub negative: bool,
    pub summary: Summary,
    /// Length of the question section (must match the client's).
    qlen: usize,
}

impl Stored {
    /// What the entry made of this will count against the budget.
    #[cfg(test)]
    fn cost(&self, key_len: usize) -> usize {
        key_len + self.bytes.len() + self.ttls.len() * 6 + ENTRY_OVERHEAD
    }
}

fn clamp_ttl(ttl: u32) -> u32 {
    // RFC 2181 8: a TTL with the top bit set is to be read as zero.
    if ttl & 0x8000_0000 != 0 {
        0
    } else {
        ttl
    }
}

/// Decides whether (and how) `reply`, upstream's answer to a question of
/// type `qtype` whose question section is `qlen` bytes, may be cached.
pub fn prepare(reply: &[u8], qtype: u16, qlen: usize, policy: TtlPolicy) -> Option<Stored> {
    let r = wire::walk(reply)?;
    if !r.is_response || r.opcode != 0 || r.truncated || r.qend != wire::HEADER_LEN + qlen {
        return None;
    }
    // The question is overwritten with the client's on every hit: it must be
    // a plain (uncompressed) name of the same length.
    if reply[wire::HEADER_LEN..r.qend - 4]
        .iter()
        .any(|&b| b & 0xc0 == 0xc0)
    {
        return None;
    }
    if !matches!(r.rcode, wire::RCODE_NOERROR | wire::RCODE_NXDOMAIN) {
        return None;
    }
    let (bytes, records) = strip_opt(reply, &r)?;
    let answers = || records.iter().filter(|x| x.section == Section::Answer);
    // A CNAME chain that ends without the asked type is NODATA (RFC 2308 2.2).
    let has_qtype = answers().any(|x| x.rtype == qtype || qtype == wire::TYPE_ANY);
    let negative = r.rcode == wire::RCODE_NXDOMAIN || !has_qtype;
    let raw_min = records.iter().map(|x| clamp_ttl(x.ttl)).min();
    let (lifetime, cap) = if negative {
        // RFC 2308 5: the SOA in the authority section says how long.
        let soa = records
            .iter()
            .find(|x| x.section == Section::Authority && x.rtype == wire::TYPE_SOA)?;
        let minimum = clamp_ttl(wire::u32_at(reply, soa.rdata.1.checked_sub(4)?)?);
        let neg = clamp_ttl(soa.ttl).min(minimum);
        let neg = answers().map(|x| clamp_ttl(x.ttl)).fold(neg, u32::min);
        let t = neg.min(policy.max_ttl);
        (t, t)
    } else {
        let m = raw_min?;
        if m == 0 {
            return None;
        }
        (m.max(policy.min_ttl).min(policy.max_ttl), policy.max_ttl)
    };
    if lifetime == 0 {
        return None;
    }
    let mut bytes = bytes;
    let mut ttls = Vec::with_capacity(records.len());
    for x in &records {
        let t = clamp_ttl(x.ttl);
        let t = if negative {
            t.min(cap)
        } else {
            t.max(policy.min_ttl).min(cap)
        };
        bytes[x.ttl_at..x.ttl_at + 4].copy_from_slice(&t.to_be_bytes());
        ttls.push((u16::try_from(x.ttl_at).ok()?, t));
    }
    let summary = Summary {
        rcode: r.rcode,
        first_address: wire::first_address(&bytes, &wire::walk(&bytes)?),
    };
    Some(Stored {
        bytes: bytes.into_boxed_slice(),
        ttls: ttls.into_boxed_slice(),
        lifetime,
        negative,
        summary,
        qlen,
    })
}

/// The reply without OPT (it is rebuilt per client) and the remaining records.
/// Replies with TSIG, or with OPT anywhere but last, are not cached.
fn strip_opt(reply: &[u8], r: &Reply) -> Option<(Vec<u8>, Vec<wire::Rr>)> {
    let mut records = r.records.clone();
    if records.iter().any(|x| x.rtype == wire::TYPE_TSIG) {
        return None;
    }
    let opts = records.iter().filter(|x| x.rtype == wire::TYPE_OPT).count();
    let mut bytes = reply.to_vec();
    match opts {
        0 => {}
        1 if records.last().is_some_and(|x| x.rtype == wire::TYPE_OPT) => {
            let opt = records.pop()?;
            if opt.section != Section::Additional {
                return None;
            }
            bytes.truncate(opt.start);
            let ar = wire::u16_at(&bytes, 10)? - 1;
            bytes[10..12].copy_from_slice(&ar.to_be_bytes());
        }
        _ => return None,
    }
    Some((bytes, records))
}

/// One cached answer in a single allocation: `[key | message | TTL table]`,
/// the table holding (offset u16, TTL u32) pairs, big-endian.
struct Entry {
    blob: Box<[u8]>,
    key_len: u16,
    msg_len: u16,
    at: Instant,
    lifetime: u32,
    summary: Summary,
}

impl Entry {
    fn new(key: &[u8], s: Stored, at: Instant) -> Option<Entry> {
        let mut blob = Vec::with_capacity(key.len() + s.bytes.len() + s.ttls.len() * 6);
        blob.extend_from_slice(key);
        blob.extend_from_slice(&s.bytes);
        for &(off, ttl) in s.ttls.iter() {
            blob.extend_from_slice(&off.to_be_bytes());
            blob.extend_from_slice(&ttl.to_be_bytes());
        }
        Some(Entry {
            blob: blob.into_boxed_slice(),
            key_len: u16::try_from(key.len()).ok()?,
            msg_len: u16::try_from(s.bytes.len()).ok()?,
            at,
            lifetime: s.lifetime,
            summary: s.summary,
        })
    }

    fn key(&self) -> &[u8] {
        &self.blob[..usize::from(self.key_len)]
    }

    fn cost(&self) -> usize {
        self.blob.len() + ENTRY_OVERHEAD
    }

    /// The stored reply with TTLs lowered by `age`, into `out`.
    fn write(&self, age: u32, out: &mut Vec<u8>) {
        let k = usize::from(self.key_len);
        let m = k + usize::from(self.msg_len);
        out.clear();
        out.extend_from_slice(&self.blob[k..m]);
        for pair in self.blob[m..].chunks_exact(6) {
            let at = usize::from(u16::from_be_bytes([pair[0], pair[1]]));
            let ttl = u32::from_be_bytes([pair[2], pair[3], pair[4], pair[5]]);
            if let Some(field) = out.get_mut(at..at + 4) {
                field.copy_from_slice(&ttl.saturating_sub(age).to_be_bytes());
            }
        }
    }
}

struct Shard {
    /// Keyed by a 64-bit keyed hash of the key; the key itself is in the
    /// entry and compared on every hit, so a collision is only a miss.
    map: lru::LruCache<u64, Entry, lru::DefaultHasher>,
    used: usize,
    budget: usize,
}

impl Shard {
    fn remove(&mut self, h: u64, gauges: &Gauges) -> Option<Entry> {
        let e = self.map.pop(&h)?;
        self.forget(&e, gauges);
        Some(e)
    }

    fn forget(&mut self, e: &Entry, gauges: &Gauges) {
        self.used -= e.cost();
        gauges.entries.fetch_sub(1, Relaxed);
        gauges.bytes.fetch_sub(e.cost() as u64, Relaxed);
    }
}

/// Running size of the cache, for the status page.
#[derive(Debug, Default, serde::Serialize)]
pub struct Gauges {
    pub entries: AtomicU64,
    pub bytes: AtomicU64,
    pub evictions: AtomicU64,
}

pub struct Cache {
    shards: Box<[Mutex<Shard>]>,
    /// foldhash with a per-process random seed: fast, and clients cannot
    /// pick names that collide.
    hasher: lru::DefaultHasher,
    gauges: std::sync::Arc<Gauges>,
}

impl Cache {
    pub fn new(budget: usize, shards: usize, gauges: std::sync::Arc<Gauges>) -> Self {
        let shards = shards.max(1);
        let per = budget / shards;
        Cache {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        map: lru::LruCache::unbounded_with_hasher(lru::DefaultHasher::default()),
                        used: 0,
                        budget: per,
                    })
                })
                .collect(),
            hasher: lru::DefaultHasher::default(),
            gauges,
        }
    }

    /// The key's hash and its shard, locked.
    fn shard(&self, key: &[u8]) -> (u64, MutexGuard<'_, Shard>) {
        let h = self.hasher.hash_one(key);
        // The high bits pick the shard; the map hashes the whole value again.
        let s = &self.shards[(h >> 48) as usize % self.shards.len()];
        // A shard holds no invariant a panicking holder could break.
        (h, s.lock().unwrap_or_else(|e| e.into_inner()))
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap().map.len())
            .sum()
    }

    /// Drops every entry (after an upstream or TTL policy change: what was
    /// stored came from, or was kept under, settings no longer in force).
    pub fn clear(&self) {
        for s in self.shards.iter() {
            let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
            while let Some((_, e)) = s.map.pop_lru() {
                s.forget(&e, &self.gauges);
            }
        }
    }

    /// On a hit, writes the reply for `q` into `out` (UDP size limit not
    /// applied) and returns what it says.
    pub fn lookup(
        &self,
        key: &[u8],
        q: &Question,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Option<Summary> {
        let (h, mut shard) = self.shard(key);
        let entry = shard.map.get(&h)?;
        if entry.key() != key {
            return None; // a 64-bit collision: as good as a miss
        }
        let age = now.saturating_duration_since(entry.at).as_secs();
        let age = u32::try_from(age).unwrap_or(u32::MAX);
        if age >= entry.lifetime {
            shard.remove(h, &self.gauges);
            return None;
        }
        entry.write(age, out);
        let summary = entry.summary;
        drop(shard);
        if out.len() < wire::HEADER_LEN + q.section.len() {
            return None;
        }
        patch_for(out, q);
        Some(summary)
    }

    /// Stores `stored` under `key`, evicting least recently used entries of its
    /// shard until it fits. An entry larger than a whole shard is not stored.
    pub fn insert(&self, key: &[u8], stored: Stored, now: Instant) {
        if stored.qlen + wire::HEADER_LEN > stored.bytes.len() {
            return;
        }
        let Some(entry) = Entry::new(key, stored, now) else {
            return;
        };
        let cost = entry.cost();
        let (h, mut shard) = self.shard(key);
        if cost > shard.budget {
            return;
        }
        shard.remove(h, &self.gauges);
        while shard.used + cost > shard.budget {
            let Some((_, e)) = shard.map.pop_lru() else {
                break;
            };
            shard.forget(&e, &self.gauges);
            self.gauges.evictions.fetch_add(1, Relaxed);
        }
        shard.used += cost;
        shard.map.put(h, entry);
        self.gauges.entries.fetch_add(1, Relaxed);
        self.gauges.bytes.fetch_add(cost as u64, Relaxed);
    }

    #[cfg(test)]
    fn used(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap().used).sum()
    }
}

/// Makes a stored reply the answer to `q`: its ID, its question spelling
/// (clients randomise case), RD and CD echoed, AA cleared (this is a cache),
/// AD kept only for clients that asked for it (RFC 6840 5.8), and an OPT
/// record of ours if the client used EDNS.
fn patch_for(out: &mut Vec<u8>, q: &Question) {
    out[0..2].copy_from_slice(&q.id.to_be_bytes());
    out[2] = (out[2] & !0x05) | (q.flags[0] & 0x01);
    let ad_ok = q.ad() || q.edns.is_some_and(|e| e.dnssec_ok);
    let mut b3 = (out[3] & !0x10) | (q.flags[1] & 0x10);
    if !ad_ok {
        b3 &= !0x20;
    }
    out[3] = b3;
    let qend = wire::HEADER_LEN + q.section.len();
    out[wire::HEADER_LEN..qend].copy_from_slice(q.section);
    if let Some(e) = q.edns {
        wire::push_opt(out, e.dnssec_ok);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::message::tests::query_msg;
    use crate::dns::wire::{parse_question, Key};
    use hickory_proto::op::{Edns, Message, MessageType, ResponseCode};
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::{Name, RData, Record, RecordType};
    use std::net::Ipv4Addr;
    use std::sync::Arc;
    use std::time::Duration;

    const POLICY: TtlPolicy = TtlPolicy {
        min_ttl: 0,
        max_ttl: 86400,
    };

    fn cache(budget: usize) -> Cache {
        Cache::new(budget, 1, Arc::new(Gauges::default()))
    }

    fn reply(name: &str, ttls: &[u32]) -> (Vec<u8>, Vec<u8>) {
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
        (q.to_vec().unwrap(), m.to_vec().unwrap())
    }

    fn soa(ttl: u32, minimum: u32) -> Record {
        let zone = Name::from_ascii("test.").unwrap();
        Record::from_rdata(
            zone.clone(),
            ttl,
            RData::SOA(SOA::new(zone.clone(), zone, 1, 2, 3, 4, minimum)),
        )
    }

    fn prep(q: &[u8], r: &[u8], policy: TtlPolicy) -> Option<Stored> {
        let qq = parse_question(q).unwrap();
        prepare(r, qq.qtype, qq.section.len(), policy)
    }

    fn ttls_of(bytes: &[u8]) -> Vec<u32> {
        let m = Message::from_vec(bytes).unwrap();
        m.answers()
            .iter()
            .chain(m.name_servers())
            .map(|r| r.ttl())
            .collect()
    }

    #[test]
    fn positive_ttl_is_minimum_clamped_by_policy() {
        let (q, r) = reply("a.test.", &[300, 60]);
        let s = prep(&q, &r, POLICY).unwrap();
        assert_eq!(s.lifetime, 60);
        assert!(!s.negative);
        assert_eq!(
            s.summary.first_address,
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
        );
        let p = TtlPolicy {
            min_ttl: 120,
            max_ttl: 200,
        };
        let s = prep(&q, &r, p).unwrap();
        assert_eq!(s.lifetime, 120, "raised to min_ttl");
        assert_eq!(ttls_of(&s.bytes), vec![200, 120], "records clamped too");
        let (q, r) = reply("a.test.", &[86400 * 7]);
        assert_eq!(prep(&q, &r, POLICY).unwrap().lifetime, 86400);
        let (q, r) = reply("a.test.", &[0, 300]);
        assert!(prep(&q, &r, p).is_none(), "TTL 0 means do not cache");
        assert!(prepare(b"short", 1, 5, POLICY).is_none());
    }

    #[test]
    fn negative_answers_need_soa_and_use_its_minimum() {
        let (q, r) = reply("nx.test.", &[]);
        let mut m = Message::from_vec(&r).unwrap();
        m.set_response_code(ResponseCode::NXDomain);
        assert!(
            prep(&q, &m.to_vec().unwrap(), POLICY).is_none(),
            "NXDOMAIN without SOA is never cached"
        );
        m.add_name_server(soa(900, 60));
        let s = prep(&q, &m.to_vec().unwrap(), POLICY).unwrap();
        assert!(s.negative);
        assert_eq!(s.lifetime, 60, "min(SOA TTL, SOA MINIMUM)");
        assert_eq!(ttls_of(&s.bytes), vec![60]);
        assert_eq!(s.summary.rcode, wire::RCODE_NXDOMAIN);
        // NODATA: NOERROR, no answer of the asked type.
        let mut nodata = Message::from_vec(&r).unwrap();
        nodata.add_name_server(soa(30, 600));
        let s = prep(&q, &nodata.to_vec().unwrap(), POLICY).unwrap();
        assert!(s.negative);
        assert_eq!(s.lifetime, 30);
        let (q, r) = reply("nd.test.", &[]);
        assert!(prep(&q, &r, POLICY).is_none(), "NODATA without SOA");
        // SERVFAIL is never cached.
        let mut sf = Message::from_vec(&r).unwrap();
        sf.set_response_code(ResponseCode::ServFail);
        sf.add_name_server(soa(30, 30));
        assert!(prep(&q, &sf.to_vec().unwrap(), POLICY).is_none());
        // max_ttl caps negative answers too.
        let p = TtlPolicy {
            min_ttl: 0,
            max_ttl: 10,
        };
        assert_eq!(prep(&q, &nodata.to_vec().unwrap(), p).unwrap().lifetime, 10);
    }

    #[test]
    fn hit_patches_id_question_and_ttls() {
        let (q, r) = reply("a.test.", &[100, 30]);
        let c = cache(1 << 20);
        let t0 = Instant::now();
        let qq = parse_question(&q).unwrap();
        let key = Key::new(&qq);
        c.insert(key.as_bytes(), prep(&q, &r, POLICY).unwrap(), t0);

        let other = query_msg("A.TeSt.", RecordType::A, 0x7777)
            .to_vec()
            .unwrap();
        let oq = parse_question(&other).unwrap();
        assert_eq!(Key::new(&oq).as_bytes(), key.as_bytes());
        let mut out = Vec::new();
        let s = c
            .lookup(
                key.as_bytes(),
                &oq,
                t0 + Duration::from_millis(10_500),
                &mut out,
            )
            .unwrap();
        assert_eq!(s.rcode, 0);
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.id(), 0x7777);
        assert_eq!(m.queries()[0].name().to_ascii(), "A.TeSt.");
        assert!(!m.authoritative());
        assert!(m.extensions().is_none());
        assert_eq!(ttls_of(&out), vec![90, 20]);

        assert!(c
            .lookup(key.as_bytes(), &oq, t0 + Duration::from_secs(29), &mut out)
            .is_some());
        assert!(c
            .lookup(key.as_bytes(), &oq, t0 + Duration::from_secs(30), &mut out)
            .is_none());
        assert_eq!(c.len(), 0, "expired entry removed");
        assert_eq!(c.used(), 0);
    }

    #[test]
    fn opt_stripped_and_rebuilt_per_client() {
        let mut qm = query_msg("e.test.", RecordType::A, 5);
        qm.set_edns(Edns::new());
        let q = qm.to_vec().unwrap();
        let mut rm = qm.clone();
        rm.set_message_type(MessageType::Response);
        rm.add_answer(Record::from_rdata(
            Name::from_ascii("e.test.").unwrap(),
            300,
            RData::A(A::new(192, 0, 2, 9)),
        ));
        let r = rm.to_vec().unwrap();
        let s = prep(&q, &r, POLICY).unwrap();
        assert!(Message::from_vec(&s.bytes).unwrap().extensions().is_none());
        let c = cache(1 << 20);
        let qq = parse_question(&q).unwrap();
        let key = Key::new(&qq);
        c.insert(key.as_bytes(), s, Instant::now());
        let mut out = Vec::new();
        c.lookup(key.as_bytes(), &qq, Instant::now(), &mut out)
            .unwrap();
        let m = Message::from_vec(&out).unwrap();
        assert!(m.extensions().is_some(), "EDNS client gets OPT back");
        assert_eq!(m.answers().len(), 1);
    }

    #[test]
    fn bounded_by_bytes_with_lru_eviction() {
        let names = ["a.test.", "b.test.", "c.test."];
        let items: Vec<_> = names
            .iter()
            .map(|n| {
                let (q, r) = reply(n, &[300]);
                let s = prep(&q, &r, POLICY).unwrap();
                (q, s)
            })
            .collect();
        let key_len = Key::new(&parse_question(&items[0].0).unwrap())
            .as_bytes()
            .len();
        let one = items[0].1.cost(key_len);
        // Room for two entries, not three.
        let c = cache(one * 2 + one / 2);
        let t0 = Instant::now();
        let mut out = Vec::new();
        for (i, (q, s)) in items.into_iter().enumerate() {
            let qq = parse_question(&q).unwrap();
            let key = Key::new(&qq);
            c.insert(key.as_bytes(), s, t0 + Duration::from_secs(i as u64));
            if i == 1 {
                // Touch a.test so b.test is the least recently used.
                let a = query_msg(names[0], RecordType::A, 1).to_vec().unwrap();
                let aq = parse_question(&a).unwrap();
                assert!(c
                    .lookup(Key::new(&aq).as_bytes(), &aq, t0, &mut out)
                    .is_some());
            }
        }
        assert_eq!(c.len(), 2);
        assert!(c.used() <= one * 2 + one / 2);
        let hit = |n: &str| {
            let b = query_msg(n, RecordType::A, 1).to_vec().unwrap();
            let q = parse_question(&b).unwrap();
            let mut out = Vec::new();
            c.lookup(
                Key::new(&q).as_bytes(),
                &q,
                t0 + Duration::from_secs(3),
                &mut out,
            )
            .is_some()
        };
        assert!(hit("a.test."));
        assert!(!hit("b.test."));
        assert!(hit("c.test."));
        // Nothing fits in a zero budget.
        let z = cache(0);
        let (q, r) = reply("a.test.", &[300]);
        let qq = parse_question(&q).unwrap();
        z.insert(Key::new(&qq).as_bytes(), prep(&q, &r, POLICY).unwrap(), t0);
        assert_eq!(z.len(), 0);
    }
}
