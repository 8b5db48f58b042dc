//! Seeds a gatewayd data directory for the admin UI benchmark (scripts/bench-ui): a lease
//! store with N active leases and a traffic history snapshot filled for the whole
//! retention span, so the pages render with a full house without hours of real traffic.
//!
//!   ui-bench-seed --data-dir DIR [--clients 250] [--remotes 400] [--config FILE]
//!                 [--names-out FILE] [--seed N]
//!
//! Writes DIR/dhcp/leases.json (through `LeaseStore`) and DIR/traffic/history.snap
//! (through `Traffic::save`), the files gatewayd loads at startup. `--config` takes
//! retention and memory limit from that config (default: built-in defaults, 24 h, 64 MiB).
//! `--names-out` writes "IP NAME" for every remote host: the history itself keeps no names
//! (gatewayd learns them from DNS answers, in memory), so the benchmark feeds them through
//! DNS.
//!
//! The traffic (seeded, the same every run): hour-of-day activity from 0.08 at night to
//! 1.0 in the evening, UTC. Per device kind:
//! * TVs (1 in 20): one or two 30-90 min streams a day, packets every other 100 ms.
//! * phones and laptops (3 in 5): browsing bursts, 1-4 remotes (popular ones first), each
//!   5-40 active buckets, 1-4 packets down and an ACK up per bucket.
//! * IoT devices (the rest): two keepalive remotes, one small exchange a minute.
//!
//! Records are fed in time order, a minute at a time, with `advance` after each minute, so
//! every tier exists: sealed minute chunks, hourly rollups, and open chunks at the end.

use gateway::config::{self, Config};
use gateway::dhcp::lease_store::{Lease, LeaseStore};
use gateway::traffic::Traffic;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::exit;
use std::time::Instant;
use traffic_history::{format_mac, Dir, Record, BUCKET_MS, CHUNK_MS, LATE_GRACE_MS};

struct Args {
    data_dir: PathBuf,
    clients: usize,
    remotes: usize,
    config: Option<PathBuf>,
    names_out: Option<PathBuf>,
    seed: u64,
}

fn usage() -> ! {
    eprintln!(
        "usage: ui-bench-seed --data-dir DIR [--clients N] [--remotes N] [--config FILE] \
         [--names-out FILE] [--seed N]"
    );
    exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        data_dir: PathBuf::new(),
        clients: 250,
        remotes: 400,
        config: None,
        names_out: None,
        seed: 0x6768_6b2d_7569,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        let num = |s: String| s.parse::<u64>().unwrap_or_else(|_| usage());
        match arg.as_str() {
            "--data-dir" => a.data_dir = val().into(),
            "--clients" => a.clients = num(val()) as usize,
            "--remotes" => a.remotes = num(val()) as usize,
            "--config" => a.config = Some(val().into()),
            "--names-out" => a.names_out = Some(val().into()),
            "--seed" => a.seed = num(val()),
            _ => usage(),
        }
    }
    if a.data_dir.as_os_str().is_empty() || a.clients == 0 || a.remotes == 0 {
        usage();
    }
    a
}

/// splitmix64: plenty for synthetic traffic.
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
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Popular remotes first: index = n * u^3.
    fn popular(&mut self, n: usize) -> usize {
        ((n as f64) * self.unit().powi(3)) as usize % n
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Tv,
    Phone,
    Laptop,
    Iot,
}

fn kind(i: usize) -> Kind {
    match i % 20 {
        0 => Kind::Tv,
        1..=7 => Kind::Phone,
        8..=12 => Kind::Laptop,
        _ => Kind::Iot,
    }
}

fn client_mac(i: usize) -> [u8; 6] {
    [0x3c, 0x22, 0xfb, 0x40, (i >> 8) as u8, i as u8]
}

/// 192.168.1.2 and up, skipping .1 (the router) and .10 (the benchmark's client), then
/// on into 192.168.2.x and beyond when there are more than 252 clients.
fn client_ip(i: usize) -> Ipv4Addr {
    let mut host = i as u32 + 2;
    if host >= 10 {
        host += 1;
    }
    let host = if host >= 255 { host + 2 } else { host };
    Ipv4Addr::from(u32::from(Ipv4Addr::new(192, 168, 1, 0)) + host)
}

/// Host names as seen on real LANs: mixed case, vendor defaults, non-ASCII, long ones, a
/// few with markup (the pages must escape them), some clients without one.
fn hostname(i: usize) -> Option<String> {
    const SPECIAL: [&str; 6] = [
        "<script>alert(1)</script>",
        "Jürgens-iPad",
        "bob's \"laptop\" & more",
        "a-really-long-hostname-from-a-smart-fridge-firmware-v2-0-17-build-4471",
        "DESKTOP-7F3K2QX",
        "<img src=x onerror=alert(2)>",
    ];
    const STEMS: [&str; 12] = [
        "iPhone",
        "android",
        "Galaxy-S23",
        "MacBook-Pro",
        "ThinkPad",
        "LivingRoom-TV",
        "esp32",
        "shellyplug",
        "Echo-Dot",
        "raspberrypi",
        "Chromecast",
        "printer",
    ];
    if i < SPECIAL.len() {
        return Some(SPECIAL[i].to_string());
    }
    if i.is_multiple_of(17) {
        return None;
    }
    Some(format!("{}-{:03}", STEMS[i % STEMS.len()], i))
}

