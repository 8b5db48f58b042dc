//! Benchmark for traffic-history: replays a synthetic day of a busy home and prints
//! ingest rate, bytes per stored pair-bucket, memory, reach and query latencies, next
//! to a one-map-node-per-bucket store measured on the first hour.
//!
//! The home (seeded, so every run sees the same packets): 50 clients, 200 remotes
//! (a quarter IPv6), hour-of-day activity from 0.08 at night to 1.0 at 19-22 h. The day
//! starts at 18:00, so the first hour (the peer comparison) is a busy one.
//!
//! * 6 TVs: 1-2 video streams a day, 60-120 min, packets in every 100 ms bucket
//!   (2-12 Mbit/s, drifting), ACKs up.
//! * 20 phones and 10 laptops: browsing sessions (Poisson, scaled by the hour), each a
//!   burst of 1-12 short flows to remotes picked by popularity (Zipf), 0.2-15 s long,
//!   packets in 30-90 % of their buckets, 1-40 packets down per bucket. Phones also
//!   watch 0-2 short videos, laptops hold three video calls and three big downloads
//!   (40 Mbit/s, 5-10 min) between them.
//! * 14 IoT devices and the phones: 2-4 keepalive connections each, one small exchange
//!   every 25-120 s, all day; two cameras upload short clips a few times a day.
//! * Every packet is one record, stamped at a random ms inside its bucket; each 100 ms
//!   batch is sorted by time, so flows interleave as on the wire.
//!
//! Timing covers only `ingest` and `advance` (called after every 100 ms of records, in
//! slices of at most 1000), not the generation of the records.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use traffic_history::{Config, Counts, Dir, GroupBy, History, Record, BUCKET_MS};

/// Counts live heap bytes, to measure the peer map and to check `memory_bytes()`.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: a thin wrapper over System that only adds bookkeeping; every pointer and
// layout is passed through unchanged. A global allocator cannot be written without
// unsafe, and counting allocations is the point of the peer measurement.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            LIVE.fetch_add(l.size(), Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            LIVE.fetch_add(l.size(), Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            LIVE.fetch_add(new, Relaxed);
            LIVE.fetch_sub(l.size(), Relaxed);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const SEED: u64 = 0x6761_7465_686f_7573;
/// 2025-06-02 18:00 UTC; the home's clock is UTC.
const START_MS: u64 = 1_748_887_200_000;
const DAY_MS: u64 = 86_400_000;
const CLIENTS: usize = 50;
const REMOTES: usize = 200;
const TICKS_PER_S: u64 = 1000 / BUCKET_MS;

const TARGET_RATE: f64 = 5e6;
const TARGET_MEM: usize = 64 << 20;
const TARGET_QUERY: Duration = Duration::from_millis(50);

/// xoshiro-free zone: splitmix64 is plenty for synthetic traffic.
struct Rng(u64);

impl Rng {
    #[inline]
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    #[inline]
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }
}

fn client_mac(c: usize) -> [u8; 6] {
    [0x3c, 0x22, 0xfb, 0x10, (c >> 8) as u8, c as u8]
}

/// Remote index k is the last byte (v4) or last group (v6), so the peer can recover it.
fn remote_ip(k: usize) -> IpAddr {
    if k % 4 == 3 {
        IpAddr::V6(Ipv6Addr::new(
            0x2a00, 0x1450, 0x4001, 0x80b, 0, 0, 0, k as u16,
        ))
    } else {
        IpAddr::V4(Ipv4Addr::new(
            [23, 104, 142, 151, 172, 185][k % 6],
            (k * 37 % 250) as u8,
            (k * 11 % 256) as u8,
            k as u8,
        ))
    }
}

fn remote_index(ip: &IpAddr) -> usize {
    match ip {
        IpAddr::V4(a) => usize::from(a.octets()[3]),
        IpAddr::V6(a) => usize::from(a.segments()[7]),
    }
}

/// Relative activity by hour of day.
fn activity(t_ms: u64) -> f64 {
    const A: [f64; 24] = [
        0.35, 0.2, 0.08, 0.08, 0.08, 0.08, 0.3, 0.7, 0.7, 0.6, 0.6, 0.6, 0.7, 0.7, 0.6, 0.6, 0.6,
        0.8, 0.8, 1.0, 1.0, 1.0, 0.8, 0.55,
    ];
    A[(t_ms / 3_600_000 % 24) as usize]
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// Short flow: share of buckets with packets, mean packets down per bucket.
    Web { p_active: f64, down_mean: u64 },
    /// Every bucket: Mbit/s, drifting.
    Stream { mbps: f64 },
    /// Both ways, every bucket.
    Call,
    /// Every bucket, many packets one way.
    Bulk { up: bool, pkts: u64 },
}

