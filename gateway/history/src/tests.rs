use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;

/// An hour boundary, so chunk and point alignment are easy to reason about.
const T0: u64 = 1_699_999_200_000;

/// splitmix64: small, seeded, good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }
}

fn mac(i: u8) -> Mac {
    [0x02, 0, 0, 0, 0, i]
}

fn ip(i: u8) -> IpAddr {
    if i.is_multiple_of(2) {
        IpAddr::V4(Ipv4Addr::new(93, 184, 0, i))
    } else {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(i)))
    }
}

fn rec(t_ms: u64, c: u8, r: u8, dir: Dir, bytes: u32) -> Record {
    Record {
        t_ms,
        client: mac(c),
        remote: ip(r),
        dir,
        bytes,
    }
}

fn cfg(memory_limit: usize, retention_ms: u64) -> Config {
    Config {
        memory_limit,
        retention_ms,
    }
}

/// The straightforward model the real thing must agree with: one map entry per
/// (bucket, client, remote).
#[derive(Default)]
struct Reference {
    m: BTreeMap<(u64, Mac, IpAddr), Counts>,
    /// `m` flattened, for speed: unoptimised BTreeMap walks made the tests slow.
    flat: Vec<((u64, Mac, IpAddr), Counts)>,
    dirty: bool,
}

impl Reference {
    fn freeze(&mut self) {
        self.flat = self.m.iter().map(|(k, c)| (*k, *c)).collect();
        self.dirty = false;
    }

    fn add(&mut self, r: &Record) {
        self.dirty = true;
        let c = self
            .m
            .entry((r.t_ms / BUCKET_MS, r.client, r.remote))
            .or_default();
        match r.dir {
            Dir::Up => {
                c.up_bytes += u64::from(r.bytes);
                c.up_packets += 1;
            }
            Dir::Down => {
                c.down_bytes += u64::from(r.bytes);
                c.down_packets += 1;
            }
        }
    }

