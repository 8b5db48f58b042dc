//! Queries: series, top talkers, summary.
//!
//! All three walk the same scan. A chunk that lies wholly inside the range is read at
//! the coarsest level the query can use: the chunk's totals, one client group's totals,
//! or per-pair totals; only chunks cut by the range, and queries that need single
//! buckets (fine series, summary peaks), decode buckets.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use serde::{Serialize, Serializer};

use crate::codec::{self, CHUNK_BUCKETS};
use crate::{format_mac, Counts, History, Mac, BUCKET_MS, CHUNK_MS, MAX_POINTS, MAX_TIME_MS};

/// Finest resolution and coarsest resolution a series may ask for.
pub const MIN_RES_MS: u64 = BUCKET_MS;
pub const MAX_RES_MS: u64 = 3_600_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Client,
    Remote,
    Pair,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Point {
    /// Start of the point, a multiple of the resolution.
    pub t_ms: u64,
    pub counts: Counts,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Talker {
    /// Set when grouping by client or pair.
    #[serde(serialize_with = "ser_mac")]
    pub client: Option<Mac>,
    /// Set when grouping by remote or pair.
    pub remote: Option<IpAddr>,
    pub counts: Counts,
}

fn ser_mac<S: Serializer>(m: &Option<Mac>, s: S) -> Result<S::Ok, S::Error> {
    match m {
        Some(m) => s.serialize_str(&format_mac(m)),
        None => s.serialize_none(),
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub counts: Counts,
    /// Most bytes in one 100 ms bucket (summed over the matching pairs), as bits/s.
    pub peak_up_bps: u64,
    pub peak_down_bps: u64,
    /// Start of the (first) bucket with that peak.
    pub peak_up_ms: Option<u64>,
    pub peak_down_ms: Option<u64>,
    /// Start of the first and last non-empty bucket.
    pub first_seen_ms: Option<u64>,
    pub last_seen_ms: Option<u64>,
    /// Non-empty 100 ms buckets.
    pub active_buckets: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryError {
    BadResolution { res_ms: u64 },
    FromAfterTo { from_ms: u64, to_ms: u64 },
    TooManyPoints { points: u64, max: u64 },
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::BadResolution { res_ms } => write!(
                f,
                "bad resolution {res_ms} ms: must be a multiple of {BUCKET_MS} ms \
                 between {MIN_RES_MS} ms and {MAX_RES_MS} ms"
            ),
            QueryError::FromAfterTo { from_ms, to_ms } => {
                write!(f, "bad range: from ({from_ms}) is after to ({to_ms})")
            }
            QueryError::TooManyPoints { points, max } => write!(
                f,
                "range too large for the resolution: {points} points, at most {max}; \
                 use a coarser resolution or a shorter range"
            ),
        }
    }
}

impl std::error::Error for QueryError {}

/// How coarse a whole chunk may be handed to a sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Chunk,
    Client,
    Pair,
    Bucket,
}

/// `client` or `pair` is NONE when the level is coarser than that.
const NONE: u32 = u32::MAX;

/// Receives counts from a scan. At the Chunk, Client and Pair levels `bucket` is the
/// chunk's first bucket and the counts cover the whole chunk.
trait Sink {
    fn level(&self) -> Level;
    fn add(&mut self, client: u32, pair: u32, bucket: u64, c: &Counts);
    fn end_chunk(&mut self) {}
}

struct Filter {
    client: Option<u32>,
    remote: Option<IpAddr>,
}

/// Buckets whose start lies in [from_ms, to_ms).
fn bucket_range(from_ms: u64, to_ms: u64) -> (u64, u64) {
    let from = from_ms.min(MAX_TIME_MS);
    let to = to_ms.min(MAX_TIME_MS);
    (from.div_ceil(BUCKET_MS), to.div_ceil(BUCKET_MS))
}

impl History {
    /// None when the client is unknown: nothing can match.
    fn filter(&self, client: Option<Mac>, remote: Option<IpAddr>) -> Option<Filter> {
        let client = match client {
            None => None,
            Some(m) => Some(self.dict.client_of(&m)?),
        };
        Some(Filter { client, remote })
    }