struct Flow {
    client: usize,
    remote: usize,
    end_tick: u64,
    kind: Kind,
}

struct Keepalive {
    client: usize,
    remote: usize,
    period_ticks: u64,
    next_tick: u64,
}

enum Device {
    Tv,
    Phone,
    Laptop,
    Iot,
}

fn device(c: usize) -> Device {
    match c {
        0..6 => Device::Tv,
        6..26 => Device::Phone,
        26..36 => Device::Laptop,
        _ => Device::Iot,
    }
}

struct Gen {
    rng: Rng,
    tick: u64,
    end_tick: u64,
    zipf: Vec<f64>,
    /// Long flows, by start tick, latest last (popped from the end).
    scheduled: Vec<(u64, Flow)>,
    flows: Vec<Flow>,
    keepalives: Vec<Keepalive>,
    next_session: Vec<u64>,
}

/// Sessions per hour at full activity.
fn session_rate(c: usize) -> f64 {
    match device(c) {
        Device::Phone => 45.0,
        Device::Laptop => 70.0,
        _ => 0.0,
    }
}

impl Gen {
    fn new(seed: u64) -> Self {
        let mut rng = Rng(seed);
        let start_tick = START_MS / BUCKET_MS;
        let end_tick = start_tick + DAY_MS / BUCKET_MS;
        let mut zipf = Vec::with_capacity(REMOTES);
        let mut acc = 0.0;
        for k in 0..REMOTES {
            acc += 1.0 / (k as f64 + 1.0);
            zipf.push(acc);
        }
        // A start time drawn by activity squared: evenings for TV, days for work.
        let pick_start = |rng: &mut Rng, hours: std::ops::Range<u64>| loop {
            let t = START_MS + rng.below(DAY_MS);
            let h = t / 3_600_000 % 24;
            if hours.contains(&h) && rng.unit() < activity(t) * activity(t) {
                return t / BUCKET_MS;
            }
        };
        let mut scheduled = Vec::new();
        let mut add = |start: u64, client, remote, minutes: f64, kind| {
            let len = (minutes * 600.0) as u64;
            scheduled.push((
                start,
                Flow {
                    client,
                    remote,
                    end_tick: start + len,
                    kind,
                },
            ));
        };
        for c in 0..CLIENTS {
            match device(c) {
                Device::Tv => {
                    for _ in 0..rng.range(1, 2) {
                        let s = pick_start(&mut rng, 0..24);
                        let mbps = rng.range(3, 8) as f64;
                        let r = rng.below(8) as usize;
                        add(s, c, r, rng.range(60, 120) as f64, Kind::Stream { mbps });
                    }
                }
                Device::Phone => {
                    for _ in 0..rng.below(3) {
                        let s = pick_start(&mut rng, 7..24);
                        let r = rng.below(12) as usize;
                        let mbps = rng.range(1, 4) as f64;
                        add(s, c, r, rng.range(5, 30) as f64, Kind::Stream { mbps });
                    }
                }
                Device::Iot if c < 38 => {
                    for _ in 0..rng.range(4, 8) {
                        let s = pick_start(&mut rng, 0..24);
                        let len = rng.range(20, 40) as f64 / 60.0;
                        add(s, c, 190 + c % 5, len, Kind::Bulk { up: true, pkts: 18 });
                    }
                }
                _ => {}
            }
        }
        for i in 0..3 {
            let laptop = 26 + rng.below(10) as usize;
            let s = pick_start(&mut rng, 9..17);
            add(s, laptop, 40 + i, rng.range(30, 60) as f64, Kind::Call);
            let s = pick_start(&mut rng, 0..24);
            let pkts = 330;
            add(
                s,
                laptop,
                20 + i,
                rng.range(5, 10) as f64,
                Kind::Bulk { up: false, pkts },
            );
        }
        scheduled.sort_by_key(|(s, _)| std::cmp::Reverse(*s));

        let mut keepalives = Vec::new();
        for c in 0..CLIENTS {
            if matches!(device(c), Device::Phone | Device::Iot) {
                for _ in 0..rng.range(2, 4) {
                    let period_ticks = rng.range(250, 1200);
                    keepalives.push(Keepalive {
                        client: c,
                        remote: 100 + rng.below(90) as usize,
                        period_ticks,
                        next_tick: start_tick + rng.below(period_ticks),
                    });
                }
            }
        }
        let next_session = (0..CLIENTS).map(|_| start_tick).collect();
        Gen {
            rng,
            tick: start_tick,
            end_tick,
            zipf,
            scheduled,
            flows: Vec::new(),
            keepalives,
            next_session,
        }
    }

