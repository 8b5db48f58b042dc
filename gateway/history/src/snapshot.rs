//! Snapshot: the whole history in a versioned binary file, for restarts.
//!
//! ```text
//! file    = "GHTRHIST" u32le(version = 1) header dict chunk* "GHTR-END"
//! section = u64le(len) u64le(checksum of payload) payload[len]
//! header  = section of varints: bucket_ms, chunk_buckets, now_ms, sealed_before,
//!           records, late_dropped, future_dropped, evicted_chunks,
//!           evicted_before_ms + 1 (0: none), client slots, pair slots, chunks
//! dict    = section: client slot* pair slot*
//!           client slot = 0 (free) | 1 mac[6]
//!           pair slot   = 0 (free) | 4 v(client) ipv4[4] | 6 v(client) ipv6[16]
//! chunk   = section: v(chunk number) u8(1 if open) blob
//! ```
//!
//! Blobs are stored as they are in memory. Open chunks are encoded the same way and
//! opened again on load, so records keep landing in them after a restart. Reading never
//! trusts the file: each section is checksummed, and every blob is validated in full
//! before any query can see it.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use foldhash::HashMapExt;

use crate::codec::{self, put_varint, Acc, Entry, Reader, CHUNK_BUCKETS};
use crate::{
    bucket_key, mac_u64, BucketMap, ClientEntry, Config, Dict, History, OpenChunk, PairEntry,
    PairKey, Sealed, BUCKET_MS, FREE, MAX_TIME_MS,
};

const MAGIC: &[u8; 8] = b"GHTRHIST";
const END: &[u8; 8] = b"GHTR-END";
const VERSION: u32 = 1;
/// No section of a sane snapshot comes near this; a larger length is corruption.
const MAX_SECTION: u64 = 256 << 20;

#[derive(Debug)]
pub enum SnapshotError {
    Io(io::Error),
    NotASnapshot,
    Version(u32),
    Truncated,
    Corrupt(&'static str),
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::Io(e) => write!(f, "reading traffic history snapshot: {e}"),
            SnapshotError::NotASnapshot => write!(f, "not a traffic history snapshot"),
            SnapshotError::Version(v) => write!(
                f,
                "traffic history snapshot version {v} is not supported (this build reads {VERSION})"
            ),
            SnapshotError::Truncated => write!(f, "traffic history snapshot is truncated"),
            SnapshotError::Corrupt(why) => write!(f, "traffic history snapshot is corrupt: {why}"),
        }
    }
}

impl std::error::Error for SnapshotError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SnapshotError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for SnapshotError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            SnapshotError::Truncated
        } else {
            SnapshotError::Io(e)
        }
    }
}

/// Word-at-a-time FNV-style hash. Each step is a bijection of the state for a given
/// word, so any single changed word always changes the result. Stable across builds,
/// unlike the hashers in std.
pub(crate) fn checksum(b: &[u8]) -> u64 {
    const P: u64 = 0x0000_0100_0000_01b3;
    let mut h = 0xcbf2_9ce4_8422_2325 ^ b.len() as u64;
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
        h = (h ^ w).wrapping_mul(P).rotate_left(29);
    }
    let mut last = [0u8; 8];
    last[..words.remainder().len()].copy_from_slice(words.remainder());
    h = (h ^ u64::from_le_bytes(last))
        .wrapping_mul(P)
        .rotate_left(29);
    h ^ h >> 32
}

fn write_section(w: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    w.write_all(&(payload.len() as u64).to_le_bytes())?;
    w.write_all(&checksum(payload).to_le_bytes())?;
    w.write_all(payload)
}