    fn scan(&self, f: &Filter, from_b: u64, to_b: u64, sink: &mut impl Sink) {
        if from_b >= to_b {
            return;
        }
        let first_c = from_b / CHUNK_BUCKETS;
        let last_c = (to_b - 1) / CHUNK_BUCKETS;
        let filter_level = if f.remote.is_some() {
            Level::Pair
        } else if f.client.is_some() {
            Level::Client
        } else {
            Level::Chunk
        };
        let start = self.sealed.partition_point(|s| s.chunk < first_c);
        for s in self.sealed.range(start..) {
            if s.chunk > last_c {
                break;
            }
            let c0 = s.chunk * CHUNK_BUCKETS;
            let whole = c0 >= from_b && c0 + CHUNK_BUCKETS <= to_b;
            let level = if whole {
                sink.level().max(filter_level)
            } else {
                Level::Bucket
            };
            self.scan_sealed(&s.blob, s.info.totals, c0, f, level, from_b, to_b, sink);
            sink.end_chunk();
        }
        for o in &self.open {
            if o.chunk < first_c || o.chunk > last_c {
                continue;
            }
            let c0 = o.chunk * CHUNK_BUCKETS;
            for (&k, a) in &o.map {
                let b = c0 + (k & 0xffff);
                if b < from_b || b >= to_b {
                    continue;
                }
                let pair = (k >> 16) as u32;
                let e = &self.dict.pairs[pair as usize];
                if f.client.is_some_and(|c| c != e.client) || f.remote.is_some_and(|r| r != e.remote)
                {
                    continue;
                }
                sink.add(e.client, pair, b, &a.counts());
            }
            sink.end_chunk();
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn scan_sealed(
        &self,
        blob: &[u8],
        totals: Counts,
        c0: u64,
        f: &Filter,
        level: Level,
        from_b: u64,
        to_b: u64,
        sink: &mut impl Sink,
    ) {
        if level == Level::Chunk {
            sink.add(NONE, NONE, c0, &totals);
            return;
        }
        for g in codec::groups(blob) {
            if let Some(c) = f.client {
                if g.client < c {
                    continue;
                }
                if g.client > c {
                    break;
                }
            }
            if level == Level::Client {
                sink.add(g.client, NONE, c0, &g.totals);
                continue;
            }
            for p in codec::pairs(g.body) {
                if let Some(r) = f.remote {
                    if self.dict.pairs.get(p.pair as usize).map(|e| e.remote) != Some(r) {
                        continue;
                    }
                }
                if level == Level::Pair {
                    sink.add(g.client, p.pair, c0, &p.totals);
                    continue;
                }
                p.for_each_bucket(|off, c| {
                    let b = c0 + u64::from(off);
                    if b >= from_b && b < to_b {
                        sink.add(g.client, p.pair, b, c);
                    }
                });
            }
        }
    }

    /// Non-empty points only, ascending, summed over the matching pairs into buckets of
    /// `res_ms` aligned to multiples of `res_ms` in Unix time. A 100 ms bucket belongs to
    /// the range [from_ms, to_ms) when its start does; a point's `t_ms` may therefore lie
    /// before `from_ms` when `from_ms` is not aligned.
    pub fn series(
        &self,
        client: Option<Mac>,
        remote: Option<IpAddr>,
        from_ms: u64,
        to_ms: u64,
        res_ms: u64,
    ) -> Result<Vec<Point>, QueryError> {
        if res_ms % BUCKET_MS != 0 || !(MIN_RES_MS..=MAX_RES_MS).contains(&res_ms) {
            return Err(QueryError::BadResolution { res_ms });
        }
        if from_ms > to_ms {
            return Err(QueryError::FromAfterTo { from_ms, to_ms });
        }
        let (from_b, to_b) = bucket_range(from_ms, to_ms);
        if from_b >= to_b {
            return Ok(Vec::new());
        }
        let res_b = res_ms / BUCKET_MS;
        let first_p = from_b / res_b;
        let points = (to_b - 1) / res_b - first_p + 1;
        if points > MAX_POINTS {
            return Err(QueryError::TooManyPoints {
                points,
                max: MAX_POINTS,
            });
        }
        let Some(f) = self.filter(client, remote) else {
            return Ok(Vec::new());
        };
        let mut sink = SeriesSink {
            res_b,
            first_p,
            points: vec![Counts::default(); points as usize],
            // A whole chunk falls in one point only when points are whole minutes.
            level: if res_ms % CHUNK_MS == 0 {
                Level::Chunk
            } else {
                Level::Bucket
            },
        };
        self.scan(&f, from_b, to_b, &mut sink);
        Ok(sink
            .points
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.is_empty())
            .map(|(i, c)| Point {
                t_ms: (first_p + i as u64) * res_ms,
                counts: *c,
            })
            .collect())
    }

    /// Top talkers in [from_ms, to_ms), grouped by `by`, by total bytes (up + down)
    /// descending, then by client and remote; at most `n`.
    pub fn top(
        &self,
        client: Option<Mac>,
        by: GroupBy,
        from_ms: u64,
        to_ms: u64,
        n: usize,
    ) -> Vec<Talker> {
        let (from_b, to_b) = bucket_range(from_ms, to_ms);
        let Some(f) = self.filter(client, None) else {
            return Vec::new();
        };
        if n == 0 || from_b >= to_b {
            return Vec::new();
        }
        let slots = match by {
            GroupBy::Client => self.dict.clients.len(),
            GroupBy::Remote | GroupBy::Pair => self.dict.pairs.len(),
        };
        let mut sink = TopSink {
            by,
            per: vec![Counts::default(); slots],
        };
        self.scan(&f, from_b, to_b, &mut sink);
        let per = sink.per.iter().enumerate().filter(|(_, c)| !c.is_empty());
        let mut out: Vec<Talker> = match by {
            GroupBy::Client => per
                .map(|(i, c)| Talker {
                    client: Some(self.dict.clients[i].mac),
                    remote: None,
                    counts: *c,
                })
                .collect(),
            GroupBy::Pair => per
                .map(|(i, c)| {
                    let p = &self.dict.pairs[i];
                    Talker {
                        client: Some(self.dict.clients[p.client as usize].mac),
                        remote: Some(p.remote),
                        counts: *c,
                    }
                })
                .collect(),
            GroupBy::Remote => {
                let mut by_ip: HashMap<IpAddr, Counts> = HashMap::new();
                for (i, c) in per {
                    *by_ip.entry(self.dict.pairs[i].remote).or_default() += *c;
                }
                by_ip
                    .into_iter()
                    .map(|(ip, c)| Talker {
                        client: None,
                        remote: Some(ip),
                        counts: c,
                    })
                    .collect()
            }
        };
        let order = |a: &Talker, b: &Talker| {
            b.counts
                .total_bytes()
                .cmp(&a.counts.total_bytes())
                .then(a.client.cmp(&b.client))
                .then(a.remote.cmp(&b.remote))
        };
        if out.len() > n {
            out.select_nth_unstable_by(n, order);
            out.truncate(n);
        }
        out.sort_unstable_by(order);
        out
    }

    /// Totals, peak rates and first/last seen over the matching pairs in [from_ms, to_ms).
    pub fn summary(
        &self,
        client: Option<Mac>,
        remote: Option<IpAddr>,
        from_ms: u64,
        to_ms: u64,
    ) -> Summary {
        let (from_b, to_b) = bucket_range(from_ms, to_ms);
        let Some(f) = self.filter(client, remote) else {
            return Summary::default();
        };
        let mut sink = SummarySink {
            chunk: None,
            up: vec![0; CHUNK_BUCKETS as usize],
            down: vec![0; CHUNK_BUCKETS as usize],
            seen: vec![false; CHUNK_BUCKETS as usize],
            out: Summary::default(),
        };
        self.scan(&f, from_b, to_b, &mut sink);
        sink.out
    }
}

struct SeriesSink {
    res_b: u64,
    first_p: u64,
    points: Vec<Counts>,
    level: Level,
}

impl Sink for SeriesSink {
    fn level(&self) -> Level {
        self.level
    }