    fn zipf_remote(&mut self) -> usize {
        let u = self.rng.unit() * self.zipf[REMOTES - 1];
        self.zipf.partition_point(|&x| x < u).min(REMOTES - 1)
    }

    /// Appends the records of the next 100 ms, sorted by time. False at the day's end.
    fn tick(&mut self, out: &mut Vec<Record>) -> bool {
        if self.tick >= self.end_tick {
            return false;
        }
        let tick = self.tick;
        let t0 = tick * BUCKET_MS;
        let start = out.len();
        while self.scheduled.last().is_some_and(|(s, _)| *s <= tick) {
            let (_, f) = self.scheduled.pop().expect("checked");
            self.flows.push(f);
        }
        // Browsing sessions: Poisson at the full-activity rate, thinned by the hour.
        for c in 0..CLIENTS {
            let rate = session_rate(c);
            if rate == 0.0 {
                continue;
            }
            while self.next_session[c] <= tick {
                let gap = self.rng.exp(36_000.0 / rate) as u64 + 1;
                self.next_session[c] += gap;
                if self.rng.unit() >= activity(t0) {
                    continue;
                }
                for _ in 0..self.rng.range(1, 12) {
                    let remote = self.zipf_remote();
                    // Log-uniform length, 0.2 s to 15 s.
                    let len = (2.0 * (75.0f64).powf(self.rng.unit())) as u64;
                    let delay = self.rng.below(15);
                    let kind = Kind::Web {
                        p_active: 0.3 + 0.6 * self.rng.unit(),
                        down_mean: self.rng.range(1, 20),
                    };
                    self.scheduled.push((
                        tick + delay,
                        Flow {
                            client: c,
                            remote,
                            end_tick: tick + delay + len,
                            kind,
                        },
                    ));
                }
                self.scheduled.sort_by_key(|(s, _)| std::cmp::Reverse(*s));
            }
        }
        while self.scheduled.last().is_some_and(|(s, _)| *s <= tick) {
            let (_, f) = self.scheduled.pop().expect("checked");
            self.flows.push(f);
        }
        let rng = &mut self.rng;
        let mut emit = |rng: &mut Rng,
                        c: usize,
                        r: usize,
                        dir: Dir,
                        n: u64,
                        size: &mut dyn FnMut(&mut Rng) -> u32| {
            for _ in 0..n {
                let bytes = size(rng);
                out.push(Record {
                    t_ms: t0 + rng.below(BUCKET_MS),
                    client: client_mac(c),
                    remote: remote_ip(r),
                    dir,
                    bytes,
                });
            }
        };
        let mut full = |rng: &mut Rng| {
            if rng.below(10) < 8 {
                1500
            } else {
                rng.range(60, 1500) as u32
            }
        };
        let mut ack = |rng: &mut Rng| rng.range(52, 90) as u32;
        for f in &mut self.flows {
            match &mut f.kind {
                Kind::Web {
                    p_active,
                    down_mean,
                } => {
                    if rng.unit() >= *p_active {
                        continue;
                    }
                    let down = rng.range(0, 2 * *down_mean);
                    let up = down / 2 + rng.below(2) + u64::from(down == 0);
                    emit(rng, f.client, f.remote, Dir::Down, down, &mut full);
                    emit(rng, f.client, f.remote, Dir::Up, up, &mut ack);
                }
                Kind::Stream { mbps } => {
                    if rng.below(40) == 0 {
                        *mbps = (*mbps * (0.7 + 0.6 * rng.unit())).clamp(2.0, 12.0);
                    }
                    let bytes = *mbps * 12_500.0 * (0.5 + rng.unit());
                    let down = (bytes / 1448.0) as u64 + 1;
                    emit(rng, f.client, f.remote, Dir::Down, down, &mut full);
                    emit(rng, f.client, f.remote, Dir::Up, down / 3 + 1, &mut ack);
                }
                Kind::Call => {
                    let mut media = |rng: &mut Rng| rng.range(900, 1200) as u32;
                    let (down, up) = (rng.range(8, 16), rng.range(8, 16));
                    emit(rng, f.client, f.remote, Dir::Down, down, &mut media);
                    emit(rng, f.client, f.remote, Dir::Up, up, &mut media);
                }
                Kind::Bulk { up, pkts } => {
                    let n = rng.range(*pkts / 2, *pkts * 3 / 2);
                    let (d, back) = if *up {
                        (Dir::Up, Dir::Down)
                    } else {
                        (Dir::Down, Dir::Up)
                    };
                    emit(rng, f.client, f.remote, d, n, &mut |_| 1500);
                    emit(rng, f.client, f.remote, back, n / 2 + 1, &mut ack);
                }
            }
        }
        self.flows.retain(|f| f.end_tick > tick + 1);
        for k in &mut self.keepalives {
            if k.next_tick <= tick {
                k.next_tick += k.period_ticks - 20 + rng.below(40);
                let mut small = |rng: &mut Rng| rng.range(60, 300) as u32;
                let (up, down) = (rng.range(1, 2), rng.range(1, 2));
                emit(rng, k.client, k.remote, Dir::Up, up, &mut small);
                emit(rng, k.client, k.remote, Dir::Down, down, &mut small);
            }
        }
        out[start..].sort_unstable_by_key(|r| r.t_ms);
        self.tick += 1;
        true
    }
}

