//! Queries: series, top talkers, summary.
//!
//! All three walk the same scan. An hour or a chunk that lies wholly inside the range
//! is read at the coarsest level the query can use: its totals, one client group's
//! totals, or per-pair totals (from the hour's rollup when there is one). Only chunks
//! cut by the range, and queries that need single buckets (fine series, summary
//! peaks), decode buckets.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use serde::{Serialize, Serializer};

use crate::codec::{self, ChunkInfo, CHUNK_BUCKETS};
use crate::{
    format_mac, Counts, History, Mac, Rollup, BUCKET_MS, HOUR_CHUNKS, MAX_POINTS, MAX_TIME_MS,
};

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

/// How coarse a span of buckets may be handed to a sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    /// One total for everything in the span.
    All,
    Client,
    Pair,
    Bucket,
}

/// `client` or `pair` is NONE when the level is coarser than that.
const NONE: u32 = u32::MAX;

/// Receives counts from a scan. Above the Bucket level `bucket` is the first bucket of
/// the span (chunk or hour) and the counts cover all of it.
trait Sink {
    /// The coarsest level at which the sink can take totals for buckets
    /// [first_b, end_b), or None if it needs them one by one.
    fn coarse(&self, first_b: u64, end_b: u64) -> Option<Level>;
    fn add(&mut self, client: u32, pair: u32, bucket: u64, c: &Counts);
    /// Offered a sealed chunk that lies wholly in the range when nothing is filtered;
    /// true if the sink took it from its info alone.
    fn whole_chunk(&mut self, _first_b: u64, _info: &ChunkInfo) -> bool {
        false
    }
    fn end_chunk(&mut self) {}
}

struct Filter {
    client: Option<u32>,
    remote: Option<IpAddr>,
}