    fn matching(
        &self,
        client: Option<Mac>,
        remote: Option<IpAddr>,
        from: u64,
        to: u64,
    ) -> impl Iterator<Item = (Mac, IpAddr, u64, Counts)> + '_ {
        let (from_b, to_b) = (
            from.div_ceil(BUCKET_MS),
            to.div_ceil(BUCKET_MS).max(from.div_ceil(BUCKET_MS)),
        );
        let lo = (from_b, [0; 6], IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let hi = (to_b, [0; 6], IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert!(!self.dirty, "freeze the reference before querying it");
        let a = self.flat.partition_point(|(k, _)| *k < lo);
        let z = self.flat.partition_point(|(k, _)| *k < hi);
        self.flat[a..z].iter().filter_map(move |&((b, m, ip), c)| {
            let ok = client.is_none_or(|x| x == m) && remote.is_none_or(|x| x == ip);
            ok.then_some((m, ip, b, c))
        })
    }

    fn series(
        &self,
        client: Option<Mac>,
        remote: Option<IpAddr>,
        from: u64,
        to: u64,
        res: u64,
    ) -> Vec<Point> {
        let mut pts: BTreeMap<u64, Counts> = BTreeMap::new();
        for (_, _, b, c) in self.matching(client, remote, from, to) {
            *pts.entry(b * BUCKET_MS / res * res).or_default() += c;
        }
        pts.into_iter()
            .map(|(t_ms, counts)| Point { t_ms, counts })
            .collect()
    }

    fn top(&self, client: Option<Mac>, by: GroupBy, from: u64, to: u64, n: usize) -> Vec<Talker> {
        let mut g: BTreeMap<(Option<Mac>, Option<IpAddr>), Counts> = BTreeMap::new();
        for (m, ip, _, c) in self.matching(client, None, from, to) {
            let k = match by {
                GroupBy::Client => (Some(m), None),
                GroupBy::Remote => (None, Some(ip)),
                GroupBy::Pair => (Some(m), Some(ip)),
            };
            *g.entry(k).or_default() += c;
        }
        let mut v: Vec<Talker> = g
            .into_iter()
            .map(|((client, remote), counts)| Talker {
                client,
                remote,
                counts,
            })
            .collect();
        v.sort_by(|a, b| {
            b.counts
                .total_bytes()
                .cmp(&a.counts.total_bytes())
                .then(a.client.cmp(&b.client))
                .then(a.remote.cmp(&b.remote))
        });
        v.truncate(n);
        v
    }

    fn summary(&self, client: Option<Mac>, remote: Option<IpAddr>, from: u64, to: u64) -> Summary {
        let mut per: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        let mut s = Summary::default();
        for (_, _, b, c) in self.matching(client, remote, from, to) {
            let e = per.entry(b).or_default();
            e.0 += c.up_bytes;
            e.1 += c.down_bytes;
            s.counts += c;
        }
        for (&b, &(up, down)) in &per {
            let t = b * BUCKET_MS;
            s.first_seen_ms.get_or_insert(t);
            s.last_seen_ms = Some(t);
            s.active_buckets += 1;
            if up * 80 > s.peak_up_bps {
                s.peak_up_bps = up * 80;
                s.peak_up_ms = Some(t);
            }
            if down * 80 > s.peak_down_bps {
                s.peak_down_bps = down * 80;
                s.peak_down_ms = Some(t);
            }
        }
        s
    }
}

/// Random home-ish traffic over `minutes`: sparse flows, one dense stream, odd sizes
/// (zero, tiny, huge), big packet counts, records up to 2 s out of order. Ingested in
/// one-second batches with `advance` after each, like gatewayd does.
fn fill(h: &mut History, reference: &mut Reference, seed: u64, minutes: u64) -> u64 {
    let mut rng = Rng(seed);
    let sizes = [
        0u32, 1, 39, 40, 52, 60, 576, 1400, 1500, 9000, 65535, 4_000_000,
    ];
    let end = T0 + minutes * 60_000;
    let stream_from = T0 + rng.below(minutes / 2 + 1) * 60_000 + rng.below(60_000);
    let stream_to = stream_from + 6 * 60_000;
    let mut batch = Vec::new();
    let mut now = T0;
    let mut t = T0;
    while t < end {
        let busy = !((t - T0) / 600_000).is_multiple_of(3);
        if rng.chance(if busy { 0.25 } else { 0.03 }) {
            let c = rng.below(5) as u8;
            let r = rng.below(8) as u8;
            for _ in 0..=rng.below(20) {
                let jitter = rng.below(2000).min(t - T0);
                let dir = if rng.chance(0.5) { Dir::Up } else { Dir::Down };
                let bytes = sizes[rng.below(sizes.len() as u64) as usize];
                batch.push(rec(t - jitter + rng.below(100), c, r, dir, bytes));
            }
        }
        if t >= stream_from && t < stream_to {
            for _ in 0..30 {
                batch.push(rec(t + rng.below(100), 1, 2, Dir::Down, 1500));
            }
            batch.push(rec(t + rng.below(100), 1, 2, Dir::Up, 52));
        }
        t += BUCKET_MS;
        if t.is_multiple_of(1000) {
            h.ingest(&batch);
            batch.iter().for_each(|r| reference.add(r));
            batch.clear();
            now = now.max(t);
            h.advance(now);
        }
    }
    h.ingest(&batch);
    batch.iter().for_each(|r| reference.add(r));
    reference.freeze();
    end
}

fn pick_client(rng: &mut Rng) -> Option<Mac> {
    match rng.below(4) {
        0 | 1 => None,
        2 => Some(mac(rng.below(5) as u8)),
        _ => Some(mac(99)),
    }
}

fn pick_remote(rng: &mut Rng) -> Option<IpAddr> {
    match rng.below(5) {
        0..=2 => None,
        3 => Some(ip(rng.below(8) as u8)),
        _ => Some(ip(77)),
    }
}

/// Random queries against the reference; a third use whole minutes so that the
/// totals paths run too.
fn check_against(h: &History, reference: &Reference, seed: u64, span: u64, queries: usize) {
    let mut rng = Rng(seed ^ 0x5eed);
    let resolutions = [
        100, 200, 300, 700, 1000, 5000, 60_000, 120_000, 300_000, 3_600_000,
    ];
    for q in 0..queries {
        let (from, to) = if q % 3 == 0 {
            let a = T0 + rng.below(span / 60_000 + 2) * 60_000;
            (a, a + rng.below(span / 60_000 + 2) * 60_000)
        } else {
            let a = T0 - 120_000 + rng.below(span + 240_000);
            (
                a,
                a + rng.below(span + 120_000 - a.saturating_sub(T0).min(span)),
            )
        };
        let res = resolutions[rng.below(resolutions.len() as u64) as usize];
        let client = pick_client(&mut rng);
        let remote = pick_remote(&mut rng);
        let points = if from == to {
            0
        } else {
            let (fb, tb) = (from.div_ceil(100), to.div_ceil(100));
            (tb - 1) / (res / 100) - fb / (res / 100) + 1
        };
        match h.series(client, remote, from, to, res) {
            Ok(got) => assert_eq!(
                got,
                reference.series(client, remote, from, to, res),
                "series {client:?} {remote:?} {from} {to} {res}"
            ),
            Err(e) => {
                assert!(points > MAX_POINTS, "{e}");
                assert_eq!(
                    e,
                    QueryError::TooManyPoints {
                        points,
                        max: MAX_POINTS
                    }
                );
            }
        }
        if q % 3 == 0 {
            for by in [GroupBy::Client, GroupBy::Remote, GroupBy::Pair] {
                let n = rng.below(12) as usize;
                assert_eq!(
                    h.top(client, by, from, to, n),
                    reference.top(client, by, from, to, n),
                    "top {client:?} {by:?} {from} {to} {n}"
                );
            }
            assert_eq!(
                h.summary(client, remote, from, to),
                reference.summary(client, remote, from, to),
                "summary {client:?} {remote:?} {from} {to}"
            );
        }
    }
}

#[test]
fn matches_reference_model() {
    for seed in [1, 2, 3] {
        let mut h = History::new(Config::default());
        let mut reference = Reference::default();
        let end = fill(&mut h, &mut reference, seed, 100);
        let st = h.stats();
        assert_eq!((st.late_dropped, st.future_dropped), (0, 0));
        assert_eq!(
            st.records,
            reference
                .m
                .values()
                .map(|c| c.up_packets + c.down_packets)
                .sum::<u64>()
        );
        assert_eq!(st.stored_buckets, reference.m.len() as u64);
        assert!(st.sealed_chunks > 90 && st.open_chunks >= 1, "{st:?}");
        check_against(&h, &reference, seed, end - T0, 200);
        // Whole range, all at once, at the coarsest and a middle resolution.
        for res in [60_000, 3_600_000, 1000] {
            let from = T0 - 5 * 3_600_000;
            assert_eq!(
                h.series(None, None, from, end + 1, res).unwrap(),
                reference.series(None, None, from, end + 1, res)
            );
            assert_eq!(
                h.series(None, None, T0, end, res).unwrap(),
                reference.series(None, None, T0, end, res)
            );
        }
    }
}

#[test]
fn bucket_alignment_and_range_edges() {
    let mut h = History::new(Config::default());
    h.ingest(&[
        rec(T0, 0, 0, Dir::Up, 10),
        rec(T0 + 99, 0, 0, Dir::Up, 20),
        rec(T0 + 100, 0, 0, Dir::Down, 30),
        rec(T0 + 1_550, 0, 0, Dir::Down, 40),
        rec(T0 + 59_999, 0, 0, Dir::Up, 50),
        rec(T0 + 60_000, 0, 0, Dir::Up, 60),
    ]);
    let up = |b| Counts {
        up_bytes: b,
        up_packets: if b == 30 { 2 } else { 1 },
        ..Default::default()
    };
    let down = |b| Counts {
        down_bytes: b,
        down_packets: 1,
        ..Default::default()
    };
    let s = h.series(None, None, T0, T0 + 120_000, 100).unwrap();
    let want = vec![
        Point {
            t_ms: T0,
            counts: up(30),
        },
        Point {
            t_ms: T0 + 100,
            counts: down(30),
        },
        Point {
            t_ms: T0 + 1_500,
            counts: down(40),
        },
        Point {
            t_ms: T0 + 59_900,
            counts: up(50),
        },
        Point {
            t_ms: T0 + 60_000,
            counts: up(60),
        },
    ];
    assert_eq!(s, want);
    // A bucket is in the range when its start is: from T0+1 leaves out T0's bucket,
    // to T0+100 leaves out the bucket starting there.
    assert_eq!(h.series(None, None, T0 + 1, T0 + 100, 100).unwrap(), vec![]);
    assert_eq!(h.series(None, None, T0, T0 + 100, 100).unwrap(), want[..1]);
    assert_eq!(
        h.series(None, None, T0 + 1, T0 + 101, 100).unwrap(),
        want[1..2]
    );
    // Points are aligned in Unix time, even when from is not.
    let s = h.series(None, None, T0 + 1_001, T0 + 2_000, 1_000).unwrap();
    assert_eq!(
        s,
        vec![Point {
            t_ms: T0 + 1_000,
            counts: down(40)
        }]
    );
    let s = h.series(None, None, T0, T0 + 120_000, 60_000).unwrap();
    assert_eq!(
        s.iter().map(|p| p.t_ms).collect::<Vec<_>>(),
        vec![T0, T0 + 60_000]
    );
    assert_eq!(s[1].counts, up(60));
    // The two sides of the minute boundary land in different chunks.
    h.advance(T0 + 66_000);
    let st = h.stats();
    assert_eq!((st.sealed_chunks, st.open_chunks), (1, 1));
    assert_eq!(h.oldest_ms(), Some(T0));
    assert_eq!(h.newest_ms(), Some(T0 + 60_000));
    assert_eq!(h.series(None, None, T0, T0 + 120_000, 100).unwrap(), want);
    // Empty and unknown-client queries are just empty.
    assert_eq!(h.series(None, None, T0, T0, 100).unwrap(), vec![]);
    assert_eq!(
        h.series(Some(mac(9)), None, T0, T0 + 120_000, 100).unwrap(),
        vec![]
    );
}

#[test]
fn late_and_future_records() {
    let mut h = History::new(Config::default());
    h.advance(T0 + 1_000);
    h.ingest(&[rec(T0 + 1_000, 0, 0, Dir::Up, 100)]);
    // Within the grace after the minute ends, the chunk still takes records.
    h.advance(T0 + 60_000 + LATE_GRACE_MS - 1);
    h.ingest(&[rec(T0 + 2_000, 0, 0, Dir::Up, 100)]);
    assert_eq!(h.stats().late_dropped, 0);
    h.advance(T0 + 60_000 + LATE_GRACE_MS);
    h.ingest(&[
        rec(T0 + 3_000, 0, 0, Dir::Up, 100),
        // A minute that never had data but is already past its grace.
        rec(T0 - 30_000, 0, 0, Dir::Up, 100),
        rec(T0 + 61_000, 0, 0, Dir::Up, 100),
        rec(T0 + 65_000 + FUTURE_SLACK_MS, 0, 0, Dir::Up, 100),
    ]);
    let st = h.stats();
    assert_eq!((st.records, st.late_dropped, st.future_dropped), (3, 2, 1));
    let s = h.series(None, None, T0, T0 + 120_000, 60_000).unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].counts.up_bytes, 200);
    assert_eq!(s[1].counts.up_bytes, 100);
    // Time never goes back: an older now changes nothing.
    h.advance(T0);
    h.ingest(&[rec(T0 + 4_000, 0, 0, Dir::Up, 100)]);
    assert_eq!(h.stats().late_dropped, 3);
}