fn mib(b: usize) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn vm_hwm() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l["VmHWM:".len()..].trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn ok(pass: bool) -> &'static str {
    if pass {
        "ok"
    } else {
        "MISSED"
    }
}

/// Runs `f` `runs` times; median and max.
fn time_query<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, Duration, T) {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let r = std::hint::black_box(f());
        times.push(t.elapsed());
        last = Some(r);
    }
    times.sort();
    (times[runs / 2], times[runs - 1], last.expect("runs > 0"))
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let runs = 15;
    println!(
        "traffic-history bench: 24 h synthetic home, {CLIENTS} clients x {REMOTES} remotes, seed {SEED:#x}"
    );
    let heap_before = LIVE.load(Relaxed);
    let mut h = History::new(Config::default());
    let mut g = Gen::new(SEED);
    let mut buf: Vec<Record> = Vec::with_capacity(1 << 16);
    let mut ticks: Vec<usize> = Vec::with_capacity(16);
    let mut spent = Duration::ZERO;
    let mut records: u64 = 0;
    let mut max_tick_records = 0;
    let mut now = START_MS;
    loop {
        // One simulated second of records, then its replay, timed.
        buf.clear();
        ticks.clear();
        let mut more = true;
        for _ in 0..TICKS_PER_S {
            more = g.tick(&mut buf);
            if !more {
                break;
            }
            ticks.push(buf.len());
        }
        let t = Instant::now();
        let mut from = 0;
        for &end in &ticks {
            for batch in buf[from..end].chunks(1000) {
                h.ingest(batch);
            }
            now += BUCKET_MS;
            h.advance(now);
            max_tick_records = max_tick_records.max(end - from);
            from = end;
        }
        spent += t.elapsed();
        records += buf.len() as u64;
        if !more {
            break;
        }
    }
    drop(g);
    drop(buf);
    let end = now;
    let st = h.stats();
    let heap_history = LIVE.load(Relaxed).saturating_sub(heap_before);
    let rate = st.records as f64 / spent.as_secs_f64();
    assert_eq!(
        st.records, records,
        "every generated record should be accepted"
    );

    println!(
        "records ingested: {} (late {}, future {}; busiest 100 ms: {} records)",
        st.records, st.late_dropped, st.future_dropped, max_tick_records
    );
    println!(
        "ingest rate: {:.2} M records/s (ingest+advance {:.2} s, generation excluded)  [target >= 5 M/s: {}]",
        rate / 1e6,
        spent.as_secs_f64(),
        ok(rate >= TARGET_RATE)
    );
    println!(
        "stored non-empty pair-buckets: {} ({} sealed in {} chunks, {} open; {} pairs, {} clients; {:.1} records per pair-bucket)",
        st.stored_buckets,
        st.sealed_buckets,
        st.sealed_chunks,
        st.stored_buckets - st.sealed_buckets,
        st.pairs,
        st.clients,
        st.records as f64 / st.stored_buckets as f64
    );
    let per_sealed = st.sealed_bytes as f64 / st.sealed_buckets as f64;
    let per_all = st.memory_bytes as f64 / st.stored_buckets as f64;
    println!(
        "bytes per pair-bucket: {per_sealed:.2} in sealed blobs, {per_all:.2} counting all of memory_bytes()  [target well under 10: {}]",
        ok(per_all < 10.0)
    );
    println!(
        "memory_bytes(): {:.2} MiB of {:.0} MiB limit; allocator-counted heap of the History: {:.2} MiB  [target <= 64 MiB: {}]",
        mib(st.memory_bytes),
        mib(st.memory_limit),
        mib(heap_history),
        ok(st.memory_bytes <= TARGET_MEM)
    );
    println!(
        "of which: sealed blobs {:.2} MiB, hourly rollups ({}) {:.2} MiB, the rest (open and spare maps, dictionary, chunk records) {:.2} MiB",
        mib(st.sealed_bytes),
        st.rollups,
        mib(st.rollup_bytes),
        mib(st.memory_bytes - st.sealed_bytes - st.rollup_bytes)
    );
    println!(
        "peak RSS (VmHWM): {} (whole process: history, one second of generated records, binary)",
        vm_hwm()
    );
    let oldest = st.oldest_ms.expect("data");
    let full = st.evicted_chunks == 0 && oldest < START_MS + 60_000;
    println!(
        "oldest_ms: {} = start + {:.1} s; newest_ms: start + {:.1} s; evicted chunks: {}; full 24 h held: {}",
        oldest,
        (oldest - START_MS) as f64 / 1e3,
        (st.newest_ms.expect("data") - START_MS) as f64 / 1e3,
        st.evicted_chunks,
        if full { "yes" } else { "NO" }
    );

    // Queries, as the web UI asks them, at the end of the day.
    let day = end - DAY_MS;
    let top = h.top(None, GroupBy::Client, day, end, 1);
    let heavy = top[0].client;
    let heavy_name = traffic_history::format_mac(&heavy.expect("client"));
    let line = |name: &str, (med, max, n): (Duration, Duration, usize)| {
        println!(
            "query {name}: median {}, max {} ({n} rows, {runs} runs)  [target <= 50 ms: {}]",
            ms(med),
            ms(max),
            ok(max <= TARGET_QUERY)
        );
    };
    let series = |c, from, to, res| {
        let (a, b, v) = time_query(runs, || h.series(c, None, from, to, res).expect("valid"));
        (a, b, v.len())
    };
    line(
        &format!("(a) 24 h @ 1 min, one client ({heavy_name})"),
        series(heavy, day, end, 60_000),
    );
    line(
        "(a) 24 h @ 1 min, all clients",
        series(None, day, end, 60_000),
    );
    // The last minute is still open (not sealed yet): read from the hash map.
    let recent = h.top(None, GroupBy::Client, end - 60_000, end, 1)[0].client;
    line(
        &format!(
            "(b) 1 min @ 100 ms, one client ({}), last minute (open)",
            traffic_history::format_mac(&recent.expect("client"))
        ),
        series(recent, end - 60_000, end, 100),
    );
    // The busiest sealed minute of that client.
    let busiest = h
        .series(heavy, None, day, end - 120_000, 60_000)
        .expect("valid")
        .into_iter()
        .max_by_key(|p| p.counts.total_bytes())
        .map(|p| p.t_ms)
        .expect("data");
    line(
        "(b) 1 min @ 100 ms, one client, its busiest sealed minute",
        series(heavy, busiest, busiest + 60_000, 100),
    );
    for (name, by) in [
        ("pair", GroupBy::Pair),
        ("remote", GroupBy::Remote),
        ("client", GroupBy::Client),
    ] {
        let (a, b, v) = time_query(runs, || h.top(None, by, day, end, 10));
        line(&format!("(c) top 10 by {name} over 24 h"), (a, b, v.len()));
    }
    let (a, b, _) = time_query(runs, || h.top(heavy, GroupBy::Remote, day, end, 10));
    line("(c) top 10 remotes of one client over 24 h", (a, b, 10));
    let (a, b, _) = time_query(5, || h.summary(heavy, None, day, end));
    println!(
        "query (extra) summary 24 h, one client: median {}, max {} (decodes its buckets)",
        ms(a),
        ms(b)
    );
    let (a, b, _) = time_query(5, || h.summary(None, None, day, end));
    println!(
        "query (extra) summary 24 h, all clients: median {}, max {} (per-chunk peaks)",
        ms(a),
        ms(b)
    );
    let (a, b, v) = time_query(5, || h.series(None, None, day, end, 1000).expect("valid"));
    println!(
        "query (extra) 24 h @ 1 s, all clients: median {}, max {} ({} points, decodes every bucket)",
        ms(a),
        ms(b),
        v.len()
    );
    let mut snap = Vec::new();
    let t = Instant::now();
    h.write_snapshot(&mut snap).expect("write");
    let tw = t.elapsed();
    let t = Instant::now();
    let back = History::read_snapshot(&mut &snap[..], Config::default()).expect("read");
    let tr = t.elapsed();
    assert_eq!(back.stats().stored_buckets, st.stored_buckets);
    println!(
        "snapshot: {:.2} MiB, write {}, read+validate {}",
        mib(snap.len()),
        ms(tw),
        ms(tr)
    );
    drop((back, snap));
    // The bound at work: a quarter of the memory, applied live.
    let quarter = st.memory_bytes / 4;
    let t = Instant::now();
    h.set_config(Config {
        memory_limit: quarter,
        ..Config::default()
    });
    let te = t.elapsed();
    let q = h.stats();
    println!(
        "set_config(memory_limit {:.2} MiB): {} oldest chunks evicted in {}, memory_bytes() {:.2} MiB, oldest_ms now start + {:.2} h, {} pairs left",
        mib(quarter),
        q.evicted_chunks,
        ms(te),
        mib(q.memory_bytes),
        (q.oldest_ms.expect("data") - START_MS) as f64 / 3.6e6,
        q.pairs
    );
    drop(h);

    // The peer: one map node per (pair, bucket), on the first simulated hour.
    let hour_ticks = 3_600_000 / BUCKET_MS;
    let mut g = Gen::new(SEED);
    let mut recs = Vec::new();
    for _ in 0..hour_ticks {
        g.tick(&mut recs);
    }
    drop(g);
    let base = LIVE.load(Relaxed);
    let mut peer: BTreeMap<(u32, u64), Counts> = BTreeMap::new();
    for r in &recs {
        let pair = (usize::from(r.client[5]) * REMOTES + remote_index(&r.remote)) as u32;
        let c = peer.entry((pair, r.t_ms / BUCKET_MS)).or_default();
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
    let peer_bytes = LIVE.load(Relaxed) - base;
    let peer_per = peer_bytes as f64 / peer.len() as f64;
    let mut ours = History::new(Config::default());
    let mut t = START_MS;
    for batch in recs.chunks(1000) {
        ours.ingest(batch);
        t = t.max(batch[batch.len() - 1].t_ms);
        ours.advance(t);
    }
    ours.advance(START_MS + 3_600_000 + 60_000);
    let os = ours.stats();
    assert_eq!(os.stored_buckets, peer.len() as u64);
    let ours_per = os.sealed_bytes as f64 / os.sealed_buckets as f64;
    let ours_all = os.memory_bytes as f64 / os.stored_buckets as f64;
    println!(
        "peer, BTreeMap<(pair, bucket), Counts>, first hour: {} pair-buckets in {:.2} MiB = {:.1} bytes per bucket (counted by the allocator)",
        peer.len(),
        mib(peer_bytes),
        peer_per
    );
    println!(
        "ours, same hour: {ours_per:.2} bytes per bucket in sealed blobs, {ours_all:.2} counting all of memory_bytes() ({:.2} MiB)",
        mib(os.memory_bytes)
    );
    println!(
        "ratio on that hour: {:.1}x smaller (blobs), {:.1}x smaller (all of memory_bytes()); over 24 h (all of memory_bytes()): {:.1}x, the peer would need about {:.0} MiB",
        peer_per / ours_per,
        peer_per / ours_all,
        peer_per / per_all,
        mib((peer_per * st.stored_buckets as f64) as usize)
    );
}
