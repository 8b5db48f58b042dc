//! Per-device traffic history for gatewayd.
//!
//! Bytes and packets, up and down, for every (LAN client MAC, remote IP) pair, in 100 ms
//! buckets, for a day, inside a fixed memory budget.
//!
//! Time is cut into one-minute chunks of 600 buckets. Recent chunks are *open*: a hash
//! map from (pair id, bucket) to counters takes the records. Once a chunk is older than
//! [`LATE_GRACE_MS`] past its end it is *sealed* into one compact byte blob, grouped by
//! client, then pair, with varint counters (see `codec.rs`: about six bytes per non-empty
//! pair-bucket on the benchmark's home traffic, where a tree node per bucket takes about
//! ninety). Records for a sealed chunk are counted as `late_dropped`.
//!
//! Coarse queries avoid decoding buckets: each chunk keeps its totals and peaks, each
//! client group and larger pair in a blob carries its totals, and every complete hour
//! gets a rollup of per-pair totals (see `query.rs`).
//!
//! Old chunks go first: by age once they end more than `retention_ms` before now, and by
//! memory while [`History::memory_bytes`] is over `memory_limit`. [`History::oldest_ms`]
//! says how far back the data reaches; `Stats::evicted_before_ms` says where eviction cut.
//!
//! Timestamps are Unix milliseconds. `advance` must be called regularly (gatewayd: ten
//! times a second) with the current time: it seals, evicts, and defines what counts as
//! late or as too far in the future. A backward clock step makes records late until the
//! clock catches up again.

mod codec;
mod query;
mod snapshot;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::mem::size_of;
use std::net::IpAddr;

use codec::{Acc, ChunkInfo, Entry, CHUNK_BUCKETS};

pub use query::{GroupBy, Point, QueryError, Summary, Talker};
pub use snapshot::SnapshotError;

pub type Mac = [u8; 6];

/// Length of one bucket.
pub const BUCKET_MS: u64 = 100;
/// Length of one chunk, the unit of sealing and eviction.
pub const CHUNK_MS: u64 = BUCKET_MS * CHUNK_BUCKETS;
/// Chunks summed up in one rollup: an hour.
pub(crate) const HOUR_CHUNKS: u64 = 60;
/// How long after its end a chunk still takes records.
pub const LATE_GRACE_MS: u64 = 5_000;
/// Records stamped further than this past the last `advance` time are dropped, so a bad
/// clock cannot open chunks that would never be sealed.
pub const FUTURE_SLACK_MS: u64 = 60_000;
/// Most points a series query may span.
pub const MAX_POINTS: u64 = 100_000;
/// Timestamps at or above this (about year 37,000) are refused; keeps all chunk
/// arithmetic far from overflow.
pub(crate) const MAX_TIME_MS: u64 = 1 << 50;

/// Direction of a packet, seen from the LAN client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Client to internet.
    Up,
    /// Internet to client.
    Down,
}

/// One packet.
#[derive(Clone, Copy, Debug)]
pub struct Record {
    /// Unix time in milliseconds.
    pub t_ms: u64,
    pub client: Mac,
    pub remote: IpAddr,
    pub dir: Dir,
    /// IP length of the packet.
    pub bytes: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub up_bytes: u64,
    pub down_bytes: u64,
    pub up_packets: u64,
    pub down_packets: u64,
}

impl Counts {
    pub fn total_bytes(&self) -> u64 {
        self.up_bytes.saturating_add(self.down_bytes)
    }

    pub fn is_empty(&self) -> bool {
        *self == Counts::default()
    }
}

