//! Recorder throughput: the collector's whole per-packet path (device lookup, history
//! ingest, live aggregation, capture copy) fed with synthetic NAT batches, on one thread.
//! Run by scripts/bench-traffic; prints records per second with and without capture.

use gateway::config::Config;
use gateway::traffic::clients::ClientMap;
use gateway::traffic::collector::Collector;
use gateway::traffic::tap::{Batch, Seen};
use gateway::traffic::Traffic;
use std::net::Ipv4Addr;
use std::time::Instant;

const CLIENTS: u32 = 50;
const REMOTES: u32 = 200;
const BATCH: usize = 512;

/// One simulated second at `pps`, starting at `t0_ns`, as NAT batches of 64-byte packets.
fn batches(t0_ns: u64, pps: u64, seed: &mut u64, with_bytes: bool) -> Vec<Batch> {
    let pkt = [0x45u8; 64];
    let mut out = Vec::new();
    let mut b = Batch::default();
    for i in 0..pps {
        // xorshift: cheap, deterministic spread over pairs.
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let c = (*seed % u64::from(CLIENTS)) as u32;
        let r = ((*seed >> 20) % u64::from(REMOTES)) as u32;
        let start = b.data.len() as u32;
        if with_bytes {
            b.data.extend_from_slice(&pkt);
        }
        b.seen.push(Seen {
            t_ns: t0_ns + i * 1_000_000_000 / pps,
            inside: Ipv4Addr::from(0xc0a8_0164 + c),
            remote: Ipv4Addr::from(0xc633_6400 + r),
            up: *seed & 1 == 0,
            len: 64 + (*seed >> 40) as u32 % 1400,
            cap_start: start,
            cap_len: if with_bytes { 64 } else { 0 },
        });
        if b.seen.len() == BATCH {
            out.push(std::mem::take(&mut b));
        }
    }
    out.push(b);
    out
}

fn run(capture: bool) -> f64 {
    let dir = std::env::temp_dir().join(format!("gh-bench-rec-{}", std::process::id()));
    let mut cfg = Config::default();
    cfg.capture.enabled = capture;
    let t = Traffic::new(&cfg, &dir);
    let mut clients = ClientMap::new(None);
    for c in 0..CLIENTS {
        clients.insert(Ipv4Addr::from(0xc0a8_0164 + c), [2, 0, 0, 0, 0, c as u8]);
    }
    let mut col = Collector::new(clients);
    let pps = 2_000_000;
    let t0 = gateway::clock::unix_ms() * 1_000_000;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let secs = 5;
    let mut records = 0u64;
    let mut busy = std::time::Duration::ZERO;
    for s in 0..secs {
        let start_ns = t0 + s * 1_000_000_000;
        let bs = batches(start_ns, pps, &mut seed, capture);
        let began = Instant::now();
        for (i, b) in bs.iter().enumerate() {
            col.ingest(&t, b);
            records += b.seen.len() as u64;
            // The collector ticks every 100 ms of packet time.
            if i % 40 == 0 {
                col.tick(&t, b.seen.first().map_or(start_ns, |x| x.t_ns) / 1_000_000);
            }
        }
        busy += began.elapsed();
    }
    let _ = std::fs::remove_dir_all(&dir);
    records as f64 / busy.as_secs_f64()
}

fn main() {
    let plain = run(false);
    let cap = run(true);
    println!(
        "recorder (collector path, 1 thread): history only {:.2} M records/s",
        plain / 1e6
    );
    println!(
        "recorder (collector path, 1 thread): history + 64-byte capture {:.2} M records/s",
        cap / 1e6
    );
    println!("target: >= 5 M records/s");
}