/// Remote k: a quarter IPv6, the rest spread over a few v4 prefixes.
fn remote_ip(k: usize) -> IpAddr {
    if k % 4 == 3 {
        IpAddr::V6(Ipv6Addr::new(
            0x2a00,
            0x1450,
            0x4001,
            0x80b,
            0,
            0,
            (k >> 16) as u16,
            k as u16,
        ))
    } else {
        IpAddr::V4(Ipv4Addr::new(
            [23, 104, 142, 151, 172, 185][k % 6],
            (k * 37 % 250) as u8,
            (k >> 8) as u8,
            k as u8,
        ))
    }
}

fn remote_name(k: usize) -> String {
    const SITES: [&str; 8] = [
        "video", "cdn", "api", "push", "static", "time", "update", "mail",
    ];
    format!(
        "{}{k}.{}.bench.test",
        SITES[k % SITES.len()],
        ["eu", "us", "io"][k % 3]
    )
}

/// Relative activity by hour of day (UTC).
fn activity(t_ms: u64) -> f64 {
    const A: [f64; 24] = [
        0.35, 0.2, 0.08, 0.08, 0.08, 0.08, 0.3, 0.7, 0.7, 0.6, 0.6, 0.6, 0.7, 0.7, 0.6, 0.6, 0.6,
        0.8, 0.8, 1.0, 1.0, 1.0, 0.8, 0.55,
    ];
    A[(t_ms / 3_600_000 % 24) as usize]
}