impl std::ops::AddAssign for Counts {
    // Saturating: sums of data from a snapshot must not panic in debug builds.
    fn add_assign(&mut self, o: Counts) {
        self.up_bytes = self.up_bytes.saturating_add(o.up_bytes);
        self.down_bytes = self.down_bytes.saturating_add(o.down_bytes);
        self.up_packets = self.up_packets.saturating_add(o.up_packets);
        self.down_packets = self.down_packets.saturating_add(o.down_packets);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Upper bound for [`History::memory_bytes`]; the oldest chunks go when it is hit.
    pub memory_limit: usize,
    /// Chunks that end more than this before now are dropped.
    pub retention_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            memory_limit: 64 << 20,
            retention_ms: 24 * 3_600_000,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Records accepted. Received = records + late_dropped + future_dropped.
    pub records: u64,
    /// Records for a chunk that was already sealed or evicted.
    pub late_dropped: u64,
    /// Records stamped more than [`FUTURE_SLACK_MS`] past the last `advance`.
    pub future_dropped: u64,
    /// Chunks dropped by age or for memory.
    pub evicted_chunks: u64,
    pub memory_bytes: usize,
    pub memory_limit: usize,
    pub retention_ms: u64,
    /// Start of the oldest non-empty bucket held.
    pub oldest_ms: Option<u64>,
    /// Start of the newest non-empty bucket held.
    pub newest_ms: Option<u64>,
    /// End of the newest evicted chunk: history before it may be incomplete.
    pub evicted_before_ms: Option<u64>,
    /// Pairs and clients in the dictionary.
    pub pairs: usize,
    pub clients: usize,
    pub sealed_chunks: usize,
    pub open_chunks: usize,
    /// Non-empty pair-buckets held, sealed and open.
    pub stored_buckets: u64,
    /// Bytes of sealed blobs (the compact part of `memory_bytes`).
    pub sealed_bytes: usize,
    pub sealed_buckets: u64,
    /// Hourly per-pair totals kept for long-range queries, and their bytes.
    pub rollups: usize,
    pub rollup_bytes: usize,
}

/// Bookkeeping cost assumed per heap allocation (malloc header and rounding).
const ALLOC_OVERHEAD: usize = 16;

type BucketMap = foldhash::HashMap<u64, Acc>;

/// Heap bytes of a std (hashbrown) map with this capacity: buckets are a power of two
/// at most 7/8 full, each holds one (K, V) and one control byte, plus a group of spare
/// control bytes.
fn map_bytes<K, V>(capacity: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = if capacity < 8 {
        (capacity + 1).next_power_of_two()
    } else {
        (capacity * 8 / 7).next_power_of_two()
    };
    buckets * (size_of::<(K, V)>() + 1) + 16 + ALLOC_OVERHEAD
}

fn vec_bytes<T>(capacity: usize) -> usize {
    if capacity == 0 {
        0
    } else {
        capacity * size_of::<T>() + ALLOC_OVERHEAD
    }
}

/// Key of an open bucket: pair id above, offset in the chunk below.
fn bucket_key(pair: u32, off: u16) -> u64 {
    u64::from(pair) << 16 | u64::from(off)
}

struct OpenChunk {
    chunk: u64,
    map: BucketMap,
    first_off: u16,
    last_off: u16,
}

struct Sealed {
    chunk: u64,
    blob: Box<[u8]>,
    info: ChunkInfo,
}

impl Sealed {
    fn cost(&self) -> usize {
        self.blob.len() + ALLOC_OVERHEAD
    }
}

/// Per-pair totals of the sealed chunks of one hour, so that day-long top lists read 24
/// small blobs instead of 1440 chunks. Always equal to the sum of the chunks held for
/// that hour: evicting any of them drops the rollup.
struct Rollup {
    hour: u64,
    blob: Box<[u8]>,
    totals: Counts,
}

/// (client, remote) as two integers: cheap to hash and compare. The IP version sits in
/// the top byte of `mac` so that 1.2.3.4 and ::102:304 stay apart.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct PairKey {
    mac: u64,
    ip: u128,
}

fn mac_u64(m: &Mac) -> u64 {
    u64::from_le_bytes([m[0], m[1], m[2], m[3], m[4], m[5], 0, 0])
}

impl PairKey {
    fn new(mac: &Mac, ip: &IpAddr) -> Self {
        let m = mac_u64(mac);
        match ip {
            IpAddr::V4(a) => PairKey {
                mac: m | 4 << 56,
                ip: u128::from(u32::from(*a)),
            },
            IpAddr::V6(a) => PairKey {
                mac: m | 6 << 56,
                ip: u128::from(*a),
            },
        }
    }
}

/// Marks a free slot in `Dict::pairs`.
const FREE: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct PairEntry {
    remote: IpAddr,
    /// Index in `Dict::clients`, or FREE.
    client: u32,
    /// Newest chunk known to hold this pair; open chunks are checked when pruning.
    last_chunk: u64,
}

#[derive(Clone, Copy, Debug)]
struct ClientEntry {
    mac: Mac,
    /// Live pairs of this client; 0 marks a free slot.
    pairs: u32,
}