#[test]
fn summary_peaks_and_seen() {
    let mut h = History::new(Config::default());
    h.ingest(&[
        rec(T0 + 500, 0, 0, Dir::Down, 1000),
        rec(T0 + 520, 0, 1, Dir::Down, 1000),
        rec(T0 + 700, 0, 0, Dir::Down, 1500),
        rec(T0 + 900, 1, 0, Dir::Up, 300),
    ]);
    let s = h.summary(Some(mac(0)), None, T0, T0 + 1_000);
    // 2000 bytes in one 100 ms bucket = 160 kbit/s.
    assert_eq!(s.peak_down_bps, 160_000);
    assert_eq!(s.peak_down_ms, Some(T0 + 500));
    assert_eq!(s.peak_up_bps, 0);
    assert_eq!(s.peak_up_ms, None);
    assert_eq!(
        (s.first_seen_ms, s.last_seen_ms),
        (Some(T0 + 500), Some(T0 + 700))
    );
    assert_eq!(s.active_buckets, 2);
    assert_eq!(s.counts.down_packets, 3);
    let s = h.summary(None, Some(ip(0)), T0, T0 + 1_000);
    assert_eq!(s.peak_up_bps, 24_000);
    assert_eq!(s.last_seen_ms, Some(T0 + 900));
}