/// The client groups of a chunk or rollup blob, only `client`'s when given. Groups are
/// sorted by client, so the scan stops past it.
fn client_groups(blob: &[u8], client: Option<u32>) -> impl Iterator<Item = codec::Group<'_>> {
    codec::groups(blob)
        .skip_while(move |g| client.is_some_and(|c| g.client < c))
        .take_while(move |g| client.is_none_or(|c| g.client == c))
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

    fn scan<S: Sink>(&self, f: &Filter, from_b: u64, to_b: u64, sink: &mut S) {
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
            Level::All
        };
        let coarse = |sink: &mut S, a: u64, b: u64| {
            if a >= from_b && b <= to_b {
                sink.coarse(a, b).map(|l| l.max(filter_level))
            } else {
                None
            }
        };
        let hour_buckets = HOUR_CHUNKS * CHUNK_BUCKETS;
        let mut i = self.sealed.partition_point(|s| s.chunk < first_c);
        let mut ri = self
            .rollups
            .partition_point(|r| r.hour < first_c / HOUR_CHUNKS);
        while let Some(s) = self.sealed.get(i) {
            if s.chunk > last_c {
                break;
            }
            let hour = s.chunk / HOUR_CHUNKS;
            while self.rollups.get(ri).is_some_and(|r| r.hour < hour) {
                ri += 1;
            }
            let h0 = hour * hour_buckets;
            if let Some(r) = self.rollups.get(ri).filter(|r| r.hour == hour) {
                if let Some(level) = coarse(sink, h0, h0 + hour_buckets) {
                    self.scan_rollup(r, h0, f, level, sink);
                    sink.end_chunk();
                    while self
                        .sealed
                        .get(i)
                        .is_some_and(|s| s.chunk / HOUR_CHUNKS == hour)
                    {
                        i += 1;
                    }
                    continue;
                }
            }
            let c0 = s.chunk * CHUNK_BUCKETS;
            let whole = c0 >= from_b && c0 + CHUNK_BUCKETS <= to_b;
            if whole && filter_level == Level::All && sink.whole_chunk(c0, &s.info) {
                i += 1;
                continue;
            }
            let level = coarse(sink, c0, c0 + CHUNK_BUCKETS).unwrap_or(Level::Bucket);
            self.scan_sealed(&s.blob, s.info.totals, c0, f, level, from_b, to_b, sink);
            sink.end_chunk();
            i += 1;
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
                if f.client.is_some_and(|c| c != e.client)
                    || f.remote.is_some_and(|r| r != e.remote)
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
        if level == Level::All {
            sink.add(NONE, NONE, c0, &totals);
            return;
        }
        for g in client_groups(blob, f.client) {
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

    fn scan_rollup(&self, r: &Rollup, h0: u64, f: &Filter, level: Level, sink: &mut impl Sink) {
        if level == Level::All {
            sink.add(NONE, NONE, h0, &r.totals);
            return;
        }
        for g in client_groups(&r.blob, f.client) {
            if level == Level::Client {
                sink.add(g.client, NONE, h0, &g.totals);
                continue;
            }
            for (pair, c) in codec::rollup_pairs(g.body) {
                if let Some(r) = f.remote {
                    if self.dict.pairs.get(pair as usize).map(|e| e.remote) != Some(r) {
                        continue;
                    }
                }
                sink.add(g.client, pair, h0, &c);
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
        if !res_ms.is_multiple_of(BUCKET_MS) || !(MIN_RES_MS..=MAX_RES_MS).contains(&res_ms) {
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
            lo: first_p * res_b,
            at: 0,
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

    /// When each client was last active in [from_ms, to_ms): the start of its last
    /// non-empty 100 ms bucket where that bucket starts at or after `fine_from_ms`; before
    /// that, the last bucket of the last minute it was active in, and more than an hour
    /// before `fine_from_ms`, of the last hour. One pass over the range, reading whole
    /// minutes and hours as per-client totals, so this costs about one `top` however many
    /// clients there are.
    pub fn last_seen(&self, from_ms: u64, to_ms: u64, fine_from_ms: u64) -> Vec<(Mac, u64)> {
        let (from_b, to_b) = bucket_range(from_ms, to_ms);
        if from_b >= to_b {
            return Vec::new();
        }
        let fine_from_b = fine_from_ms.div_ceil(BUCKET_MS);
        let mut sink = LastSeenSink {
            fine_from_b,
            hours_before_b: fine_from_b.saturating_sub(HOUR_CHUNKS * CHUNK_BUCKETS),
            span_end: std::cell::Cell::new(None),
            last: vec![None; self.dict.clients.len()],
            to_b,
        };
        let f = Filter {
            client: None,
            remote: None,
        };
        self.scan(&f, from_b, to_b, &mut sink);
        sink.last
            .iter()
            .enumerate()
            .filter_map(|(i, b)| Some((self.dict.clients[i].mac, (*b)? * BUCKET_MS)))
            .collect()
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
    /// Buckets [lo, lo + res_b) go to point `at`: a pair's buckets come in order, so
    /// most need no division.
    lo: u64,
    at: usize,
}

impl Sink for SeriesSink {
    /// Totals do when the whole span falls into one point.
    fn coarse(&self, first_b: u64, end_b: u64) -> Option<Level> {
        (first_b / self.res_b == (end_b - 1) / self.res_b).then_some(Level::All)
    }

    #[inline]
    fn add(&mut self, _: u32, _: u32, bucket: u64, c: &Counts) {
        if bucket.wrapping_sub(self.lo) >= self.res_b {
            let p = bucket / self.res_b;
            self.lo = p * self.res_b;
            self.at = p.wrapping_sub(self.first_p) as usize;
        }
        if let Some(p) = self.points.get_mut(self.at) {
            *p += *c;
        }
    }
}

struct TopSink {
    by: GroupBy,
    per: Vec<Counts>,
}

impl Sink for TopSink {
    fn coarse(&self, _: u64, _: u64) -> Option<Level> {
        Some(match self.by {
            GroupBy::Client => Level::Client,
            GroupBy::Remote | GroupBy::Pair => Level::Pair,
        })
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

/// Per client, the latest bucket seen. Whole hours ending by `hours_before_b` and whole
/// minutes ending by `fine_from_b` come as client totals; the rest bucket by bucket.
struct LastSeenSink {
    fine_from_b: u64,
    hours_before_b: u64,
    /// The end of the span `coarse` last agreed to take as totals; cleared at each chunk's
    /// end, so the open chunks' exact buckets are never mistaken for totals.
    span_end: std::cell::Cell<Option<u64>>,
    last: Vec<Option<u64>>,
    to_b: u64,
}

impl Sink for LastSeenSink {
    fn coarse(&self, first_b: u64, end_b: u64) -> Option<Level> {
        let take = if end_b - first_b > CHUNK_BUCKETS {
            end_b <= self.hours_before_b
        } else {
            end_b <= self.fine_from_b
        };
        self.span_end.set(take.then_some(end_b));
        take.then_some(Level::Client)
    }

    fn add(&mut self, client: u32, _: u32, bucket: u64, _: &Counts) {
        let b = match self.span_end.get() {
            Some(end) => end.min(self.to_b) - 1,
            None => bucket,
        };
        if let Some(l) = self.last.get_mut(client as usize) {
            *l = Some(l.map_or(b, |x| x.max(b)));
        }
    }

    fn end_chunk(&mut self) {
        self.span_end.set(None);
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
    /// Peaks need every bucket.
    fn coarse(&self, _: u64, _: u64) -> Option<Level> {
        None
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

    fn whole_chunk(&mut self, first_b: u64, info: &ChunkInfo) -> bool {
        let t = |off: u16| (first_b + u64::from(off)) * BUCKET_MS;
        let o = &mut self.out;
        o.counts += info.totals;
        o.active_buckets += u64::from(info.active);
        o.first_seen_ms = Some(
            o.first_seen_ms
                .map_or(t(info.first_off), |f| f.min(t(info.first_off))),
        );
        o.last_seen_ms = Some(
            o.last_seen_ms
                .map_or(t(info.last_off), |l| l.max(t(info.last_off))),
        );
        peak(
            &mut o.peak_up_bps,
            &mut o.peak_up_ms,
            info.peak_up,
            t(info.peak_up_off),
        );
        peak(
            &mut o.peak_down_bps,
            &mut o.peak_down_ms,
            info.peak_down,
            t(info.peak_down_off),
        );
        true
    }

    fn end_chunk(&mut self) {
        let Some(chunk) = self.chunk.take() else {
            return;
        };
        let o = &mut self.out;
        for i in 0..CHUNK_BUCKETS as usize {
            if !self.seen[i] {
                continue;
            }
            let t = (chunk * CHUNK_BUCKETS + i as u64) * BUCKET_MS;
            o.first_seen_ms = Some(o.first_seen_ms.map_or(t, |f| f.min(t)));
            o.last_seen_ms = Some(o.last_seen_ms.map_or(t, |l| l.max(t)));
            o.active_buckets += 1;
            peak(&mut o.peak_up_bps, &mut o.peak_up_ms, self.up[i], t);
            peak(&mut o.peak_down_bps, &mut o.peak_down_ms, self.down[i], t);
            self.up[i] = 0;
            self.down[i] = 0;
            self.seen[i] = false;
        }
    }
}

/// Takes `bytes` in one bucket at `t` as the new peak if it beats the old one; buckets
/// come in time order, so ties keep the earliest.
fn peak(bps: &mut u64, at: &mut Option<u64>, bytes: u64, t: u64) {
    // Bits per second from bytes per 100 ms bucket.
    let b = bytes.saturating_mul(8 * 1000 / BUCKET_MS);
    if b > *bps {
        *bps = b;
        *at = Some(t);
    }
}