/// Pair and client dictionary. Ids are slots, reused once no chunk refers to them.
#[derive(Default)]
struct Dict {
    ids: foldhash::HashMap<PairKey, u32>,
    pairs: Vec<PairEntry>,
    free_pairs: Vec<u32>,
    clients: Vec<ClientEntry>,
    client_ids: foldhash::HashMap<u64, u32>,
    free_clients: Vec<u32>,
    live_pairs: usize,
    live_clients: usize,
    /// Last lookup: packets of one flow tend to come in runs.
    last: Option<(PairKey, u32)>,
}

impl Dict {
    #[inline]
    fn pair_id(&mut self, mac: &Mac, ip: &IpAddr, chunk: u64) -> u32 {
        let key = PairKey::new(mac, ip);
        if let Some((k, id)) = self.last {
            if k == key {
                return id;
            }
        }
        let id = match self.ids.get(&key) {
            Some(&id) => id,
            None => self.insert(mac, *ip, key, chunk),
        };
        self.last = Some((key, id));
        id
    }

    fn client_idx(&mut self, mac: &Mac) -> u32 {
        if let Some(&c) = self.client_ids.get(&mac_u64(mac)) {
            return c;
        }
        let e = ClientEntry {
            mac: *mac,
            pairs: 0,
        };
        let c = match self.free_clients.pop() {
            Some(c) => {
                self.clients[c as usize] = e;
                c
            }
            None => {
                self.clients.push(e);
                (self.clients.len() - 1) as u32
            }
        };
        self.client_ids.insert(mac_u64(mac), c);
        self.live_clients += 1;
        c
    }

    fn insert(&mut self, mac: &Mac, remote: IpAddr, key: PairKey, chunk: u64) -> u32 {
        let client = self.client_idx(mac);
        self.clients[client as usize].pairs += 1;
        let e = PairEntry {
            remote,
            client,
            last_chunk: chunk,
        };
        let id = match self.free_pairs.pop() {
            Some(id) => {
                self.pairs[id as usize] = e;
                id
            }
            None => {
                self.pairs.push(e);
                (self.pairs.len() - 1) as u32
            }
        };
        self.ids.insert(key, id);
        self.live_pairs += 1;
        id
    }

    fn client_of(&self, mac: &Mac) -> Option<u32> {
        self.client_ids.get(&mac_u64(mac)).copied()
    }

    /// Frees every pair that no chunk at or after `min_chunk` refers to.
    fn prune(&mut self, min_chunk: u64, open: &VecDeque<OpenChunk>) {
        for oc in open {
            for &k in oc.map.keys() {
                let p = &mut self.pairs[(k >> 16) as usize];
                p.last_chunk = p.last_chunk.max(oc.chunk);
            }
        }
        for id in 0..self.pairs.len() {
            let p = self.pairs[id];
            if p.client == FREE || p.last_chunk >= min_chunk {
                continue;
            }
            let c = &mut self.clients[p.client as usize];
            self.ids.remove(&PairKey::new(&c.mac, &p.remote));
            c.pairs -= 1;
            if c.pairs == 0 {
                self.client_ids.remove(&mac_u64(&c.mac));
                self.free_clients.push(p.client);
                self.live_clients -= 1;
            }
            self.pairs[id].client = FREE;
            self.free_pairs.push(id as u32);
            self.live_pairs -= 1;
        }
        self.last = None;
        // After a spike of pairs (a scan, say), give the space back. Only trailing
        // slots can go: ids in use are baked into the blobs.
        if self.pairs.len() > 1024 && self.live_pairs < self.pairs.len() / 4 {
            while self.pairs.last().is_some_and(|p| p.client == FREE) {
                self.pairs.pop();
            }
            let n = self.pairs.len() as u32;
            self.free_pairs.retain(|&id| id < n);
            self.pairs.shrink_to_fit();
            self.free_pairs.shrink_to_fit();
            self.ids.shrink_to_fit();
        }
    }

    fn memory(&self) -> usize {
        map_bytes::<PairKey, u32>(self.ids.capacity())
            + vec_bytes::<PairEntry>(self.pairs.capacity())
            + vec_bytes::<u32>(self.free_pairs.capacity())
            + vec_bytes::<ClientEntry>(self.clients.capacity())
            + map_bytes::<u64, u32>(self.client_ids.capacity())
            + vec_bytes::<u32>(self.free_clients.capacity())
    }
}