#[test]
fn memory_bound_evicts_oldest_first() {
    let limit = 400_000;
    let mut h = History::new(cfg(limit, 24 * 3_600_000));
    let mut rng = Rng(7);
    let mut reference = Reference::default();
    let mut last_oldest = 0;
    let mut evicted_seen = false;
    for sec in 0..3 * 3600 {
        let t = T0 + sec * 1000;
        let batch: Vec<Record> = (0..20)
            .map(|_| {
                let dir = if rng.chance(0.5) { Dir::Up } else { Dir::Down };
                rec(
                    t + rng.below(1000),
                    rng.below(4) as u8,
                    rng.below(30) as u8,
                    dir,
                    1400,
                )
            })
            .collect();
        h.ingest(&batch);
        batch.iter().for_each(|r| reference.add(r));
        h.advance(t + 1000);
        assert!(
            h.memory_bytes() <= limit,
            "{} > {limit} at {sec}",
            h.memory_bytes()
        );
        let oldest = h.oldest_ms().unwrap();
        assert!(oldest >= last_oldest, "oldest_ms went back");
        last_oldest = oldest;
        evicted_seen |= h.stats().evicted_chunks > 0;
    }
    assert!(evicted_seen);
    reference.freeze();
    let st = h.stats();
    let cut = st.evicted_before_ms.unwrap();
    assert!(st.oldest_ms.unwrap() >= cut);
    assert!(
        cut > T0 + 3_600_000,
        "should hold well under 2 of 3 hours: {st:?}"
    );
    // Nothing before the cut, everything after it.
    let end = T0 + 3 * 3_600_000;
    assert_eq!(h.series(None, None, T0, cut, 60_000).unwrap(), vec![]);
    assert_eq!(
        h.series(None, None, cut, end, 1000).unwrap(),
        reference.series(None, None, cut, end, 1000)
    );
    assert_eq!(
        h.top(None, GroupBy::Pair, cut, end, 5),
        reference.top(None, GroupBy::Pair, cut, end, 5)
    );
}