    #[inline]
    fn add(&mut self, _: u32, _: u32, bucket: u64, c: &Counts) {
        let i = (bucket / self.res_b).wrapping_sub(self.first_p) as usize;
        if let Some(p) = self.points.get_mut(i) {
            *p += *c;
        }
    }
}

struct TopSink {
    by: GroupBy,
    per: Vec<Counts>,
}

impl Sink for TopSink {
    fn level(&self) -> Level {
        match self.by {
            GroupBy::Client => Level::Client,
            GroupBy::Remote | GroupBy::Pair => Level::Pair,
        }
    }

    #[inline]
    fn add(&mut self, client: u32, pair: u32, _: u64, c: &Counts) {
        let i = match self.by {
            GroupBy::Client => client,
            GroupBy::Remote | GroupBy::Pair => pair,
        };
        if let Some(p) = self.per.get_mut(i as usize) {
            *p += *c;
        }
    }
}

/// Sums one chunk's buckets across pairs (peaks need the sum), then folds them into
/// the summary at the end of the chunk. Chunks come in ascending order.
struct SummarySink {
    chunk: Option<u64>,
    up: Vec<u64>,
    down: Vec<u64>,
    seen: Vec<bool>,
    out: Summary,
}

impl Sink for SummarySink {
    fn level(&self) -> Level {
        Level::Bucket
    }

    #[inline]
    fn add(&mut self, _: u32, _: u32, bucket: u64, c: &Counts) {
        self.chunk = Some(bucket / CHUNK_BUCKETS);
        let i = (bucket % CHUNK_BUCKETS) as usize;
        self.up[i] = self.up[i].saturating_add(c.up_bytes);
        self.down[i] = self.down[i].saturating_add(c.down_bytes);
        self.seen[i] = true;
        self.out.counts += *c;
    }

    fn end_chunk(&mut self) {
        let Some(chunk) = self.chunk.take() else {
            return;
        };
        let o = &mut self.out;
        // Bits per second from bytes per bucket.
        let bps = |bytes: u64| bytes.saturating_mul(8 * 1000 / BUCKET_MS);
        for i in 0..CHUNK_BUCKETS as usize {
            if !self.seen[i] {
                continue;
            }
            let t = (chunk * CHUNK_BUCKETS + i as u64) * BUCKET_MS;
            o.first_seen_ms = Some(o.first_seen_ms.map_or(t, |f| f.min(t)));
            o.last_seen_ms = Some(o.last_seen_ms.map_or(t, |l| l.max(t)));
            o.active_buckets += 1;
            if bps(self.up[i]) > o.peak_up_bps {
                o.peak_up_bps = bps(self.up[i]);
                o.peak_up_ms = Some(t);
            }
            if bps(self.down[i]) > o.peak_down_bps {
                o.peak_down_bps = bps(self.down[i]);
                o.peak_down_ms = Some(t);
            }
            self.up[i] = 0;
            self.down[i] = 0;
            self.seen[i] = false;
        }
    }
}