pub struct History {
    cfg: Config,
    /// Latest time given to `advance`; 0 until the first call.
    now_ms: u64,
    /// Chunks below this number take no more records.
    sealed_before: u64,
    /// Ascending by chunk; all below `sealed_before`.
    sealed: VecDeque<Sealed>,
    sealed_bytes: usize,
    sealed_buckets: u64,
    /// Ascending by chunk; all at or above `sealed_before`.
    open: VecDeque<OpenChunk>,
    /// The map of the last sealed chunk, cleared, for the next one: saves regrowing it
    /// every minute.
    spare: Option<BucketMap>,
    /// Ascending by hour.
    rollups: VecDeque<Rollup>,
    rollup_bytes: usize,
    /// Hours below this have had their rollup built (or had no chunks).
    rolled_before: u64,
    dict: Dict,
    records: u64,
    late_dropped: u64,
    future_dropped: u64,
    evicted_chunks: u64,
    evicted_before_ms: Option<u64>,
}

impl fmt::Debug for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("History")
            .field("stats", &self.stats())
            .finish()
    }
}

impl History {
    pub fn new(cfg: Config) -> Self {
        History {
            cfg,
            now_ms: 0,
            sealed_before: 0,
            sealed: VecDeque::new(),
            sealed_bytes: 0,
            sealed_buckets: 0,
            open: VecDeque::new(),
            spare: None,
            rollups: VecDeque::new(),
            rollup_bytes: 0,
            rolled_before: 0,
            dict: Dict::default(),
            records: 0,
            late_dropped: 0,
            future_dropped: 0,
            evicted_chunks: 0,
            evicted_before_ms: None,
        }
    }

    pub fn config(&self) -> Config {
        self.cfg
    }

    /// Applies a new config at once: a smaller limit or retention evicts right away.
    pub fn set_config(&mut self, cfg: Config) {
        self.cfg = cfg;
        self.evict();
    }

    pub fn ingest(&mut self, recs: &[Record]) {
        let accept_until = if self.now_ms == 0 {
            MAX_TIME_MS
        } else {
            (self.now_ms + FUTURE_SLACK_MS).min(MAX_TIME_MS)
        };
        for r in recs {
            if r.t_ms >= accept_until {
                self.future_dropped += 1;
                continue;
            }
            let b = r.t_ms / BUCKET_MS;
            let c = b / CHUNK_BUCKETS;
            if c < self.sealed_before {
                self.late_dropped += 1;
                continue;
            }
            let pair = self.dict.pair_id(&r.client, &r.remote, c);
            let off = (b - c * CHUNK_BUCKETS) as u16;
            let oc = open_chunk(&mut self.open, &mut self.spare, c);
            oc.first_off = oc.first_off.min(off);
            oc.last_off = oc.last_off.max(off);
            let a = oc.map.entry(bucket_key(pair, off)).or_default();
            match r.dir {
                Dir::Up => {
                    a.up_bytes = a.up_bytes.saturating_add(u64::from(r.bytes));
                    a.up_packets = a.up_packets.saturating_add(1);
                }
                Dir::Down => {
                    a.down_bytes = a.down_bytes.saturating_add(u64::from(r.bytes));
                    a.down_packets = a.down_packets.saturating_add(1);
                }
            }
            self.records += 1;
        }
    }