#[test]
fn only_open_data_over_limit_still_evicts() {
    let mut h = History::new(Config::default());
    h.advance(T0);
    let batch: Vec<Record> = (0..5000)
        .map(|i| {
            rec(
                T0 + i % 600 * 100,
                (i % 7) as u8,
                (i % 100) as u8,
                Dir::Down,
                1000,
            )
        })
        .collect();
    h.ingest(&batch);
    let before = h.memory_bytes();
    h.set_config(cfg(before / 2, 24 * 3_600_000));
    let st = h.stats();
    assert_eq!(st.open_chunks, 0);
    assert_eq!(st.evicted_chunks, 1);
    assert!(st.memory_bytes <= before / 2, "{st:?}");
    assert_eq!(st.pairs, 0);
    // Stragglers for the dropped minute are late; the next minute works as usual.
    h.advance(T0 + 30_000);
    h.ingest(&[
        rec(T0 + 500, 0, 0, Dir::Up, 1),
        rec(T0 + 60_500, 0, 0, Dir::Up, 1),
    ]);
    assert_eq!(h.stats().late_dropped, 1);
    assert_eq!(
        h.series(None, None, T0, T0 + 120_000, 100).unwrap().len(),
        1
    );
}

#[test]
fn retention_drops_old_chunks() {
    let mut h = History::new(cfg(64 << 20, 30 * 60_000));
    for min in 0..120 {
        let t = T0 + min * 60_000;
        h.ingest(&[rec(t + 10, 0, (min % 5) as u8, Dir::Up, 100)]);
        h.advance(t + 59_000);
    }
    let now = T0 + 119 * 60_000 + 59_000;
    let st = h.stats();
    // Chunks ending more than 30 minutes ago are gone, to the minute.
    let oldest = st.oldest_ms.unwrap();
    assert!(
        oldest >= now - 30 * 60_000 - CHUNK_MS && oldest <= now - 29 * 60_000,
        "{st:?}"
    );
    assert_eq!(st.evicted_before_ms, Some(oldest));
    assert_eq!(st.sealed_chunks + st.open_chunks, 31);
    assert_eq!(h.series(None, None, T0, oldest, 60_000).unwrap(), vec![]);
    assert_eq!(h.series(None, None, oldest, now, 60_000).unwrap().len(), 31);
    // Each minute used a different remote of client 0; all five are still needed.
    assert_eq!(st.pairs, 5);
}

#[test]
fn set_config_shrink_evicts_at_once() {
    let mut h = History::new(Config::default());
    let mut reference = Reference::default();
    let end = fill(&mut h, &mut reference, 11, 90);
    let full = h.memory_bytes();
    let oldest = h.oldest_ms().unwrap();
    // Memory: at once, no advance needed.
    h.set_config(cfg(full / 3, 24 * 3_600_000));
    assert!(h.memory_bytes() <= full / 3);
    let after = h.oldest_ms().unwrap();
    assert!(after > oldest);
    assert_eq!(
        h.series(None, None, after, end, 100).unwrap(),
        reference.series(None, None, after, end, 100)
    );
    // Retention likewise.
    h.set_config(cfg(64 << 20, 10 * 60_000));
    let o = h.oldest_ms().unwrap();
    assert!(o >= end - 11 * 60_000 - LATE_GRACE_MS, "{o} {end}");
    // Growing the limit keeps what is there.
    let st = h.stats();
    h.set_config(Config::default());
    assert_eq!(h.stats().stored_buckets, st.stored_buckets);
}

#[test]
fn dictionary_prunes_and_reuses_ids() {
    let mut h = History::new(cfg(64 << 20, 5 * 60_000));
    h.ingest(
        &(0..50)
            .map(|r| rec(T0 + 10, 3, r, Dir::Up, 60))
            .collect::<Vec<_>>(),
    );
    h.advance(T0 + 1_000);
    assert_eq!((h.stats().pairs, h.stats().clients), (50, 1));
    let t = T0 + 10 * 60_000;
    h.advance(t);
    h.ingest(&[rec(t, 4, 1, Dir::Up, 60)]);
    h.advance(t + 100);
    let st = h.stats();
    assert_eq!((st.pairs, st.clients), (1, 1));
    assert_eq!(h.top(None, GroupBy::Pair, 0, u64::MAX, 10).len(), 1);
    // Freed slots are used again, and the old client is unknown now.
    h.ingest(&[rec(t + 200, 3, 2, Dir::Up, 60)]);
    assert_eq!(h.dict.pairs.len(), 50);
    assert_eq!(
        h.top(Some(mac(3)), GroupBy::Remote, t, t + 1000, 10).len(),
        1
    );
}