/// Reads one section without trusting its length: memory grows only as bytes arrive.
fn read_section(r: &mut impl Read) -> Result<Vec<u8>, SnapshotError> {
    let mut h = [0u8; 16];
    r.read_exact(&mut h)?;
    let len = u64::from_le_bytes(h[..8].try_into().expect("8 bytes"));
    let sum = u64::from_le_bytes(h[8..].try_into().expect("8 bytes"));
    if len > MAX_SECTION {
        return Err(SnapshotError::Corrupt("section length out of range"));
    }
    let mut buf = Vec::with_capacity(len.min(1 << 20) as usize);
    let mut tmp = [0u8; 64 << 10];
    let mut left = len as usize;
    while left > 0 {
        let want = left.min(tmp.len());
        match r.read(&mut tmp[..want]) {
            Ok(0) => return Err(SnapshotError::Truncated),
            Ok(n) => {
                buf.extend_from_slice(&tmp[..n]);
                left -= n;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    if checksum(&buf) != sum {
        return Err(SnapshotError::Corrupt("checksum mismatch"));
    }
    Ok(buf)
}

impl History {
    /// An open chunk's buckets as entries sorted for encoding.
    fn open_entries(&self, oc: &OpenChunk) -> Vec<Entry> {
        let mut entries: Vec<Entry> = oc
            .map
            .iter()
            .map(|(&k, &acc)| {
                let pair = (k >> 16) as u32;
                Entry {
                    client: self.dict.pairs[pair as usize].client,
                    pair,
                    off: (k & 0xffff) as u16,
                    acc,
                }
            })
            .collect();
        entries.sort_unstable_by_key(|e| (e.client, e.pair, e.off));
        entries
    }

    /// Writes everything held, open chunks included, in the format described above.
    pub fn write_snapshot(&self, w: &mut impl Write) -> io::Result<()> {
        let open: Vec<(u64, Vec<u8>)> = self
            .open
            .iter()
            .filter(|o| !o.map.is_empty())
            .map(|o| (o.chunk, codec::encode_chunk(&self.open_entries(o)).0))
            .collect();
        w.write_all(MAGIC)?;
        w.write_all(&VERSION.to_le_bytes())?;

        let mut p = Vec::new();
        for v in [
            BUCKET_MS,
            CHUNK_BUCKETS,
            self.now_ms,
            self.sealed_before,
            self.records,
            self.late_dropped,
            self.future_dropped,
            self.evicted_chunks,
            self.evicted_before_ms.map_or(0, |t| t + 1),
            self.dict.clients.len() as u64,
            self.dict.pairs.len() as u64,
            (self.sealed.len() + open.len()) as u64,
        ] {
            put_varint(&mut p, v);
        }
        write_section(w, &p)?;

        p.clear();
        for c in &self.dict.clients {
            if c.pairs == 0 {
                p.push(0);
            } else {
                p.push(1);
                p.extend_from_slice(&c.mac);
            }
        }
        for e in &self.dict.pairs {
            if e.client == FREE {
                p.push(0);
                continue;
            }
            match e.remote {
                IpAddr::V4(a) => {
                    p.push(4);
                    put_varint(&mut p, u64::from(e.client));
                    p.extend_from_slice(&a.octets());
                }
                IpAddr::V6(a) => {
                    p.push(6);
                    put_varint(&mut p, u64::from(e.client));
                    p.extend_from_slice(&a.octets());
                }
            }
        }
        write_section(w, &p)?;

        let sealed = self.sealed.iter().map(|s| (s.chunk, false, &s.blob[..]));
        let open = open.iter().map(|(c, b)| (*c, true, &b[..]));
        for (chunk, is_open, blob) in sealed.chain(open) {
            p.clear();
            put_varint(&mut p, chunk);
            p.push(u8::from(is_open));
            p.extend_from_slice(blob);
            write_section(w, &p)?;
        }
        w.write_all(END)?;
        w.flush()
    }

    /// Reads a snapshot written by [`History::write_snapshot`] and applies `cfg` (which
    /// may evict at once). Any damage gives an error, never a panic.
    pub fn read_snapshot(r: &mut impl Read, cfg: Config) -> Result<History, SnapshotError> {
        let mut head = [0u8; 12];
        r.read_exact(&mut head).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => SnapshotError::NotASnapshot,
            _ => SnapshotError::Io(e),
        })?;
        if &head[..8] != MAGIC {
            return Err(SnapshotError::NotASnapshot);
        }
        let version = u32::from_le_bytes(head[8..].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(SnapshotError::Version(version));
        }
        let corrupt = SnapshotError::Corrupt;

        let hs = read_section(r)?;
        let mut hr = Reader::new(&hs);
        let mut v = [0u64; 12];
        for x in &mut v {
            *x = hr.varint();
        }
        if hr.bad || !hr.at_end() {
            return Err(corrupt("bad header"));
        }
        let [bucket_ms, chunk_buckets, now_ms, sealed_before, records, late_dropped, future_dropped, evicted_chunks, evicted_before, n_clients, n_pairs, n_chunks] =
            v;
        if bucket_ms != BUCKET_MS || chunk_buckets != CHUNK_BUCKETS {
            return Err(corrupt("different bucket or chunk length"));
        }
        let max_chunk = MAX_TIME_MS / (BUCKET_MS * CHUNK_BUCKETS);
        if now_ms > MAX_TIME_MS || sealed_before > max_chunk || evicted_before > MAX_TIME_MS + 1 {
            return Err(corrupt("time out of range"));
        }

        let ds = read_section(r)?;
        // Each slot takes at least a byte, which bounds the allocations below.
        if n_clients.saturating_add(n_pairs) > ds.len() as u64 {
            return Err(corrupt("dictionary shorter than its slot counts"));
        }
        let mut dict = Dict::default();
        let mut client_live = Vec::new();
        let mut dr = Reader::new(&ds);
        for i in 0..n_clients as u32 {
            let mut mac = [0u8; 6];
            match dr.byte() {
                0 => client_live.push(false),
                1 => {
                    mac = dr
                        .slice(6)
                        .try_into()
                        .map_err(|_| SnapshotError::Truncated)?;
                    if dict.client_ids.insert(mac_u64(&mac), i).is_some() {
                        return Err(corrupt("duplicate client"));
                    }
                    client_live.push(true);
                }
                _ => return Err(corrupt("bad client slot")),
            }
            dict.clients.push(ClientEntry { mac, pairs: 0 });
        }
        for i in 0..n_pairs as u32 {
            let tag = dr.byte();
            if tag == 0 {
                dict.pairs.push(PairEntry {
                    remote: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    client: FREE,
                    last_chunk: 0,
                });
                continue;
            }
            let client = dr.varint();
            let remote = match tag {
                4 => {
                    let b: [u8; 4] = dr.slice(4).try_into().map_err(|_| corrupt("bad pair"))?;
                    IpAddr::V4(Ipv4Addr::from(b))
                }
                6 => {
                    let b: [u8; 16] = dr.slice(16).try_into().map_err(|_| corrupt("bad pair"))?;
                    IpAddr::V6(Ipv6Addr::from(b))
                }
                _ => return Err(corrupt("bad pair slot")),
            };
            if dr.bad || !client_live.get(client as usize).copied().unwrap_or(false) {
                return Err(corrupt("pair of an unknown client"));
            }
            let key = PairKey::new(&dict.clients[client as usize].mac, &remote);
            if dict.ids.insert(key, i).is_some() {
                return Err(corrupt("duplicate pair"));
            }
            dict.pairs.push(PairEntry {
                remote,
                client: client as u32,
                last_chunk: 0,
            });
        }
        if dr.bad || !dr.at_end() {
            return Err(corrupt("bad dictionary"));
        }

        let mut sealed = VecDeque::new();
        let mut open = VecDeque::new();
        let mut prev: Option<u64> = None;
        let mut seen_open = false;
        for _ in 0..n_chunks {
            let cs = read_section(r)?;
            let mut cr = Reader::new(&cs);
            let chunk = cr.varint();
            let is_open = match cr.byte() {
                0 => false,
                1 => true,
                _ => return Err(corrupt("bad chunk flag")),
            };
            if cr.bad || chunk >= max_chunk || prev.is_some_and(|p| chunk <= p) {
                return Err(corrupt("chunks out of order or range"));
            }
            // Sealed chunks lie below sealed_before, open ones at or above, in order.
            if is_open != (chunk >= sealed_before) || (seen_open && !is_open) {
                return Err(corrupt("chunk on the wrong side of the seal line"));
            }
            prev = Some(chunk);
            seen_open |= is_open;
            let blob = cr.rest();
            let pairs = &dict.pairs;
            let mut used = Vec::new();
            let info = codec::validate(blob, |client, pair| {
                let ok = pairs
                    .get(pair as usize)
                    .is_some_and(|e| e.client != FREE && e.client == client);
                if ok {
                    used.push(pair);
                }
                ok
            })
            .map_err(corrupt)?;
            for p in used {
                let e = &mut dict.pairs[p as usize];
                e.last_chunk = e.last_chunk.max(chunk);
            }
            if is_open {
                let mut map = BucketMap::with_capacity(info.buckets as usize);
                for g in codec::groups(blob) {
                    for p in codec::pairs(g.body) {
                        p.for_each_bucket(|off, c| {
                            // Validation bounded the packet counts to u32.
                            map.insert(
                                bucket_key(p.pair, off),
                                Acc {
                                    up_bytes: c.up_bytes,
                                    down_bytes: c.down_bytes,
                                    up_packets: c.up_packets as u32,
                                    down_packets: c.down_packets as u32,
                                },
                            );
                        });
                    }
                }
                open.push_back(OpenChunk {
                    chunk,
                    map,
                    first_off: info.first_off,
                    last_off: info.last_off,
                });
            } else {
                sealed.push_back(Sealed {
                    chunk,
                    blob: blob.into(),
                    info,
                });
            }
        }
        let mut end = [0u8; 8];
        r.read_exact(&mut end)?;
        if &end != END {
            return Err(corrupt("missing end marker"));
        }

        // Live pair counts per client; clients without pairs become free slots.
        for e in &dict.pairs {
            if e.client != FREE {
                dict.clients[e.client as usize].pairs += 1;
            }
        }
        for (i, c) in dict.clients.iter().enumerate() {
            if c.pairs == 0 {
                if client_live[i] {
                    dict.client_ids.remove(&mac_u64(&c.mac));
                }
                dict.free_clients.push(i as u32);
            } else {
                dict.live_clients += 1;
            }
        }
        for (i, e) in dict.pairs.iter().enumerate() {
            if e.client == FREE {
                dict.free_pairs.push(i as u32);
            } else {
                dict.live_pairs += 1;
            }
        }

        let mut h = History::new(cfg);
        h.now_ms = now_ms;
        h.sealed_before = sealed_before;
        h.records = records;
        h.late_dropped = late_dropped;
        h.future_dropped = future_dropped;
        h.evicted_chunks = evicted_chunks;
        h.evicted_before_ms = evicted_before.checked_sub(1);
        h.dict = dict;
        for s in sealed {
            h.push_sealed(s);
        }
        h.open = open;
        // Drop dictionary entries no chunk uses, then apply the limits of `cfg`.
        let min_chunk = match (h.sealed.front(), h.open.front()) {
            (Some(s), _) => s.chunk,
            (None, Some(o)) => o.chunk,
            (None, None) => u64::MAX,
        };
        let (d, o) = (&mut h.dict, &h.open);
        d.prune(min_chunk, o);
        h.build_rollups();
        h.evict();
        Ok(h)
    }
}