fn main() {
    let args = parse_args();
    let cfg = match &args.config {
        // `parse`, not `load`: reading must not migrate (rewrite) the benchmark's file.
        Some(p) => match std::fs::read_to_string(p).map(|t| config::parse(&t)) {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                eprintln!("ui-bench-seed: {}: {e}", p.display());
                exit(1)
            }
            Err(e) => {
                eprintln!("ui-bench-seed: {}: {e}", p.display());
                exit(1)
            }
        },
        None => Config::default(),
    };
    let now_s = gateway::clock::unix_now();
    let now_ms = gateway::clock::unix_ms();
    let mut rng = Rng(args.seed);

    // --- leases
    let lease_path = args.data_dir.join("dhcp/leases.json");
    let _ = std::fs::remove_file(lease_path.with_extension("journal"));
    let _ = std::fs::remove_file(&lease_path);
    let mut store = LeaseStore::open(&lease_path, cfg.dhcp.max_leases.max(args.clients))
        .unwrap_or_else(|e| {
            eprintln!("ui-bench-seed: {e:#}");
            exit(1)
        });
    for i in 0..args.clients {
        let lease = Lease {
            mac: client_mac(i),
            ip: client_ip(i),
            hostname: hostname(i),
            expires: now_s + rng.range(600, 43_200),
            client_id: (i % 3 == 0)
                .then(|| format!("01{}", format_mac(&client_mac(i)).replace(':', ""))),
        };
        if store.bind(lease, now_s).is_err() {
            eprintln!("ui-bench-seed: lease table full at {i} clients");
            exit(1);
        }
    }
    if let Err(e) = store.save() {
        eprintln!("ui-bench-seed: writing {}: {e}", lease_path.display());
        exit(1);
    }
    let active = store.leases().filter(|l| l.is_active(now_s)).count();

    // --- traffic history
    let traffic = Traffic::new(&cfg, &args.data_dir);
    let span_ms = u64::from(cfg.traffic.retention_hours) * 3_600_000;
    let start_ms = now_ms - span_ms;
    let day_ms = 86_400_000;
    // Each TV's streams: (start, end) in ms.
    let streams: Vec<Vec<(u64, u64)>> = (0..args.clients)
        .map(|i| {
            if kind(i) != Kind::Tv {
                return Vec::new();
            }
            (0..rng.range(1, 2))
                .map(|_| {
                    // Evenings: 17:00-23:00 UTC of the span's days.
                    let day0 = start_ms / day_ms * day_ms;
                    let day = day0 + rng.below(2) * day_ms;
                    let s = day + 17 * 3_600_000 + rng.below(6 * 3_600_000);
                    (s, s + rng.range(30, 90) * 60_000)
                })
                .collect()
        })
        .collect();
    // Each client's keepalive remotes.
    let keepalive: Vec<[usize; 2]> = (0..args.clients)
        .map(|_| {
            [
                rng.below(args.remotes as u64) as usize,
                rng.below(args.remotes as u64) as usize,
            ]
        })
        .collect();

    let t0 = Instant::now();
    let mut recs: Vec<Record> = Vec::new();
    let mut n_recs = 0u64;
    let first_chunk = start_ms / CHUNK_MS;
    let last_chunk = now_ms / CHUNK_MS;
    for chunk in first_chunk..=last_chunk {
        let c0 = (chunk * CHUNK_MS).max(start_ms);
        let c1 = ((chunk + 1) * CHUNK_MS).min(now_ms);
        if c1 <= c0 {
            continue;
        }
        let act = activity(c0);
        recs.clear();
        let bucket = |rng: &mut Rng| c0 / BUCKET_MS + rng.below((c1 - c0) / BUCKET_MS);
        for i in 0..args.clients {
            let mac = client_mac(i);
            let mut push = |t_ms: u64, k: usize, dir: Dir, bytes: u32| {
                recs.push(Record {
                    t_ms,
                    client: mac,
                    remote: remote_ip(k),
                    dir,
                    bytes,
                })
            };
            // Keepalives: everyone but idle phones, once a minute or so.
            if kind(i) == Kind::Iot || rng.unit() < 0.5 {
                let k = keepalive[i][rng.below(2) as usize];
                let t = bucket(&mut rng) * BUCKET_MS + rng.below(BUCKET_MS);
                push(t, k, Dir::Up, rng.range(60, 300) as u32);
                push(t + 20, k, Dir::Down, rng.range(60, 600) as u32);
            }
            match kind(i) {
                Kind::Tv => {
                    for &(s, e) in &streams[i] {
                        let (s, e) = (s.max(c0), e.min(c1));
                        if s >= e {
                            continue;
                        }
                        let k = i % args.remotes.min(8);
                        let mut b = s / BUCKET_MS;
                        while b * BUCKET_MS < e {
                            let t = b * BUCKET_MS;
                            for j in 0..3 {
                                push(t + j * 7, k, Dir::Down, 1400);
                            }
                            push(t + 30, k, Dir::Up, 52);
                            b += 2;
                        }
                    }
                }
                Kind::Phone | Kind::Laptop => {
                    let p = act * if kind(i) == Kind::Laptop { 0.35 } else { 0.25 };
                    if rng.unit() >= p {
                        continue;
                    }
                    for _ in 0..rng.range(1, 4) {
                        let k = rng.popular(args.remotes);
                        let first = bucket(&mut rng);
                        for _ in 0..rng.range(5, 40) {
                            let b = first + rng.below(150);
                            let t = b * BUCKET_MS;
                            if t >= c1 {
                                continue;
                            }
                            for j in 0..rng.range(1, 4) {
                                push(t + j * 3, k, Dir::Down, rng.range(200, 1500) as u32);
                            }
                            push(t + 15, k, Dir::Up, 52);
                        }
                    }
                }
                Kind::Iot => {}
            }
        }
        recs.sort_unstable_by_key(|r| r.t_ms);
        n_recs += recs.len() as u64;
        let mut h = traffic.history();
        h.ingest(&recs);
        h.advance(((chunk + 1) * CHUNK_MS + LATE_GRACE_MS + 1).min(now_ms));
    }
    traffic.history().advance(now_ms);
    let elapsed = t0.elapsed();
    let stats = traffic.history().stats();
    let bytes = traffic.save().unwrap_or_else(|e| {
        eprintln!("ui-bench-seed: saving the traffic history: {e}");
        exit(1)
    });

    if let Some(p) = &args.names_out {
        let text: String = (0..args.remotes)
            .map(|k| format!("{} {}\n", remote_ip(k), remote_name(k)))
            .collect();
        if let Err(e) = std::fs::write(p, text) {
            eprintln!("ui-bench-seed: {}: {e}", p.display());
            exit(1);
        }
    }

    let reach_h = stats
        .oldest_ms
        .map_or(0.0, |o| (now_ms - o) as f64 / 3_600_000.0);
    println!(
        "ui-bench-seed: {active} active leases in {}",
        lease_path.display()
    );
    println!(
        "ui-bench-seed: history {:.1} h back ({} h retention), {} records in {:.1} s, \
         {} pairs, {} sealed + {} open chunks, {} hourly rollups, {:.1} MiB of {:.1} MiB, \
         evicted {} chunks; snapshot {:.1} MiB",
        reach_h,
        cfg.traffic.retention_hours,
        n_recs,
        elapsed.as_secs_f64(),
        stats.pairs,
        stats.sealed_chunks,
        stats.open_chunks,
        stats.rollups,
        stats.memory_bytes as f64 / 1048576.0,
        stats.memory_limit as f64 / 1048576.0,
        stats.evicted_chunks,
        bytes as f64 / 1048576.0,
    );
    if stats.evicted_chunks > 0 {
        eprintln!("ui-bench-seed: warning: memory limit evicted history; fewer clients or remotes");
    }
}