fn snapshot(h: &History) -> Vec<u8> {
    let mut v = Vec::new();
    h.write_snapshot(&mut v).unwrap();
    v
}

#[test]
fn snapshot_round_trip() {
    let mut h = History::new(Config::default());
    let mut reference = Reference::default();
    let end = fill(&mut h, &mut reference, 5, 40);
    assert!(h.stats().open_chunks > 0);
    let bytes = snapshot(&h);
    let mut g = History::read_snapshot(&mut &bytes[..], Config::default()).unwrap();
    // Map capacities (and the spare map) are not part of a snapshot.
    let same = |a: &History, b: &History| {
        Stats {
            memory_bytes: 0,
            ..a.stats()
        } == Stats {
            memory_bytes: 0,
            ..b.stats()
        }
    };
    assert!(same(&h, &g), "{h:?} {g:?}");
    check_against(&g, &reference, 5, end - T0, 100);
    // Writing the restored copy gives the same bytes.
    assert_eq!(snapshot(&g), bytes);
    // The open minute is open again: later records still land in it.
    let more = [
        rec(end - 500, 0, 0, Dir::Down, 1234),
        rec(end + 100, 1, 1, Dir::Up, 99),
    ];
    for x in [&mut h, &mut g] {
        x.ingest(&more);
        x.advance(end + 1_000);
    }
    more.iter().for_each(|r| reference.add(r));
    reference.freeze();
    assert_eq!(g.stats().late_dropped, 0);
    assert_eq!(snapshot(&g), snapshot(&h));
    check_against(&g, &reference, 6, end - T0 + 1_000, 50);
    // An empty history round-trips too; a smaller config applies on load.
    let e = History::read_snapshot(
        &mut &snapshot(&History::new(Config::default()))[..],
        Config::default(),
    )
    .unwrap();
    assert_eq!(e.stats().stored_buckets, 0);
    let small =
        History::read_snapshot(&mut &bytes[..], cfg(h.memory_bytes() / 4, 86_400_000)).unwrap();
    assert!(small.memory_bytes() <= h.memory_bytes() / 4);
    assert!(small.oldest_ms() > h.oldest_ms());
}

/// Offsets of the sections' payloads in a snapshot, to corrupt them on purpose.
fn sections(b: &[u8]) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    let mut i = 12;
    while i + 16 <= b.len() - 8 {
        let len = u64::from_le_bytes(b[i..i + 8].try_into().unwrap()) as usize;
        v.push((i + 16, len));
        i += 16 + len;
    }
    v
}