    /// Moves time forward to `now_ms` (never back): seals chunks past their grace,
    /// then evicts by age and by memory. Cheap when there is nothing to do.
    pub fn advance(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms.min(MAX_TIME_MS));
        let seal_before = self.now_ms.saturating_sub(LATE_GRACE_MS) / CHUNK_MS;
        if seal_before > self.sealed_before {
            self.sealed_before = seal_before;
            while self.open.front().is_some_and(|o| o.chunk < seal_before) {
                let oc = self.open.pop_front().expect("checked above");
                self.seal(oc);
            }
        }
        if self.sealed_before / HOUR_CHUNKS > self.rolled_before {
            self.build_rollups();
        }
        self.evict();
    }

    /// Rolls up every hour whose chunks are all sealed.
    fn build_rollups(&mut self) {
        let full_hours = self.sealed_before / HOUR_CHUNKS;
        while self.rolled_before < full_hours {
            let first = self.rolled_before * HOUR_CHUNKS;
            let i = self.sealed.partition_point(|s| s.chunk < first);
            let Some(hour) = self.sealed.get(i).map(|s| s.chunk / HOUR_CHUNKS) else {
                break;
            };
            if hour >= full_hours {
                break;
            }
            let j = self
                .sealed
                .partition_point(|s| s.chunk < (hour + 1) * HOUR_CHUNKS);
            let mut items = Vec::new();
            let mut totals = Counts::default();
            for s in self.sealed.range(i..j) {
                totals += s.info.totals;
                for g in codec::groups(&s.blob) {
                    items.extend(codec::pairs(g.body).map(|p| (g.client, p.pair, p.totals)));
                }
            }
            items.sort_unstable_by_key(|&(c, p, _)| (c, p));
            items.dedup_by(|b, a| {
                let same = (a.0, a.1) == (b.0, b.1);
                if same {
                    a.2 += b.2;
                }
                same
            });
            let r = Rollup {
                hour,
                blob: codec::encode_rollup(&items).into_boxed_slice(),
                totals,
            };
            self.rollup_bytes += r.blob.len() + ALLOC_OVERHEAD;
            self.rollups.push_back(r);
            self.rolled_before = hour + 1;
        }
        self.rolled_before = self.rolled_before.max(full_hours);
    }

    fn seal(&mut self, oc: OpenChunk) {
        let OpenChunk { chunk, mut map, .. } = oc;
        let mut entries = Vec::with_capacity(map.len());
        for (&k, &acc) in &map {
            let pair = (k >> 16) as u32;
            let p = &mut self.dict.pairs[pair as usize];
            p.last_chunk = p.last_chunk.max(chunk);
            entries.push(Entry {
                client: p.client,
                pair,
                off: (k & 0xffff) as u16,
                acc,
            });
        }
        map.clear();
        if self
            .spare
            .as_ref()
            .is_none_or(|s| s.capacity() < map.capacity())
        {
            self.spare = Some(map);
        }
        if entries.is_empty() {
            return;
        }
        entries.sort_unstable_by_key(|e| (e.client, e.pair, e.off));
        let (blob, info) = codec::encode_chunk(&entries);
        self.push_sealed(Sealed {
            chunk,
            blob: blob.into_boxed_slice(),
            info,
        });
    }

    fn push_sealed(&mut self, s: Sealed) {
        debug_assert!(self.sealed.back().is_none_or(|b| b.chunk < s.chunk));
        self.sealed_bytes += s.cost();
        self.sealed_buckets += u64::from(s.info.buckets);
        self.sealed.push_back(s);
    }

    fn note_evicted(&mut self, chunk: u64) {
        self.evicted_chunks += 1;
        let end = (chunk + 1) * CHUNK_MS;
        self.evicted_before_ms = Some(self.evicted_before_ms.map_or(end, |e| e.max(end)));
    }

    fn evict_oldest_sealed(&mut self) {
        if let Some(s) = self.sealed.pop_front() {
            self.sealed_bytes -= s.cost();
            self.sealed_buckets -= u64::from(s.info.buckets);
            self.note_evicted(s.chunk);
            if self
                .rollups
                .front()
                .is_some_and(|r| r.hour == s.chunk / HOUR_CHUNKS)
            {
                let r = self.rollups.pop_front().expect("checked");
                self.rollup_bytes -= r.blob.len() + ALLOC_OVERHEAD;
            }
        }
    }

    fn evict(&mut self) {
        let mut dropped = false;
        let cutoff = self.now_ms.saturating_sub(self.cfg.retention_ms);
        while self
            .sealed
            .front()
            .is_some_and(|s| (s.chunk + 1) * CHUNK_MS <= cutoff)
        {
            self.evict_oldest_sealed();
            dropped = true;
        }
        while self.memory_bytes() > self.cfg.memory_limit {
            if !self.sealed.is_empty() {
                self.evict_oldest_sealed();
            } else if self.spare.is_some() {
                self.spare = None;
                continue;
            } else if let Some(oc) = self.open.pop_front() {
                // Only open data is left and it alone is over the limit: give up the
                // oldest open chunk too; its stragglers will count as late.
                self.sealed_before = self.sealed_before.max(oc.chunk + 1);
                self.note_evicted(oc.chunk);
            } else {
                break;
            }
            dropped = true;
        }
        if dropped {
            let min_chunk = match (self.sealed.front(), self.open.front()) {
                (Some(s), _) => s.chunk,
                (None, Some(o)) => o.chunk,
                (None, None) => u64::MAX,
            };
            self.dict.prune(min_chunk, &self.open);
            if self.memory_bytes() > self.cfg.memory_limit {
                self.sealed.shrink_to_fit();
                self.rollups.shrink_to_fit();
            }
        }
    }

    /// Heap and inline bytes held: blobs, chunk records, open maps (by capacity) and the
    /// dictionary, each allocation with [`ALLOC_OVERHEAD`] on top.
    pub fn memory_bytes(&self) -> usize {
        let open: usize = self
            .open
            .iter()
            .map(|o| map_bytes::<u64, Acc>(o.map.capacity()))
            .sum();
        size_of::<Self>()
            + vec_bytes::<Sealed>(self.sealed.capacity())
            + self.sealed_bytes
            + vec_bytes::<Rollup>(self.rollups.capacity())
            + self.rollup_bytes
            + vec_bytes::<OpenChunk>(self.open.capacity())
            + open
            + self
                .spare
                .as_ref()
                .map_or(0, |m| map_bytes::<u64, Acc>(m.capacity()))
            + self.dict.memory()
    }

    /// Start of the oldest non-empty bucket still held.
    pub fn oldest_ms(&self) -> Option<u64> {
        let chunk_start = |c: u64, off: u16| (c * CHUNK_BUCKETS + u64::from(off)) * BUCKET_MS;
        if let Some(s) = self.sealed.front() {
            return Some(chunk_start(s.chunk, s.info.first_off));
        }
        self.open
            .iter()
            .find(|o| !o.map.is_empty())
            .map(|o| chunk_start(o.chunk, o.first_off))
    }

    /// Start of the newest non-empty bucket held.
    pub fn newest_ms(&self) -> Option<u64> {
        let chunk_start = |c: u64, off: u16| (c * CHUNK_BUCKETS + u64::from(off)) * BUCKET_MS;
        if let Some(o) = self.open.iter().rev().find(|o| !o.map.is_empty()) {
            return Some(chunk_start(o.chunk, o.last_off));
        }
        self.sealed
            .back()
            .map(|s| chunk_start(s.chunk, s.info.last_off))
    }

    pub fn stats(&self) -> Stats {
        let open_buckets: usize = self.open.iter().map(|o| o.map.len()).sum();
        Stats {
            records: self.records,
            late_dropped: self.late_dropped,
            future_dropped: self.future_dropped,
            evicted_chunks: self.evicted_chunks,
            memory_bytes: self.memory_bytes(),
            memory_limit: self.cfg.memory_limit,
            retention_ms: self.cfg.retention_ms,
            oldest_ms: self.oldest_ms(),
            newest_ms: self.newest_ms(),
            evicted_before_ms: self.evicted_before_ms,
            pairs: self.dict.live_pairs,
            clients: self.dict.live_clients,
            sealed_chunks: self.sealed.len(),
            open_chunks: self.open.len(),
            stored_buckets: self.sealed_buckets + open_buckets as u64,
            sealed_bytes: self.sealed.iter().map(|s| s.blob.len()).sum(),
            sealed_buckets: self.sealed_buckets,
            rollups: self.rollups.len(),
            rollup_bytes: self.rollups.iter().map(|r| r.blob.len()).sum(),
        }
    }
}

/// The open chunk `c`, created in order if new. There are one or two open chunks, so a
/// scan from the newest end is as quick as any index.
#[inline]
fn open_chunk<'a>(
    open: &'a mut VecDeque<OpenChunk>,
    spare: &mut Option<BucketMap>,
    c: u64,
) -> &'a mut OpenChunk {
    let pos = open.iter().rposition(|o| o.chunk <= c);
    let i = match pos {
        Some(i) if open[i].chunk == c => i,
        _ => {
            let i = pos.map_or(0, |i| i + 1);
            let map = spare.take().unwrap_or_default();
            open.insert(
                i,
                OpenChunk {
                    chunk: c,
                    map,
                    first_off: u16::MAX,
                    last_off: 0,
                },
            );
            i
        }
    };
    &mut open[i]
}

/// "aa:bb:cc:dd:ee:ff", lower case.
pub fn format_mac(m: &Mac) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// Six hex pairs separated by ':' or '-', either case.
pub fn parse_mac(s: &str) -> Option<Mac> {
    let s = s.trim();
    let sep = if s.contains('-') { '-' } else { ':' };
    let mut m = [0u8; 6];
    let mut parts = s.split(sep);
    for b in &mut m {
        let p = parts.next()?;
        if p.len() != 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(m)
}