#[test]
fn snapshot_rejects_damage() {
    let mut h = History::new(Config::default());
    let mut reference = Reference::default();
    fill(&mut h, &mut reference, 9, 3);
    let bytes = snapshot(&h);
    assert!(bytes.len() > 2_000, "{}", bytes.len());
    let read = |b: &[u8]| History::read_snapshot(&mut &b[..], Config::default());
    // Every truncation.
    for cut in 0..bytes.len() {
        assert!(read(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    // Every single flipped byte.
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x5a;
        assert!(read(&b).is_err(), "flip at {i}");
    }
    // Random garbage, with and without a valid start.
    let mut rng = Rng(42);
    for n in 0..500 {
        let len = rng.below(3000) as usize;
        let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if n % 2 == 0 {
            let k = rng.below(bytes.len() as u64) as usize;
            b.splice(0..0, bytes[..k].iter().copied());
        }
        assert!(read(&b).is_err());
    }
    assert!(matches!(
        read(b"nonsense and more"),
        Err(SnapshotError::NotASnapshot)
    ));
    let mut b = bytes.clone();
    b[8] = 2;
    assert!(matches!(read(&b), Err(SnapshotError::Version(2))));
    assert!(matches!(
        read(&bytes[..bytes.len() - 3]),
        Err(SnapshotError::Truncated)
    ));
    // Damage behind a recomputed checksum: validation must catch it or the result must
    // be a consistent history that queries without panicking.
    let secs = sections(&bytes);
    let mut accepted = 0;
    for _ in 0..3000 {
        let mut b = bytes.clone();
        let (start, len) = secs[rng.below(secs.len() as u64) as usize];
        if len == 0 {
            continue;
        }
        for _ in 0..=rng.below(3) {
            let i = start + rng.below(len as u64) as usize;
            b[i] = match rng.below(3) {
                0 => rng.next() as u8,
                1 => b[i] ^ (1 << rng.below(8)),
                _ => b[i].wrapping_add(1),
            };
        }
        let sum = snapshot::checksum(&b[start..start + len]);
        b[start - 8..start].copy_from_slice(&sum.to_le_bytes());
        if let Ok(g) = read(&b) {
            accepted += 1;
            let _ = g.series(None, None, 0, T0 + 600_000, 100);
            let _ = g.series(Some(mac(1)), Some(ip(2)), 0, T0 + 600_000, 60_000);
            let _ = g.top(None, GroupBy::Pair, 0, u64::MAX, 5);
            let _ = g.summary(None, None, 0, u64::MAX);
            let _ = g.stats();
            let mut out = Vec::new();
            g.write_snapshot(&mut out).unwrap();
            read(&out).expect("a snapshot we accepted must write back readable");
        }
    }
    // Some changes (a byte count, say) make a different but valid history.
    assert!(accepted > 0);
}

#[test]
fn query_errors_say_what_is_wrong() {
    let h = History::new(Config::default());
    for res in [0, 50, 150, 3_600_100, 7_200_000] {
        let e = h.series(None, None, 0, 1000, res).unwrap_err();
        assert_eq!(e, QueryError::BadResolution { res_ms: res });
        assert!(e.to_string().contains("multiple of 100"), "{e}");
    }
    let e = h.series(None, None, 2000, 1000, 100).unwrap_err();
    assert!(e.to_string().contains("after"), "{e}");
    // 24 h at 100 ms is 864,000 points.
    let e = h.series(None, None, T0, T0 + 86_400_000, 100).unwrap_err();
    assert_eq!(
        e,
        QueryError::TooManyPoints {
            points: 864_000,
            max: MAX_POINTS
        }
    );
    assert!(e.to_string().contains("864000 points"), "{e}");
    assert!(h.series(None, None, T0, T0 + 86_400_000, 1000).is_ok());
    assert!(h.series(None, None, 0, u64::MAX, 3_600_000).is_err());
}

#[test]
fn mac_text_and_json() {
    let m = [0xaa, 0xbb, 0x0c, 0xdd, 0xee, 0x01];
    assert_eq!(format_mac(&m), "aa:bb:0c:dd:ee:01");
    assert_eq!(parse_mac("aa:bb:0c:dd:ee:01"), Some(m));
    assert_eq!(parse_mac("AA-BB-0C-DD-EE-01"), Some(m));
    for bad in [
        "",
        "aa:bb:cc:dd:ee",
        "aa:bb:cc:dd:ee:ff:00",
        "aa:bb:cc:dd:ee:f",
        "aa:bb:cc:dd:ee:gg",
        "aa:bb:cc:dd:ee:+f",
    ] {
        assert_eq!(parse_mac(bad), None, "{bad}");
    }
    let t = Talker {
        client: Some(m),
        remote: Some(ip(0)),
        counts: Counts::default(),
    };
    let j = serde_json::to_value(&t).unwrap();
    assert_eq!(j["client"], "aa:bb:0c:dd:ee:01");
    assert_eq!(j["remote"], "93.184.0.0");
    assert_eq!(j["counts"]["up_bytes"], 0);
    let t = Talker { client: None, ..t };
    assert!(serde_json::to_value(&t).unwrap()["client"].is_null());
    assert_eq!(serde_json::to_value(GroupBy::Pair).unwrap(), "pair");
    let s = serde_json::to_value(History::new(Config::default()).stats()).unwrap();
    assert_eq!(s["memory_limit"], 64 << 20);
}

#[test]
fn memory_accounting_tracks_growth() {
    let mut h = History::new(Config::default());
    let empty = h.memory_bytes();
    assert_eq!(empty, size_of::<History>());
    let mut reference = Reference::default();
    fill(&mut h, &mut reference, 3, 30);
    let st = h.stats();
    // Blobs, dictionary and open maps are all in there.
    assert!(st.memory_bytes > st.sealed_bytes + 50 * size_of::<PairEntry>());
    assert!(
        st.sealed_bytes as f64 / (st.sealed_buckets as f64) < 12.0,
        "{st:?}"
    );
}

#[test]
fn hourly_rollups_match_chunks() {
    let mut h = History::new(Config::default());
    let mut reference = Reference::default();
    let end = fill(&mut h, &mut reference, 21, 200);
    assert_eq!(h.stats().rollups, 3);
    let check = |h: &History, from: u64, to: u64| {
        for client in [None, Some(mac(1)), Some(mac(99))] {
            for by in [GroupBy::Client, GroupBy::Remote, GroupBy::Pair] {
                assert_eq!(
                    h.top(client, by, from, to, 50),
                    reference.top(client, by, from, to, 50)
                );
            }
            for remote in [None, Some(ip(2)), Some(ip(3))] {
                for res in [3_600_000, 1_800_000, 60_000] {
                    assert_eq!(
                        h.series(client, remote, from, to, res).unwrap(),
                        reference.series(client, remote, from, to, res),
                        "{client:?} {remote:?} {from} {to} {res}"
                    );
                }
            }
        }
    };
    check(&h, T0, end);
    check(&h, T0 - 1_000, end + 1_000);
    check(&h, T0 + 3_600_000, T0 + 3 * 3_600_000);
    check(&h, T0 + 1_800_000, T0 + 3 * 3_600_000 - 1);
    // Evicting half of the first hour drops its rollup; the rest still adds up.
    h.set_config(cfg(64 << 20, end - (T0 + 1_800_000)));
    let st = h.stats();
    assert_eq!(
        (st.rollups, st.evicted_before_ms),
        (2, Some(T0 + 1_800_000))
    );
    check(&h, T0 + 1_800_000, end);
    check(&h, T0 + 3_600_000, end);
    // A snapshot rebuilds them, for what is held of the first hour too.
    let g = History::read_snapshot(&mut &snapshot(&h)[..], Config::default()).unwrap();
    assert_eq!(g.stats().rollups, 3);
    check(&g, T0 + 1_800_000, end);
}

#[test]
fn last_seen_is_exact_recently_and_within_its_minute_before() {
    let mut h = History::new(Config::default());
    let mut reference = Reference::default();
    // 90 minutes: sealed chunks, an hour rollup and open chunks all take part (the fine
    // window starts within an hour of everything, so no hour is read as a whole).
    let end = fill(&mut h, &mut reference, 21, 90);
    reference.freeze();
    let from = T0;
    let to = end + 1;
    let fine_from = end - 5 * 60_000;
    let mut exact: BTreeMap<Mac, u64> = BTreeMap::new();
    for (m, _, b, _) in reference.matching(None, None, from, to) {
        let e = exact.entry(m).or_default();
        *e = (*e).max(b);
    }
    let got: BTreeMap<Mac, u64> = h.last_seen(from, to, fine_from).into_iter().collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        exact.keys().collect::<Vec<_>>()
    );
    let to_b = to.div_ceil(BUCKET_MS);
    for (m, b) in &exact {
        let want = if b * BUCKET_MS >= fine_from {
            b * BUCKET_MS
        } else {
            let chunk_end = (b / codec::CHUNK_BUCKETS + 1) * codec::CHUNK_BUCKETS;
            (chunk_end.min(to_b) - 1) * BUCKET_MS
        };
        assert_eq!(got[m], want, "client {m:?}, last bucket {b}");
    }
    // Everything before the fine window: each client placed in its last minute.
    let cut = T0 + 37 * 60_000 + 12_345;
    let mut before: BTreeMap<Mac, u64> = BTreeMap::new();
    for (m, _, b, _) in reference.matching(None, None, from, cut) {
        let e = before.entry(m).or_default();
        *e = (*e).max(b);
    }
    assert!(!before.is_empty());
    let got: BTreeMap<Mac, u64> = h.last_seen(from, cut, end).into_iter().collect();
    assert_eq!(got.len(), before.len());
    let cut_b = cut.div_ceil(BUCKET_MS);
    for (m, b) in &before {
        let chunk_end = (b / codec::CHUNK_BUCKETS + 1) * codec::CHUNK_BUCKETS;
        if chunk_end <= cut_b {
            assert_eq!(
                got[m],
                (chunk_end - 1) * BUCKET_MS,
                "client {m:?}, bucket {b}"
            );
        } else {
            // The minute cut by the range is read bucket by bucket.
            assert_eq!(got[m], b * BUCKET_MS, "client {m:?}, bucket {b}");
        }
    }
    assert!(h.last_seen(to, from, fine_from).is_empty());
}

#[test]
fn last_seen_reads_old_hours_as_wholes() {
    let mut h = History::new(Config::default());
    let a = rec(T0 + 5 * 60_000 + 1_234, 1, 1, Dir::Up, 100);
    let b = rec(T0 + 3 * 3_600_000 + 7_777, 2, 2, Dir::Down, 100);
    h.ingest(&[a]);
    h.advance(T0 + 3 * 3_600_000);
    h.ingest(&[b]);
    let now = T0 + 3 * 3_600_000 + 60_000;
    h.advance(now);
    let got: BTreeMap<Mac, u64> = h.last_seen(T0, now, now - 2 * 60_000).into_iter().collect();
    // Client 1's hour is long before the fine window: placed at the end of that hour.
    assert_eq!(got[&mac(1)], T0 + 3_600_000 - BUCKET_MS);
    // Client 2 is in the fine window: exact.
    assert_eq!(got[&mac(2)], T0 + 3 * 3_600_000 + 7_700);
}
